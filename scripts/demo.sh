#!/bin/bash
# The main job on a built-in example: import a real tree (/usr/share/doc, or $1) into a fresh
# repository, print the image digest, show the start of its dump, mount it and read from it.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-/usr/share/doc}
cargo build --release -q
CFSCTL=$PWD/target/release/cfsctl
W=$(mktemp -d /tmp/cfsctl-demo.XXXXXX)
cleanup() { mountpoint -q "$W/mnt" 2>/dev/null && umount "$W/mnt"; rm -rf "$W"; }
trap cleanup EXIT

echo "== cfsctl init --repo $W/repo"
"$CFSCTL" init --repo "$W/repo"
echo "== cfsctl create-image --repo $W/repo $SRC"
digest=$("$CFSCTL" create-image --print-digest --repo "$W/repo" "$SRC" "$W/image.cfs")
echo "image digest: $digest"
echo "objects stored: $(find "$W/repo/objects" -type f | wc -l), image: $(stat -c %s "$W/image.cfs") bytes"
echo "== cfsctl compute-id $SRC (no writes)"
"$CFSCTL" compute-id "$SRC"
echo "== cfsctl dump (first 5 lines)"
"$CFSCTL" dump "$W/image.cfs" | head -5
if [ "$(id -u)" = 0 ]; then
  mkdir "$W/mnt"
  echo "== cfsctl mount --repo $W/repo $digest $W/mnt"
  "$CFSCTL" mount --repo "$W/repo" "$digest" "$W/mnt"
  grep " $W/mnt " /proc/mounts
  f=$(cd "$SRC" && find . -type f -size +1k | head -1)
  if cmp -s "$SRC/$f" "$W/mnt/$f"; then echo "read $f through the mount: identical to the source"; else echo "MISMATCH reading $f"; exit 1; fi
  umount "$W/mnt"
fi
echo "demo: OK"
