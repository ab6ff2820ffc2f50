#!/bin/bash
# Builds (once, cached) the base of the bootable test OS: Debian trixie with the 6.12 kernel,
# systemd and dracut, as a tarball. Our binaries, the dracut module and the initramfs are added
# per run by tests/vm/run (they change with every commit; this base does not).
#
# Usage: tests/vm/build-rootfs.sh OUT.tar   (root; needs mmdebstrap)
set -euo pipefail
OUT=$1
PKGS=linux-image-amd64,systemd,systemd-sysv,udev,dracut,dracut-core,kmod,e2fsprogs,fsverity,util-linux,zstd
TMP=$OUT.tmp
# Install dracut before the kernel so its postinst hook (not initramfs-tools) is the
# initramfs generator; the hook's output is discarded: tests/vm/run regenerates it with our module.
mmdebstrap --variant=apt --format=tar --include="$PKGS" \
  --customize-hook='rm -f "$1"/boot/initrd.img-* "$1"/var/cache/apt/archives/*.deb' \
  --customize-hook='for k in "$1"/usr/lib/modules/*; do v=$(basename "$k"); cp "$1/boot/vmlinuz-$v" "$k/vmlinuz"; done' \
  trixie "$TMP" http://deb.debian.org/debian
mv "$TMP" "$OUT"
