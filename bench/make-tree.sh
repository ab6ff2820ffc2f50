#!/bin/bash
# Builds the benchmark input: a real filesystem tree of 40k+ files and 1+ GB made by extracting
# large Debian packages (dpkg -x) into one directory. Usage: make-tree.sh DEST
# The .debs are cached in $BENCH_CACHE (default /var/tmp/cfsctl-bench/debs).
set -euo pipefail
DEST=${1:?usage: make-tree.sh DEST}
CACHE=${BENCH_CACHE:-/var/tmp/cfsctl-bench/debs}
# Chosen for volume and variety: kernel modules (big compressed files), kernel headers and Go
# sources (many small files), toolchains and a browser (large shared objects).
KVER_HDR=$(apt-cache search '^linux-headers-6\.1\.0-[0-9]+-common$' | awk '{print $1}' | sort -V | tail -1)
PKGS=(linux-image-amd64 "$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
      "$KVER_HDR" golang-1.19-src perl-modules-5.36 libpython3.11-stdlib chromium
      libstd-rust-dev texlive-latex-extra gcc-12 libllvm15 libicu72 libreoffice-core libboost1.74-dev)
mkdir -p "$CACHE"
(cd "$CACHE" && for p in "${PKGS[@]}"; do ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$p" >/dev/null; done)
rm -rf "$DEST"; mkdir -p "$DEST"
for d in "$CACHE"/*.deb; do dpkg-deb -x "$d" "$DEST"; done
echo "tree $DEST: $(find "$DEST" | wc -l) entries, $(du -sb "$DEST" | cut -f1) bytes"
