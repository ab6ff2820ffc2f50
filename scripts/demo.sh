#!/bin/bash
# The updater's main job on a built-in example, host-level (no VM; booting is tests/vm/run's):
# two versions of a bootable OS image (Debian's cloud kernel, real Debian packages, an /etc)
# served by a docker-registry on 127.0.0.1, installed on a target (--sysroot/--esp
# directories), an /etc change by "the admin", `upgrade --check`, `upgrade` (only the changed
# layer moves), `finalize` (what the shutdown does), `status`, `rollback` and its undo, `fsck`.
# Takes a couple of minutes on a fresh machine (the packages are downloaded once).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
CFSCTL=$PWD/target/release/cfsctl
W=$(mktemp -d /var/tmp/cfsctl-demo.XXXXXX)
REG=
cleanup() { [ -n "$REG" ] && kill "$REG" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
cfs() { printf '$ cfsctl %s\n' "$*"; "$CFSCTL" "$@"; }

step "building two image versions from Debian packages (umoci, one layer per package)"
KDEB=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
( cd "$W" && apt-get download -qq -o APT::Sandbox::User=root "$KDEB" hello tzdata )
B=$W/boot; mkdir -p "$B"
dpkg-deb --fsys-tarfile "$W/$KDEB"_*.deb | tar -C "$B" -x --wildcards './boot/vmlinuz-*'
KVER=$(ls "$B/boot" | sed 's/^vmlinuz-//')
K=$B/usr/lib/modules/$KVER; mkdir -p "$K" "$B/usr/lib/bootc/kargs.d" "$B/etc/demo" "$B/sysroot"
mv "$B/boot/vmlinuz-$KVER" "$K/vmlinuz"; rmdir "$B/boot"
# A minimal (but valid) initramfs: this demo does not boot; tests/vm/run builds a real one.
(mkdir -p "$W/initrd/etc" && echo demo > "$W/initrd/etc/initrd-release" && cd "$W/initrd" && find . | cpio -o -H newc --quiet) > "$K/initramfs.img"
echo 'kargs = ["quiet"]' > "$B/usr/lib/bootc/kargs.d/10-demo.toml"
echo "greeting = hello from v1" > "$B/etc/demo/app.conf"
echo "setting = image default" > "$B/etc/demo/local.conf"
umoci init --layout "$W/oci"; umoci new --image "$W/oci:v1"
tar --numeric-owner --owner=0 --group=0 -C "$B" -cf "$W/layer.tar" .
umoci raw add-layer --image "$W/oci:v1" "$W/layer.tar"
for p in hello tzdata; do
  dpkg-deb --fsys-tarfile "$W/${p}"_*.deb > "$W/layer.tar"
  umoci raw add-layer --image "$W/oci:v1" "$W/layer.tar"
done
umoci config --image "$W/oci:v1" --config.label containers.bootc=1 --config.label org.opencontainers.image.version=1
mkdir -p "$W/l2/etc/demo"; echo "greeting = hello from v2" > "$W/l2/etc/demo/app.conf"
tar --numeric-owner --owner=0 --group=0 -C "$W/l2" -cf "$W/layer.tar" .
umoci raw add-layer --image "$W/oci:v1" --tag v2 "$W/layer.tar"
umoci config --image "$W/oci:v2" --config.label org.opencontainers.image.version=2

step "serving them from a docker-registry on 127.0.0.1"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' \
  "$W/registry" "$PORT" > "$W/registry.yml"
docker-registry serve "$W/registry.yml" 2>/dev/null & REG=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
R=docker://127.0.0.1:$PORT/demo/os
for v in v1 v2; do skopeo copy -q --dest-tls-verify=false "oci:$W/oci:$v" "$R:$v"; done
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "$R:v1" "$R:stable"
echo "$R:stable -> v1"

T=(--sysroot "$W/host" --esp "$W/esp")
step "installing $R:stable on a target (first deployment)"
"$CFSCTL" init --repo "$W/src" 2>/dev/null
SDBOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -e "$SDBOOT" ] || { SDBOOT=$W/sd-boot.efi; printf 'MZ' > "$SDBOOT"; }
cfs install --repo "$W/src" "$R:stable" --tls-verify=false "${T[@]}" \
  --karg root=LABEL=demo --karg rw --bootloader "$SDBOOT"
V1=$("$CFSCTL" status "${T[@]}" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["deployments"][0]["id"])')
cfs status "${T[@]}"
echo "ESP entries: $(ls "$W/esp/loader/entries")"

step "the admin changes /etc on the running host (its overlay upper directory)"
mkdir -p "$W/host/state/deploy/$V1/etc/upper/demo"
echo "setting = changed by the admin" > "$W/host/state/deploy/$V1/etc/upper/demo/local.conf"
cfs etc diff "${T[@]}"

step "nothing new yet: upgrade says so (exit 77)"
set +e; cfs upgrade "${T[@]}" --tls-verify=false; echo "exit status $?"; set -e

step "v2 is published as stable: check, then upgrade (only the changed layer is fetched)"
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "$R:v2" "$R:stable"
cfs upgrade "${T[@]}" --tls-verify=false --check
cfs upgrade "${T[@]}" --tls-verify=false
cfs status "${T[@]}"

step "the host shuts down: finalize merges /etc and renames the staged entry into place"
cfs finalize "${T[@]}"
echo "ESP entries: $(ls "$W/esp/loader/entries")"
V2=$("$CFSCTL" status "${T[@]}" --json | python3 -c 'import json,sys; print([d["id"] for d in json.load(sys.stdin)["deployments"] if d["default"]][0])')
echo "v2's /etc: app.conf: $(cat "$W/host/state/deploy/$V2/etc/upper/demo/app.conf" 2>/dev/null || echo "(the image's: $(grep greeting "$W/l2/etc/demo/app.conf"))")"
echo "           local.conf: $(cat "$W/host/state/deploy/$V2/etc/upper/demo/local.conf") (the admin's change, carried over)"
cfs status "${T[@]}"

step "rollback: v1 boots next; rollback again: v2"
cfs rollback "${T[@]}"
cfs rollback "${T[@]}"

step "the target is consistent"
cfs fsck "${T[@]}"
echo "demo: OK"
