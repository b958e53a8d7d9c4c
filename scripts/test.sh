#!/usr/bin/env bash
# The whole test suite: formatting and lints (Rust and Go), the Go SDK and
# example tests against the mock host, real wasip1 builds, and every Rust
# test (unit, property, and the integration tests that build the example
# guests and drive a real gateway over 127.0.0.1).
#
# One cargo profile (release) for building and testing, so wasmtime is
# compiled once.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }

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

step "clippy"
cargo clippy --release --workspace --all-targets -- -D warnings
cargo clippy --release --target wasm32-wasip1 -p shanhai-sdk -p hello-rs -- -D warnings

step "cargo test (unit, property and integration tests)"
cargo test --release --workspace

step "the tests left no state in the source tree"
# A gateway started with the source tree as its working folder writes its
# generated admin token and cache key there; a committed copy of either
# breaks the next clone (mode 0644 is refused).
stray="$(find . -name .shanhai -not -path './target/*' -not -path './.shanhai')"
if [ -n "$stray" ]; then
  echo "tests wrote into the source tree: $stray" >&2
  exit 1
fi

step "all tests passed"
