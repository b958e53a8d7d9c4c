#!/usr/bin/env bash
# Idle wake-ups on an edge box: how often the gateway serving every example
# with the quick-start config (examples/shanhai.toml) wakes while nothing
# reaches it from outside, beside the bare hyper reference (bench-reference)
# idle in the same run. A thread that sleeps and wakes switches context
# once or twice, and a core woken that often stays out of its deep idle
# states. The "Idle wake-ups" figures in docs/benchmarks.md come from this
# script.
#
#   scripts/bench-idle.sh
#
# Once the gateway is ready and has been left alone for IDLE_SETTLE_S [5]
# seconds, IDLE_RUNS [3] windows of IDLE_SECONDS [20] each count the
# context switches (voluntary and involuntary) of every thread of both
# servers, summed by thread name: per second, the median of the windows
# and their lowest and highest; and what each process sent to the disk
# (/proc/PID/io write_bytes: each page it dirtied), in KiB per minute. The
# quick start's timer runs sensor-poll every 10 s, so each window holds two
# of its runs: the box's own work, counted as it would be on a box.
# BENCH_RESULTS [target/bench-idle]: where idle.md is written.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
# shellcheck source=lib/proc.sh
. "$root/scripts/lib/proc.sh"
# shellcheck source=lib/ready.sh
. "$root/scripts/lib/ready.sh"
# shellcheck source=lib/work.sh
. "$root/scripts/lib/work.sh"
results="${BENCH_RESULTS:-$root/target/bench-idle}"
runs="${IDLE_RUNS:-3}"
seconds="${IDLE_SECONDS:-20}"
settle="${IDLE_SETTLE_S:-5}"
for tool in go curl cargo; do
  command -v "$tool" >/dev/null || { echo "bench-idle.sh: $tool is not installed" >&2; exit 1; }
done
start_work idle
server_pin=()
mkdir -p "$results"
# The tree as built, not as it is when the windows end.
commit="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo '+changes')"
echo "== building" >&2
build_for_bench
bash "$root/scripts/build-examples.sh" "$work/modules" >/dev/null
export CRYPTO_AES_KEY="${CRYPTO_AES_KEY:-000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f}"
export CRYPTO_ED25519_SEED="${CRYPTO_ED25519_SEED:-9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60}"

# The quick-start config on ports the system picks (bench/benchlib.py, as
# bench/footprint.py uses it), with the admin API off the default port and
# socket.
PYTHONPATH="$root/bench" python3 - "$root/examples/shanhai.toml" "$work/shanhai.toml" "$work" <<'PY'
import sys
from benchlib import on_free_ports
source, target, work = sys.argv[1:]
text = on_free_ports(open(source).read())
text += f'\n[admin]\nlisten = "127.0.0.1:0"\nsocket = ""\ntoken_file = "{work}/admin.token"\n'
open(target, "w").write(text)
PY

echo "== starting the gateway and bench-reference" >&2
# The gateway's working folder holds its data (.shanhai/): the scratch one.
cd "$work"
SHANHAI_LOG=warn start_listening gateway "$root/target/release/shanhai" serve \
  --config "$work/shanhai.toml" --modules "$work/modules" --listen 127.0.0.1:0 --cache-dir "$work/cache"
gateway_addr=$addr
gateway_pid=$server_pid
wait_ready "http://$gateway_addr" "$gateway_pid" "$work/gateway.err"
start_listening reference "$root/target/release/bench-reference" --listen 127.0.0.1:0
reference_pid=$server_pid
curl -sf -o /dev/null "http://$gateway_addr/hello"
sleep "$settle"

# by_name BEFORE AFTER: switches per second in the window, summed by thread
# name, from two thread_switches snapshots (a thread that started since
# counts from zero; one that ended is left out).
by_name() {
  awk -v before="$1" -v seconds="$seconds" '
    FILENAME == before { was[$1] = $3 + $4; next }
    { sum[$2] += $3 + $4 - was[$1]; total += $3 + $4 - was[$1] }
    END { for (name in sum) printf "%s %.2f\n", name, sum[name] / seconds; printf "TOTAL %.2f\n", total / seconds }' "$1" "$2"
}

# written PID: the bytes PID has sent to the disk so far.
written() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$1/io"; }

echo "== $runs windows of $seconds s, nothing sent" >&2
for run in $(seq 1 "$runs"); do
  thread_switches "$gateway_pid" >"$work/gateway.before"
  thread_switches "$reference_pid" >"$work/reference.before"
  gateway_written=$(written "$gateway_pid")
  reference_written=$(written "$reference_pid")
  sleep "$seconds"
  thread_switches "$gateway_pid" >"$work/gateway.after"
  thread_switches "$reference_pid" >"$work/reference.after"
  by_name "$work/gateway.before" "$work/gateway.after" | sed 's/^/gateway /' >>"$work/windows"
  by_name "$work/reference.before" "$work/reference.after" | sed 's/^/reference /' >>"$work/windows"
  for server in gateway:"$gateway_pid":"$gateway_written" reference:"$reference_pid":"$reference_written"; do
    IFS=: read -r name pid before <<<"$server"
    awk -v name="$name" -v bytes="$(($(written "$pid") - before))" -v seconds="$seconds" \
      'BEGIN { printf "%s TOTAL %.1f\n", name, bytes / 1024 * 60 / seconds }' >>"$work/disk"
  done
  echo "window $run: gateway $(awk '$1 == "gateway" && $2 == "TOTAL" { v = $3 } END { print v }' "$work/windows")/s," \
    "bench-reference $(awk '$1 == "reference" && $2 == "TOTAL" { v = $3 } END { print v }' "$work/windows")/s" >&2
done

# medians FILE WHOLE: a table row for each `SERVER NAME VALUE` key of FILE
# (NAME TOTAL is the whole server, labelled WHOLE), the median over the
# windows and their range; a key missing from a window counts 0 there.
medians() {
  awk -v runs="$runs" -v whole="$2" '
    { key = $1 ": " ($2 == "TOTAL" ? whole : $2); value[key, ++n[key]] = $3; keys[key] = 1 }
    END {
      for (key in keys) {
        count = 0
        for (i = 1; i <= n[key]; i++) v[++count] = value[key, i]
        while (count < runs) v[++count] = 0
        for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
        median = count % 2 ? v[(count + 1) / 2] : (v[count / 2] + v[count / 2 + 1]) / 2
        # Threads that never woke in any window are left out.
        if (v[count] == 0 && substr(key, length(key) - length(whole) + 1) != whole) continue
        printf "| %s | %.2f (%.2f–%.2f) |\n", key, median, v[1], v[count]
      }
    }' "$1" | sort
}

{
  echo "Commit \`$commit\`, $(date -u '+%Y-%m-%d %H:%M UTC'). Command: \`scripts/bench-idle.sh\`" \
    "($runs windows of $seconds s, after $settle s quiet; the quick-start config, every example loaded)."
  echo
  echo "| server: thread | wake-ups per second, median (lowest–highest) |"
  echo "| --- | ---: |"
  medians "$work/windows" "all threads"
  echo
  echo "| server | written to disk, KiB per minute, median (lowest–highest) |"
  echo "| --- | ---: |"
  medians "$work/disk" "the process"
} | tee "$results/idle.md"
echo "idle.md in $results" >&2
