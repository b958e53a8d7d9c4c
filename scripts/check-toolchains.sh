#!/usr/bin/env bash
# Why Shanhai stays on Rust 1.95 and wasmtime 48.0.8, checked rather than
# remembered.
#
# The armv7 release (armv7-unknown-linux-gnueabihf) needs rustup's standard
# library for that target. Where it is served only for Rust 1.95.0, we stay
# on Rust 1.95 and so on wasmtime 48 (wasmtime 49 needs Rust 1.96, 50 needs
# 1.97). Run this script to see whether a newer pair is possible: it asks
# rustup, for each candidate toolchain, whether every target we ship
# (x86_64, aarch64, armv7, and wasm32-wasip1 for guests) can be installed.
# Move to a newer wasmtime only when the toolchain it needs passes for all.
#
#   scripts/check-toolchains.sh [TOOLCHAIN...]   (default: 1.95.0 1.96.0 1.97.0)
#
# It installs nothing permanently: each candidate toolchain is installed
# with the minimal profile into a temporary RUSTUP_HOME and removed.
set -uo pipefail

targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf wasm32-wasip1)
candidates=("$@")
((${#candidates[@]})) || candidates=(1.95.0 1.96.0 1.97.0)
# wasmtime release -> the oldest Rust it builds with (its rust-version).
declare -A needs=([48]=1.95.0 [49]=1.96.0 [50]=1.97.0)

home="$(mktemp -d "${TMPDIR:-/tmp}/rustup-check.XXXXXX")"
trap 'rm -rf "$home"' EXIT
export RUSTUP_HOME="$home/rustup" CARGO_HOME="$home/cargo"

declare -A ok=()
for toolchain in "${candidates[@]}"; do
  if ! rustup toolchain install --profile minimal --no-self-update "$toolchain" >"$home/log" 2>&1; then
    echo "$toolchain: the toolchain itself is not available" >&2
    continue
  fi
  missing=()
  for target in "${targets[@]}"; do
    rustup target add --toolchain "$toolchain" "$target" >>"$home/log" 2>&1 || missing+=("$target")
  done
  if ((${#missing[@]})); then
    echo "$toolchain: unavailable for ${missing[*]}"
  else
    echo "$toolchain: every target is available"
    ok[$toolchain]=1
  fi
  rustup toolchain uninstall "$toolchain" >/dev/null 2>&1
done

for wasmtime in 48 49 50; do
  if [[ -n "${ok[${needs[$wasmtime]}]:-}" ]]; then
    echo "wasmtime $wasmtime (Rust ${needs[$wasmtime]}): possible for every architecture we ship"
  else
    echo "wasmtime $wasmtime (Rust ${needs[$wasmtime]}): not possible here (or not checked)"
  fi
done
