# Sourced by the benchmark scripts: the build they measure.
#
# build_for_bench: the release build of the whole workspace, the same as the
# test suite's (`-p` would resolve another feature set and compile wasmtime
# a second time), with the cargo features in BENCH_CARGO_FEATURES when set
# (scripts/bench-allocator.sh sets shanhai-cli/mimalloc). Needs $root.
build_for_bench() {
  local features=()
  [[ -n "${BENCH_CARGO_FEATURES:-}" ]] && features=(--features "$BENCH_CARGO_FEATURES")
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --workspace --all-targets "${features[@]}"
}
