#!/usr/bin/env bash
# End-to-end benchmarks: the gateway under wrk, beside native references.
# The figures in docs/benchmarks.md come from this script.
#
#   scripts/bench.sh
#
# Measures, each BENCH_RUNS times (median reported), alternating the gateway
# with its reference so that machine noise hits both:
#   a. POST /api/exec/add/add  gateway (Go add.wasm)  vs bench-reference (bare hyper)
#   b. GET /json2k             gateway (Go json2k.wasm) vs the native Go server
#      GET /json2k/text        the same pair, a 3-byte text reply ("ok\n")
#      POST /json2k/readings   the same pair, a JSON batch decoded and summarised
#      (one Go handler source, examples/json2k/doc, serves all three on both)
#   c. GET /hello-rs, GET /hello   (Rust and Go guests, for context)
#   d. POST /cgi-echo          CGI: a fresh instance per request (at -c64 and -c1)
#   e. process start -> first 200 from GET /json2k, warm and cold compile cache
#   f. the gateway's VmRSS / VmHWM before and after the load, and its VmRSS and
#      RssAnon every 250 ms during the load (bench/rss_sampler.py), with the
#      references' VmRSS beside it, in rss.csv
#
# One gateway serves every load run, with every example loaded
# (scripts/build-examples.sh).
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10s]  wrk duration per run      BENCH_RUNS [3]     runs per measurement
#   BENCH_THREADS [2]     wrk threads               BENCH_CONNECTIONS [64]
#   BENCH_WARMUP [2s]     untimed wrk run before each target's first run
#   BENCH_STARTS [5]      timed starts, warm cache  BENCH_COLD_STARTS [BENCH_STARTS] with an empty cache
#   BENCH_SERVER_CPUS, BENCH_WRK_CPUS  taskset -c lists; empty (no pinning) by default
#   BENCH_RESULTS [target/bench]  where the wrk logs, rss.csv and results.md are written
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
# shellcheck source=lib/proc.sh
. "$root/scripts/lib/proc.sh"
# lib/http-servers.sh sources lib/ready.sh and lib/work.sh.
# shellcheck source=lib/http-servers.sh
. "$root/scripts/lib/http-servers.sh"
duration="${BENCH_DURATION:-10s}"
runs="${BENCH_RUNS:-3}"
threads="${BENCH_THREADS:-2}"
connections="${BENCH_CONNECTIONS:-64}"
warmup="${BENCH_WARMUP:-2s}"
starts="${BENCH_STARTS:-5}"
cold_starts="${BENCH_COLD_STARTS:-$starts}"
server_cpus="${BENCH_SERVER_CPUS:-}"
wrk_cpus="${BENCH_WRK_CPUS:-}"
results="${BENCH_RESULTS:-$root/target/bench}"

for tool in wrk curl go python3 cargo; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is not installed (apt-get install -y wrk)" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/shanhai-bench.XXXXXX")"
pids=()
fg_pid=
cleanup() {
  local pid
  for pid in ${fg_pid:+"$fg_pid"} "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_fg CMD...: runs CMD in the background and waits for it. Bash runs a trap
# only once its foreground command ends, and ignores SIGINT altogether when
# that command catches it (wrk does); `wait` lets Ctrl-C stop the script at once.
in_fg() {
  "$@" &
  fg_pid=$!
  local status=0
  wait "$fg_pid" || status=$?
  fg_pid=
  return "$status"
}

rm -rf "$results/wrk" "$results/results.md" "$results"/startup-*.txt "$results/rss.csv"
mkdir -p "$results/wrk"

# Command prefixes: empty, or taskset (which execs, so $! stays the server's pid).
server_pin=()
wrk_pin=()
[[ -n "$server_cpus" ]] && server_pin=(taskset -c "$server_cpus")
[[ -n "$wrk_cpus" ]] && wrk_pin=(taskset -c "$wrk_cpus")

# build
echo "== building" >&2
# The build the test suite runs, with BENCH_CARGO_FEATURES if set
# (scripts/lib/build.sh).
build_for_bench
shanhai="$root/target/release/shanhai"
"$root/scripts/build-examples.sh" "$work/modules" 2>/dev/null
(cd "$root/examples/json2k" && go build -o "$work/json2k-native" ./native)

write_http_loads

# e. start-up: process start -> first 200 from GET /json2k
# Run before the load so the machine is quiet. Each start is a fresh process;
# the poller connects in a tight loop (1 ms back-off on refusal). The warm
# cache is filled by one untimed start that runs until /readyz is 200.
cat >"$work/startup.py" <<'EOF'
import os, shutil, signal, socket, statistics, subprocess, sys, time, urllib.request

shanhai, config, modules, cache, mode = sys.argv[1:6]
count = int(sys.argv[6])
# The script stops us with SIGTERM: unwind, so `finally` stops the gateway.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
env = dict(os.environ, SHANHAI_LOG="warn")
request = b"GET /json2k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def first_response(port, proc):
    while True:
        if proc.poll() is not None:
            sys.exit(f"gateway exited with {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
                s.sendall(request)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            if data.startswith(b"HTTP/1.1 200"):
                return
        except (ConnectionRefusedError, ConnectionResetError):
            pass
        time.sleep(0.001)

def wait_ready(port, proc):
    """Until /readyz answers 200: every module loaded (a request for one
    module has it loaded first, so the first 200 does not mean the others
    are in the cache)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("the gateway never became ready")

def start(port, until_ready=False):
    t0 = time.monotonic()
    proc = subprocess.Popen([shanhai, "serve", "--config", config, "--modules", modules,
                             "--listen", f"127.0.0.1:{port}", "--cache-dir", cache],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        first_response(port, proc)
        elapsed = (time.monotonic() - t0) * 1000
        if until_ready:
            wait_ready(port, proc)
        return elapsed
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

if mode == "warm":
    start(free_port(), until_ready=True)  # fills the cache
times = []
for _ in range(count):
    if mode == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    times.append(start(free_port()))
print(" ".join(f"{t:.1f}" for t in times))
print(f"{statistics.median(times):.1f}")
EOF

echo "== start-up (warm cache x$starts, cold cache x$cold_starts)" >&2
in_fg python3 "$work/startup.py" "$shanhai" "$work/gateway.toml" "$work/modules" "$work/cache-warm" warm "$starts" >"$work/startup-warm"
in_fg python3 "$work/startup.py" "$shanhai" "$work/gateway.toml" "$work/modules" "$work/cache-cold" cold "$cold_starts" >"$work/startup-cold"
cp "$work/startup-warm" "$results/startup-warm.txt"
cp "$work/startup-cold" "$results/startup-cold.txt"
echo "warm cache: $(head -1 "$work/startup-warm") ms -> median $(tail -1 "$work/startup-warm") ms" >&2
echo "cold cache: $(head -1 "$work/startup-cold") ms -> median $(tail -1 "$work/startup-cold") ms" >&2

# the servers under load; each endpoint answers once before any load
start_http_servers "$work/cache-warm"
for path in hello hello-rs; do curl -sf -o /dev/null "$gateway/$path"; done
curl -sf -X POST -d 'x' -o /dev/null "$gateway/cgi-echo"

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
gateway_rss_idle="$(rss "$gateway_pid" VmRSS)"
gateway_anon_idle="$(rss "$gateway_pid" RssAnon)"
gateway_file_idle="$(rss "$gateway_pid" RssFile)"
json2k_bytes="$(curl -sf "$gateway/json2k" | wc -c)"
module_count="$(find "$work/modules" -maxdepth 1 -name '*.wasm' | wc -l)"

# The gateway's memory during the load, labelled with the measurement that
# runs: `set_phase` rewrites the label file the sampler reads (renamed into
# place, so that the sampler never reads it half written).
phase_file="$work/phase"
set_phase() {
  printf '%s\n' "$1" >"$phase_file.new"
  mv "$phase_file.new" "$phase_file"
}
set_phase idle
python3 "$root/bench/rss_sampler.py" "$results/rss.csv" "$phase_file" 0.25 \
  "gateway=$gateway_pid" "bench-reference=$reference_pid" "native-go=$native_pid" &
sampler_pid=$!
pids+=("$sampler_pid")
sleep 1 # a few samples of the idle gateway first

# server_of LABEL: the pid of the server LABEL loads.
server_of() {
  case "$1" in
    ref-*) echo "$reference_pid" ;;
    native-*) echo "$native_pid" ;;
    *) echo "$gateway_pid" ;;
  esac
}

# run_wrk LOG ARGS...: wrk, its output appended to LOG.
run_wrk() {
  local log="$1"
  shift
  in_fg "${wrk_pin[@]}" wrk "$@" >>"$log" 2>&1 || { echo "bench.sh: wrk failed:" >&2; cat "$log" >&2; exit 1; }
}

# measure LABEL URL [CONNECTIONS [LUA]]: one wrk run, appended to LABEL's runs.
measure() {
  local label="$1" url="$2" conns="${3:-$connections}" lua="${4:-}" n=1 log
  [[ -e "$work/$label.runs" ]] && n=$(($(wc -l <"$work/$label.runs") + 1))
  log="$results/wrk/$label.$n.txt"
  local script=()
  [[ -n "$lua" ]] && script=(-s "$work/$lua")
  local t=$((threads < conns ? threads : conns)) # wrk wants -c >= -t
  local args=(-t"$t" -c"$conns" -d"$duration" --latency "${script[@]}")
  if ((n == 1)); then
    set_phase "$label:warmup"
    run_wrk /dev/null -t"$t" -c"$conns" -d"$warmup" "${script[@]}" "$url"
  fi
  echo "\$ wrk ${args[*]} $url" >"$log"
  set_phase "$label"
  local server cpu_before
  server="$(server_of "$label")"
  cpu_before="$(cpu_ticks "$server")"
  run_wrk "$log" "${args[@]}" "$url"
  # The server's CPU time during the run: with the request count, what a
  # request costs it, whatever wrk took of the shared cores.
  echo "$(($(cpu_ticks "$server") - cpu_before)) $(getconf CLK_TCK)" >"${log%.txt}.cpu"
  set_phase idle
  local pid
  for pid in "$gateway_pid" "$reference_pid" "$native_pid"; do
    kill -0 "$pid" 2>/dev/null || { echo "bench.sh: a server exited during $label:" >&2; tail -n 20 "$work"/*.err >&2; exit 1; }
  done
  # rps p50 p99 (ms) and the error count: non-2xx responses plus socket errors.
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { errors += $NF }
    /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, errors }
  ' "$log" >>"$work/$label.runs"
  read -r rps p50 p99 errors < <(tail -1 "$work/$label.runs")
  printf '  %-14s run %d: %8s req/s  p50 %7s ms  p99 %7s ms' "$label" "$n" "$rps" "$p50" "$p99" >&2
  printf '  gateway RSS %s MB' "$(mb "$(rss "$gateway_pid" VmRSS)")" >&2
  if ((errors > 0)); then
    printf '  ERRORS: %s' "$(grep -E 'Non-2xx|Socket errors' "$log" | tr -s ' ' | tr '\n' ';')" >&2
  fi
  echo >&2
}

# median LABEL COLUMN: the median of one column over LABEL's runs (req/s
# rounded to integers, latencies to 0.01 ms).
median() {
  awk -v c="$2" '{ print $c }' "$work/$1.runs" | sort -g |
    awk -v c="$2" '{ v[NR] = $1 } END {
      m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf(c == 1 ? "%.0f\n" : "%.2f\n", m)
    }'
}
errors_total() { awk '{ s += $4 } END { print s + 0 }' "$work/$1.runs"; }

echo "== load: wrk -t$threads -c$connections -d$duration --latency, $runs runs each, $(nproc) cores," \
  "server pinned to '${server_cpus:-none}', wrk to '${wrk_cpus:-none}'" >&2
for ((i = 1; i <= runs; i++)); do
  # Alternate which side goes first, so a trend in the noise hits both.
  if ((i % 2)); then
    measure gw-add "$gateway/api/exec/add/add" "" add.lua
    measure ref-add "$reference_url/api/exec/add/add" "" add.lua
    measure gw-json2k "$gateway/json2k"
    measure native-json2k "$native/json2k"
    measure gw-text "$gateway/json2k/text"
    measure native-text "$native/json2k/text"
    measure gw-readings "$gateway/json2k/readings" "" readings.lua
    measure native-readings "$native/json2k/readings" "" readings.lua
  else
    measure ref-add "$reference_url/api/exec/add/add" "" add.lua
    measure gw-add "$gateway/api/exec/add/add" "" add.lua
    measure native-json2k "$native/json2k"
    measure gw-json2k "$gateway/json2k"
    measure native-text "$native/json2k/text"
    measure gw-text "$gateway/json2k/text"
    measure native-readings "$native/json2k/readings" "" readings.lua
    measure gw-readings "$gateway/json2k/readings" "" readings.lua
  fi
  measure gw-hello-rs "$gateway/hello-rs"
  measure gw-hello "$gateway/hello"
  measure gw-cgi "$gateway/cgi-echo" "" cgi.lua
  measure gw-cgi-c1 "$gateway/cgi-echo" 1 cgi.lua
done

kill "$sampler_pid"
wait "$sampler_pid" || true
gateway_rss_after="$(rss "$gateway_pid" VmRSS)"
gateway_hwm="$(rss "$gateway_pid" VmHWM)"
gateway_anon_after="$(rss "$gateway_pid" RssAnon)"
gateway_file_after="$(rss "$gateway_pid" RssFile)"
reference_rss="$(rss "$reference_pid" VmRSS)"
native_rss="$(rss "$native_pid" VmRSS)"

# report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "-" }'; }
row() { # row NAME LABEL [REF_NAME REF_LABEL]
  local name="$1" label="$2" ref_name="${3:-}" ref_label="${4:-}"
  local rps p50 p99 err
  rps="$(median "$label" 1)" p50="$(median "$label" 2)" p99="$(median "$label" 3)" err="$(errors_total "$label")"
  if [[ -n "$ref_label" ]]; then
    local rrps rp50 rp99 rerr
    rrps="$(median "$ref_label" 1)" rp50="$(median "$ref_label" 2)" rp99="$(median "$ref_label" 3)" rerr="$(errors_total "$ref_label")"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$name" "$rps" "$p50" "$p99" "$ref_name" "$rrps" "$rp50" "$rp99" "$(ratio "$rps" "$rrps")" "$err / $rerr"
  else
    printf '| %s | %s | %s | %s | — | | | | | %s |\n' "$name" "$rps" "$p50" "$p99" "$err"
  fi
}
cgi_rps="$(median gw-cgi 1)"
cgi_c1_rps="$(median gw-cgi-c1 1)"
{
  echo "Command: \`scripts/bench.sh\` (wrk -t$threads -c$connections -d$duration --latency; median of $runs runs;" \
    "$(nproc) cores shared by wrk and the servers, CPU pinning: server '${server_cpus:-none}', wrk '${wrk_cpus:-none}')"
  echo
  echo "| benchmark | Shanhai req/s | p50 ms | p99 ms | reference | ref req/s | ref p50 ms | ref p99 ms | ratio | errors (gw / ref) |"
  echo "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
  # shellcheck disable=SC2016 # the backticks are Markdown
  row 'POST /api/exec/add/add (Go add.wasm)' gw-add 'bare hyper (`bench-reference`)' ref-add
  row "GET /json2k (Go json2k.wasm, $json2k_bytes B)" gw-json2k 'native Go net/http' native-json2k
  row 'GET /json2k/text (Go json2k.wasm, "ok\n")' gw-text 'native Go net/http' native-text
  row 'POST /json2k/readings (Go json2k.wasm, 8 readings)' gw-readings 'native Go net/http' native-readings
  row 'GET /hello-rs (Rust guest)' gw-hello-rs
  row 'GET /hello (Go guest)' gw-hello
  row 'POST /cgi-echo (CGI, -c64)' gw-cgi
  row 'POST /cgi-echo (CGI, -c1)' gw-cgi-c1
  echo
  echo "CGI per-request cost: $(awk -v r="$cgi_rps" 'BEGIN { printf "%.2f", 1000 / r }') ms per request at -c$connections (1 / req/s)," \
    "$(median gw-cgi-c1 2) ms p50 latency with one connection" \
    "($(awk -v r="$cgi_c1_rps" 'BEGIN { printf "%.2f", 1000 / r }') ms per request serially)."
  echo
  echo "| start-up: process start → first 200 from GET /json2k | median ms | runs (ms) |"
  echo "| --- | ---: | --- |"
  echo "| warm compile cache, $starts start(s) | $(tail -1 "$work/startup-warm") | $(head -1 "$work/startup-warm") |"
  echo "| cold, empty cache, $cold_starts start(s) | $(tail -1 "$work/startup-cold") | $(head -1 "$work/startup-cold") |"
  echo
  echo "| memory (/proc/PID/status) | VmRSS MB | RssAnon MB | RssFile MB |"
  echo "| --- | ---: | ---: | ---: |"
  echo "| gateway, idle after start (warm cache, $module_count modules: every example) | $(mb "$gateway_rss_idle") | $(mb "$gateway_anon_idle") | $(mb "$gateway_file_idle") |"
  echo "| gateway after the load | $(mb "$gateway_rss_after") | $(mb "$gateway_anon_after") | $(mb "$gateway_file_after") |"
  echo "| gateway peak (VmHWM) | $(mb "$gateway_hwm") | | |"
  echo "| bench-reference after the load | $(mb "$reference_rss") | | |"
  echo "| native Go json2k after the load | $(mb "$native_rss") | | |"
} >"$results/results.md"

echo >&2
cat "$results/results.md"
echo >&2
echo "wrk logs, rss.csv and results.md in $results" >&2
