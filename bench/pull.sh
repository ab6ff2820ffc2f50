#!/bin/bash
# Pull benchmark: a multi-layer image (one gzip layer per Debian package of bench/make-tree.sh,
# 1.6 GB uncompressed) served by a real docker-registry on 127.0.0.1. Rows:
#   - transfer floor: `skopeo copy docker://... oci:DIR` of the same image
#   - CPU floor: the checks, inflation and fs-verity hashing no pull can skip, with nothing
#     written (bench/pull_floor.rs, one thread per core, from the oci: layout)
#   - write floor: `cp -a` of the unpacked tree into the same filesystem, then syncfs (a pull
#     makes its objects durable before it tags)
#   - cfsctl oci pull into an empty repository (from the registry and from the oci: layout);
#     then v2 (one extra layer) incrementally, and a no-op repeat
#   - peers: composefs-rs `cfsctl oci pull` (/opt/composefs-rs) and `skopeo copy` into
#     containers-storage (what `podman pull` does), each into an empty store
# Prints wall time, peak RSS (of the process or any child it reaped, skopeo included) and
# bytes fetched. Destinations live in $BENCH_DEST (default
# tmpfs, /dev/shm: CPU cost without the disk). BENCH_DISK=1 puts them on a fresh ext4
# (default mkfs options, journal on, as a host has) in a loop-mounted file under $BENCH_CACHE.
# The OCI layouts are cached in $BENCH_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BENCH_CACHE:-/var/tmp/cfsctl-bench}
DEST=${BENCH_DEST:-/dev/shm/cfsctl-pull-bench}
WORK=$CACHE/pull
RSCFS=${COMPOSEFS_RS:-/opt/composefs-rs/bin/cfsctl}
export DEBIAN_FRONTEND=noninteractive
for t in umoci skopeo docker-registry /usr/bin/time; do
  command -v "$t" >/dev/null || apt-get install -y -qq umoci skopeo docker-registry time >/dev/null
done
cargo build --release -q
cargo build --release -q --example pull-floor
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/release
CFS=$TARGET/cfsctl
[ -d "$CACHE/debs" ] || bench/make-tree.sh "$CACHE/tree" >&2

# --- the image: v1 = one gzip layer per package; v2 = v1 + a small layer changing files
LAYOUT=$CACHE/oci-layout
if [ ! -f "$LAYOUT/.complete" ]; then
  rm -rf "$LAYOUT"; umoci init --layout "$LAYOUT"; umoci new --image "$LAYOUT:v1"
  for d in "$CACHE"/debs/*.deb; do
    dpkg-deb --fsys-tarfile "$d" > "$CACHE/layer.tar"
    umoci raw add-layer --image "$LAYOUT:v1" "$CACHE/layer.tar"
  done
  umoci config --image "$LAYOUT:v1" --tag v2 --config.label bench=v2
  mkdir -p "$CACHE/l2/etc" && date > "$CACHE/l2/etc/bench-v2" && echo changed > "$CACHE/l2/etc/hostname"
  tar -C "$CACHE/l2" -cf "$CACHE/layer.tar" etc
  umoci raw add-layer --image "$LAYOUT:v2" "$CACHE/layer.tar"
  rm -f "$CACHE/layer.tar"; touch "$LAYOUT/.complete"
fi

# --- a registry on loopback, trusted over plain http. skopeo 1.9 ignores
# CONTAINERS_REGISTRIES_CONF, and composefs-rs has no --tls-verify, so the trust goes into a
# registries.conf.d drop-in for the benchmark's duration.
REG=; DROPIN=
cleanup() {
  set +e
  [ -n "$REG" ] && kill "$REG" 2>/dev/null
  [ -n "$DROPIN" ] && rm -f "$DROPIN"
  if mountpoint -q "$DEST"; then umount -R "$DEST"; rm -f "$CACHE/pull-disk.img"; fi
  rm -rf "$WORK" "$DEST"
}
trap cleanup EXIT
rm -rf "$WORK" "$DEST"; mkdir -p "$WORK" "$DEST"
if [ "${BENCH_DISK:-0}" = 1 ]; then
  truncate -s 16G "$CACHE/pull-disk.img" && mkfs.ext4 -q -F "$CACHE/pull-disk.img"
  mount -o loop "$CACHE/pull-disk.img" "$DEST"
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/storage}}
http: {addr: 127.0.0.1:$PORT}
YML
docker-registry serve "$WORK/registry.yml" 2>"$WORK/registry.log" & REG=$!
DROPIN=/etc/containers/registries.conf.d/zz-cfsctl-bench-$PORT.conf
mkdir -p /etc/containers/registries.conf.d
printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" > "$DROPIN"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
kill -0 "$REG" && curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null ||
  { echo "FAIL: docker-registry did not start:" >&2; cat "$WORK/registry.log" >&2; exit 1; }
R=127.0.0.1:$PORT/bench
skopeo copy -q "oci:$LAYOUT:v1" "docker://$R:v1" --dest-tls-verify=false
skopeo copy -q "oci:$LAYOUT:v2" "docker://$R:v2" --dest-tls-verify=false
BYTES=$(du -sb --apparent-size "$WORK/storage" | cut -f1)

t() { /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }; read -r S K < "$WORK/time"; echo "$S $((K / 1024))"; }
# On a disk, let deletions reach it before a timed run (on a journal-less ext4, as this VM's
# root is, the kernel even skips "recently deleted" inodes one by one when allocating).
PAUSE=6; [ "$(df --output=fstype "$DEST" | tail -1)" = tmpfs ] && PAUSE=0
settle() { rm -rf "$@"; sync; sleep $PAUSE; }
ROWS=()
row() { ROWS+=("$(printf '| %-50s | %8s | %8s | %-34s |' "$@")"); }
vs() { awk "BEGIN{printf \"%.2fx floor%s\", $1/$FLOOR, \"$2\"}"; }
fetched() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_fetched"])' "$WORK/out"; }

settle
read -r FLOOR M < <(t skopeo copy -q "docker://$R:v1" "oci:$DEST/copy:v1")
row "skopeo copy v1 -> oci: (transfer floor)" "$FLOOR" "$M" "1.00x floor"
settle "$DEST/copy"
read -r S M < <(t "$TARGET/examples/pull-floor" "$LAYOUT:v1")
row "CPU floor: verify+inflate+fs-verity" "$S" "$M" "$(vs "$S" ", $(nproc) threads, no writes")"
# From the page cache, as the pulls read their blobs.
find "$CACHE/tree" -type f -print0 | xargs -0 cat > /dev/null
# A pull makes its objects durable (syncfs) before it tags: so does the floor.
read -r S M < <(t sh -c 'cp -a "$1" "$2" && sync -f "$2"' - "$CACHE/tree" "$DEST/tree")
row "cp -a + syncfs of the unpacked tree (write floor)" "$S" "$M" "$(vs "$S" "")"
settle "$DEST/tree"

"$CFS" init --repo "$DEST/repo" 2>/dev/null
read -r S M < <(t "$CFS" oci pull --repo "$DEST/repo" --json "docker://$R:v1")
row "cfsctl oci pull v1 (empty repo)" "$S" "$M" "$(vs "$S" ", $(( $(fetched) / 1000000 )) MB fetched")"
read -r S M < <(t "$CFS" oci pull --repo "$DEST/repo" --json "docker://$R:v2")
row "cfsctl oci pull v2 after v1" "$S" "$M" "$(fetched) bytes fetched"
read -r S M < <(t "$CFS" oci pull --repo "$DEST/repo" --json "docker://$R:v2")
row "cfsctl oci pull v2 again (no-op)" "$S" "$M" "$(fetched) bytes fetched"
settle "$DEST/repo"
"$CFS" init --repo "$DEST/repo" 2>/dev/null
read -r S M < <(t "$CFS" oci pull --repo "$DEST/repo" "oci:$LAYOUT:v1")
row "cfsctl oci pull oci:LAYOUT:v1 (no registry)" "$S" "$M" "$(vs "$S" "")"
settle "$DEST/repo"

if [ -x "$RSCFS" ]; then
  "$RSCFS" --repo "$DEST/rsrepo" init --algorithm fsverity-sha256-12 --insecure >/dev/null
  if read -r S M < <(t "$RSCFS" --repo "$DEST/rsrepo" oci pull "docker://$R:v1"); then
    row "composefs-rs oci pull v1 (empty repo)" "$S" "$M" "$(vs "$S" "")"
    read -r S M < <(t "$RSCFS" --repo "$DEST/rsrepo" oci pull "docker://$R:v2") &&
      row "composefs-rs oci pull v2 after v1" "$S" "$M" "-"
  fi
  settle "$DEST/rsrepo"
fi

# containers-storage, overlay driver, private roots: the podman pull path.
printf '[storage]\ndriver = "overlay"\nrunroot = "%s"\ngraphroot = "%s"\n' "$DEST/cs-run" "$DEST/cs" > "$WORK/storage.conf"
if read -r S M < <(CONTAINERS_STORAGE_CONF=$WORK/storage.conf t skopeo copy -q "docker://$R:v1" "containers-storage:localhost/bench:v1"); then
  row "skopeo copy -> containers-storage (podman)" "$S" "$M" "$(vs "$S" "")"
fi
umount "$DEST/cs/overlay" 2>/dev/null || true
settle "$DEST/cs" "$DEST/cs-run"

echo
echo "image: $(ls "$CACHE"/debs/*.deb | wc -l) package layers (+1 in v2), registry holds $BYTES bytes; destination $(df --output=fstype "$DEST" | tail -1) ($DEST); $(nproc) cores; $(uname -r)"
echo
printf '| %-50s | %8s | %8s | %-34s |\n' case "wall s" "RSS MB" "vs transfer floor"
echo "|----------------------------------------------------|----------|----------|------------------------------------|"
printf '%s\n' "${ROWS[@]}"
