#!/bin/bash
# Upgrade benchmark: a bootable image (one gzip layer per Debian package of bench/make-tree.sh,
# 1.6 GB uncompressed, plus a layer with a kernel and initramfs) served by a real
# docker-registry on 127.0.0.1, installed on a target (--sysroot/--esp directories). Rows:
#   - floor: `skopeo inspect --raw` of the reference (one manifest fetch, what any update check
#     costs), median of $BENCH_RUNS runs
#   - `cfsctl upgrade` with nothing new (exit 77), median of $BENCH_RUNS runs: within 1.5x the
#     floor is the target
#   - `cfsctl upgrade --check` with v2 published (manifest only)
#   - `cfsctl upgrade` to v2 (v1 + one small layer): wall time, bytes fetched beside the
#     changed layer's size in the manifest (they must be equal), then `cfsctl finalize`
# Destinations live on tmpfs ($BENCH_DEST, default /dev/shm): CPU and protocol cost without
# the disk. The OCI layout is cached in $BENCH_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BENCH_CACHE:-/var/tmp/cfsctl-bench}
DEST=${BENCH_DEST:-/dev/shm/cfsctl-upgrade-bench}
RUNS=${BENCH_RUNS:-10}
WORK=$CACHE/upgrade
export DEBIAN_FRONTEND=noninteractive
for t in umoci skopeo docker-registry; do
  command -v "$t" >/dev/null || apt-get install -y -qq umoci skopeo docker-registry >/dev/null
done
cargo build --release -q
CFS=${CARGO_TARGET_DIR:-$PWD/target}/release/cfsctl
[ -d "$CACHE/debs" ] || bench/make-tree.sh "$CACHE/tree" >&2

# --- the image: v1 = a boot layer + one gzip layer per package; v2 = v1 + a small layer
LAYOUT=$CACHE/oci-bootable
if [ ! -f "$LAYOUT/.complete" ]; then
  rm -rf "$LAYOUT"; umoci init --layout "$LAYOUT"; umoci new --image "$LAYOUT:v1"
  B=$CACHE/bootlayer; rm -rf "$B"; K=$B/usr/lib/modules/6.12.0-bench
  mkdir -p "$K" "$B/usr/lib/bootc/kargs.d" "$B/sysroot" "$B/etc"
  head -c 12M /dev/urandom > "$K/vmlinuz"; head -c 40M /dev/urandom > "$K/initramfs.img"
  echo 'kargs = ["quiet"]' > "$B/usr/lib/bootc/kargs.d/10-bench.toml"
  tar --numeric-owner --owner=0 --group=0 -C "$B" -cf "$CACHE/layer.tar" .
  umoci raw add-layer --image "$LAYOUT:v1" "$CACHE/layer.tar"
  for d in "$CACHE"/debs/*.deb; do
    dpkg-deb --fsys-tarfile "$d" > "$CACHE/layer.tar"
    umoci raw add-layer --image "$LAYOUT:v1" "$CACHE/layer.tar"
  done
  umoci config --image "$LAYOUT:v1" --config.label containers.bootc=1 \
    --config.label org.opencontainers.image.version=1
  umoci config --image "$LAYOUT:v1" --tag v2 --config.label org.opencontainers.image.version=2
  mkdir -p "$CACHE/l2/etc" && date > "$CACHE/l2/etc/bench-v2" && echo changed > "$CACHE/l2/etc/motd"
  tar --numeric-owner --owner=0 --group=0 -C "$CACHE/l2" -cf "$CACHE/layer.tar" etc
  umoci raw add-layer --image "$LAYOUT:v2" "$CACHE/layer.tar"
  rm -rf "$CACHE/layer.tar" "$B"; touch "$LAYOUT/.complete"
fi

REG=
cleanup() { set +e; [ -n "$REG" ] && kill "$REG" 2>/dev/null; rm -rf "$WORK" "$DEST"; }
trap cleanup EXIT
rm -rf "$WORK" "$DEST"; mkdir -p "$WORK" "$DEST"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/storage}}
http: {addr: 127.0.0.1:$PORT}
YML
docker-registry serve "$WORK/registry.yml" 2>"$WORK/registry.log" & REG=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
R=docker://127.0.0.1:$PORT/os
NOTLS=--tls-verify=false
for v in v1 v2; do skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:$v" "$R:$v"; done
stable() { skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "$R:$1" "$R:stable"; }
stable v1

S=$DEST/root; E=$DEST/esp; SRC=$DEST/src
"$CFS" init --repo "$SRC" 2>/dev/null
printf 'MZ' > "$WORK/sd-boot.efi"
t0=$(date +%s.%N)
"$CFS" install --repo "$SRC" "$R:stable" $NOTLS --sysroot "$S" --esp "$E" --karg rw \
  --bootloader "$WORK/sd-boot.efi" >/dev/null
install_s=$(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}")
up() { "$CFS" upgrade --sysroot "$S" --esp "$E" $NOTLS "$@"; }

# median wall seconds of RUNS runs of a command; also checks its exit status
median() {
  local want=$1; shift; local ts=() t0 rc
  for _ in $(seq "$RUNS"); do
    t0=$(date +%s.%N); set +e; "$@" >/dev/null 2>&1; rc=$?; set -e
    [ "$rc" = "$want" ] || { echo "FAIL: $* exited $rc (expected $want)" >&2; exit 1; }
    ts+=("$(awk "BEGIN{print $(date +%s.%N) - $t0}")")
  done
  printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END{printf "%.3f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}
floor=$(median 0 skopeo inspect --raw $NOTLS "$R:stable")
noop=$(median 77 up)
stable v2
check=$(median 0 up --check)
LAYER=$(skopeo inspect --raw $NOTLS "$R:v2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["size"])')
t0=$(date +%s.%N)
out=$(up --json)
staged_s=$(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}")
fetched=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["layersFetched"], d["bytesFetched"])' "$out")
t0=$(date +%s.%N)
"$CFS" finalize --sysroot "$S" --esp "$E" >/dev/null
fin_s=$(awk "BEGIN{printf \"%.3f\", $(date +%s.%N) - $t0}")

printf '\n%-58s | %10s | %s\n' "case (median of $RUNS where timed repeatedly)" "wall s" "vs floor / notes"
printf '%s\n' "-----------------------------------------------------------+------------+-----------------------------"
row() { printf '%-58s | %10s | %s\n' "$1" "$2" "$3"; }
ratio() { awk "BEGIN{printf \"%.2fx floor\", $1 / $floor}"; }
row "install v1 from the registry (first deployment)" "$install_s" "$(du -sh "$S/composefs" | cut -f1) repository"
row "skopeo inspect --raw (floor: one manifest fetch)" "$floor" "1.00x floor"
row "cfsctl upgrade, nothing new (exit 77)" "$noop" "$(ratio "$noop")"
row "cfsctl upgrade --check, v2 published" "$check" "$(ratio "$check")"
row "cfsctl upgrade to v2 (pull + stage)" "$staged_s" "layers, bytes fetched: $fetched; changed layer: $LAYER bytes"
row "cfsctl finalize" "$fin_s" "entry renamed, /etc merged"
[ "${fetched#* }" = "$LAYER" ] && echo "PASS: bytes fetched = the changed layer's size" || echo "FAIL: fetched $fetched, layer $LAYER"
awk "BEGIN{exit !($noop <= 1.5 * $floor)}" && echo "PASS: no-op upgrade within 1.5x the manifest fetch" \
  || echo "MISS: no-op upgrade at $(ratio "$noop") (target 1.5x)"
