#!/bin/bash
# Installs everything cfsctl's build and tests need on a fresh Debian 12 machine (run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  erofs-utils attr fsverity e2fsprogs util-linux gzip ca-certificates curl gcc pkgconf \
  docker-registry skopeo umoci dosfstools mtools fdisk cpio systemd-boot-efi python3 zstd \
  man-db groff-base zsh fish gnupg openssl libssl-dev >/dev/null
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install a Rust toolchain (rustup) first" >&2; exit 1
fi
"$(dirname "$0")/install-mkcomposefs.sh"
# The fuzz smoke (fuzz/ci-smoke.sh) builds with cargo-fuzz on the nightly toolchain.
if command -v rustup >/dev/null; then
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
fi
