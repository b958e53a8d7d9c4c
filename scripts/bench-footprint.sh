#!/usr/bin/env bash
# Footprint on an edge box: start-up time and memory of the gateway serving
# every example with the quick-start config (examples/shanhai.toml), beside
# the bare hyper reference and the native Go json2k server of the same run.
# The "Footprint" figures in docs/benchmarks.md come from this script.
#
#   scripts/bench-footprint.sh
#
# Each of FOOTPRINT_RUNS rounds starts the gateway once with an empty
# compile cache and once with a warm one, and measures:
#   - process start -> the HTTP listener accepting a connection;
#   - process start -> the first 200 from /hello (a cached Go module);
#   - process start -> /readyz 200 (every module loaded or failed);
#   - VmHWM when ready, and VmRSS / RssAnon / RssFile 3 s later;
#   - (warm start) VmRSS after wrk load on /json2k, /api/exec/add/add,
#     /hello and /cgi-echo, and again once the instances are idle past
#     `idle_timeout_ms` (set to FOOTPRINT_IDLE_MS for the run, so the
#     script does not wait the default 60 s);
#   - the references' VmRSS idle and after the same load.
# Then (bench/strategies.py) requests/s on /json2k, /api/exec/add/add and
# /cgi-echo under each memory layout (runtime.memory_strategy = guarded,
# bounded, on-demand), alternating within each round. Last
# (bench/per_module.py), the VmRSS of no module, of one Go and one Rust
# module with and without a live instance, and of 1, 4, 8 and all examples
# once idle.
#
# Environment: FOOTPRINT_RUNS [3], FOOTPRINT_LOAD_SECONDS [5] per path,
# FOOTPRINT_IDLE_MS [5000], BENCH_RESULTS [target/bench-footprint]: where
# each script's Markdown (footprint.md, strategies.md, per_module.md) and
# its runs as JSON (footprint.json, ...) are written. The quick start's
# fixed MQTT and Modbus ports (1883, 5020) are replaced by free ones in the
# copy of its config that each start uses. Run it on an otherwise idle
# machine: the figures are memory and time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/build.sh
. "$root/scripts/lib/build.sh"
results="${BENCH_RESULTS:-$root/target/bench-footprint}"
for tool in wrk go python3 cargo; do
  command -v "$tool" >/dev/null || { echo "bench-footprint.sh: $tool is not installed" >&2; exit 1; }
done
work="$(mktemp -d "${TMPDIR:-/tmp}/shanhai-footprint.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rm -f "$results"/{footprint,strategies,per_module}.{md,json}
mkdir -p "$results"
# The Python scripts write their runs as JSON there too.
export FOOTPRINT_JSON_DIR="$results"
echo "== building" >&2
# The build the test suite runs, with BENCH_CARGO_FEATURES if set
# (scripts/lib/build.sh).
build_for_bench
bash "$root/scripts/build-examples.sh" "$work/modules" >/dev/null
(cd "$root/examples/json2k" && go build -o "$work/json2k-native" ./native)
export CRYPTO_AES_KEY="${CRYPTO_AES_KEY:-000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f}"
export CRYPTO_ED25519_SEED="${CRYPTO_ED25519_SEED:-9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60}"
echo "== measuring at $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+changes')" >&2
python3 "$root/bench/footprint.py" "$root/target/release/shanhai" "$work/modules" \
  "$root/examples/shanhai.toml" "$root/target/release/bench-reference" "$work/json2k-native" \
  "${FOOTPRINT_RUNS:-3}" "${FOOTPRINT_LOAD_SECONDS:-5}" "${FOOTPRINT_IDLE_MS:-5000}" | tee "$results/footprint.md"
echo "== memory layouts" >&2
# The cost of bounds checks: the same modules under each layout. Compiled
# code differs per layout, so each compiles once into its own cache
# entries before its first measurement.
python3 "$root/bench/strategies.py" "$root/target/release/shanhai" "$work/modules" \
  "$work/cache" "${FOOTPRINT_RUNS:-3}" "${FOOTPRINT_LOAD_SECONDS:-5}" | tee "$results/strategies.md"
echo "== per module" >&2
python3 "$root/bench/per_module.py" "$root/target/release/shanhai" "$work/modules" \
  "$work/cache-per-module" "${FOOTPRINT_RUNS:-3}" 1000 | tee "$results/per_module.md"
echo "Markdown and JSON in $results" >&2
