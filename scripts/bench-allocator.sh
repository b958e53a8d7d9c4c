#!/usr/bin/env bash
# The gateway on the C library's allocator against the same gateway on
# mimalloc (`--features shanhai-cli/mimalloc`), in one sitting: each section
# runs through scripts/bench-all.sh once per build, back to back, then
# bench/allocator.py sets the sections' headline figures side by side. The
# figures in docs/benchmarks.md ("The allocator") come from this script.
#
#   scripts/bench-allocator.sh                        # about 45 minutes on 2 cores
#   BENCH_ALLOCATOR_SECTIONS=ws scripts/bench-allocator.sh
#
# Environment (defaults in brackets):
#   BENCH_ALLOCATOR_SECTIONS ["http ws mqtt state"]    bench-all sections to compare
#   BENCH_ALLOCATOR_RESULTS [target/bench-allocator]   ALLOCATOR/ holds each build's
#                                                      bench-all results; results.md the comparison
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

rm -rf "$results"
mkdir -p "$results"
results="$(cd "$results" && pwd)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for section in "${sections[@]}"; do
  for allocator in "${allocators[@]}"; do
    features=""
    [[ "$allocator" == mimalloc ]] && features=shanhai-cli/mimalloc
    echo "== $section on $allocator" >&2
    BENCH_CARGO_FEATURES="$features" BENCH_ALL_DOCS=0 BENCH_ALL_KEEP=1 \
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
bench_python
"$bench_python" "$root/bench/allocator.py" --results "$results" \
  --started "$started" --sections "${sections[@]}" >"$results/results.md"
echo "bench-allocator.sh: $results/results.md" >&2
