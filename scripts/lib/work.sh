# Sourced by the benchmark scripts: a scratch folder, the servers they
# start in the background, and stopping those on the way out.
#
# start_work NAME: makes $work, a fresh folder under $TMPDIR, and an empty
# $pids; on exit every process in $pids is stopped and waited for, and
# $work removed. Ctrl-C or TERM exits 130 through the same path.
start_work() {
  work="$(mktemp -d "${TMPDIR:-/tmp}/shanhai-$1.XXXXXX")"
  pids=()
  trap stop_work EXIT
  trap 'exit 130' INT TERM
}

stop_work() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}

# start_listening NAME CMD...: starts CMD, a server that prints `listening
# on http://ADDR` on stdout, prefixed with $server_pin (empty, or taskset,
# which execs); sets $addr to ADDR and $server_pid. Its output goes to
# $work/NAME.out and .err; exits the script if it does not listen in 60 s.
start_listening() {
  local name="$1"
  shift
  # Emptied here, not only by the redirection below: that one runs in the
  # background job, and the loop could read a stopped server's address
  # from the last start of NAME before it does.
  : >"$work/$name.out"
  "${server_pin[@]}" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 6000); do
    addr="$(sed -n 's|^listening on http://||p' "$work/$name.out")"
    [[ -n "$addr" ]] && { server_pid=$pid; return; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  echo "$(basename "$0"): $name did not start:" >&2
  cat "$work/$name.err" >&2
  exit 1
}
