#!/bin/bash
# CI: every fuzz target builds and runs for a short while (FUZZ_SECONDS, default 25) from its
# seeds, so a target that no longer builds or crashes at once fails the run. Installs
# cargo-fuzz when it is missing; needs the nightly toolchain (libFuzzer's sanitizer flags).
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
[ -x ../target/release/cfsctl ] || cargo build --release --manifest-path ../Cargo.toml
./seeds.sh
exec ./run.sh "${FUZZ_SECONDS:-25}"
