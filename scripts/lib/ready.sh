# Sourced by the benchmark scripts: waits for a gateway to be ready.
#
# wait_ready URL PID LOG: until URL/readyz answers 200 (every module loaded
# or failed; the listener opens before the modules compile, so a request
# before that measures a module still loading). Exits the calling script,
# with LOG on stderr, if PID exits first or 300 s pass.
wait_ready() {
  local url="$1" pid="$2" log="$3" deadline=$((SECONDS + 300))
  while ((SECONDS < deadline)); do
    curl -sf -o /dev/null "$url/readyz" && return
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$(basename "$0"): the gateway exited before it was ready:" >&2
      tail -n 40 "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
  echo "$(basename "$0"): the gateway was not ready after 300 s:" >&2
  tail -n 40 "$log" >&2
  exit 1
}
