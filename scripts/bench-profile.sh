#!/usr/bin/env bash
# Where a request's CPU time goes: perf samples each server under wrk, one
# endpoint at a time, and bench/profile.py splits the CPU time a request
# costs into the code that spent it (the Go guest's packages, the gateway's
# crates, the C library, the kernel), beside the same handler built as a
# native Go server and bare hyper. The breakdown in docs/benchmarks.md
# ("Where the time goes") comes from this script.
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
# kernel.perf_event_paranoid <= 1).
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10s]   wrk duration per endpoint, perf sampling throughout
#   BENCH_WARMUP [2s]      untimed wrk run before each endpoint
#   BENCH_THREADS [2]      wrk threads     BENCH_CONNECTIONS [64]
#   PROFILE_FREQUENCY [1999]  perf samples per second per busy thread
#   BENCH_RESULTS [target/bench-profile]  perf data, wrk logs and results.md
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
# shellcheck source=lib/ready.sh
. "$root/scripts/lib/ready.sh"
# shellcheck source=lib/proc.sh
. "$root/scripts/lib/proc.sh"
duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-2s}"
threads="${BENCH_THREADS:-2}"
connections="${BENCH_CONNECTIONS:-64}"
frequency="${PROFILE_FREQUENCY:-1999}"
results="${BENCH_RESULTS:-$root/target/bench-profile}"

for tool in perf wrk curl go python3 cargo; do
  command -v "$tool" >/dev/null || {
    echo "bench-profile.sh: $tool is not installed (apt-get install -y linux-perf wrk)" >&2
    exit 1
  }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/shanhai-profile.XXXXXX")"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$results"
mkdir -p "$results/perf" "$results/wrk"
results="$(cd "$results" && pwd)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

echo "== building" >&2
build_for_bench
"$root/scripts/build-examples.sh" "$work/modules" 2>/dev/null
(cd "$root/examples/json2k" && go build -o "$work/json2k-native" ./native)

cat >"$work/add.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "[2.5,3.7]"
wrk.headers["Content-Type"] = "application/json"
EOF
cat >"$work/readings.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"device":"pump-7","readings":[20.5,19.5,21,23,22.5,20,19,21.5]}'
wrk.headers["Content-Type"] = "application/json"
EOF
# scripts/bench.sh's config: the embedded defaults, the admin API off the
# machine's shared ports.
cat >"$work/gateway.toml" <<EOF
[admin]
listen = "127.0.0.1:0"
socket = ""
token_file = "$work/admin.token"
EOF

# start_listening NAME CMD...: starts a server that prints `listening on
# http://ADDR` and sets $addr and $server_pid.
start_listening() {
  local name="$1"
  shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 3000); do
    addr="$(sed -n 's|^listening on http://||p' "$work/$name.out")"
    [[ -n "$addr" ]] && { server_pid=$pid; return; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  echo "bench-profile.sh: $name did not start:" >&2
  cat "$work/$name.err" >&2
  exit 1
}

SHANHAI_LOG=warn start_listening gateway "$root/target/release/shanhai" serve \
  --config "$work/gateway.toml" --modules "$work/modules" --listen 127.0.0.1:0 --cache-dir "$work/cache"
gateway="http://$addr"
gateway_pid=$server_pid
wait_ready "$gateway" "$gateway_pid" "$work/gateway.err"
start_listening reference "$root/target/release/bench-reference" --listen 127.0.0.1:0
reference="http://$addr"
reference_pid=$server_pid
native_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$work/json2k-native" -listen "127.0.0.1:$native_port" >"$work/native.out" 2>"$work/native.err" &
native_pid=$!
pids+=("$native_pid")
native="http://127.0.0.1:$native_port"
for _ in $(seq 1 500); do
  curl -sf -o /dev/null "$native/json2k" && break
  kill -0 "$native_pid" 2>/dev/null || { cat "$work/native.err" >&2; exit 1; }
  sleep 0.01
done

# Each endpoint answers before it is profiled.
curl -sf -X POST -d '[2.5,3.7]' "$gateway/api/exec/add/add" | grep -qx '6.2'
curl -sf -X POST -d '[2.5,3.7]' "$reference/api/exec/add/add" | grep -qx '6.2'
for server in "$gateway" "$native"; do
  curl -sf -o /dev/null "$server/json2k"
  curl -sf "$server/json2k/text" | grep -qx ok
done

# profile LABEL PID URL [LUA]: wrk on URL while perf samples PID for the
# whole run; the run's request count and PID's CPU time go beside the data.
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
  wrk -t"$threads" -c"$connections" -d"$duration" "${script[@]}" "$url" >>"$log"
  echo "$(($(cpu_ticks "$pid") - before)) $(getconf CLK_TCK)" >"$results/wrk/$label.cpu"
  wait "$perf_pid"
  kill -0 "$pid" 2>/dev/null || { echo "bench-profile.sh: the server of $label exited" >&2; exit 1; }
  # perf reads the symbols now, while the modules' cache files exist.
  perf script -i "$results/perf/$label.data" -F ip,sym,dso 2>/dev/null | gzip >"$results/perf/$label.samples.gz"
}

profile gw-add "$gateway_pid" "$gateway/api/exec/add/add" add.lua
profile ref-add "$reference_pid" "$reference/api/exec/add/add" add.lua
profile gw-text "$gateway_pid" "$gateway/json2k/text"
profile native-text "$native_pid" "$native/json2k/text"
profile gw-json2k "$gateway_pid" "$gateway/json2k"
profile native-json2k "$native_pid" "$native/json2k"
profile gw-readings "$gateway_pid" "$gateway/json2k/readings" readings.lua
profile native-readings "$native_pid" "$native/json2k/readings" readings.lua

python3 "$root/bench/profile.py" --results "$results" --started "$started" \
  --commit "$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo '+changes')" \
  >"$results/results.md"
echo "bench-profile.sh: $results/results.md" >&2
