#!/bin/bash
# Benchmarks cfsctl against the machine's limits and its peers, and prints a table.
#   bench/run.sh [--quick]      (BENCH_PLACES="tmpfs" skips the disk runs)
# Inputs: (a) the cs9-x86_64-developer golden dump (64k entries) -> image;
#         (b) a real tree from Debian packages (bench/make-tree.sh, 52k entries, 1.6 GB),
#             measured on tmpfs (/dev/shm, no disk noise) and on disk ($BENCH_DISK, /var/tmp).
# Peers, when installed: C mkcomposefs 1.0.8 (scripts/install-mkcomposefs.sh) and composefs-rs
# (cargo install composefs-ctl --root /opt/composefs-rs --no-default-features --features oci).
# Every figure is measured in this run; ratios are what to compare across machines.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${BENCH_REPS:-3}
[ "${1:-}" = --quick ] && REPS=1
FIX=${CFS_FIXTURES:-$PWD/../shared/fixtures/composefs-dumps}
CACHE=${BENCH_CACHE:-/var/tmp/cfsctl-bench}
DISK=${BENCH_DISK:-/var/tmp/cfsctl-bench/disk}
SHM=/dev/shm/cfsctl-bench
MKCFS=${MKCOMPOSEFS:-/opt/composefs-c/bin/mkcomposefs}
export LD_LIBRARY_PATH=/opt/composefs-c/lib/x86_64-linux-gnu
RSCFS=${COMPOSEFS_RS:-/opt/composefs-rs/bin/cfsctl}
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
command -v openssl >/dev/null || apt-get install -y -qq openssl >/dev/null

cargo build --release -q
CFS=${CARGO_TARGET_DIR:-$PWD/target}/release/cfsctl
[ -d "$CACHE/tree" ] || bench/make-tree.sh "$CACHE/tree" >&2

rm -rf "$SHM" "$DISK"; mkdir -p "$SHM" "$DISK"
trap 'rm -rf "$SHM" "$DISK"' EXIT
cp -a "$CACHE/tree" "$SHM/tree"
zcat "$FIX/cs9-x86_64-developer.dump.gz" > "$SHM/cs9.dump"
BYTES=$(du -sb --apparent-size "$SHM/tree" | cut -f1)
FILES=$(find "$SHM/tree" | wc -l)
NCPU=$(nproc)

ROWS=()
row() { ROWS+=("$(printf '| %-34s | %-14s | %8s | %8s | %-30s |' "$@")"); }

# best-of-REPS wall seconds and the peak RSS (MB) of that run: "secs rss"
measure() {
  local best="" rss="" prep=$1; shift
  for _ in $(seq "$REPS"); do
    eval "$prep"
    # -o: the command's own stderr is discarded, time's report must not be.
    /usr/bin/time -o "$SHM/.time" -f '%e %M' "$@" >/dev/null 2>/dev/null
    local out; out=$(tail -1 "$SHM/.time")
    local t=${out% *} m=${out#* }
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; rss=$((m / 1024)); fi
  done
  echo "$best $rss"
}
ratio() { awk "BEGIN{printf \"%.2f\", $1 / $2}"; }

# --- machine limits
SHA=$(openssl speed -multi "$NCPU" -seconds 2 -bytes 16384 sha256 2>/dev/null | awk '/^sha256/{v=$NF} END{sub("k","",v); printf "%.0f", v*1000}')
SHA_GBS=$(awk "BEGIN{printf \"%.2f\", $SHA/1e9}")
row "limit: sha256 x $NCPU cores" openssl "-" "-" "$SHA_GBS GB/s"

for where in ${BENCH_PLACES:-tmpfs disk}; do
  if [ $where = tmpfs ]; then B=$SHM; else B=$DISK; cp -a "$SHM/tree" "$DISK/tree"; fi
  read -r CP _ < <(measure "rm -rf $B/cp" cp -a "$B/tree" "$B/cp"); rm -rf "$B/cp"
  row "limit: cp -a tree ($where)" cp "$CP" "-" "write floor"

  # compute-id: digest of every file + the image, nothing written
  read -r T M < <(measure : "$CFS" compute-id "$B/tree")
  row "compute-id ($where)" cfsctl "$T" "$M" "$(awk "BEGIN{printf \"%.0f%% of sha256 limit\", 100*$BYTES/$T/$SHA}")"
  if [ -x "$MKCFS" ]; then
    read -r T M < <(measure : "$MKCFS" --print-digest-only "$B/tree")
    row "compute-id ($where)" "C mkcomposefs" "$T" "$M" "$(awk "BEGIN{printf \"%.0f%% of sha256 limit\", 100*$BYTES/$T/$SHA}")"
  fi
  if [ -x "$RSCFS" ]; then
    "$RSCFS" --repo "$B/rsrepo0" init --algorithm fsverity-sha256-12 --insecure >/dev/null 2>&1 || "$RSCFS" --repo "$B/rsrepo0" init >/dev/null 2>&1 || true
    read -r T M < <(measure : "$RSCFS" --repo "$B/rsrepo0" compute-id --no-propagate-usr-to-root "$B/tree")
    row "compute-id ($where)" composefs-rs "$T" "$M" "$(awk "BEGIN{printf \"%.0f%% of sha256 limit\", 100*$BYTES/$T/$SHA}")"
  fi

  # import into an empty repository, then again into the full one
  read -r T M < <(measure "rm -rf $B/repo; $CFS init --repo $B/repo" "$CFS" create-image --repo "$B/repo" "$B/tree")
  IMP=$T
  row "import, empty repo ($where)" cfsctl "$T" "$M" "$(ratio "$T" "$CP")x cp -a"
  read -r T M < <(measure : "$CFS" create-image --repo "$B/repo" "$B/tree")
  row "re-import, full repo ($where)" cfsctl "$T" "$M" "$(ratio "$T" "$IMP")x import"
  if [ -x "$MKCFS" ]; then
    read -r T M < <(measure "rm -rf $B/cstore" "$MKCFS" --digest-store="$B/cstore" "$B/tree" "$B/c.img")
    CIMP=$T
    row "import, empty store ($where)" "C mkcomposefs" "$T" "$M" "$(ratio "$T" "$CP")x cp -a"
    read -r T M < <(measure : "$MKCFS" --digest-store="$B/cstore" "$B/tree" "$B/c.img")
    row "re-import, full store ($where)" "C mkcomposefs" "$T" "$M" "$(ratio "$T" "$CIMP")x import"
  fi
  if [ -x "$RSCFS" ]; then
    rsinit="rm -rf $B/rsrepo; $RSCFS --repo $B/rsrepo init --algorithm fsverity-sha256-12 --insecure >/dev/null 2>&1 || $RSCFS --repo $B/rsrepo init >/dev/null 2>&1 || true"
    read -r T M < <(measure "$rsinit" "$RSCFS" --repo "$B/rsrepo" create-image --no-propagate-usr-to-root "$B/tree")
    RIMP=$T
    row "import, empty repo ($where)" composefs-rs "$T" "$M" "$(ratio "$T" "$CP")x cp -a"
    read -r T M < <(measure : "$RSCFS" --repo "$B/rsrepo" create-image --no-propagate-usr-to-root "$B/tree")
    row "re-import, full repo ($where)" composefs-rs "$T" "$M" "$(ratio "$T" "$RIMP")x import"
  fi
  rm -rf "$B/repo" "$B/cstore" "$B/rsrepo" "$B/rsrepo0" "$B/c.img"
done

# --- (a) the cs9 developer dump -> image
read -r T M < <(measure : "$CFS" create-image --from-dump "$SHM/cs9.dump" "$SHM/cs9.img")
row "cs9-developer dump -> image" cfsctl "$T" "$M" "64k entries"
if [ -x "$MKCFS" ]; then
  read -r T M < <(measure : "$MKCFS" --from-file "$SHM/cs9.dump" "$SHM/cs9c.img")
  row "cs9-developer dump -> image" "C mkcomposefs" "$T" "$M" "$(cmp -s "$SHM/cs9.img" "$SHM/cs9c.img" && echo identical bytes || echo DIFFERENT)"
fi

echo
echo "tree: $FILES entries, $BYTES bytes; $NCPU cores; best of $REPS; $(uname -r); $(date -u +%F)"
echo
printf '| %-34s | %-14s | %8s | %8s | %-30s |\n' case tool "wall s" "RSS MB" "vs limit / peer"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..16})" "----------" "----------" "$(printf -- '-%.0s' {1..32})"
printf '%s\n' "${ROWS[@]}"
