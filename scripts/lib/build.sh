# Sourced by the scripts that run the release gateway after the test suite
# (the benchmarks, schemathesis.sh, paho-interop.sh): the build they run.
# Needs $root.

# build_like_the_suite [CARGO-ARGS...]: the release build of the whole
# workspace with its tests, which resolves the same feature set as the test
# suite's `cargo test --release --workspace`, so it shares every dependency
# the suite built. Building the binary alone (`--bin shanhai`, or `-p`)
# leaves the dev-dependencies out, resolves other features for tokio, hyper
# and what depends on them, and compiles those a second time: 3 minutes of
# CI. The suite compiles the workspace's own crates with clippy-driver
# (scripts/test.sh); run inside it (schemathesis.sh) this build has the
# same wrapper and compiles nothing, while a benchmark after it compiles
# those crates once more with rustc alone, which is what it should measure.
build_like_the_suite() {
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --workspace --bins --tests "$@"
}

# build_for_bench: the same with the benches as well, and the cargo features
# in BENCH_CARGO_FEATURES when set (scripts/bench-allocator.sh sets
# shanhai-cli/mimalloc).
build_for_bench() {
  local features=()
  [[ -n "${BENCH_CARGO_FEATURES:-}" ]] && features=(--features "$BENCH_CARGO_FEATURES")
  build_like_the_suite --benches "${features[@]}"
}
