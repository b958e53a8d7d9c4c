#!/usr/bin/env bash
# MQTT and Modbus benchmarks: messages through the gateway's MQTT trigger and
# the Go mqtt-transform module (binary reading → JSON), beside a plain broker
# pass-through (publisher → the same broker → subscriber, no module) in the
# same run; and Modbus/TCP frames through the TCP trigger and the Go modbus
# module. Load from bench-mqttload (bench/mqttload). The figures in
# docs/benchmarks.md ("MQTT and Modbus") come from this script (via scripts/bench-all.sh).
#
#   scripts/bench-mqtt.sh
#
# Each measurement runs BENCH_RUNS times (median reported), the pass-through
# and the gateway alternating so that machine noise hits both:
#   a. mosquitto: pass-through (bench/{seq} → bench/+) vs the gateway
#      (sensors/{seq}/raw → mqtt-transform → sensors/{seq}/json), QoS 0 and 1;
#      then the same with the gateway on one worker thread
#      (`runtime.worker_threads = 1`);
#   b. the embedded broker (rumqttd, in the gateway process): the same pair,
#      durable (`store_dir`, the default: QoS 1 messages owed to the
#      trigger's session are synced to its log before the PUBACK) and in
#      memory only (`store_dir = ""`);
#   c. Modbus/TCP: closed-loop function-3 reads over BENCH_MODBUS_CONNECTIONS;
#   d. order (embedded broker, QoS 1): the gateway with messages ordered per
#      topic (the default) and unordered (`order_by = "none"`, what came
#      before), on one hot topic, on 16 topics and on a topic per message.
# MQTT runs are closed loop: at most BENCH_MQTT_WINDOW messages in flight;
# latency is publish → receipt of the result.
#
# Environment (defaults in brackets):
#   BENCH_RUNS [3]                  runs per measurement
#   BENCH_MQTT_MESSAGES [20000]     measured messages per run (+ BENCH_MQTT_WARMUP [2000])
#   BENCH_MQTT_WINDOW [32]          messages in flight
#   BENCH_MODBUS_CONNECTIONS [4]    BENCH_MODBUS_SECONDS [5]
#   BENCH_ORDER_MESSAGES [5000]     measured messages per order run (+ 500 warm-up)
#   BENCH_RESULTS [target/bench-mqtt]  where raw JSON and results.md are written
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
messages="${BENCH_MQTT_MESSAGES:-20000}"
warmup="${BENCH_MQTT_WARMUP:-2000}"
window="${BENCH_MQTT_WINDOW:-32}"
modbus_connections="${BENCH_MODBUS_CONNECTIONS:-4}"
modbus_seconds="${BENCH_MODBUS_SECONDS:-5}"
order_messages="${BENCH_ORDER_MESSAGES:-5000}"
results="${BENCH_RESULTS:-$root/target/bench-mqtt}"

mosquitto_bin="$(command -v mosquitto || true)"
[[ -z "$mosquitto_bin" && -x /usr/sbin/mosquitto ]] && mosquitto_bin=/usr/sbin/mosquitto
[[ -n "$mosquitto_bin" ]] || { echo "bench-mqtt.sh: mosquitto is not installed (apt-get install mosquitto)" >&2; exit 1; }
for tool in go python3 cargo curl; do
  command -v "$tool" >/dev/null || { echo "bench-mqtt.sh: $tool is not installed" >&2; exit 1; }
done

start_work bench-mqtt

raw="$results/raw"
rm -rf "$raw" "$results/results.md"
mkdir -p "$raw"

echo "== building" >&2
# The build the test suite runs, with BENCH_CARGO_FEATURES if set
# (scripts/lib/build.sh).
build_for_bench
mkdir -p "$work/bin" "$work/modules"
cp "$root/target/release/shanhai" "$root/target/release/bench-mqttload" "$work/bin/"
shanhai="$work/bin/shanhai"
load="$work/bin/bench-mqttload"
for name in mqtt-transform modbus; do
  (cd "$root/examples/$name" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$work/modules/$name.wasm" .)
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mq_port="$(free_port)"
cat >"$work/mosquitto.conf" <<EOF
listener $mq_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
set_tcp_nodelay true
user root
log_dest file $work/mosquitto.log
EOF
"$mosquitto_bin" -c "$work/mosquitto.conf" &
mosquitto_pid=$!
pids+=("$mosquitto_pid")
for _ in $(seq 1 500); do
  (exec 3<>"/dev/tcp/127.0.0.1/$mq_port") 2>/dev/null && break
  sleep 0.01
done
mosquitto="127.0.0.1:$mq_port"

# Everything a gateway shares; the [mqtt] section differs.
common() {
  cat <<EOF
[server]
watch = false
drain_timeout_ms = 2000

[admin]
enabled = false

[mqtt.triggers.raw]
filter = "sensors/+/raw"
module = "mqtt-transform"
qos = 1
output_topic = "sensors/{1}/json"

# The same module without order per topic, for the order section.
[mqtt.triggers.unordered]
filter = "unordered/+/raw"
module = "mqtt-transform"
qos = 1
output_topic = "unordered/{1}/json"
order_by = "none"

[tcp.plc]
listen = "127.0.0.1:0"
module = "modbus"
framing = "modbus"

[modules.modbus]
max_instances = 1
EOF
}
{ printf '[mqtt]\nurl = "mqtt://%s"\nclient_id = "bench-ext"\n\n' "$mosquitto"; common; } >"$work/external.toml"
{ cat "$work/external.toml"; printf '\n[runtime]\nworker_threads = 1\n'; } >"$work/external-1t.toml"
{ printf '[mqtt]\nlisten = "127.0.0.1:0"\nlisten_v5 = "127.0.0.1:0"\nclient_id = "bench-emb"\nstore_dir = "%s"\n\n' "$work/store"; common; } >"$work/embedded.toml"
{ printf '[mqtt]\nlisten = "127.0.0.1:0"\nlisten_v5 = "127.0.0.1:0"\nclient_id = "bench-mem"\nstore_dir = ""\n\n'; common; } >"$work/memory.toml"

# start_gateway NAME CONFIG: sets $gw_pid, $plc (Modbus address), $v5 (the
# embedded broker's MQTT 5 listener, if any). Warnings only, but the
# trigger's info lines, to see when it has subscribed.
start_gateway() {
  local name="$1" config="$2"
  SHANHAI_LOG="warn,shanhai_gateway::mqtt::trigger=info" start_listening "$name" "$shanhai" serve \
    --config "$config" --modules "$work/modules" --listen 127.0.0.1:0 --cache-dir "$work/cache"
  gw_pid=$server_pid
  plc="$(sed -n 's|^tcp plc listening on ||p' "$work/$name.out")"
  v5="$(sed -n 's|^mqtt v5 listening on ||p' "$work/$name.out")"
  # The listeners open before the modules compile: wait until they have.
  wait_ready "http://$addr" "$gw_pid" "$work/$name.err"
  for _ in $(seq 1 2000); do
    [ "$(grep -c 'MQTT trigger subscribed' "$work/$name.err")" -ge 2 ] && return
    sleep 0.01
  done
  echo "bench-mqtt.sh: $name never subscribed:" >&2
  cat "$work/$name.err" >&2
  exit 1
}

clock_ticks="$(getconf CLK_TCK)"

# client OUT ARGS...: one bench-mqttload run, its JSON line written to OUT,
# with the CPU seconds the gateway process and mosquitto spent during it
# added (gateway_cpu_s, mosquitto_cpu_s), and their context switches
# (gateway_switches, mosquitto_switches): the embedded broker runs inside
# the gateway process, and an idle mosquitto or gateway spends about none.
client() {
  local out="$1"
  shift
  echo "\$ bench-mqttload $*" >"$out.cmd"
  local gw_before mq_before
  gw_before="$(cpu_ticks "$gw_pid")"
  mq_before="$(cpu_ticks "$mosquitto_pid")"
  thread_switches "$gw_pid" >"$work/gateway.threads"
  thread_switches "$mosquitto_pid" >"$work/mosquitto.threads"
  "$load" "$@" >"$out" 2>"$out.err" || { echo "bench-mqttload failed:" >&2; cat "$out.err" >&2; exit 1; }
  kill -0 "$gw_pid" 2>/dev/null || { echo "bench-mqtt.sh: the gateway exited" >&2; tail -n 20 "$work"/*.err >&2; exit 1; }
  python3 -c '
import json, sys
out, tck, gw0, gw1, mq0, mq1, gw_switches, mq_switches = sys.argv[1], *map(float, sys.argv[2:])
run = json.load(open(out))
run["gateway_cpu_s"], run["mosquitto_cpu_s"] = (gw1 - gw0) / tck, (mq1 - mq0) / tck
run["gateway_switches"], run["mosquitto_switches"] = int(gw_switches), int(mq_switches)
json.dump(run, open(out, "w"), sort_keys=True)
' "$out" "$clock_ticks" "$gw_before" "$(cpu_ticks "$gw_pid")" "$mq_before" "$(cpu_ticks "$mosquitto_pid")" \
    "$(switches_since "$work/gateway.threads" "$gw_pid")" "$(switches_since "$work/mosquitto.threads" "$mosquitto_pid")"
}

mqtt_pair() { # BROKER LABEL RUN
  local broker="$1" label="$2" n="$3" qos
  for qos in 0 1; do
    client "$raw/$label-pass-q$qos-$n.json" mqtt --broker "$broker" --publish 'bench/{seq}' \
      --receive 'bench/+' --qos "$qos" --messages "$messages" --warmup "$warmup" --window "$window"
    client "$raw/$label-gw-q$qos-$n.json" mqtt --broker "$broker" --publish 'sensors/{seq}/raw' \
      --receive 'sensors/+/json' --qos "$qos" --messages "$messages" --warmup "$warmup" --window "$window"
  done
}

for n in $(seq 1 "$runs"); do
  echo "== run $n of $runs: mosquitto" >&2
  start_gateway external "$work/external.toml"
  mqtt_pair "$mosquitto" mosquitto "$n"
  client "$raw/modbus-$n.json" modbus --addr "$plc" --connections "$modbus_connections" --seconds "$modbus_seconds"
  kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
  echo "== run $n of $runs: mosquitto, the gateway on one worker thread" >&2
  start_gateway external-1t "$work/external-1t.toml"
  mqtt_pair "$mosquitto" mosquitto-1t "$n"
  kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
  echo "== run $n of $runs: embedded broker, memory only" >&2
  start_gateway memory "$work/memory.toml"
  mqtt_pair "$v5" memory "$n"
  kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
  echo "== run $n of $runs: embedded broker" >&2
  # Each run starts from an empty log, as the memory-only one starts empty.
  rm -rf "$work/store"
  start_gateway embedded "$work/embedded.toml"
  mqtt_pair "$v5" embedded "$n"
  for topics in 1 16 0; do
    spread=(--topics "$topics")
    [ "$topics" = 0 ] && spread=()
    for prefix in sensors unordered; do
      client "$raw/order-$prefix-t$topics-$n.json" mqtt --broker "$v5" --publish "$prefix/{seq}/raw" \
        --receive "$prefix/+/json" --qos 1 --messages "$order_messages" --warmup 500 --window "$window" "${spread[@]}"
    done
  done
  kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
done

python3 - "$raw" "$runs" "$results/results.md" <<'EOF'
import json, statistics, sys, pathlib
raw, runs, out = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def load(name):
    return [json.loads((raw / f"{name}-{n}.json").read_text()) for n in range(1, runs + 1)]
def med(rows, key):
    return statistics.median(r[key] for r in rows)
lines = ["| broker | path | QoS | messages/s | p50 µs | p99 µs | lost |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
for broker in ["mosquitto", "mosquitto-1t", "embedded", "memory"]:
    for qos in [0, 1]:
        for path, label in [("pass", "pass-through (no module)"), ("gw", "gateway + mqtt-transform")]:
            rows = load(f"{broker}-{path}-q{qos}")
            shown = {"mosquitto-1t": "mosquitto, gateway on 1 thread", "embedded": "embedded (durable log)",
                     "memory": "embedded, memory only"}.get(broker, broker)
            lines.append(f"| {shown} | {label} | {qos} | {med(rows, 'msgs_per_s'):,.0f} | {med(rows, 'p50_us'):,.0f} | {med(rows, 'p99_us'):,.0f} | {sum(r['lost'] for r in rows)} |")
rows = load("modbus")
lines += ["", "| Modbus/TCP (modbus module) | connections | frames/s | p50 µs | p99 µs |", "| --- | ---: | ---: | ---: | ---: |",
          f"| function 3 reads | {rows[0]['connections']} | {med(rows, 'frames_per_s'):,.0f} | {med(rows, 'p50_us'):,.0f} | {med(rows, 'p99_us'):,.0f} |"]
lines += ["", "| order (embedded broker, QoS 1) | topics | messages/s (spread) | p50 µs | p99 µs | lost |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
for topics, shown in [(1, "1 (hot)"), (16, "16"), (0, "one per message")]:
    for prefix, label in [("sensors", "per topic (`order_by = \"topic\"`)"), ("unordered", "none (`order_by = \"none\"`)")]:
        rows = load(f"order-{prefix}-t{topics}")
        rates = [r["msgs_per_s"] for r in rows]
        lines.append(f"| {label} | {shown} | {med(rows, 'msgs_per_s'):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | {med(rows, 'p50_us'):,.0f} | {med(rows, 'p99_us'):,.0f} | {sum(r['lost'] for r in rows)} |")
text = "\n".join(lines) + "\n"
pathlib.Path(out).write_text(text)
print(text)
EOF
echo "raw results in $raw" >&2
