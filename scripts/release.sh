#!/usr/bin/env bash
# Release tarballs for x86_64, aarch64 and armv7, with SHA-256 sums.
#
#   scripts/release.sh [OUT]   (default: target/release-packages)
#   RELEASE_ARCHS="aarch64 armv7" scripts/release.sh   (a subset; default all three)
#
# Each tarball, shanhai-VERSION-ARCH.tar.gz, holds one folder with the
# stripped `shanhai` binary (glibc 2.28, built by scripts/cross-build.sh),
# the example config and the hardened systemd unit from dist/, the licence
# and INSTALL.md. SHA256SUMS lists the tarballs. The unit is checked with
# `systemd-analyze verify` when systemd-analyze is installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${1:-$root/target/release-packages}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

archs=(${RELEASE_ARCHS:-x86_64 aarch64 armv7})
# Per architecture: the Rust triple, the tarball's name for it, and the
# strip that reads it.
declare -A triple_of=([x86_64]=x86_64-unknown-linux-gnu [aarch64]=aarch64-unknown-linux-gnu [armv7]=armv7-unknown-linux-gnueabihf)
declare -A name_of=([x86_64]=x86_64-linux-gnu [aarch64]=aarch64-linux-gnu [armv7]=armv7-linux-gnueabihf)
declare -A strip_of=([x86_64]=strip [aarch64]=aarch64-linux-gnu-strip [armv7]=arm-linux-gnueabihf-strip)
for arch in "${archs[@]}"; do
  [[ -n "${triple_of[$arch]:-}" ]] || { echo "unknown architecture $arch (x86_64, aarch64, armv7)" >&2; exit 2; }
done
missing=()
command -v aarch64-linux-gnu-strip >/dev/null 2>&1 || missing+=(binutils-aarch64-linux-gnu)
command -v arm-linux-gnueabihf-strip >/dev/null 2>&1 || missing+=(binutils-arm-linux-gnueabihf)
if ((${#missing[@]})); then
  echo "installing with apt-get: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash scripts/cross-build.sh "${archs[@]}"

if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants the ExecStart binary where the unit says it is; check a
  # copy that points at the one just built.
  check="$(mktemp -d)"
  trap 'rm -rf "$check"' EXIT
  sed "s|/usr/local/bin/shanhai|$root/target/${triple_of[${archs[0]}]}/release/shanhai|" \
    dist/shanhai.service >"$check/shanhai.service"
  if ! systemd-analyze verify "$check/shanhai.service"; then
    echo "systemd-analyze verify: dist/shanhai.service has errors" >&2
    exit 1
  fi
  echo "systemd-analyze verify: dist/shanhai.service is clean" >&2
else
  echo "systemd-analyze is not installed: the unit was not verified" >&2
fi

rm -rf "$out"
mkdir -p "$out"
for arch in "${archs[@]}"; do
  triple="${triple_of[$arch]}"
  strip="${strip_of[$arch]}"
  name="shanhai-$version-${name_of[$arch]}"
  stage="$out/$name"
  mkdir -p "$stage"
  # The symbol table stays in target/ for profiling; boxes get the small binary.
  "$strip" -o "$stage/shanhai" "target/$triple/release/shanhai"
  cp dist/shanhai.service dist/shanhai.toml dist/INSTALL.md LICENSE "$stage/"
  tar -C "$out" --owner=0 --group=0 --numeric-owner -czf "$out/$name.tar.gz" "$name"
  echo "$name.tar.gz: $(du -h "$out/$name.tar.gz" | cut -f1) (binary" \
    "$(du -h "target/$triple/release/shanhai" | cut -f1), stripped $(du -h "$stage/shanhai" | cut -f1))" >&2
  rm -rf "$stage"
done
(cd "$out" && sha256sum ./*.tar.gz | sed 's| \./| |' >SHA256SUMS)
cat "$out/SHA256SUMS"
