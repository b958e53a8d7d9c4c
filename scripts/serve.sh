#!/usr/bin/env bash
# Quick start: build the gateway and the example modules, then serve them on
# the embedded defaults with examples/shanhai.toml (HTTP on
# http://127.0.0.1:8080, the embedded MQTT broker on 127.0.0.1:1883,
# Modbus/TCP on 127.0.0.1:5020; compiled code cached in .shanhai/cache, so
# the second start is fast). Extra arguments go to `shanhai serve`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1
fi
echo "building the gateway (the first build compiles wasmtime: a few minutes)" >&2
cargo build --release --workspace --bin shanhai
bash scripts/build-examples.sh "$root/target/modules"
# The crypto example reads its keys from secrets; these demo keys are for
# the quick start only.
export CRYPTO_AES_KEY="${CRYPTO_AES_KEY:-000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f}"
export CRYPTO_ED25519_SEED="${CRYPTO_ED25519_SEED:-9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60}"
exec "$root/target/release/shanhai" serve --config "$root/examples/shanhai.toml" --modules "$root/target/modules" "$@"
