#!/bin/bash
# Builds the C composefs 1.0.8 tools (mkcomposefs, composefs-info) from Debian's source package
# into $PREFIX (default /opt/composefs-c). They are the reference our images must equal byte for
# byte: tests use them for differential checks, bench/ as a peer. Bookworm has no composefs
# package, so the source comes from Debian unstable through a private apt config (no change to
# the machine's sources).
set -euo pipefail
PREFIX=${PREFIX:-/opt/composefs-c}
VERSION=1.0.8
if [ -x "$PREFIX/bin/mkcomposefs" ]; then
  echo "mkcomposefs already in $PREFIX"; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends meson ninja-build pkgconf libssl-dev gcc dpkg-dev >/dev/null
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W"/apt/{lists/partial,cache/archives/partial,parts}
printf 'deb-src http://deb.debian.org/debian sid main\n' > "$W/apt/sources.list"
O=(-o Dir::Etc::SourceList="$W/apt/sources.list" -o Dir::Etc::SourceParts="$W/apt/parts"
   -o Dir::State::Lists="$W/apt/lists" -o Dir::Cache="$W/apt/cache" -o APT::Sandbox::User=root)
apt-get "${O[@]}" update -qq
cd "$W"
apt-get "${O[@]}" source --download-only "composefs=$VERSION-*" >/dev/null 2>&1 || apt-get "${O[@]}" source --download-only composefs >/dev/null
tar xzf composefs_${VERSION}.orig.tar.gz
cd composefs-$VERSION
meson setup build -Dfuse=disabled -Dman=disabled --prefix="$PREFIX" >/dev/null
ninja -C build install >/dev/null
echo "installed C composefs $VERSION tools in $PREFIX/bin"
