#!/bin/bash
# Builds (once, cached) the base of the bootable test OS: Debian trixie with the 6.12 kernel,
# systemd and dracut, as a tarball. Our binaries, the dracut module and the initramfs are added
# per run by tests/vm/run (they change with every commit; this base does not).
#
# The base is slimmed for boot speed under TCG: every regular file of the image becomes a
# composefs object whose fs-verity Merkle tree the first boot builds (hashing under emulation),
# so docs, man pages, locales, the udev hwdb sources and all kernel modules a virtio guest does
# not load are left out (KEEP_MODULES below, plus their dependencies).
#
# Usage: tests/vm/build-rootfs.sh OUT.tar   (root; needs mmdebstrap)
#        (build-rootfs.sh --slim ROOT is its own mmdebstrap customize hook)
set -euo pipefail

# Kernel modules the test guest may load (virtio disks/net/console, the filesystems of the
# boot, fw_cfg for handing a boot its script, crypto helpers); dependencies are added.
KEEP_MODULES="virtio_pci virtio_blk virtio_net virtio_console virtio_rng virtio_scsi
  ext4 vfat nls_cp437 nls_iso8859_1 nls_ascii nls_utf8 erofs overlay loop autofs4 efivarfs
  qemu_fw_cfg af_packet crc32c_generic crc32c_intel sha256_ssse3 sha512_ssse3 dm_mod"

if [ "${1:-}" = --slim ]; then
  R=$2
  KVER=$(ls "$R/usr/lib/modules")
  rm -rf "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/usr/share/locale/* \
         "$R"/usr/share/lintian "$R"/usr/lib/udev/hwdb.d/* "$R"/var/cache/apt/*.bin \
         "$R"/var/lib/apt/lists/* "$R"/var/log/*.log "$R"/var/cache/debconf/*-old \
         "$R"/usr/lib/x86_64-linux-gnu/gconv/* "$R"/usr/share/bash-completion "$R"/usr/share/zsh \
         "$R"/var/lib/dpkg/info/*.md5sums
  # Modules: the list and what it needs; everything else goes, then depmod again.
  keep=$(chroot "$R" modprobe -S "$KVER" -a --show-depends $KEEP_MODULES |
         awk '$1 == "insmod" {sub(".*/kernel/", "kernel/", $2); print $2}' | sort -u)
  [ "$(wc -l <<<"$keep")" -gt 10 ] || { echo "module list failed: $keep" >&2; exit 1; }
  (cd "$R/usr/lib/modules/$KVER" && find kernel -name '*.ko*' -type f) | while read -r m; do
    grep -qxF "$m" <<<"$keep" || rm -f "$R/usr/lib/modules/$KVER/$m"
  done
  find "$R/usr/lib/modules/$KVER/kernel" -type d -empty -delete
  # Uncompressed: the kernel would xz-decompress each module at every load (slow under TCG).
  find "$R/usr/lib/modules" -name '*.ko.xz' -exec unxz {} +
  chroot "$R" depmod -a "$KVER"
  exit 0
fi

OUT=$1
# systemd-boot: the image ships its boot loader (installed on the ESP by cfsctl install) and
# systemd-bless-boot; skopeo: cfsctl pulls through its image proxy.
PKGS=linux-image-amd64,systemd,systemd-sysv,udev,dracut,dracut-core,kmod,e2fsprogs,fsverity,util-linux,zstd
PKGS+=,systemd-boot,systemd-boot-efi,skopeo
# libssl3t64: cfsctl links OpenSSL (fs-verity signatures); keyutils: the kernel-signature case
# loads a certificate into the .fs-verity keyring.
PKGS+=,keyutils,libssl3t64
TMP=$OUT.tmp
SELF=$(readlink -f "$0")
# Install dracut before the kernel so its postinst hook (not initramfs-tools) is the
# initramfs generator; the hook's output is discarded: tests/vm/run regenerates it with our module.
# path-exclude: dpkg does not even unpack docs, man pages and translations.
mmdebstrap --variant=essential --format=tar --include="$PKGS" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*' \
  --dpkgopt='path-exclude=/usr/share/bash-completion/*' --dpkgopt='path-exclude=/usr/share/zsh/*' \
  --dpkgopt='path-exclude=/usr/lib/cni/*' \
  --customize-hook='rm -f "$1"/boot/initrd.img-* "$1"/var/cache/apt/archives/*.deb' \
  --customize-hook='for k in "$1"/usr/lib/modules/*; do v=$(basename "$k"); cp "$1/boot/vmlinuz-$v" "$k/vmlinuz"; done' \
  --customize-hook="'$SELF' --slim \"\$1\"" \
  trixie "$TMP" http://deb.debian.org/debian
mv "$TMP" "$OUT"
