#!/usr/bin/env bash
# Cross-builds the release `shanhai` binary for ARM boxes from this x86-64
# machine, installing what is missing (rustup targets, zig and
# cargo-zigbuild from PyPI).
#
#   scripts/cross-build.sh [TARGET...]   (default: aarch64 armv7)
#
# TARGET is aarch64, armv7 or x86_64 (or the full Rust triple). Each binary
# lands in target/TRIPLE/release/shanhai. Every target builds wasmtime once
# into its own folder, so a second run only rebuilds what changed.
#
# Binaries link against glibc 2.28 (zig's linker picks the symbol versions),
# so they run on Debian 10, Ubuntu 20.04, Raspberry Pi OS buster and
# anything newer; docs/arm.md says why glibc rather than static musl.
# aarch64 and x86_64 run Cranelift's native code; armv7 runs wasmtime's
# Pulley interpreter, chosen at start (Cranelift has no 32-bit ARM backend).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# The oldest glibc the binaries may need (see above).
GLIBC=2.28

triple_of() {
  case "$1" in
    aarch64 | aarch64-unknown-linux-gnu) echo aarch64-unknown-linux-gnu ;;
    armv7 | armv7-unknown-linux-gnueabihf) echo armv7-unknown-linux-gnueabihf ;;
    x86_64 | x86_64-unknown-linux-gnu) echo x86_64-unknown-linux-gnu ;;
    *)
      echo "unknown target $1 (aarch64, armv7 or x86_64)" >&2
      return 1
      ;;
  esac
}

targets=("$@")
((${#targets[@]})) || targets=(aarch64 armv7)
triples=()
for target in "${targets[@]}"; do triples+=("$(triple_of "$target")"); done

installed="$(rustup target list --installed)"
for triple in "${triples[@]}"; do
  if ! grep -qx "$triple" <<<"$installed"; then
    echo "adding the Rust target $triple" >&2
    # armv7's standard library is served only for Rust 1.95 here: the
    # reason Shanhai stays on it (scripts/check-toolchains.sh).
    rustup target add "$triple"
  fi
done
if ! command -v cargo-zigbuild >/dev/null 2>&1 || ! python3 -m ziglang version >/dev/null 2>&1; then
  echo "installing zig and cargo-zigbuild (pip)" >&2
  pip install --quiet ziglang cargo-zigbuild
fi

for triple in "${triples[@]}"; do
  echo "==> building shanhai for $triple (glibc $GLIBC)" >&2
  started=$SECONDS
  # Only the binary's package: every target folder is built by this one
  # command, so its feature set (and wasmtime) never changes between runs.
  cargo zigbuild --release --locked --target "$triple.$GLIBC" -p shanhai-cli --bin shanhai
  binary="target/$triple/release/shanhai"
  # The newest glibc symbol version the binary asks for must not pass $GLIBC.
  newest="$(grep -aoE 'GLIBC_2\.[0-9]+(\.[0-9]+)?' "$binary" | sort -uV | tail -1)"
  if [[ "$(printf '%s\n' "$newest" "GLIBC_$GLIBC" | sort -V | tail -1)" != "GLIBC_$GLIBC" ]]; then
    echo "$binary needs $newest, newer than glibc $GLIBC" >&2
    exit 1
  fi
  echo "$binary: $(du -h "$binary" | cut -f1), needs at most $newest, built in $((SECONDS - started)) s" >&2
done
