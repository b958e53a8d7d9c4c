#!/usr/bin/env bash
# What the Pulley interpreter costs: the x86-64 gateway with
# `runtime.compiler = "cranelift"` and then `"pulley"`, same modules, same
# run, under wrk (docs/arm.md, "Pulley against Cranelift"):
#   POST /api/exec/add/add   (a numeric export: little guest code)
#   GET /json2k              (Go's encoding/json: mostly guest code)
#   POST /cgi-echo           (a fresh instance per request)
#
#   scripts/bench-pulley.sh
#   env: BENCH_DURATION [10s], BENCH_CONNECTIONS [16],
#        BENCH_RESULTS [target/bench-pulley] (results.md and the wrk logs)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
# shellcheck source=lib/ready.sh
. "$root/scripts/lib/ready.sh"
duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-16}"
results="${BENCH_RESULTS:-$root/target/bench-pulley}"
command -v wrk >/dev/null || { echo "bench-pulley.sh: wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/shanhai-pulley.XXXXXX")"
pid=
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The build the test suite runs, with BENCH_CARGO_FEATURES if set
# (scripts/lib/build.sh).
build_for_bench
mkdir -p "$work/modules" "$results"
rm -f "$results"/*.txt "$results/results.md"
# Built from this checkout, as scripts/build-examples.sh builds them.
for name in add json2k; do
  (cd "$root/examples/$name" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$work/modules/$name.wasm" .)
done
(cd "$root/examples/cgi-echo" && GOOS=wasip1 GOARCH=wasm go build -o "$work/modules/cgi-echo.wasm" .)
printf 'wrk.method = "POST"\nwrk.body = "[2.5,3.7]"\n' >"$work/add.lua"
printf 'wrk.method = "POST"\nwrk.body = "hello from wrk"\n' >"$work/cgi.lua"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

rate() { sed -n 's/^Requests\/sec: *//p' "$1"; }
latency() { awk '$1 == "Latency" { print $2; exit }' "$1"; }

# The table goes to the terminal and to results.md.
exec > >(tee "$results/results.md")
printf '| compiler | add req/s | add latency | json2k req/s | json2k latency | cgi-echo req/s | cgi-echo latency |\n'
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for compiler in cranelift pulley; do
  mkdir -p "$work/$compiler"
  cat >"$work/$compiler/shanhai.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
modules_dir = "$work/modules"
cache_dir = "cache"
watch = false
[admin]
enabled = false
[runtime]
compiler = "$compiler"
TOML
  (cd "$work/$compiler" && exec "$root/target/release/shanhai" serve --config shanhai.toml) \
    >"$work/$compiler/gateway.log" 2>&1 &
  pid=$!
  wait_ready "http://127.0.0.1:$port" "$pid" "$work/$compiler/gateway.log"
  grep -q "code: $([[ $compiler == pulley ]] && echo Pulley || echo Cranelift)" "$work/$compiler/gateway.log" ||
    { echo "the gateway did not run $compiler" >&2; exit 1; }
  [[ "$(curl -fs -d '[2.5,3.7]' "http://127.0.0.1:$port/api/exec/add/add")" == 6.2 ]] ||
    { echo "add is wrong under $compiler" >&2; exit 1; }
  row="| $compiler"
  for target in "add -s $work/add.lua http://127.0.0.1:$port/api/exec/add/add" \
    "json2k http://127.0.0.1:$port/json2k" \
    "cgi -s $work/cgi.lua http://127.0.0.1:$port/cgi-echo"; do
    read -r name args <<<"$target"
    # shellcheck disable=SC2086
    wrk -t2 -c"$connections" -d2s $args >/dev/null
    # shellcheck disable=SC2086
    log="$results/$compiler-$name.txt"
    # shellcheck disable=SC2086
    echo "\$ wrk -t2 -c$connections -d$duration --latency $args" >"$log"
    # shellcheck disable=SC2086
    wrk -t2 -c"$connections" -d"$duration" --latency $args >>"$log"
    row+=" | $(rate "$log") | $(latency "$log")"
  done
  echo "$row |"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
done
