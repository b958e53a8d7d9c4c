#!/usr/bin/env bash
# Builds every example module into one folder (default: target/modules), the
# folder `scripts/serve.sh` serves and the integration tests load.
#   Go reactors:  GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared
#   Go commands:  GOOS=wasip1 GOARCH=wasm go build
#   Rust:         cargo build --profile guest --target wasm32-wasip1
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/modules}"
mkdir -p "$out"

go_reactors=(add hello json2k ws-echo chat modbus mqtt-transform sensor-poll rules exif dp-noise crypto fsm etl)
go_commands=(cgi-echo)
rust_modules=(hello-rs)

for name in "${go_reactors[@]}"; do
  echo "building $name (Go reactor)" >&2
  (cd "$root/examples/$name" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "$out/$name.wasm" .)
done
for name in "${go_commands[@]}"; do
  echo "building $name (Go command)" >&2
  (cd "$root/examples/$name" && GOOS=wasip1 GOARCH=wasm go build -o "$out/$name.wasm" .)
done
for name in "${rust_modules[@]}"; do
  echo "building $name (Rust)" >&2
  cargo build --quiet --manifest-path "$root/Cargo.toml" --profile guest --target wasm32-wasip1 -p "$name"
  cp "$root/target/wasm32-wasip1/guest/${name//-/_}.wasm" "$out/$name.wasm"
done
echo "modules in $out" >&2
