#!/bin/bash
# Installs cfsctl into a bootable image's root filesystem (bootc layout): the binaries, the
# dracut module that puts cfs-setup-root into the initramfs, the systemd units of the host
# lifecycle (finalize at shutdown and the health check statically enabled; the upgrade timer
# installed, not enabled), and the docs. Used by tests/vm/run and the Containerfile.
#
# Usage: scripts/install-into-image.sh ROOT BINDIR   (BINDIR holds cfsctl and cfs-setup-root)
set -euo pipefail
ROOT=$1; BIN=$2
SRC=$(cd "$(dirname "$0")/.." && pwd)
U=$ROOT/usr/lib/systemd/system
install -D -m 0755 "$BIN/cfsctl" "$ROOT/usr/bin/cfsctl"
install -D -m 0755 "$BIN/cfs-setup-root" "$ROOT/usr/bin/cfs-setup-root"
install -D -m 0755 "$SRC/dracut/modules.d/50cfsctl/module-setup.sh" \
  "$ROOT/usr/lib/dracut/modules.d/50cfsctl/module-setup.sh"
install -D -m 0644 "$SRC/dracut/dracut.conf.d/50-cfsctl.conf" "$ROOT/usr/lib/dracut/dracut.conf.d/50-cfsctl.conf"
for u in cfs-setup-root.service cfsctl-finalize.service cfsctl-health-check.service \
         cfsctl-upgrade.service cfsctl-upgrade.timer; do
  install -D -m 0644 "$SRC/systemd/$u" "$U/$u"
done
mkdir -p "$U/multi-user.target.wants" "$U/boot-complete.target.requires"
ln -sf ../cfsctl-finalize.service "$U/multi-user.target.wants/cfsctl-finalize.service"
ln -sf ../cfsctl-health-check.service "$U/boot-complete.target.requires/cfsctl-health-check.service"
for d in boot.md lifecycle.md; do
  install -D -m 0644 "$SRC/docs/$d" "$ROOT/usr/share/doc/cfsctl/$d"
done
# /efi: where systemd-gpt-auto-generator mounts the ESP when /boot holds files.
mkdir -p "$ROOT/sysroot" "$ROOT/efi" "$ROOT/usr/lib/bootc/kargs.d" "$ROOT/usr/lib/cfsctl/health.d" "$ROOT/etc/cfsctl"
