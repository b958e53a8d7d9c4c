#!/usr/bin/env bash
# Two gateway builds side by side, on the same modules, in one sitting: a
# regression check for the HTTP paths, when a slow day moves every figure
# and the question is whether the code did. docs/benchmarks.md quotes it
# where a sitting's figures fell against an earlier block's.
#
#   scripts/bench-compare.sh OLD-SHANHAI NEW-SHANHAI
#
# An older commit's binary, for instance (its own target folder, so that
# this tree's build stays):
#   git worktree add /tmp/old a9c8543
#   (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release --locked -p shanhai-cli --bin shanhai)
#   scripts/bench-compare.sh /tmp/old-target/release/shanhai target/release/shanhai
# Build both the same way: the benchmarks' build of the workspace
# (scripts/lib/build.sh) resolves other features (tokio's test-util, from
# the tests) than a build of the binary alone.
#
# Both gateways serve the add and json2k examples (built here by
# scripts/build-examples.sh) on their own compile caches, with bench.sh's
# config (scripts/lib/http-servers.sh). For each of COMPARE_RUNS [3] rounds and each path, wrk -t2 -c64 runs
# COMPARE_SECONDS [8] against one and then the other, the first alternating
# between rounds, so that a drift in the machine's speed reaches both. Each
# line gives the requests/s and the server's CPU time per request
# (/proc/PID/stat, user + system); the summary, the medians, the ratio
# of the new build's median to the old one's, and the median of each
# round's new ÷ old (its two runs back to back), which a slow spell that
# spans rounds moves less.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/proc.sh
. "$root/scripts/lib/proc.sh"
# shellcheck source=lib/http-servers.sh
. "$root/scripts/lib/http-servers.sh"
runs="${COMPARE_RUNS:-3}"
seconds="${COMPARE_SECONDS:-8}"

(($# == 2)) || { echo "usage: scripts/bench-compare.sh OLD-SHANHAI NEW-SHANHAI" >&2; exit 2; }
declare -A binary=([old]="$1" [new]="$2")
for side in old new; do
  [[ -x "${binary[$side]}" ]] || { echo "bench-compare.sh: ${binary[$side]} is not an executable" >&2; exit 2; }
done
for tool in wrk curl go python3; do
  command -v "$tool" >/dev/null || { echo "bench-compare.sh: $tool is not installed (apt-get install -y wrk)" >&2; exit 1; }
done

start_work bench-compare
mkdir -p "$work/all" "$work/modules"
"$root/scripts/build-examples.sh" "$work/all" >/dev/null 2>&1
cp "$work/all/add.wasm" "$work/all/json2k.wasm" "$work/modules/"
# bench.sh's request bodies and gateway config.
write_http_loads

declare -A url pid
for side in old new; do
  SHANHAI_LOG=warn start_listening "$side" "${binary[$side]}" serve --config "$work/gateway.toml" \
    --modules "$work/modules" --listen 127.0.0.1:0 --cache-dir "$work/cache-$side"
  url[$side]="http://$addr"
  pid[$side]=$server_pid
  wait_ready "${url[$side]}" "$server_pid" "$work/$side.err"
  echo "$side: $("${binary[$side]}" version 2>/dev/null | head -n 1) at ${url[$side]}" >&2
done

paths=(json2k/text api/exec/add/add json2k)
# load SIDE PATH SECONDS: wrk's requests/s, or nothing if it failed.
load() {
  local script=()
  [[ "$2" == api/* ]] && script=(-s "$work/add.lua")
  wrk -t2 -c64 -d"$3s" "${script[@]}" "${url[$1]}/$2" | awk '/^Requests\/sec:/ { print $2 }'
}
for side in old new; do
  for path in "${paths[@]}"; do load "$side" "$path" 2 >/dev/null; done
done

for ((n = 1; n <= runs; n++)); do
  order=(old new)
  ((n % 2)) || order=(new old)
  for path in "${paths[@]}"; do
    for side in "${order[@]}"; do
      before="$(cpu_ticks "${pid[$side]}")"
      rps="$(load "$side" "$path" "$seconds")"
      ticks=$(($(cpu_ticks "${pid[$side]}") - before))
      [[ -n "$rps" ]] || { echo "bench-compare.sh: wrk failed on $side $path" >&2; exit 1; }
      awk -v side="$side" -v path="$path" -v n="$n" -v rps="$rps" -v ticks="$ticks" -v hz="$(getconf CLK_TCK)" \
        -v s="$seconds" 'BEGIN { printf "%s\t%s\t%d\t%.0f\t%.1f\n", path, side, n, rps, ticks / hz * 1e6 / (rps * s) }' |
        tee -a "$work/runs.tsv" | awk -F'\t' '{ printf "  %-18s %-3s run %d: %7s req/s  %6s µs CPU per request\n", $1, $2, $3, $4, $5 }' >&2
    done
  done
done

python3 - "$work/runs.tsv" "$runs" "$seconds" "$1" "$2" <<'EOF'
import statistics, sys
from collections import defaultdict
tsv, runs, seconds, old, new = sys.argv[1:]
# rows[path][side][round] = (requests/s, CPU µs per request)
rows = defaultdict(lambda: defaultdict(dict))
for line in open(tsv):
    path, side, n, rps, cpu = line.rstrip("\n").split("\t")
    rows[path][side][int(n)] = (float(rps), float(cpu))
print(f"{runs} rounds of wrk -t2 -c64 -d{seconds}s per path, old and new alternating; "
      f"old: `{old}`, new: `{new}`. Medians, the lowest and highest run in brackets. "
      "\"By round\" divides each round's new run by its old one (they ran back to back) "
      "and gives the median of those ratios: a drift in the machine's speed between "
      "rounds cancels out of it.\n")
print("| path | old req/s | new req/s | new ÷ old | by round | old CPU µs per request "
      "| new CPU µs per request | new ÷ old by round |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
def cell(values, fmt):
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"
for path, sides in rows.items():
    o, n = sides["old"], sides["new"]
    rounds = sorted(o.keys() & n.keys())
    ratio = statistics.median(r for r, _ in n.values()) / statistics.median(r for r, _ in o.values())
    rps_pairs = [n[k][0] / o[k][0] for k in rounds]
    cpu_pairs = [n[k][1] / o[k][1] for k in rounds]
    print(f"| {path} | {cell([r for r, _ in o.values()], ',.0f')} | {cell([r for r, _ in n.values()], ',.0f')} "
          f"| {ratio:.2f}× | {cell(rps_pairs, '.3f')} | {cell([c for _, c in o.values()], '.1f')} "
          f"| {cell([c for _, c in n.values()], '.1f')} | {cell(cpu_pairs, '.3f')} |")
EOF
