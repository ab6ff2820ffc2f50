#!/bin/bash
# dracut module: cfs-setup-root and its initrd unit, plus the kernel modules a composefs root
# needs (EROFS, overlayfs; loop for kernels without file-backed EROFS). See docs/boot.md.

check() {
    # Only when asked for (dracut.conf.d/50-cfsctl.conf adds it): images opt in.
    require_binaries cfs-setup-root || return 1
    return 255
}

depends() {
    echo systemd
    return 0
}

installkernel() {
    hostonly='' instmods erofs overlay loop
}

install() {
    inst_binary cfs-setup-root /usr/bin/cfs-setup-root
    local unit=/usr/lib/systemd/system/cfs-setup-root.service
    [ -e "$moddir/cfs-setup-root.service" ] && unit="$moddir/cfs-setup-root.service"
    inst_simple "$unit" "$systemdsystemunitdir/cfs-setup-root.service"
    [ -e /usr/lib/composefs/setup-root.conf ] && inst_simple /usr/lib/composefs/setup-root.conf
    $SYSTEMCTL -q --root "$initdir" add-wants initrd-root-fs.target cfs-setup-root.service
}
