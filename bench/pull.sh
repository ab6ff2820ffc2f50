#!/bin/bash
# Pull benchmark: a multi-layer image (one layer per Debian package of bench/make-tree.sh,
# 1.6 GB uncompressed) served by a real docker-registry on 127.0.0.1.
#   - transfer floor: `skopeo copy docker://... oci:DIR` of the same image
#   - cfsctl oci pull into an empty repository; then v2 (one extra layer) incrementally
#   - composefs-rs `cfsctl oci pull` when installed (/opt/composefs-rs)
# Prints wall time, peak RSS and bytes fetched. The OCI layouts are cached in $BENCH_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BENCH_CACHE:-/var/tmp/cfsctl-bench}
WORK=${BENCH_WORK:-/var/tmp/cfsctl-bench/pull}
RSCFS=${COMPOSEFS_RS:-/opt/composefs-rs/bin/cfsctl}
export DEBIAN_FRONTEND=noninteractive
for t in umoci skopeo docker-registry /usr/bin/time; do
  command -v "$t" >/dev/null || apt-get install -y -qq umoci skopeo docker-registry time >/dev/null
done
cargo build --release -q
CFS=${CARGO_TARGET_DIR:-$PWD/target}/release/cfsctl
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

# --- a registry on loopback, trusted over plain http through a private registries.conf
rm -rf "$WORK"; mkdir -p "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/storage}}
http: {addr: 127.0.0.1:$PORT}
YML
docker-registry serve "$WORK/registry.yml" 2>"$WORK/registry.log" & REG=$!
trap 'kill $REG 2>/dev/null; rm -rf "$WORK"' EXIT
printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" > "$WORK/registries.conf"
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
until curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null; do sleep 0.1; done
R=127.0.0.1:$PORT/bench
skopeo copy -q "oci:$LAYOUT:v1" "docker://$R:v1" --dest-tls-verify=false
skopeo copy -q "oci:$LAYOUT:v2" "docker://$R:v2" --dest-tls-verify=false
BYTES=$(du -sb --apparent-size "$WORK/storage" | cut -f1)

t() { /usr/bin/time -f '%e %M' -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }; read -r S K < "$WORK/time"; echo "$S $((K / 1024))"; }
ROWS=()
row() { ROWS+=("$(printf '| %-40s | %8s | %8s | %-32s |' "$@")"); }

read -r FLOOR M < <(t skopeo copy -q "docker://$R:v1" "oci:$WORK/copy:v1" --src-tls-verify=false)
row "skopeo copy v1 -> oci: (floor)" "$FLOOR" "$M" "1.00x"
rm -rf "$WORK/copy"

"$CFS" init --repo "$WORK/repo" 2>/dev/null
read -r S M < <(t "$CFS" oci pull --repo "$WORK/repo" --tls-verify=false --json "docker://$R:v1")
F=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_fetched"])' "$WORK/out")
row "cfsctl oci pull v1 (empty repo)" "$S" "$M" "$(awk "BEGIN{printf \"%.2fx floor, %d MB fetched\", $S/$FLOOR, $F/1e6}")"
read -r S M < <(t "$CFS" oci pull --repo "$WORK/repo" --tls-verify=false --json "docker://$R:v2")
F=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_fetched"])' "$WORK/out")
row "cfsctl oci pull v2 after v1" "$S" "$M" "$F bytes fetched"
read -r S M < <(t "$CFS" oci pull --repo "$WORK/repo" --tls-verify=false --json "docker://$R:v2")
row "cfsctl oci pull v2 again (no-op)" "$S" "$M" "-"
rm -rf "$WORK/repo"

if [ -x "$RSCFS" ]; then
  "$RSCFS" --repo "$WORK/rsrepo" init --algorithm fsverity-sha256-12 --insecure >/dev/null
  if read -r S M < <(t "$RSCFS" --repo "$WORK/rsrepo" oci pull "docker://$R:v1"); then
    row "composefs-rs oci pull v1 (empty repo)" "$S" "$M" "$(awk "BEGIN{printf \"%.2fx floor\", $S/$FLOOR}")"
    read -r S M < <(t "$RSCFS" --repo "$WORK/rsrepo" oci pull "docker://$R:v2") &&
      row "composefs-rs oci pull v2 after v1" "$S" "$M" "-"
  fi
fi

echo
echo "image: $(ls "$CACHE"/debs/*.deb | wc -l) package layers (+1 in v2), registry holds $BYTES bytes; $(nproc) cores; $(uname -r)"
echo
printf '| %-40s | %8s | %8s | %-32s |\n' case "wall s" "RSS MB" "vs floor"
echo "|------------------------------------------|----------|----------|----------------------------------|"
printf '%s\n' "${ROWS[@]}"
