#!/usr/bin/env bash
# The gateway on the C library's allocator against the same gateway on
# mimalloc (`--features shanhai-cli/mimalloc`), in one sitting: each section
# runs through scripts/bench-all.sh once per build, back to back, then
# bench/allocator.py sets the sections' headline figures side by side. The
# figures in docs/benchmarks.md ("The allocator") come from this script.
#
#   scripts/bench-allocator.sh                        # about 45 minutes on 2 cores
#   BENCH_ALLOCATOR_SECTIONS=ws scripts/bench-allocator.sh
#   BENCH_ALLOCATOR_MIMALLOC_ENV="MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0" \
#     scripts/bench-allocator.sh                      # mimalloc with its own settings
#
# Environment (defaults in brackets):
#   BENCH_ALLOCATOR_SECTIONS ["http ws mqtt state"]    bench-all sections to compare
#   BENCH_ALLOCATOR_RESULTS [target/bench-allocator]   ALLOCATOR/ holds each build's
#                                                      bench-all results; results.md the comparison
#   BENCH_ALLOCATOR_MIMALLOC_ENV [""]   NAME=VALUE settings in the environment of the
#                                       mimalloc runs only (mimalloc reads its options,
#                                       MIMALLOC_*, from there); recorded in
#                                       mimalloc/settings and named in results.md
# Any other BENCH_* variable reaches every section (BENCH_RUNS=5, ...). The
# build of each run is checked: `shanhai version` names mimalloc only in the
# mimalloc build.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/venv.sh
. "$root/scripts/lib/venv.sh"
read -r -a sections <<<"${BENCH_ALLOCATOR_SECTIONS:-http ws mqtt state}"
results="${BENCH_ALLOCATOR_RESULTS:-$root/target/bench-allocator}"
allocators=(glibc mimalloc)
read -r -a mimalloc_env <<<"${BENCH_ALLOCATOR_MIMALLOC_ENV:-}"
for setting in "${mimalloc_env[@]}"; do
  [[ "$setting" == MIMALLOC_*=* ]] || { echo "bench-allocator.sh: not a MIMALLOC_NAME=VALUE setting: $setting" >&2; exit 2; }
done

rm -rf "$results"
mkdir -p "$results"
results="$(cd "$results" && pwd)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for section in "${sections[@]}"; do
  for allocator in "${allocators[@]}"; do
    features=""
    settings=()
    if [[ "$allocator" == mimalloc ]]; then
      features=shanhai-cli/mimalloc
      settings=("${mimalloc_env[@]}")
    fi
    echo "== $section on $allocator ${settings[*]}" >&2
    env "${settings[@]}" BENCH_CARGO_FEATURES="$features" BENCH_ALL_DOCS=0 BENCH_ALL_KEEP=1 \
      BENCH_ALL_RESULTS="$results/$allocator" BENCH_SECTIONS="$section" "$root/scripts/bench-all.sh"
    # The section measured the build it was asked for.
    version="$("$root/target/release/shanhai" version)"
    measured=glibc
    [[ "$version" == *mimalloc* ]] && measured=mimalloc
    if [[ "$measured" != "$allocator" ]]; then
      echo "bench-allocator.sh: the $allocator run measured another build: $version" >&2
      exit 1
    fi
  done
done
printf '%s\n' "${mimalloc_env[@]}" | sed '/^$/d' >"$results/mimalloc/settings"
bench_python
"$bench_python" "$root/bench/allocator.py" --results "$results" \
  --started "$started" --sections "${sections[@]}" >"$results/results.md"
echo "bench-allocator.sh: $results/results.md" >&2
