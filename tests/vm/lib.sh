# Functions of tests/vm/run: booting the test disk under qemu (TCG, OVMF + systemd-boot), with
# a plan for the guest and an optional power cut, and reading the guest's evidence.
# Sourced; expects W, DISK, REGPORT, log().
RELAY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/guestfwd-relay

# boot NAME PLANFILE [KILL_PATTERN KILL_DELAY]: boots the disk once; console in $W/NAME.txt.
# The guest runs PLANFILE (handed over through fw_cfg) after its evidence. With a pattern,
# qemu is killed (SIGKILL: a power cut) KILL_DELAY seconds after the console first shows it;
# KILLED says whether that happened. BOOT_SECS: wall time.
boot() {
  local name=$1 plan=$2 pattern=${3:-} delay=${4:-0} t try pid
  t=$(date +%s.%N); KILLED=no
  for try in 1 2; do
    : > "$W/$name.log"
    # -cpu Nehalem: under TCG 5-10% faster than max (no AVX2 to emulate, no 5-level paging).
    qemu-system-x86_64 -accel tcg,thread=multi -cpu "${VM_CPU:-Nehalem}" -m 1536 -smp 2 -nographic \
      -no-reboot -bios /usr/share/ovmf/OVMF.fd \
      -netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:5000-cmd:$RELAY $REGPORT" \
      -device virtio-net-pci,netdev=n0 \
      -fw_cfg "name=opt/cfs/plan,file=$plan" \
      -drive file="$DISK",format=raw,if=virtio,cache=unsafe </dev/null > "$W/$name.log" 2>&1 &
    pid=$!; disown "$pid"
    watch_qemu "$pid" "$W/$name.log" "$pattern" "$delay"
    # A kernel that panics before userspace (TCG multi-threaded code patching occasionally
    # hits an int3 Oops in early boot, nothing our code reaches) is booted once more;
    # panic=-1 in 90-vmtest.toml makes such a panic end qemu at once.
    if grep -aq 'Kernel panic' "$W/$name.log" && ! grep -aq 'cfs-setup-root' "$W/$name.log"; then
      cp "$W/$name.log" "$W/$name.panic$try.log"; log "$name: guest kernel panicked before the initramfs ran (try $try)"
    else break; fi
  done
  BOOT_SECS=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t}")
  tr -d '\r' < "$W/$name.log" > "$W/$name.txt"
}

# watch_qemu PID LOG PATTERN DELAY: waits for qemu (at most VM_BOOT_TIMEOUT seconds); kills it
# DELAY seconds after PATTERN appears in LOG.
watch_qemu() {
  local pid=$1 logf=$2 pattern=$3 delay=$4 deadline=$(( $(date +%s) + ${VM_BOOT_TIMEOUT:-900} ))
  while kill -0 "$pid" 2>/dev/null; do
    if [ -n "$pattern" ] && [ "$KILLED" = no ] && tr -d '\r' < "$logf" | grep -aqE "$pattern"; then
      sleep "$delay"
      if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"; KILLED="yes, ${delay}s after '$pattern'"
      else
        KILLED="no (qemu ended within ${delay}s of '$pattern')"
      fi
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then kill -KILL "$pid"; log "qemu timed out"; fi
    sleep 0.2
  done
}

# blobs_fetched FROM_LINE: the blob digests GET from the registry since line FROM_LINE of its
# log (the access log of docker-registry), one per line.
blobs_fetched() {
  tail -n "+$1" "$W/registry.log" | { grep -o 'GET /v2/[^ ]*/blobs/sha256:[0-9a-f]*' || true; } \
    | sed 's|.*/blobs/||' | sort -u
}

# ev NAME KEY: the value of the last evidence line "CFSTEST KEY ..." of boot NAME.
ev() {
  local f=$1 l; shift; local k="$*"
  l=$({ grep -aF "CFSTEST $k " "$W/$f.txt" || true; } | tail -1)
  l=${l#*"CFSTEST $k "}; echo "$l"
}

# dep NAME KEY ID FIELD: FIELD of deployment ID (a prefix) in the status JSON evidence KEY.
dep() {
  ev "$1" "$2" | python3 -c '
import json, sys
try:
    d = json.loads(sys.stdin.read())
except ValueError:
    print("unparsable"); sys.exit()
for x in d.get("deployments", []):
    if x["id"].startswith(sys.argv[1]):
        v = x.get(sys.argv[2]); print(json.dumps(v) if not isinstance(v, str) else v); break
else:
    print("absent")' "$3" "$4"
}

# hostfact NAME KEY FIELD: a host fact of the status JSON evidence KEY.
hostfact() {
  ev "$1" "$2" | python3 -c '
import json, sys
try:
    v = json.loads(sys.stdin.read())["host"].get(sys.argv[1])
except ValueError:
    v = "unparsable"
print(json.dumps(v) if not isinstance(v, str) else v)' "$3"
}

FAILS=0
# result CASE OK(0/1) EVIDENCE...: prints the verdict and the evidence.
result() {
  local c=$1 ok=$2; shift 2
  if [ "$ok" = 0 ]; then echo "CASE $c: PASS"; else echo "CASE $c: FAIL"; FAILS=$((FAILS+1)); fi
  for e in "$@"; do echo "    $e"; done
}

# verified NAME DIGEST: 0 when boot NAME mounted DIGEST as / with verity=require and measured it.
verified() {
  local r; r=$(ev "$1" root-mount)
  [[ "$r" == *overlay* && "$r" == *verity=require* && "$r" == *"composefs:$2"* \
     && "$(ev "$1" cmdline-digest)" == "$2" && "$(ev "$1" measured-digest)" == "$2" ]]
}

# plan FILE NAME: starts a guest plan (digests known to the guest as V1 V2 V3); the body is
# appended by the caller.
plan() {
  printf '# %s\nV1=%s V2=%s V3=%s\n' "$2" "$V1" "$V2" "${V3:-}" > "$1"
}
