# The boots of tests/vm/run, in order, and their verdicts. Sourced by tests/vm/run (which
# defines V1 V2 V3 V2_LAYER DISK ROOTFS ROOT_OFF REPO CFSCTL tag_stable); functions from lib.sh.
BOOTS=()
booted() { BOOTS+=("$1:${BOOT_SECS}s"); log "$1: ${BOOT_SECS}s${KILLED:+, power cut: $KILLED}"; }
# A delay in [A, B) seconds, random, printed with the case (the instants vary from run to run).
between() { awk -v a="$1" -v b="$2" -v r="$RANDOM" 'BEGIN{printf "%.2f", a + (b - a) * r / 32768}'; }
short() { echo "${1:0:12}"; }

# ---- b1: v1, first boot. Check for an update, hit an /etc conflict, stage v2; the power is
# cut while cfsctl-finalize.service applies it at shutdown.
log "b1: v1 boots; upgrade --check, conflict, upgrade; power cut during finalization"
tag_stable v2
P=$W/b1.plan; plan "$P" b1
cat >> "$P" <<'EOF'
run check cfsctl upgrade --check --json
echo host > /etc/cfs-vmtest/local-only.conf
echo host > /etc/cfs-vmtest/both.conf
run conflict cfsctl upgrade
# Back to the image's bytes and mode: unchanged again, so no conflict.
echo "image v1" > /etc/cfs-vmtest/both.conf
run upgrade cfsctl upgrade --json
json staged-status
run etcdiff cfsctl etc diff
say finalize-window
EOF
# Finalization takes 0.2 s to the commit rename and the power is off ~1.1 s after the console
# line on a quiet machine (more under load): cuts within 0.4 s always land before power-off.
K1=$(between 0 0.4)  # mostly before the commit rename
REGLOG0=$(( $(wc -l < "$W/registry.log") + 1 ))
boot b1 "$P" 'cfsctl: finalizing' "$K1"; booted b1; K1_KILLED=$KILLED
B1_BLOBS=$(blobs_fetched "$REGLOG0" | tr '\n' ' ')
ok=1; verified b1 "$V1" && [[ "$(ev b1 read /usr/share/common-licenses/GPL-3)" == ok ]] && ok=0
result verified-root $ok "/proc/mounts: $(ev b1 root-mount)" "cmdline digest:  $(ev b1 cmdline-digest)" \
  "measured digest: $(ev b1 measured-digest)" "$(ev b1 initrd | cut -c1-300)" "boot: $(ev b1 uptime)s guest uptime at the test"

# ---- b2: v2 (or v1 when the cut came before the commit point: then a clean shutdown
# finalizes and v2 boots next). Evidence of the upgrade, the /etc merge; then rollback.
P=$W/b2.plan; plan "$P" b2
cat >> "$P" <<'EOF'
run fsck cfsctl fsck
if [ "$BOOTED" = "$V2" ]; then
  for f in local-only image-changes both; do say "etc-$f $(cat /etc/cfs-vmtest/$f.conf)"; done
  say "version $(cat /usr/share/cfs-vmtest/version)"
  run rollback cfsctl rollback --json
  json rolledback-status
fi
EOF
log "b2: after the cut: verified root and fsck; then v2's evidence and rollback"
boot b2 "$P"; booted b2; FIRST_AFTER_K1=b2
if [ "$(ev b2 cmdline-digest)" = "$V1" ]; then
  log "b2 booted v1 (the cut came before the commit point); its clean shutdown finalizes"
  boot b2b "$P"; booted b2b; B2=b2b
else
  B2=b2
fi
ok=1
[[ "$K1_KILLED" == yes* ]] && { verified $FIRST_AFTER_K1 "$V1" || verified $FIRST_AFTER_K1 "$V2"; } \
  && [ "$(ev $FIRST_AFTER_K1 fsck-rc)" = 0 ] && ok=0
PC1=("finalization cut: $K1_KILLED" "next boot: $(short "$(ev $FIRST_AFTER_K1 cmdline-digest)") verified ($(ev $FIRST_AFTER_K1 root-mount | grep -o 'verity=[a-z]*')), fsck exit $(ev $FIRST_AFTER_K1 fsck-rc): $(ev $FIRST_AFTER_K1 fsck | cut -c1-160)")
PC1_OK=$ok

CHECK_LAYERS=$(ev b1 check | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["layersToFetch"], d["bytesToFetch"])' 2>/dev/null || echo "?")
UP=$(ev b1 upgrade | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["result"], d["id"])' 2>/dev/null || echo "?")
# Blobs the guest fetched in b1: v2's config and its new layer, none of v1's layers (the
# conflicting attempt pulled them before its /etc check; the second found them stored).
V1_FETCHED=$(for l in $V1_LAYERS; do if [[ " $B1_BLOBS " == *" ${l%=*} "* ]]; then echo "${l%=*}"; fi; done)
ok=1
[ "$(ev b1 check-rc)" = 0 ] && [ "$CHECK_LAYERS" = "1 $V2_LAYER" ] && [ "$(ev b1 upgrade-rc)" = 0 ] \
  && [ "$UP" = "staged $V2" ] && [[ " $B1_BLOBS " == *" $V2_BLOB "* ]] && [ -z "$V1_FETCHED" ] && verified $B2 "$V2" \
  && [ "$(dep $B2 status "$V2" booted)" = true ] && [ "$(dep $B2 status "$V1" rollback)" = true ] \
  && [ "$(dep b1 staged-status "$V2" staged)" = true ] && ok=0
result upgrade $ok "upgrade --check: exit $(ev b1 check-rc), layers and bytes to fetch: $CHECK_LAYERS (v2's layer: $V2_LAYER bytes)" \
  "upgrade: exit $(ev b1 upgrade-rc): $UP" \
  "blobs the guest fetched from the registry in b1: $B1_BLOBS(v2's layer ${V2_BLOB:0:19}; v1's layers fetched: ${V1_FETCHED:-none})" \
  "staged: $(dep b1 staged-status "$V2" staged); after reboot: / $(ev $B2 root-mount | cut -c1-110)..." \
  "v2 booted: $(dep $B2 status "$V2" booted), bootState $(dep $B2 status "$V2" bootState); v1 rollback: $(dep $B2 status "$V1" rollback)"
ok=1
[ "$(ev b1 conflict-rc)" = 1 ] && [[ "$(ev b1 conflict)" == *"/etc/cfs-vmtest/both.conf: changed locally and in the new image"* ]] \
  && [[ "$(ev b1 conflict)" != *local-only* ]] \
  && [ "$(ev $B2 etc-local-only)" = host ] && [ "$(ev $B2 etc-image-changes)" = "image v2" ] \
  && [ "$(ev $B2 etc-both)" = "image v2" ] && ok=0
result etc-merge $ok "staging refused: exit $(ev b1 conflict-rc): $(ev b1 conflict | cut -c1-300)" \
  "etc diff before the upgrade: $(ev b1 etcdiff | cut -c1-200)" \
  "in v2: local-only.conf '$(ev $B2 etc-local-only)' (host's), image-changes.conf '$(ev $B2 etc-image-changes)' (v2's), both.conf '$(ev $B2 etc-both)'"
ok=1
[[ "$(ev $B2 etc-marker)" == "written in boot 1" && "$(ev $B2 var-marker)" == "written in boot 1" ]] && ok=0
result persistence $ok "etc: $(ev $B2 etc-marker)" "var: $(ev $B2 var-marker)" "/etc: $(ev $B2 etc-mount)" "/var: $(ev $B2 var-mount)"

# ---- b3: rollback made v1 the next boot; roll back again.
P=$W/b3.plan; plan "$P" b3
cat >> "$P" <<'EOF'
run rollback2 cfsctl rollback --json
# kernel-signature: the kernel trusts certificate a only.
run sig-keyring keyctl padd asymmetric '' %keyring:.fs-verity < /usr/share/cfs-vmtest/sig-a.der
SR=docker://10.0.2.100:5000; C=/usr/share/cfs-vmtest
for c in good wrong art; do cfsctl init --repo /var/tmp/sig-$c >/dev/null 2>&1; done
run sig-good cfsctl oci pull --repo /var/tmp/sig-good --tls-verify=false --verity-cert $C/sig-a.pem --kernel-signature $SR/sig:good
say "sig-good-attached $(fsverity dump_metadata signature /var/tmp/sig-good/images/* 2>/dev/null | wc -c) $(fsverity measure /var/tmp/sig-good/images/* 2>&1)"
run sig-wrong cfsctl oci pull --repo /var/tmp/sig-wrong --tls-verify=false --verity-cert $C/sig-b.pem --kernel-signature $SR/sig:wrong
say "sig-wrong-tagged $(cfsctl oci images --repo /var/tmp/sig-wrong 2>/dev/null | wc -l)"
run sig-art cfsctl oci pull --repo /var/tmp/sig-art --require-sealed --tls-verify=false --verity-cert $C/sig-a.pem --kernel-signature $SR/sigart:v1
say "sig-art-attached $(fsverity dump_metadata signature /var/tmp/sig-art/images/* 2>/dev/null | wc -c)"
EOF
log "b3: rollback: v1 must boot"
boot b3 "$P"; booted b3

ok=1
[ "$(ev b3 sig-keyring-rc)" = 0 ] && [ "$(ev b3 sig-good-rc)" = 0 ] && [ "$(ev b3 sig-good-attached | cut -d' ' -f1)" -gt 0 ] \
  && [ "$(ev b3 sig-wrong-rc)" = 1 ] && [[ "$(ev b3 sig-wrong)" == *"kernel refused the fs-verity signature"* ]] \
  && [ "$(ev b3 sig-wrong-tagged)" = 0 ] && [ "$(ev b3 sig-art-rc)" = 0 ] && [ "$(ev b3 sig-art-attached)" -gt 0 ] && ok=0
result kernel-signature $ok "kernel: $KCONFIG" "certificate a into .fs-verity: exit $(ev b3 sig-keyring-rc), key $(ev b3 sig-keyring)" \
  "inline seal signed by a, --kernel-signature: exit $(ev b3 sig-good-rc); signature attached to the image: $(ev b3 sig-good-attached | cut -c1-140)" \
  "signed by b (b's certificate given to the host check, not in the keyring): exit $(ev b3 sig-wrong-rc): ...$(ev b3 sig-wrong | grep -o 'the kernel refused.*' | cut -c1-200); tags: $(ev b3 sig-wrong-tagged)" \
  "artifact $(short "$SIGART") signed by a: exit $(ev b3 sig-art-rc); signature attached: $(ev b3 sig-art-attached) bytes"

# ---- b4: v2 again. The registry's stable tag moves to v3; the timer's service stages it and
# the power is cut mid-pull.
tag_stable v3
P=$W/b4.plan; plan "$P" b4
cat >> "$P" <<'EOF'
say staging-window
systemctl start cfsctl-upgrade.service
stay
EOF
# Staging v3 takes 4.5 s from 'pulling' to 'writing boot files' on a quiet machine (and
# longer under load): a cut at most 3.5 s in lands in the pull or the import.
K2=$(between 0.5 3.5)
log "b4: rollback again: v2 must boot; then a power cut during staging (${K2}s into the pull)"
boot b4 "$P" 'os:stable: pulling' "$K2"; booted b4; K2_KILLED=$KILLED
ok=1
[ "$(ev $B2 rollback-rc)" = 0 ] && verified b3 "$V1" && [ "$(dep b3 status "$V2" rollback)" = true ] \
  && [ "$(ev b3 rollback2-rc)" = 0 ] && verified b4 "$V2" && [ "$(dep b4 status "$V1" rollback)" = true ] && ok=0
result rollback $ok "rollback in v2: exit $(ev $B2 rollback-rc): $(ev $B2 rollback | cut -c1-200)" \
  "next boot: $(short "$(ev b3 cmdline-digest)") (v1 $(short "$V1")), verity: $(ev b3 root-mount | grep -o 'verity=[a-z]*')" \
  "rollback again: exit $(ev b3 rollback2-rc); next boot: $(short "$(ev b4 cmdline-digest)") (v2 $(short "$V2"))"

# ---- b5: after the cut: verified and clean. Cut again, late in staging.
P=$W/b5.plan; plan "$P" b5
cat >> "$P" <<'EOF'
run fsck cfsctl fsck
json pre-staging-status
# Had b4's cut come after staging committed, v3 would be staged already and there would be no
# staging to cut: withdraw it (rollback withdraws a staged deployment and swaps the default;
# the second swaps it back), so that the service stages it again.
if cfsctl status --json | grep -q '"staged": "'; then
  run withdraw1 cfsctl rollback; run withdraw2 cfsctl rollback
fi
say staging-window
systemctl start cfsctl-upgrade.service
stay
EOF
K3=$(between 0 0.8)
log "b5: verified root + fsck; then a power cut late in staging (${K3}s after the boot files)"
boot b5 "$P" 'staging [0-9a-f]+: writing boot files' "$K3"; booted b5; K3_KILLED=$KILLED

# ---- b6: after the second cut. The timer's service stages v3 for real; no reboot.
P=$W/b6.plan; plan "$P" b6
cat >> "$P" <<'EOF'
run fsck cfsctl fsck
say "timer-enabled $(systemctl is-enabled cfsctl-upgrade.timer 2>&1)"
run timer systemctl start cfsctl-upgrade.service
say "timer-result $(systemctl show -p Result --value cfsctl-upgrade.service) $(systemctl show -p ExecMainStatus --value cfsctl-upgrade.service)"
json timer-status
say "still-up $(cut -d' ' -f1 /proc/uptime)"
EOF
K4=$(between 0.15 0.7)  # mostly after the commit rename, before power-off (see K1)
log "b6: verified root + fsck; the timer's service stages v3; power cut during its finalization"
boot b6 "$P" 'cfsctl: finalizing' "$K4"; booted b6; K4_KILLED=$KILLED
ok=1
[[ "$(ev b6 timer-rc)" = 0 && "$(ev b6 timer-enabled)" == disabled && "$(dep b6 timer-status "$V3" staged)" = true \
   && -n "$(ev b6 still-up)" ]] && ok=0
result timer $ok "cfsctl-upgrade.timer: $(ev b6 timer-enabled) (installed, not enabled)" \
  "cfsctl-upgrade.service (auto-update = stage): exit $(ev b6 timer-rc), $(ev b6 timer-result)" \
  "v3 staged: $(dep b6 timer-status "$V3" staged), default still v2: $(dep b6 timer-status "$V2" default); guest still up at $(ev b6 still-up)s"

# ---- b7...: v3 must boot three times and fail its health check each time (FailureAction=
# reboot). If the cut of b6's shutdown came before the commit point, v2 boots first (verified,
# fsck clean) and its clean shutdown finalizes v3. Then systemd-boot sorts v3's entry (+0-3)
# last and v2 boots by itself (b10). One object of v2 is altered on the disk before that
# boot (tampered-object).
P=$W/v3.plan; plan "$P" v3
echo 'run fsck cfsctl fsck' >> "$P"
V3_BOOTS=(); AFTER_K4=
for i in 7 8 9 10 11; do
  [ ${#V3_BOOTS[@]} -ge 3 ] && break
  log "b$i: v3 must boot and fail its health check (or v2 once, if the cut came before the commit)"
  boot "b$i" "$P"; booted "b$i"
  [ -z "$AFTER_K4" ] && AFTER_K4=b$i
  if grep -aq "cfs-setup-root: mounted composefs image $V3" "$W/b$i.txt"; then V3_BOOTS+=("b$i"); fi
done
OBJ=$("$CFSCTL" dump "$REPO/images/$V1" | awk '$1 == "/usr/share/common-licenses/GPL-3" {print $9}')
object_block() { debugfs -R "bmap $1 0" "$ROOTFS" 2>/dev/null | tail -1; }
flip() { # PATH-IN-FS: overwrite 16 bytes in the file's first block, on the raw disk
  local blk; blk=$(object_block "$1")
  printf 'TAMPERED-BY-TEST' | dd of="$DISK" bs=1 seek=$(( ROOT_OFF + blk * 4096 + 100 )) conv=notrunc status=none
  echo "block $blk"
}
WHERE=$(flip "/composefs/objects/$OBJ")
P=$W/fb.plan; plan "$P" fallback
cat >> "$P" <<'EOF'
json fallback-status
run fsck cfsctl fsck
EOF
log "fb: v2 must boot by itself"
boot fb "$P"; booted fb
ok=0; [ ${#V3_BOOTS[@]} = 3 ] || ok=1
for b in "${V3_BOOTS[@]}"; do
  grep -aq 'FAILED.*50-vmtest-fails' "$W/$b.txt" || ok=1
done
verified fb "$V2" && [ "$(dep fb fallback-status "$V3" bootState)" = bad ] \
  && [ "$(hostfact fb fallback-status fallback)" = true ] && [ "$(dep fb fallback-status "$V2" booted)" = true ] || ok=1
result boot-counting $ok \
  "v3 boots: ${V3_BOOTS[*]}, each: $(for b in "${V3_BOOTS[@]}"; do printf '%s ' "$(grep -ac 'FAILED.*50-vmtest-fails' "$W/$b.txt")x-health-failed"; done)" \
  "health check: $(grep -a 'FAILED.*50-vmtest-fails' "$W/${V3_BOOTS[0]:-b7}.txt" | head -1 | tr -s ' ' | cut -c1-160)" \
  "then: $(short "$(ev fb cmdline-digest)") booted (v2 $(short "$V2")), verity: $(ev fb root-mount | grep -o 'verity=[a-z]*')" \
  "status: v3 bootState $(dep fb fallback-status "$V3" bootState), triesLeft $(dep fb fallback-status "$V3" triesLeft), entry $(dep fb fallback-status "$V3" entry); host fallback: $(hostfact fb fallback-status fallback)"
# The cuts: each next boot reached a verified root (old or new) and fsck was clean. After the
# cut of b6's shutdown the next boot is v3 (committed; it fails its health check before the
# test's fsck runs, so fb's fsck covers that state) or v2 (not committed; verified, fsck clean).
ok=$PC1_OK
for b in b5 b6; do
  verified $b "$V2" && [ "$(ev $b fsck-rc)" = 0 ] || ok=1
done
[[ "$K2_KILLED" == yes* && "$K3_KILLED" == yes* && "$K4_KILLED" == yes* ]] || ok=1
if grep -aq "cfs-setup-root: mounted composefs image $V3 on /sysroot (verity require" "$W/$AFTER_K4.txt"; then
  K4_NEXT="v3 (committed), mounted with verity require"
elif verified "$AFTER_K4" "$V2" && [ "$(ev "$AFTER_K4" fsck-rc)" = 0 ]; then
  K4_NEXT="v2 (not yet committed), verified, fsck exit 0"
else
  K4_NEXT="NOT VERIFIED"; ok=1
fi
# fb's fsck sees the state left by that cut, plus the object tampered with before fb: that
# object, and nothing else, must be reported.
FB_FSCK=$(ev fb fsck)
fb_fsck_ok() { [[ "$(ev fb fsck-rc)" = 1 && "$FB_FSCK" == *"corrupt-object: /sysroot/composefs/objects/$OBJ"* \
  && "$FB_FSCK" == *": 1 problems"* ]]; }
fb_fsck_ok || ok=1
result power-cut $ok "${PC1[@]}" \
  "staging cut 1: $K2_KILLED; v3 staged by then: $(hostfact b5 pre-staging-status staged | grep -q '^[0-9a-f]' && echo 'yes (withdrawn in b5)' || echo no); next boot $(short "$(ev b5 cmdline-digest)") verified, fsck exit $(ev b5 fsck-rc): $(ev b5 fsck | cut -c1-160)" \
  "staging cut 2: $K3_KILLED; next boot $(short "$(ev b6 cmdline-digest)") verified, fsck exit $(ev b6 fsck-rc): $(ev b6 fsck | cut -c1-160)" \
  "finalization cut 2: $K4_KILLED; next boot ($AFTER_K4): $K4_NEXT; fsck in fb: exit $(ev fb fsck-rc), only the tampered object reported: $(fb_fsck_ok && echo yes || echo NO)"

E10=$(ev fb read /usr/share/common-licenses/GPL-3); O10=$(ev fb read /usr/share/common-licenses/GPL-2)
ok=1; [[ "$E10" == *"Input/output error"* && "$O10" == ok ]] && fb_fsck_ok && ok=0
result tampered-object $ok "object objects/$OBJ ($WHERE) altered" "GPL-3: $E10" "GPL-2: $O10" \
  "fsck: $(echo "$FB_FSCK" | cut -c1-220)" \
  "kernel: $(grep -a 'fs-verity\|FILE CORRUPTED' "$W/fb.txt" | head -1 | cut -c1-200)"

# ---- ti, ri: the image file altered; then replaced, with the first-boot marker planted.
log "ti: the image file altered on the disk"
WHERE=$(flip "/composefs/objects/${V2:0:2}/${V2:2}")
boot ti "$P"; booted ti
ok=1
grep -aq 'REFUSING TO BOOT' "$W/ti.txt" && ! grep -aq 'CFSTEST uptime' "$W/ti.txt" && ok=0
result tampered-image $ok "image objects/${V2:0:2}/${V2:2} ($WHERE) altered" \
  "console: $(grep -a -A3 'REFUSING TO BOOT' "$W/ti.txt" | tr -s ' \n' ' ' | cut -c1-400)" \
  "guest userspace reached: $(grep -ac 'CFSTEST uptime' "$W/ti.txt") times (must be 0)"

log "ri: the image replaced by other bytes, and the first-boot marker planted"
# An attacker with the disk swaps in another image (v3's, a valid composefs image taken from
# the same disk) and asks for verity to be (re)built: the kernel then measures the swapped
# file, which cannot equal the digest on the command line.
IMGOBJ=/composefs/objects/${V2:0:2}/${V2:2}
rm -f "$W/other.img"
debugfs -R "dump /composefs/objects/${V3:0:2}/${V3:2} $W/other.img" "$ROOTFS" >/dev/null 2>&1
[ -s "$W/other.img" ]
: > "$W/empty"
debugfs -w -R "rm $IMGOBJ" "$ROOTFS" >/dev/null 2>&1
debugfs -w -f - "$ROOTFS" >/dev/null 2>&1 <<DEBUGFS
write $W/other.img $IMGOBJ
write $W/empty /state/enable-verity-on-boot
DEBUGFS
boot ri "$P"; booted ri
ok=1
grep -aq 'REFUSING TO BOOT.*does not match the kernel command line' "$W/ri.txt" \
  && grep -aq "expected digest: $V2" "$W/ri.txt" && ! grep -aq 'CFSTEST uptime' "$W/ri.txt" && ok=0
result replaced-image $ok "console: $(grep -a -A2 'REFUSING TO BOOT' "$W/ri.txt" | tr -s ' \n' ' ' | cut -c1-400)" \
  "guest userspace reached: $(grep -ac 'CFSTEST uptime' "$W/ri.txt") times (must be 0)"
