#!/usr/bin/env bash
# WebSocket benchmarks: the gateway's WebSocket trigger under bench-wsload
# (bench/wsload), beside a native Rust reference without wasm
# (bench-reference-ws, bench/reference/src/ws.rs). The figures in
# docs/benchmarks.md ("WebSocket") come from this script, through
# scripts/bench-all.sh.
#
#   scripts/bench-ws.sh
#
# Measures, each BENCH_RUNS times (median reported), alternating the gateway
# with the reference so that machine noise hits both; every measurement gets
# a freshly started server:
#   a. idle: VmRSS growth per idle connection, BENCH_WS_IDLE_CONNECTIONS held
#      gateway (Go ws-echo, its pool fixed at one instance) vs the reference with a BENCH_WS_REF_READ_BUFFER
#      read buffer, and the reference with tungstenite's default (128 KiB)
#   b. echo: round trips p50/p99 at each rate of BENCH_WS_RATES (messages/s,
#      all connections together, open loop) over BENCH_WS_ECHO_CONNECTIONS
#      gateway (Go ws-echo) vs the reference
#   c. fanout: one message broadcast to BENCH_WS_FANOUT_CONNECTIONS, time
#      until the last has it; median of BENCH_WS_FANOUT_ROUNDS broadcasts
#      gateway (Go bench/ws-fanout) vs the reference with --fanout
#
# Environment (defaults in brackets):
#   BENCH_RUNS [3]                         runs per measurement
#   BENCH_WS_IDLE_CONNECTIONS [19000]      capped to fit the open-file limit
#   BENCH_WS_IDLE_WARMUP [256]             connections opened before the baseline
#   BENCH_WS_IDLE_HOLD [5]                 seconds idle before RSS is read
#   BENCH_WS_ECHO_CONNECTIONS [1000]       BENCH_WS_RATES ["1000 10000"]
#   BENCH_WS_DURATION [10]                 measured seconds per echo run
#   BENCH_WS_WARMUP [2]                    unmeasured seconds before, same rate
#   BENCH_WS_SIZE [32]                     echo payload bytes
#   BENCH_WS_FANOUT_CONNECTIONS [10000]    BENCH_WS_FANOUT_ROUNDS [10]
#   BENCH_WS_REF_READ_BUFFER [4096]        the reference's read buffer, bytes
#   BENCH_WS_REF_DEFAULT [1]               0 skips the 128 KiB reference idle row
#   BENCH_WS_IDLE_DEFAULT_POOL [1]         0 skips the gateway idle row with ws-echo's
#                                          default pool (gw-pool), beside the fixed one
#   BENCH_SERVER_CPUS, BENCH_CLIENT_CPUS   taskset -c lists; empty (no pinning) by default
#   BENCH_RESULTS [target/bench-ws]        where raw JSON and results.md are written
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
# shellcheck source=lib/work.sh
. "$root/scripts/lib/work.sh"
# shellcheck source=lib/ready.sh
. "$root/scripts/lib/ready.sh"
# shellcheck source=lib/proc.sh
. "$root/scripts/lib/proc.sh"
runs="${BENCH_RUNS:-3}"
idle_connections="${BENCH_WS_IDLE_CONNECTIONS:-19000}"
idle_warmup="${BENCH_WS_IDLE_WARMUP:-256}"
idle_hold="${BENCH_WS_IDLE_HOLD:-5}"
echo_connections="${BENCH_WS_ECHO_CONNECTIONS:-1000}"
rates="${BENCH_WS_RATES:-1000 10000}"
duration="${BENCH_WS_DURATION:-10}"
warmup="${BENCH_WS_WARMUP:-2}"
size="${BENCH_WS_SIZE:-32}"
fanout_connections="${BENCH_WS_FANOUT_CONNECTIONS:-10000}"
fanout_rounds="${BENCH_WS_FANOUT_ROUNDS:-10}"
ref_read_buffer="${BENCH_WS_REF_READ_BUFFER:-4096}"
ref_default="${BENCH_WS_REF_DEFAULT:-1}"
idle_default_pool="${BENCH_WS_IDLE_DEFAULT_POOL:-1}"
server_cpus="${BENCH_SERVER_CPUS:-}"
client_cpus="${BENCH_CLIENT_CPUS:-}"
results="${BENCH_RESULTS:-$root/target/bench-ws}"

for tool in go python3 cargo curl; do
  command -v "$tool" >/dev/null || { echo "bench-ws.sh: $tool is not installed" >&2; exit 1; }
done

# Every connection is a file descriptor in the server and one in the client.
# The hard limit may be out of reach (a container's is fixed): hold what fits.
ulimit -n "$(ulimit -Hn)"
nofile="$(ulimit -n)"
if [[ "$nofile" != unlimited ]] && ((idle_connections + idle_warmup + 200 > nofile)); then
  echo "bench-ws.sh: the open-file limit is $nofile (hard); holding $((nofile - idle_warmup - 200))" \
    "idle connections instead of $idle_connections" >&2
  idle_connections=$((nofile - idle_warmup - 200))
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/shanhai-bench-ws.XXXXXX")"
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

# in_fg CMD...: runs CMD in the background and waits for it, so that Ctrl-C
# stops the script at once (see scripts/bench.sh).
in_fg() {
  "$@" &
  fg_pid=$!
  local status=0
  wait "$fg_pid" || status=$?
  fg_pid=
  return "$status"
}

raw="$results/raw"
rm -rf "$raw" "$results/results.md"
mkdir -p "$raw"

server_pin=()
client_pin=()
[[ -n "$server_cpus" ]] && server_pin=(taskset -c "$server_cpus")
[[ -n "$client_cpus" ]] && client_pin=(taskset -c "$client_cpus")

# build
echo "== building" >&2
# The build the test suite runs, with BENCH_CARGO_FEATURES if set
# (scripts/lib/build.sh).
build_for_bench
# Copies, so that a rebuild in the same checkout during the run cannot
# swap a binary between measurements.
mkdir -p "$work/bin"
for bin in shanhai bench-reference-ws bench-wsload; do
  cp "$root/target/release/$bin" "$work/bin/"
done
shanhai="$work/bin/shanhai"
reference="$work/bin/bench-reference-ws"
wsload="$work/bin/bench-wsload"
# Only the two modules measured: the gateway loads every module of the folder.
mkdir -p "$work/modules"
(cd "$root/examples/ws-echo" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$work/modules/ws-echo.wasm" .)
(cd "$root/bench/ws-fanout" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$work/modules/ws-fanout.wasm" .)
# Every connection comes from 127.0.0.1: lift the per-address cap (a
# quarter of max_connections by default) to what the run opens.
connection_cap=$((idle_connections + idle_warmup > fanout_connections ? idle_connections + idle_warmup : fanout_connections))
connection_cap=$((connection_cap + 100))
cat >"$work/gateway.toml" <<EOF
[server]
watch = false
drain_timeout_ms = 2000
max_connections = $connection_cap
max_connections_per_ip = $connection_cap

[admin]
enabled = false
EOF
# The idle rows hold ws-echo's pool at one instance, made at load: each
# connection's open event runs the module, and with the default pool (up
# to 16 instances) the burst of opens grew it by a varying number of Go
# instances during the measurement, which counted as memory "per
# connection", a different amount in every run: the gw-pool row measures
# that setup beside this one (docs/benchmarks.md). The echo and fan-out
# rows keep the default pool.
{ cat "$work/gateway.toml"; printf '\n[modules.ws-echo]\nmin_instances = 1\nmax_instances = 1\n'; } >"$work/gateway-idle.toml"

# stop_server: SIGTERM, then SIGKILL after 10 s.
stop_server() {
  local pid="$server_pid"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# start TARGET: a fresh server for TARGET (gw, gw-idle: the gateway with the
# idle rows' fixed pool, ref, ref-default, ref-fanout).
start() {
  case "$1" in
    gw | gw-idle)
      local config="$work/gateway.toml"
      [[ "$1" == gw-idle ]] && config="$work/gateway-idle.toml"
      SHANHAI_LOG=warn start_listening gw "$shanhai" serve --config "$config" \
        --modules "$work/modules" --listen 127.0.0.1:0 --cache-dir "$work/cache"
      wait_ready "http://$addr" "$server_pid" "$work/gw.err"
      ;;
    ref) start_listening ref "$reference" --listen 127.0.0.1:0 --read-buffer "$ref_read_buffer" ;;
    ref-default) start_listening ref-default "$reference" --listen 127.0.0.1:0 ;;
    ref-fanout) start_listening ref-fanout "$reference" --listen 127.0.0.1:0 --fanout --read-buffer "$ref_read_buffer" ;;
  esac
}

# client OUT ARGS...: one bench-wsload run, its JSON line written to OUT.
client() {
  local out="$1"
  shift
  echo "\$ bench-wsload $*" >"$out.cmd"
  in_fg "${client_pin[@]}" "$wsload" "$@" >"$out" 2>"$out.err" || {
    echo "bench-ws.sh: bench-wsload failed:" >&2
    cat "$out.err" >&2
    exit 1
  }
  kill -0 "$server_pid" 2>/dev/null || { echo "bench-ws.sh: the server exited:" >&2; tail -n 20 "$work"/*.err >&2; exit 1; }
  # A run that could not open its connections measured something else.
  python3 - "$out" <<'PY' || exit 1
import json, sys
run = json.loads(open(sys.argv[1]).readline())
if run.get("failed"):
    sys.exit(f"bench-ws.sh: {run['failed']} connections failed ({run.get('first_error')}) in {sys.argv[1]}")
# Idle connections the server closed were not held: the figure would be
# per closed connection.
if run.get("mode") == "idle" and run["still_open"] != run["opened"] + run["warmup"]:
    sys.exit(f"bench-ws.sh: {run['opened'] + run['warmup'] - run['still_open']} idle connections "
             f"were closed by the server before the reading in {sys.argv[1]}")
PY
}

# The first start compiles both modules into the cache; later ones load it.
echo "== compiling the modules (first start)" >&2
start gw
stop_server

# measure KIND TARGET RUN [RATE]
measure() {
  local kind="$1" target="$2" n="$3" rate="${4:-}" path=ws-echo
  [[ "$target" == ref-fanout || "$kind" == fanout ]] && path=ws-fanout
  # gw-pool: the gateway with ws-echo's default pool, for the idle row
  # that shows what the pool's growth adds.
  case "$kind/$target" in
    idle/gw) start gw-idle ;;
    */gw-pool) start gw ;;
    *) start "$target" ;;
  esac
  local url="ws://$addr/$path/ws" out
  case "$kind" in
    idle)
      out="$raw/idle-$target.$n.json"
      client "$out" idle --url "$url" --connections "$idle_connections" --warmup "$idle_warmup" \
        --hold "$idle_hold" --pid "$server_pid"
      # After the client is gone (its exit resets every connection).
      sleep 3
      rss "$server_pid" VmRSS >"$raw/idle-$target.$n.after-close-kb"
      ;;
    echo)
      out="$raw/echo-$rate-$target.$n.json"
      client "$out" echo --url "$url" --connections "$echo_connections" --rate "$rate" \
        --duration "$duration" --warmup "$warmup" --size "$size"
      ;;
    fanout)
      out="$raw/fanout-$target.$n.json"
      client "$out" fanout --url "$url" --connections "$fanout_connections" --rounds "$fanout_rounds" \
        --pid "$server_pid"
      ;;
  esac
  stop_server
  python3 - "$out" "$kind" "$target" "$n" >&2 <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
kind, target, n = sys.argv[2:]
if kind == "idle":
    line = f"{d['opened']} open, {d['bytes_per_connection']} B/connection (anon {d['anon_bytes_per_connection']})"
elif kind == "echo":
    l = d["latency_us"] or {}
    line = (f"{d['rate']}/s: p50 {l.get('p50')} µs p99 {l.get('p99')} µs max {l.get('max')} µs, "
            f"missing {d['missing']} errors {d['errors']}, send lag p50 {d['send_lag_us']['p50']} µs")
else:
    line = (f"{d['opened']} open, median {d['median_ms']} ms (rounds {d['last_ms']}), missing {sum(d['missing'])}, "
            f"CPU ms per broadcast: server {d['server_cpu_ms_per_round']}, client {d['client_cpu_ms_per_round']}")
failed = d.get("failed", 0)
print(f"  {kind:6} {target:11} run {n}: {line}" + (f"  FAILED CONNECTIONS: {failed} ({d.get('first_error')})" if failed else ""))
EOF
}

idle_targets=(gw ref)
[[ "$ref_default" == 1 ]] && idle_targets+=(ref-default)
echo "== $runs runs: idle x$idle_connections, echo x$echo_connections at ${rates// //}/s for ${duration}s," \
  "fanout x$fanout_connections; $(nproc) cores, server pinned to '${server_cpus:-none}', client to '${client_cpus:-none}'" >&2
for ((i = 1; i <= runs; i++)); do
  # Alternate which side goes first, so that a trend in the noise hits both.
  if ((i % 2)); then first=gw second=ref; else first=ref second=gw; fi
  measure idle "$first" "$i"
  measure idle "$second" "$i"
  [[ "$ref_default" == 1 ]] && measure idle ref-default "$i"
  [[ "$idle_default_pool" == 1 ]] && measure idle gw-pool "$i"
  for rate in $rates; do
    measure echo "$first" "$i" "$rate"
    measure echo "$second" "$i" "$rate"
  done
  if ((i % 2)); then measure fanout gw "$i"; measure fanout ref-fanout "$i"
  else measure fanout ref-fanout "$i"; measure fanout gw "$i"; fi
done

# report
python3 - "$raw" "$runs" "$rates" "$idle_connections" "$echo_connections" "$fanout_connections" \
  "$fanout_rounds" "$duration" "$size" "$ref_read_buffer" "${server_cpus:-none}" "${client_cpus:-none}" \
  >"$results/results.md" <<'EOF'
import json, os, statistics, sys

raw, runs = sys.argv[1], int(sys.argv[2])
rates = sys.argv[3].split()
idle_n, echo_n, fanout_n, rounds, duration, size, read_buffer, server_cpus, client_cpus = sys.argv[4:13]

def load(name):
    out = []
    for n in range(1, runs + 1):
        path = os.path.join(raw, f"{name}.{n}.json")
        if os.path.exists(path):
            out.append(json.load(open(path)))
    return out

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"

def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"

print(f"Command: `scripts/bench-ws.sh` (median of {runs} runs; {os.cpu_count()} cores shared by client and servers;"
      f" CPU pinning: server '{server_cpus}', client '{client_cpus}')")
print()
print("| idle connections | held | VmRSS before MB | after MB | bytes per connection | runs (B/conn) | anon B/conn | VmRSS after close MB |")
print("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
labels = {
    "gw": "gateway, Go ws-echo (pool fixed at one instance)",
    "gw-pool": "gateway, Go ws-echo, default pool (grows during the opens)",
    "ref": f"reference, tungstenite, {int(read_buffer):,} B read buffer",
    "ref-default": "reference, tungstenite default (128 KiB read buffer)",
}
idle = {}
for target in ("gw", "ref", "ref-default", "gw-pool"):
    rows = load(f"idle-{target}")
    if not rows:
        continue
    per = [r["bytes_per_connection"] for r in rows]
    idle[target] = med(per)
    after_close = []
    for n in range(1, runs + 1):
        path = os.path.join(raw, f"idle-{target}.{n}.after-close-kb")
        if os.path.exists(path) and open(path).read().strip():
            after_close.append(int(open(path).read()) / 1024)
    print(f"| {labels[target]} | {fmt(med([r['opened'] for r in rows]))} "
          f"| {fmt(med([r['rss_before_kb'] / 1024 for r in rows]), 1)} | {fmt(med([r['rss_after_kb'] / 1024 for r in rows]), 1)} "
          f"| **{fmt(idle[target])}** | {' '.join(fmt(p) for p in per)} "
          f"| {fmt(med([r['anon_bytes_per_connection'] for r in rows]))} | {fmt(med(after_close), 1)} |")
print()
if "gw" in idle and "ref" in idle:
    print(f"Gateway / reference ({int(read_buffer):,} B buffer), bytes per idle connection: {ratio(idle['gw'], idle['ref'])}.")
    print()

print(f"| echo, {int(echo_n):,} connections, {size} B text | gateway p50 µs | p90 µs | p99 µs | max µs "
      f"| reference p50 µs | p90 µs | p99 µs | max µs | p50 ratio | p99 ratio | missing + errors (gw / ref) | client send lag p50 / p99 µs |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for rate in rates:
    gw, ref = load(f"echo-{rate}-gw"), load(f"echo-{rate}-ref")
    def col(rows, key, sub="latency_us"):
        return med([(r[sub] or {}).get(key) for r in rows])
    bad = lambda rows: sum(r["missing"] + r["errors"] for r in rows)
    lag = f"{fmt(col(gw + ref, 'p50', 'send_lag_us'))} / {fmt(col(gw + ref, 'p99', 'send_lag_us'))}"
    print(f"| {int(rate):,} msg/s for {duration} s | {fmt(col(gw, 'p50'))} | {fmt(col(gw, 'p90'))} | **{fmt(col(gw, 'p99'))}** "
          f"| {fmt(col(gw, 'max'))} | {fmt(col(ref, 'p50'))} | {fmt(col(ref, 'p90'))} | {fmt(col(ref, 'p99'))} | {fmt(col(ref, 'max'))} "
          f"| {ratio(col(gw, 'p50'), col(ref, 'p50'))} | {ratio(col(gw, 'p99'), col(ref, 'p99'))} "
          f"| {bad(gw)} / {bad(ref)} | {lag} |")
print()
print("Latency is measured from each message's scheduled send time (open loop), so it includes the"
      " client's send lag (how late the pacing thread woke, last column).")
print()

gw, ref = load("fanout-gw"), load("fanout-ref-fanout")
print(f"| fan-out to {int(fanout_n):,} connections, {rounds} broadcasts per run | median ms | per-run medians (ms) | all broadcasts (ms) "
      f"| first receipt, median ms | server CPU ms per broadcast | client CPU ms per broadcast | missing |")
print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |")
for label, rows in (("gateway, Go bench/ws-fanout", gw), ("reference, tungstenite --fanout", ref)):
    if not rows:
        continue
    medians = [r["median_ms"] for r in rows]
    every = [ms for r in rows for ms in r["last_ms"]]
    first = med([f for r in rows for f in r["first_ms"]])
    missing = sum(sum(r["missing"]) for r in rows)
    server_cpu = med([r.get("server_cpu_ms_per_round") for r in rows])
    client_cpu = med([r.get("client_cpu_ms_per_round") for r in rows])
    print(f"| {label} | **{fmt(med(medians), 1)}** | {' '.join(fmt(m, 1) for m in medians)} "
          f"| {fmt(min(every), 1) if every else '–'}–{fmt(max(every), 1) if every else '–'} | {fmt(first, 2)} "
          f"| {fmt(server_cpu)} | {fmt(client_cpu)} | {missing} |")
if gw and ref:
    print()
    print(f"Gateway / reference, fan-out time: {ratio(med([r['median_ms'] for r in gw]), med([r['median_ms'] for r in ref]))}."
          " CPU time is per measured broadcast, from /proc/PID/stat (10 ms ticks, summed over the run).")
EOF

echo >&2
cat "$results/results.md"
echo >&2
echo "raw JSON (one file per run, each with its command in .cmd) and results.md in $results" >&2
