#!/usr/bin/env bash
# The whole test suite: formatting and lints (Rust and Go), the Go SDK and
# example tests against the mock host, real wasip1 builds, and every Rust
# test (unit, property, and the integration tests that build the example
# guests and drive a real gateway over 127.0.0.1), schemathesis against the
# admin API's OpenAPI document, and the ARM cross builds with their smoke
# tests under qemu-user (SHANHAI_TEST_ARM=0 leaves those out locally).
#
# One cargo profile (release) for building and testing, so wasmtime is
# compiled once.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# Each step says when it started, so a slow CI run shows where its time went.
step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  step "adding the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi

step "rustfmt"
cargo fmt --all --check

step "Go: gofmt, go vet, go test (native, mock host), go vet for wasip1"
for dir in sdk/go examples/*/ crates/cli/tests/fixtures/*/; do
  [ -f "$dir/go.mod" ] || continue
  (
    cd "$dir"
    unformatted="$(gofmt -l .)"
    if [ -n "$unformatted" ]; then
      echo "gofmt: unformatted files in $dir:" >&2
      echo "$unformatted" >&2
      exit 1
    fi
    go vet ./...
    GOOS=wasip1 GOARCH=wasm go vet ./...
    go test ./...
  )
done

# Clippy lints the workspace's crates while they are built for the tests:
# clippy-driver compiles them (RUSTC_WORKSPACE_WRAPPER, the way `cargo
# clippy` runs it, with the arguments it would pass), so one build both
# lints and links every target. `cargo clippy` followed by `cargo test`
# compiled every dependency twice, checked and then built: 4 to 5 minutes
# of a CI run on 2 cores. Dependencies are compiled by rustc as always;
# clippy-driver turns rustc's MIR optimisations off in the crates it
# compiles (LLVM's stay), which the tests cannot tell from a plain build.
# `linted COMMAND...` runs COMMAND with that wrapper: every cargo build of
# the suite's, schemathesis.sh's included, must use it, or it compiles the
# workspace's crates again (scripts/lib/build.sh).
clippy_driver="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)"
if [ ! -x "$clippy_driver" ]; then
  echo "clippy-driver not found: rustup component add clippy" >&2
  exit 1
fi
linted() {
  RUSTC_WORKSPACE_WRAPPER="$clippy_driver" \
    CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" "$@"
}

step "clippy, and the test build (every target: lib, bins, tests, benches)"
linted cargo test --release --workspace --all-targets --no-run
# The optional allocator build (bench-allocator.sh) must keep building:
# the binary's own unit tests with the feature on, which compiles only it.
linted cargo test --release --workspace --no-run --bin shanhai --features shanhai-cli/mimalloc
cargo clippy --release --target wasm32-wasip1 -p shanhai-sdk -p hello-rs -- -D warnings

step "cargo test (unit, property and integration tests)"
# The same wrapper as the build above, so that nothing is compiled again.
linted cargo test --release --workspace

step "the tests left no state in the source tree"
# A gateway started with the source tree as its working folder writes its
# generated admin token and cache key there; a committed copy of either
# breaks the next clone (mode 0644 is refused).
stray="$(find . -name .shanhai -not -path './target/*' -not -path './.shanhai')"
if [ -n "$stray" ]; then
  echo "tests wrote into the source tree: $stray" >&2
  exit 1
fi

step "the admin API against its OpenAPI document (schemathesis)"
# schemathesis (pinned, installed with pip into target/schemathesis-venv)
# fuzzes a live gateway for a bounded number of examples per operation; the
# bound on the whole step makes a hang fail instead of stall.
SCHEMATHESIS_EXAMPLES="${SCHEMATHESIS_EXAMPLES:-100}" linted timeout 900 bash scripts/schemathesis.sh

if [ "${SHANHAI_TEST_ARM:-1}" = 1 ]; then
  step "ARM: cross builds (aarch64: Cranelift, armv7: Pulley) and smoke tests under qemu-user"
  # Against glibc 2.28; then the Go examples are served under qemu-user
  # and every trigger is exercised once (docs/arm.md). Each script
  # installs what it lacks: rustup targets, zig and cargo-zigbuild (pip),
  # qemu-user and the targets' C libraries (apt).
  bash scripts/cross-build.sh aarch64 armv7
  bash scripts/arm-smoke.sh aarch64 armv7
else
  step "ARM: skipped (SHANHAI_TEST_ARM=0)"
fi

step "all tests passed"
