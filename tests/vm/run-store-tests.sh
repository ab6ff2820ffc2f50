#!/bin/bash
# Runs the repo/fsverity/mount test binaries inside a qemu VM (Debian trixie 6.12 kernel,
# TCG) with TMPDIR on an ext4 `-O verity` disk, so the fs-verity paths that the host kernel
# lacks (enable/measure ioctls, verity=require) are exercised for real.
# Based on /work/shared/reference/vm-verity-recipe.sh.
#
# Usage: tests/vm/run-store-tests.sh   (root; W=workdir to reuse a downloaded kernel,
#        TESTARGS='name filter' to pass to every test binary)
# Exit status 0 and "VMTEST: PASS" when every test binary passed.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
W=${W:-$(mktemp -d)}; mkdir -p "$W"; cd "$W"
apt-get install -y -qq --no-install-recommends qemu-system-x86 erofs-utils fsverity \
  busybox-static cpio e2fsprogs xz-utils >/dev/null

# --- kernel from trixie via a private apt config (no change to the machine's sources)
if [ ! -d kroot ]; then
  mkdir -p apt/lists/partial apt/cache/archives/partial apt/parts
  echo "deb http://deb.debian.org/debian trixie main" > apt/sources.list
  O=(-o Dir::Etc::SourceList=$W/apt/sources.list -o Dir::Etc::SourceParts=$W/apt/parts
     -o Dir::State::Lists=$W/apt/lists -o Dir::Cache=$W/apt/cache -o APT::Sandbox::User=root)
  apt-get "${O[@]}" update -qq
  KPKG=$(apt-cache "${O[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  apt-get "${O[@]}" download "$KPKG" >/dev/null 2>&1
  dpkg-deb -x linux-image-*.deb kroot
fi
KVER=$(ls kroot/usr/lib/modules); MD=kroot/usr/lib/modules/$KVER/kernel

# --- test binaries
mapfile -t TESTS < <(cd "$REPO" && cargo test --no-run --message-format=json 2>/dev/null |
  python3 -c '
import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"] \
       and m["target"]["kind"] != ["bin"]:
        print(m["executable"])')

# --- initramfs: busybox, modules (dependencies first), tools + their libraries, tests
R=$W/initramfs; rm -rf "$R"; mkdir -p $R/{bin,lib/modules,proc,sys,dev,usr/bin,tests,tmp}
cp /bin/busybox $R/bin/
: > $R/lib/modules/order
for m in crypto/crc32c_generic lib/libcrc32c lib/crc16 fs/mbcache fs/jbd2/jbd2 fs/ext4/ext4 \
         fs/erofs/erofs fs/overlayfs/overlay drivers/block/virtio_blk drivers/block/loop; do
  xz -dc $MD/$m.ko.xz > $R/lib/modules/$(basename $m).ko
  echo $(basename $m) >> $R/lib/modules/order
done
copy_with_libs() {
  cp "$1" "$R$2"
  for l in $(ldd "$1" | grep -o '/[^ ]*'); do mkdir -p $R$(dirname $l); cp -L $l $R$l; done
}
copy_with_libs /usr/bin/fsverity /usr/bin/
copy_with_libs "$(command -v mkfs.erofs)" /usr/bin/
for t in "${TESTS[@]}"; do copy_with_libs "$t" /tests/; done
cat > $R/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin; export PATH=/bin:/usr/bin
mount -t proc p /proc; mount -t sysfs s /sys; mount -t devtmpfs d /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
while [ ! -b /dev/vda ]; do sleep 0.1; done
mkdir -p /data; mount -t ext4 /dev/vda /data; mkdir -p /data/tmp
export TMPDIR=/data/tmp RUST_BACKTRACE=1
TESTARGS=$(cat /testargs)
F=0
for t in /tests/*; do
  echo "=== $t"
  if $t --test-threads=2 --nocapture $TESTARGS > /tmp/out 2>&1; then
    grep -E '^test |test result|note:' /tmp/out || true
  else
    F=1; cat /tmp/out; echo "FAILED: $t"
  fi
done
[ $F = 0 ] && echo VMTEST: PASS || echo VMTEST: FAIL
poweroff -f
EOF
chmod +x $R/init
echo "${TESTARGS:-}" > $R/testargs
(cd $R && find . | cpio -o -H newc --quiet | gzip -1) > initramfs.cpio.gz

# --- scratch disk: ext4 with the verity feature
rm -f disk.img; mkfs.ext4 -q -F -O verity -b 4096 disk.img 512M

timeout 1200 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 2048 -smp 2 -nographic \
  -no-reboot -nic none \
  -kernel kroot/boot/vmlinuz-$KVER -initrd initramfs.cpio.gz \
  -drive file=disk.img,format=raw,if=virtio,cache=unsafe \
  -append "console=ttyS0 panic=-1 quiet" | tee vm.log | grep -a -v -E '^\[ *[0-9.]+\]|SeaBIOS|Booting'

grep -q 'VMTEST: PASS' vm.log
