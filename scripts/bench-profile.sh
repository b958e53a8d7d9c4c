#!/usr/bin/env bash
# Where a request's CPU time goes: perf samples each server under wrk, one
# endpoint at a time, and bench/profile.py splits the CPU time a request
# costs into the code that spent it (the Go guest's packages, the gateway's
# crates, the C library, the kernel), beside the same handler built as a
# native Go server and bare hyper, and counts each server's context switches
# per request by thread and kind (waited or preempted) and, in a short run
# of its own, its system calls per request by name (perf stat on the
# syscalls tracepoints). The breakdown in
# docs/benchmarks.md ("Where the time goes") comes from this script.
#
#   scripts/bench-profile.sh          # about 3 minutes on 2 cores
#
# Endpoints (the same as scripts/bench.sh's): POST /api/exec/add/add on the
# gateway and on bench-reference; GET /json2k, GET /json2k/text and POST
# /json2k/readings on the gateway and on the native Go server.
#
# perf reads the guests' function names from the compiled modules' cache
# files, which the gateway maps; it needs `perf` (apt-get install -y
# linux-perf) and permission to sample another process (root, or
# kernel.perf_event_paranoid <= 1). profile.py reads the wrk logs with
# report.py's parser, so it runs in target/bench-venv (scripts/lib/venv.sh).
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10s]   wrk duration per endpoint, perf sampling throughout
#   BENCH_WARMUP [2s]      untimed wrk run before each endpoint
#   BENCH_THREADS [2]      wrk threads     BENCH_CONNECTIONS [64]
#   PROFILE_FREQUENCY [1999]  perf samples per second per busy thread
#   PROFILE_SYSCALL_SECONDS [3]  the run after each sampled one that counts system calls
#   BENCH_RESULTS [target/bench-profile]  perf data, wrk logs and results.md
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
# shellcheck source=lib/proc.sh
. "$root/scripts/lib/proc.sh"
# shellcheck source=lib/venv.sh
. "$root/scripts/lib/venv.sh"
# lib/http-servers.sh sources lib/ready.sh and lib/work.sh.
# shellcheck source=lib/http-servers.sh
. "$root/scripts/lib/http-servers.sh"
duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-2s}"
threads="${BENCH_THREADS:-2}"
connections="${BENCH_CONNECTIONS:-64}"
frequency="${PROFILE_FREQUENCY:-1999}"
syscall_seconds="${PROFILE_SYSCALL_SECONDS:-3}"
results="${BENCH_RESULTS:-$root/target/bench-profile}"

for tool in perf wrk curl go python3 cargo; do
  command -v "$tool" >/dev/null || {
    echo "bench-profile.sh: $tool is not installed (apt-get install -y linux-perf wrk)" >&2
    exit 1
  }
done

start_work profile
server_pin=()

rm -rf "$results"
mkdir -p "$results/perf" "$results/wrk"
results="$(cd "$results" && pwd)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# The tree as built, not as it is when the runs end.
commit="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo '+changes')"
echo "== building" >&2
build_for_bench
"$root/scripts/build-examples.sh" "$work/modules" 2>/dev/null
(cd "$root/examples/json2k" && go build -o "$work/json2k-native" ./native)

write_http_loads
start_http_servers "$work/cache"

# profile LABEL PID URL [LUA]: wrk on URL while perf samples PID for the
# whole run; the run's request count, PID's CPU time and each of its
# threads' context switches before and after the run (LABEL.threads-before
# and -after) go beside the data.
profile() {
  local label="$1" pid="$2" url="$3" lua="${4:-}"
  local script=()
  [[ -n "$lua" ]] && script=(-s "$work/$lua")
  echo "== $label: $url" >&2
  wrk -t"$threads" -c"$connections" -d"$warmup" "${script[@]}" "$url" >/dev/null
  local log="$results/wrk/$label.txt" seconds="${duration%s}"
  echo "\$ wrk -t$threads -c$connections -d$duration ${script[*]} $url" >"$log"
  perf record --quiet -F "$frequency" -p "$pid" -o "$results/perf/$label.data" -- sleep "$seconds" \
    2>"$results/perf/$label.err" &
  local perf_pid=$!
  local before
  before="$(cpu_ticks "$pid")"
  thread_switches "$pid" >"$results/wrk/$label.threads-before"
  wrk -t"$threads" -c"$connections" -d"$duration" "${script[@]}" "$url" >>"$log"
  echo "$(($(cpu_ticks "$pid") - before)) $(getconf CLK_TCK)" >"$results/wrk/$label.cpu"
  thread_switches "$pid" >"$results/wrk/$label.threads-after"
  wait "$perf_pid"
  # The system calls by name, in a short run of their own: counting them
  # (a tracepoint per call, on every thread) makes each context switch
  # dearer, which would show in the sampled run's kernel share. A kernel
  # without the tracepoints leaves the counts out, and the table.
  local count_log="$results/perf/$label.syscalls-wrk.txt"
  echo "\$ wrk -t$threads -c$connections -d${syscall_seconds}s ${script[*]} $url" >"$count_log"
  perf stat -x, -e 'syscalls:sys_enter_*' -p "$pid" -o "$results/perf/$label.syscalls" -- sleep "$syscall_seconds" \
    2>/dev/null &
  local stat_pid=$!
  wrk -t"$threads" -c"$connections" -d"${syscall_seconds}s" "${script[@]}" "$url" >>"$count_log"
  wait "$stat_pid" || true
  kill -0 "$pid" 2>/dev/null || { echo "bench-profile.sh: the server of $label exited" >&2; exit 1; }
  # perf reads the symbols now, while the modules' cache files exist.
  perf script -i "$results/perf/$label.data" -F ip,sym,dso 2>/dev/null | gzip >"$results/perf/$label.samples.gz"
}

profile gw-add "$gateway_pid" "$gateway/api/exec/add/add" add.lua
profile ref-add "$reference_pid" "$reference_url/api/exec/add/add" add.lua
profile gw-text "$gateway_pid" "$gateway/json2k/text"
profile native-text "$native_pid" "$native/json2k/text"
profile gw-json2k "$gateway_pid" "$gateway/json2k"
profile native-json2k "$native_pid" "$native/json2k"
profile gw-readings "$gateway_pid" "$gateway/json2k/readings" readings.lua
profile native-readings "$native_pid" "$native/json2k/readings" readings.lua

bench_python
"$bench_python" "$root/bench/profile.py" --results "$results" --started "$started" --frequency "$frequency" \
  --commit "$commit" \
  >"$results/results.md"
echo "bench-profile.sh: $results/results.md" >&2
