#!/bin/bash
# Builds the seed corpora of the fuzz targets into fuzz/corpus/<target>/ from the fixtures and
# small inputs made here (nothing binary is committed). Needs a built cfsctl (release) to turn
# the fixture dumps into images; the layer seeds need tar, gzip and zstd.
set -euo pipefail
cd "$(dirname "$0")"
fixtures=${FIXTURES:-../../shared/fixtures}
cfsctl=${CFSCTL:-../target/release/cfsctl}
c=corpus
mkdir -p $c/dump_parse $c/erofs_read $c/layer_import $c/oci_json $c/cmdline $c/setup_conf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Dumps: every fixture (gzipped ones unpacked) up to 256 KiB, plus the images they give.
for f in "$fixtures"/composefs-dumps/*.dump "$fixtures"/composefs-dumps/*.dump.gz; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .gz)
    case $f in *.gz) gzip -dc "$f" >"$tmp/$name" ;; *) cp "$f" "$tmp/$name" ;; esac
    [ "$(stat -c %s "$tmp/$name")" -le 262144 ] || continue
    cp "$tmp/$name" "$c/dump_parse/$name"
    if [ -x "$cfsctl" ]; then
        for v in 0 1; do
            "$cfsctl" create-image --from-dump --min-version $v "$tmp/$name" \
                "$c/erofs_read/$name.v$v.cfs" 2>/dev/null || rm -f "$c/erofs_read/$name.v$v.cfs"
        done
    fi
done

# Layers: a small tree with every entry kind, as tar / gzip / zstd, the first byte choosing.
root=$tmp/layer
mkdir -p "$root/usr/bin" "$root/etc/opq" "$root/deep/a/b/c"
echo hello >"$root/etc/hello"
head -c 9000 /dev/urandom >"$root/usr/bin/big"
ln "$root/etc/hello" "$root/etc/hello-again"
ln -s ../etc/hello "$root/usr/bin/link"
mkfifo "$root/etc/fifo"
: >"$root/etc/.wh.gone"
: >"$root/etc/opq/.wh..wh..opq"
tar --format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f -C "$root" -cf "$tmp/l.tar" .
tar --format=gnu -C "$root" -cf "$tmp/g.tar" .
for t in l g; do
    { printf '\0'; cat "$tmp/$t.tar"; } >"$c/layer_import/$t.tar"
    { printf '\1'; gzip -c "$tmp/$t.tar"; } >"$c/layer_import/$t.tar.gz"
    { printf '\2'; zstd -q -c "$tmp/$t.tar"; } >"$c/layer_import/$t.tar.zst"
done

# OCI JSON: a manifest, an index, a config and a record, the first byte choosing.
digest=sha256:$(printf '%064d' 1)
{ printf '\0'; cat <<J; } >"$c/oci_json/manifest"
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$digest","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$digest","size":3,"annotations":{"containers.composefs.layer.fsverity":"sha256:$(printf '%064d' 2)"}}]}
J
{ printf '\1'; cat <<J; } >"$c/oci_json/index"
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$digest","size":5,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"v1"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$digest","size":5,"platform":{"architecture":"arm64","os":"linux"}}]}
J
{ printf '\2'; cat <<J; } >"$c/oci_json/config"
{"architecture":"amd64","os":"linux","config":{"Labels":{"containers.composefs.fsverity":"sha256:$(printf '%064d' 3)"},"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["$digest"]},"history":[]}
J
{ printf '\3'; cat <<J; } >"$c/oci_json/record"
{"reference":"oci:/x:v1","manifest_digest":"$digest","config_digest":"$digest","manifest_object":"$(printf '%064d' 4)","config_object":"$(printf '%064d' 5)","image":"$(printf '%064d' 6)","sealed":null,"layers":[{"digest":"$digest","diff_id":"$digest","media_type":"application/vnd.oci.image.layer.v1.tar","size":1,"layer_image":"$(printf '%064d' 7)"}]}
J

# Kernel command lines and setup-root.conf texts.
hex=$(printf 'ab%.0s' $(seq 32))
printf 'BOOT_IMAGE=/vmlinuz root=UUID=1 rw composefs=%s quiet' "$hex" >$c/cmdline/plain
printf 'composefs=?%s "quoted arg" composefs.digest=v1-sha256-12:%s' "$hex" "$hex" >$c/cmdline/both
printf 'composefs.digest=v1-sha512-12:%s%s' "$hex" "$hex" >$c/cmdline/sha512
printf 'repo = composefs\nstate = state # the state\netc = overlay\nvar = bind\n' >$c/setup_conf/full
printf '# defaults\n\netc=none\nvar=none\n' >$c/setup_conf/none
for t in $c/*; do echo "$(basename "$t"): $(ls "$t" | wc -l) seeds"; done
