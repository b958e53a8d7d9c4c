#!/usr/bin/env bash
# Quick start: build the gateway and the example modules, then serve them on
# the embedded defaults (http://127.0.0.1:8080; compiled code cached in
# .shanhai/cache, so the second start is fast). Extra arguments go to
# `shanhai serve`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1
fi
echo "building the gateway (the first build compiles wasmtime: a few minutes)" >&2
cargo build --release -p shanhai-cli
bash scripts/build-examples.sh "$root/target/modules"
exec "$root/target/release/shanhai" serve --modules "$root/target/modules" "$@"
