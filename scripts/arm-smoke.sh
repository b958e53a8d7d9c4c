#!/usr/bin/env bash
# Smoke-tests a cross-built gateway under qemu-user: serves the Go example
# modules (the same .wasm bytes as on x86-64) and exercises every trigger
# once with real clients (scripts/arm_smoke.py says which).
#
#   scripts/arm-smoke.sh TARGET...   (aarch64, armv7; default: both)
#
# Builds the binary with scripts/cross-build.sh and the modules with
# scripts/build-examples.sh when they are missing, and installs qemu-user,
# the targets' C libraries and mosquitto's clients when those are.
#   aarch64: qemu-aarch64 under `ulimit -v` 512 GiB (what a 39-bit-VA kernel
#            gives a process); the engine must choose Cranelift.
#   armv7:   qemu-arm in its own 32-bit address space (`ulimit -v` or
#            qemu's -R below 4 GiB break qemu-arm itself); the engine must
#            choose the Pulley interpreter.
# The box compiles one Go module itself; the other eight are compiled
# here for it and deployed with their code, which must load without
# compiling (a Go module's compile takes over half a minute under qemu).
# Both also refuse tampered code and code for another memory layout
# (arm_smoke.py, refusal_checks). Under emulation only results count,
# never times.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

targets=("$@")
((${#targets[@]})) || targets=(aarch64 armv7)

missing=()
command -v qemu-aarch64 >/dev/null 2>&1 && command -v qemu-arm >/dev/null 2>&1 || missing+=(qemu-user)
[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || missing+=(libc6-arm64-cross)
[ -e /usr/arm-linux-gnueabihf/lib/libc.so.6 ] || missing+=(libc6-armhf-cross)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
if ((${#missing[@]})); then
  echo "installing with apt-get: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

modules="${SHANHAI_SMOKE_MODULES:-$root/target/modules}"
# This machine's own binary compiles code for the box (`shanhai compile
# --target`), as a build machine would.
[ -x target/release/shanhai ] || cargo build --release --workspace --bin shanhai
for name in hello add json2k ws-echo mqtt-transform rules etl sensor-poll modbus hello-rs; do
  if [ ! -f "$modules/$name.wasm" ]; then
    bash scripts/build-examples.sh "$modules"
    break
  fi
done

status=0
for target in "${targets[@]}"; do
  case "$target" in
    aarch64 | aarch64-unknown-linux-gnu)
      triple=aarch64-unknown-linux-gnu
      short=aarch64
      runner="qemu-aarch64 -L /usr/aarch64-linux-gnu"
      ulimit_kib=$((512 << 20))
      expect="Cranelift, native aarch64 code"
      ;;
    armv7 | armv7-unknown-linux-gnueabihf)
      triple=armv7-unknown-linux-gnueabihf
      short=armv7
      runner="qemu-arm -L /usr/arm-linux-gnueabihf"
      ulimit_kib=0
      expect="Pulley interpreter (pulley32)"
      ;;
    *)
      echo "unknown target $target (aarch64 or armv7)" >&2
      exit 2
      ;;
  esac
  binary="target/$triple/release/shanhai"
  [ -x "$binary" ] || bash scripts/cross-build.sh "$target"
  echo "==> smoke test: $triple under ${runner%% *}" >&2
  # The binary must at least run before the gateway is tried.
  $runner "$binary" version
  if python3 scripts/arm_smoke.py --runner "$runner" --binary "$binary" --modules "$modules" \
    --ulimit-v "$ulimit_kib" --expect-code "$expect" \
    --host-binary target/release/shanhai --target "$short"; then
    echo "==> $triple: smoke test passed" >&2
  else
    echo "==> $triple: smoke test FAILED" >&2
    status=1
  fi
done
exit $status
