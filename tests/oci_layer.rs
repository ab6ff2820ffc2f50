//! OCI layer import, merge and canonicalization over tars built in code (and one real Debian
//! package): multi-layer semantics, compression, digests, and adversarial layers.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use cfsctl::erofs::writer::{WriteOptions, compute_digest};
use cfsctl::fsverity::{Algorithm, digest_bytes};
use cfsctl::oci::error::{OciError, find};
use cfsctl::oci::layer::{
    ImportOptions, LayerError, LayerTree, Limits, import_blob, import_layer, load_layer,
    store_layer,
};
use cfsctl::oci::merge::{MergeError, merge_layers};
use cfsctl::oci::stream::{StreamError, decompress, media_type, stream_error};
use cfsctl::repo::Repository;
use cfsctl::tree::transform::{CanonicalOptions, canonicalize};
use cfsctl::tree::{FileType, Tree, mode};
use oci_spec::image::{Descriptor, MediaType};
use sha2::Digest as _;
use tar::EntryType;

/// Builds tars entry by entry, with full control over names (no path sanitizing) and PAX
/// records, as a hostile or unusual layer would have them.
#[derive(Default)]
struct Tar {
    out: Vec<u8>,
}

/// One PAX record: `"<len> key=value\n"`, the length counting itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}

impl Tar {
    fn header(path: &[u8], ty: EntryType, mode: u32, size: u64, link: &[u8]) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        let bytes = h.as_mut_bytes();
        let n = path.len().min(100);
        bytes[..n].copy_from_slice(&path[..n]);
        let l = link.len().min(100);
        bytes[157..157 + l].copy_from_slice(&link[..l]);
        h
    }

    fn pax(&mut self, records: &[(&[u8], &[u8])]) {
        if records.is_empty() {
            return;
        }
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let mut h = Self::header(
            b"PaxHeader",
            EntryType::XHeader,
            0o644,
            data.len() as u64,
            b"",
        );
        h.set_cksum();
        self.append(&h, &data);
    }

    fn append(&mut self, h: &tar::Header, data: &[u8]) {
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn entry(
        &mut self,
        path: &str,
        ty: EntryType,
        mode: u32,
        data: &[u8],
        link: &str,
        pax: &[(&[u8], &[u8])],
    ) -> &mut Self {
        self.entry_raw(path.as_bytes(), ty, mode, data, link.as_bytes(), pax)
    }

    fn entry_raw(
        &mut self,
        path: &[u8],
        ty: EntryType,
        mode: u32,
        data: &[u8],
        link: &[u8],
        pax: &[(&[u8], &[u8])],
    ) -> &mut Self {
        let mut records: Vec<(&[u8], &[u8])> = pax.to_vec();
        if path.len() > 99 {
            records.push((b"path", path));
        }
        if link.len() > 99 {
            records.push((b"linkpath", link));
        }
        self.pax(&records);
        let mut h = Self::header(path, ty, mode, data.len() as u64, link);
        h.set_cksum();
        self.append(&h, data);
        self
    }

    fn dir(&mut self, path: &str) -> &mut Self {
        self.entry(path, EntryType::Directory, 0o755, b"", "", &[])
    }

    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.entry(path, EntryType::Regular, 0o644, data, "", &[])
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(path, EntryType::Symlink, 0o777, b"", target, &[])
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.entry(path, EntryType::Link, 0o644, b"", target, &[])
    }

    fn device(&mut self, path: &str, ty: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(path.as_bytes(), ty, 0o600, 0, b"");
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.append(&h, b"");
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

fn repo() -> (tempfile::TempDir, Repository) {
    let td = tempfile::tempdir().unwrap();
    let repo = Repository::init(td.path().join("repo"), Algorithm::Sha256).unwrap();
    (td, repo)
}

fn opts(name: &str) -> ImportOptions {
    ImportOptions {
        layer: name.to_string(),
        limits: Limits::default(),
    }
}

fn import(repo: &Repository, tar: &[u8]) -> LayerTree {
    import_layer(tar, repo, &opts("test")).unwrap()
}

fn import_err(repo: &Repository, tar: &[u8]) -> anyhow::Error {
    import_layer(tar, repo, &opts("sha256:bad")).unwrap_err()
}

fn layer_error(err: &anyhow::Error) -> &LayerError {
    err.downcast_ref::<LayerError>()
        .unwrap_or_else(|| panic!("not a LayerError: {err:#}"))
}

fn inode<'t>(tree: &'t Tree, path: &str) -> &'t cfsctl::tree::Inode {
    let id = tree
        .lookup(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} missing"));
    &tree.inodes[id]
}

fn names(tree: &Tree) -> Vec<String> {
    let mut v = Vec::new();
    tree.walk(|p, _| v.push(String::from_utf8_lossy(p).into_owned()));
    v
}

/// Everything under `dir`, relative paths, for "nothing written outside" checks.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// No temporary file left in `objects/`, nothing outside the repository, `cfsctl fsck` clean.
fn assert_clean(td: &tempfile::TempDir) {
    common::assert_fsck_clean(&td.path().join("repo"));
    let all = files_under(td.path());
    assert!(
        all.iter().all(|p| p == "repo" || p.starts_with("repo/")),
        "written outside the repository: {all:?}"
    );
    assert!(
        all.iter().all(|p| !p.contains(".tmp-")),
        "temporary files left: {all:?}"
    );
}

const BIG: usize = 100_000;

fn big(seed: u8) -> Vec<u8> {
    (0..BIG)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn imports_every_entry_kind() {
    let (td, repo) = repo();
    let cap: &[u8] = &[
        1, 0, 0, 2, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let long_name = format!("usr/{}/file", "d".repeat(150));
    let mut gnu = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o640);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(3);
    h.set_mtime(5);
    h.set_entry_type(EntryType::Regular);
    gnu.append_data(&mut h, format!("gnu/{}", "g".repeat(200)), &b"gnu"[..])
        .unwrap();
    let gnu = gnu.into_inner().unwrap();
    let mut t = Tar::default();
    t.dir("./")
        .dir("usr/")
        .dir("usr/bin")
        .entry(
            "usr/bin/ping",
            EntryType::Regular,
            0o4755,
            &big(1),
            "",
            &[
                (b"SCHILY.xattr.security.capability", cap),
                (b"SCHILY.xattr.user.bin", &[0, 1, 2, 0xfe]),
                (b"SCHILY.xattr.trusted.overlay.opaque", b"y"),
                (b"mtime", b"1700000001.123456789"),
            ],
        )
        .file("usr/bin/small", b"tiny content")
        .file("usr/bin/empty", b"")
        .hardlink("usr/bin/ping2", "usr/bin/ping")
        .hardlink("./usr/bin/small2", "/usr/bin/small")
        .symlink("usr/bin/sh", "dash")
        .device("dev/null", EntryType::Char, 1, 3)
        .device("dev/sda", EntryType::Block, 8, 0)
        .entry("run/fifo", EntryType::Fifo, 0o600, b"", "", &[])
        .file(&long_name, b"long")
        .symlink("usr/longlink", &"t".repeat(300));
    let mut bytes = t.out.clone();
    bytes.extend(&gnu); // GNU long-name entry + end marker
    let layer = import(&repo, &bytes);
    let tree = &layer.tree;

    let ping = inode(tree, "/usr/bin/ping");
    assert_eq!(ping.mode, mode::S_IFREG | 0o4755);
    assert_eq!(ping.nlink, 2);
    assert_eq!(ping.size, BIG as u64);
    assert_eq!(ping.mtime.sec, 1_700_000_001);
    assert_eq!(ping.mtime.nsec, 123_456_789);
    assert_eq!(ping.xattr(b"security.capability"), Some(cap));
    assert_eq!(ping.xattr(b"user.bin"), Some(&[0u8, 1, 2, 0xfe][..]));
    assert_eq!(
        ping.xattr(b"trusted.overlay.opaque"),
        None,
        "overlay xattrs dropped"
    );
    let digest = ping.digest.unwrap();
    assert_eq!(digest, digest_bytes(Algorithm::Sha256, &big(1)));
    assert_eq!(
        std::fs::read(repo.object_path(&digest)).unwrap(),
        big(1),
        "content stored"
    );
    assert_eq!(
        tree.lookup(b"/usr/bin/ping2"),
        tree.lookup(b"/usr/bin/ping"),
        "hardlink shares the inode"
    );
    let small = inode(tree, "/usr/bin/small");
    assert_eq!(small.inline.as_deref(), Some(&b"tiny content"[..]));
    assert_eq!(small.nlink, 2);
    assert_eq!(inode(tree, "/usr/bin/empty").inline, None);
    assert_eq!(
        inode(tree, "/usr/bin/sh").payload.as_deref(),
        Some(&b"dash"[..])
    );
    let null = inode(tree, "/dev/null");
    assert_eq!(null.file_type(), Some(FileType::CharDevice));
    assert_eq!(null.rdev, rustix::fs::makedev(1, 3));
    assert_eq!(
        inode(tree, "/dev/sda").file_type(),
        Some(FileType::BlockDevice)
    );
    assert_eq!(inode(tree, "/run/fifo").file_type(), Some(FileType::Fifo));
    assert_eq!(
        inode(tree, &long_name).inline.as_deref(),
        Some(&b"long"[..])
    );
    assert_eq!(inode(tree, "/usr/longlink").size, 300);
    let g = inode(tree, &format!("/gnu/{}", "g".repeat(200)));
    assert_eq!((g.mode, g.mtime.sec), (mode::S_IFREG | 0o640, 5));
    // Implicit parents.
    let dev = inode(tree, "/dev");
    assert!(cfsctl::oci::layer::is_implicit(dev));
    assert_eq!(dev.mode, mode::S_IFDIR | 0o755);
    assert!(!cfsctl::oci::layer::is_implicit(inode(tree, "/usr")));
    assert_clean(&td);
}

#[test]
fn layer_tree_survives_store_and_load() {
    let (_td, repo) = repo();
    let mut t = Tar::default();
    t.dir("etc/")
        .file("etc/a", &big(2))
        .hardlink("etc/b", "etc/a")
        .file("etc/.wh.gone", b"")
        .dir("opq/")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/kept", b"k")
        .file("opq/.wh.redundant", b"")
        .entry(
            "x",
            EntryType::Regular,
            0o600,
            b"x",
            "",
            &[(b"SCHILY.xattr.user.v", &[0xff, 0])],
        );
    let layer = import(&repo, &t.finish());
    assert!(
        layer.tree.lookup(b"/opq/redundant").is_none(),
        "whiteouts in an opaque dir of the same layer are dropped"
    );
    let digest = store_layer(&repo, &layer).unwrap();
    assert_eq!(
        digest,
        cfsctl::oci::layer::layer_digest(&layer, Algorithm::Sha256).unwrap()
    );
    let back = load_layer(&repo, &digest).unwrap();
    assert_eq!(back, layer);
    assert_eq!(store_layer(&repo, &back).unwrap(), digest);
}

/// Layer 1: a base; layer 2: deletes and replaces; layer 3: opaque + hardlinks.
#[test]
fn merges_layers_with_whiteouts_opaque_dirs_and_replacements() {
    let (_td, repo) = repo();
    let l1 = import(
        &repo,
        &Tar::default()
            .dir("usr/")
            .dir("usr/share/")
            .file("usr/share/keep", b"keep")
            .file("usr/share/gone", b"gone")
            .dir("usr/share/doc/")
            .file("usr/share/doc/a", b"a")
            .dir("opq/")
            .file("opq/lower1", b"1")
            .dir("opq/sub/")
            .file("opq/sub/lower2", b"2")
            .file("f2d", b"file becomes dir")
            .dir("d2f/")
            .file("d2f/child", b"c")
            .dir("meta/")
            .file("meta/x", b"x")
            .file("link", &big(3))
            .hardlink("link2", "link")
            .finish(),
    );
    let l2 = import(
        &repo,
        &Tar::default()
            .file("usr/share/.wh.gone", b"")
            .file("usr/share/.wh.doc", b"")
            .file("usr/share/new", b"new")
            .dir("f2d/")
            .file("f2d/inside", b"i")
            .file("d2f", b"now a file")
            .entry("meta/", EntryType::Directory, 0o700, b"", "", &[])
            .file("meta/y", b"y")
            // Implicit parent over an existing directory: lower metadata kept.
            .file("usr/share/deep/z", b"z")
            .file(".wh.link2", b"")
            .finish(),
    );
    let l3 = import(
        &repo,
        &Tar::default()
            // Same-layer entries before and after the opaque marker both stay.
            .file("opq/before", b"b")
            .file("opq/.wh..wh..opq", b"")
            .file("opq/after", b"a")
            .file("hl", &big(4))
            .hardlink("usr/hl", "hl")
            .device("dev/zero", EntryType::Char, 1, 5)
            .finish(),
    );
    let merged = merge_layers(&[l1.clone(), l2, l3]).unwrap();
    let got = names(&merged);
    let expected = [
        "/d2f",
        "/dev",
        "/dev/zero",
        "/f2d",
        "/f2d/inside",
        "/hl",
        "/link",
        "/meta",
        "/meta/x",
        "/meta/y",
        "/opq",
        "/opq/after",
        "/opq/before",
        "/usr",
        "/usr/hl",
        "/usr/share",
        "/usr/share/deep",
        "/usr/share/deep/z",
        "/usr/share/keep",
        "/usr/share/new",
    ];
    assert_eq!(got, expected);
    assert_eq!(inode(&merged, "/meta").mode, mode::S_IFDIR | 0o700);
    assert_eq!(inode(&merged, "/usr/share").mode, mode::S_IFDIR | 0o755);
    assert_eq!(inode(&merged, "/usr/share").mtime.sec, 1_700_000_000);
    assert_eq!(
        inode(&merged, "/link").nlink,
        1,
        "one name left after the whiteout"
    );
    assert_eq!(inode(&merged, "/hl").nlink, 2);
    assert_eq!(merged.lookup(b"/hl"), merged.lookup(b"/usr/hl"));
    assert_eq!(
        inode(&merged, "/d2f").inline.as_deref(),
        Some(&b"now a file"[..])
    );
    // No markers left anywhere.
    for i in &merged.inodes {
        assert!(i.xattrs.is_empty(), "{i:?}");
        assert!(!(i.file_type() == Some(FileType::CharDevice) && i.rdev == 0));
    }
    // The image can be written and the hardlink is one inode in it.
    compute_digest(&merged, &WriteOptions::default(), Algorithm::Sha256).unwrap();

    // Re-merging from stored layers gives the same tree.
    let d1 = store_layer(&repo, &l1).unwrap();
    let again = merge_layers(&[load_layer(&repo, &d1).unwrap()]).unwrap();
    assert_eq!(again, merge_layers(&[l1]).unwrap());
}

#[test]
fn merge_refuses_entries_below_a_lower_symlink() {
    let (_td, repo) = repo();
    let l1 = import(&repo, &Tar::default().symlink("lib", "usr/lib").finish());
    let l2 = import(&repo, &Tar::default().file("lib/evil", b"x").finish());
    let err = merge_layers(&[l1.clone(), l2]).unwrap_err();
    assert!(
        matches!(&err, MergeError::ThroughNonDirectory { layer: 1, path } if path == "/lib"),
        "{err}"
    );
    // An explicit directory replaces the symlink, as extraction does.
    let l3 = import(
        &repo,
        &Tar::default().dir("lib/").file("lib/ok", b"x").finish(),
    );
    let merged = merge_layers(&[l1, l3]).unwrap();
    assert!(inode(&merged, "/lib").is_dir());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// zstd in several frames with a skippable frame, as zstd:chunked writes them.
fn zstd_frames(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(data.len() / 3 + 1) {
        out.extend(zstd::encode_all(chunk, 3).unwrap());
    }
    out.extend(0x184D_2A5Eu32.to_le_bytes());
    out.extend(8u32.to_le_bytes());
    out.extend(b"manifest");
    out
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// The pipeline a puller runs: blob digest and size -> decompress -> diff_id -> import.
fn pull_layer(
    repo: &Repository,
    blob: &[u8],
    media: &str,
    blob_digest: &str,
    diff_id: &str,
) -> anyhow::Result<LayerTree> {
    pull_layer_sized(repo, blob, blob.len() as u64, media, blob_digest, diff_id)
}

fn pull_layer_sized(
    repo: &Repository,
    blob: &[u8],
    size: u64,
    media: &str,
    blob_digest: &str,
    diff_id: &str,
) -> anyhow::Result<LayerTree> {
    let digest: oci_spec::image::Digest = blob_digest.parse().unwrap();
    let desc = Descriptor::new(MediaType::from(media), size, digest);
    import_blob(blob, &desc, &diff_id.parse().unwrap(), repo, &opts(diff_id))
}

#[test]
fn gzip_zstd_and_plain_give_the_same_layer() {
    let (td, repo) = repo();
    let tar = Tar::default()
        .dir("usr/")
        .file("usr/big", &big(5))
        .file("usr/small", b"s")
        .finish();
    let diff_id = sha256(&tar);
    let mut trees = Vec::new();
    let blobs = [
        (media_type::OCI_TAR, tar.clone()),
        (media_type::OCI_TAR_GZIP, gzip(&tar)),
        (media_type::DOCKER_TAR_GZIP, gzip(&tar)),
        (media_type::OCI_TAR_ZSTD, zstd_frames(&tar)),
    ];
    for (media, blob) in &blobs {
        trees.push(pull_layer(&repo, blob, media, &sha256(blob), &diff_id).unwrap());
    }
    assert!(trees.windows(2).all(|w| w[0] == w[1]));

    // Whatever the compression: a wrong blob digest, a wrong size and a wrong diff_id are
    // typed errors naming what was expected and what came.
    let wrong = sha256(b"wrong");
    for (media, blob) in &blobs {
        let err = pull_layer(&repo, blob, media, &wrong, &diff_id).unwrap_err();
        match find(&err) {
            Some(OciError::BlobDigestMismatch {
                what,
                expected,
                actual,
            }) => {
                assert_eq!(*what, format!("blob {wrong}"));
                assert_eq!(*expected, wrong);
                assert_eq!(*actual, sha256(blob));
            }
            other => panic!("{media}: {other:?}: {err:#}"),
        }
        let len = blob.len() as u64;
        for size in [len - 1, len + 1] {
            let err =
                pull_layer_sized(&repo, blob, size, media, &sha256(blob), &diff_id).unwrap_err();
            assert!(
                matches!(
                    find(&err),
                    Some(OciError::BlobSizeMismatch { expected, .. }) if *expected == size
                ),
                "{media} {size}: {err:#}"
            );
        }
        let err = pull_layer(&repo, blob, media, &sha256(blob), &wrong).unwrap_err();
        assert!(
            matches!(
                err.downcast_ref::<OciError>(),
                Some(OciError::BlobDigestMismatch { expected, what, .. })
                    if *expected == wrong && *what == format!("diff_id {wrong}")
            ),
            "{media}: {err:#}"
        );
    }
    assert_clean(&td);
}

#[test]
fn decompression_bomb_is_capped() {
    let (td, repo) = repo();
    let zeros = vec![0u8; 8 << 20];
    let tar = Tar::default().file("bomb", &zeros).finish();
    let blob = gzip(&tar);
    assert!(blob.len() < 100_000);
    let dec = decompress(media_type::OCI_TAR_GZIP, &blob[..]).unwrap();
    let o = ImportOptions {
        layer: "sha256:bomb".into(),
        limits: Limits {
            max_tar_bytes: 1 << 20,
            ..Limits::default()
        },
    };
    let err = import_layer(dec, &repo, &o).unwrap_err();
    assert!(
        matches!(
            stream_error(&err),
            Some(StreamError::TooLarge { what, limit }) if what.contains("sha256:bomb") && *limit == 1 << 20
        ),
        "{err:#}"
    );
    // Entry and metadata caps.
    let many = {
        let mut t = Tar::default();
        for i in 0..20 {
            t.file(&format!("f{i}"), b"");
        }
        t.finish()
    };
    let o = ImportOptions {
        layer: "sha256:many".into(),
        limits: Limits {
            max_entries: 10,
            ..Limits::default()
        },
    };
    let err = import_layer(&many[..], &repo, &o).unwrap_err();
    assert!(matches!(
        layer_error(&err),
        LayerError::LimitExceeded {
            what: "entries",
            limit: 10,
            ..
        }
    ));
    let o = ImportOptions {
        layer: "sha256:meta".into(),
        limits: Limits {
            max_metadata_bytes: 20,
            ..Limits::default()
        },
    };
    let err = import_layer(&many[..], &repo, &o).unwrap_err();
    assert!(matches!(
        layer_error(&err),
        LayerError::LimitExceeded { .. }
    ));
    // A PAX header (read whole by the parser) over its cap, with an entry after it.
    let huge = Tar::default()
        .entry(
            "p",
            EntryType::Regular,
            0o644,
            b"",
            "",
            &[(b"comment", &vec![b'c'; 2 << 20])],
        )
        .file("after", b"a")
        .finish();
    let err = import_layer(&huge[..], &repo, &opts("sha256:pax")).unwrap_err();
    assert!(
        matches!(
            layer_error(&err),
            LayerError::LimitExceeded { layer, limit, .. } if layer == "sha256:pax" && *limit == 1 << 20
        ),
        "{err:#}"
    );
    // Under the cap, PAX size overrides are followed and the import succeeds.
    let ok = Tar::default()
        .entry(
            "p",
            EntryType::Regular,
            0o644,
            &big(9),
            "",
            &[
                (b"comment", &vec![b'c'; 100_000]),
                (b"size", BIG.to_string().as_bytes()),
            ],
        )
        .file("after", b"a")
        .finish();
    // The ustar size field says 0: only the PAX record gives the size (files over 8 GiB).
    let mut ok = ok;
    let at = ok
        .chunks(512)
        .position(|b| b.starts_with(b"p\0") && b[156] == b'0')
        .unwrap()
        * 512;
    let h = &mut ok[at..at + 512];
    h[124..136].copy_from_slice(b"00000000000\0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let layer = import_layer(&ok[..], &repo, &opts("sha256:ok")).unwrap();
    assert_eq!(inode(&layer.tree, "/p").size, BIG as u64);
    assert!(layer.tree.lookup(b"/after").is_some());
    assert_clean(&td);
}

/// Asserts a `BadEntry` naming the layer and the entry, mentioning `needle`.
fn assert_bad_entry(err: &anyhow::Error, entry: &str, needle: &str) {
    match layer_error(err) {
        LayerError::BadEntry {
            layer,
            path,
            problem,
        } => {
            assert_eq!(layer, "sha256:bad");
            assert_eq!(path, entry, "{err:#}");
            assert!(problem.contains(needle), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

/// A GNU sparse entry with an empty sparse map.
fn gnu_sparse() -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h.as_mut_bytes()[0] = b's';
    h.as_gnu_mut().unwrap().realsize = *b"00000000000\0";
    h.set_cksum();
    let mut t = Tar::default();
    t.append(&h, b"");
    t.finish()
}

#[test]
fn adversarial_layers_are_refused_by_entry() {
    let (td, repo) = repo();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            Tar::default().file("../../etc/passwd", b"x").finish(),
            "../../etc/passwd",
            "leaves the root",
        ),
        (
            Tar::default().file("a/../../x", b"x").finish(),
            "a/../../x",
            "leaves the root",
        ),
        (
            Tar::default()
                .entry_raw(
                    b"x",
                    EntryType::Regular,
                    0o644,
                    b"",
                    b"",
                    &[(b"path", b"a\0b")],
                )
                .finish(),
            "a\0b",
            "NUL",
        ),
        (
            Tar::default()
                .symlink("a", "/etc")
                .file("a/passwd", b"root::0:0")
                .finish(),
            "a/passwd",
            "symlink (to '/etc')",
        ),
        (
            Tar::default().file("f", b"x").file("f/g", b"y").finish(),
            "f/g",
            "not a directory",
        ),
        (
            Tar::default()
                .file("x", b"x")
                .hardlink("h", "../../etc/shadow")
                .finish(),
            "h",
            "leaves the root",
        ),
        (
            Tar::default().hardlink("h", "missing").finish(),
            "h",
            "'missing', which is not an earlier",
        ),
        (
            Tar::default()
                .hardlink("h", "later")
                .file("later", b"l")
                .finish(),
            "h",
            "'later'",
        ),
        (
            Tar::default().dir("d/").hardlink("h", "d").finish(),
            "h",
            "non-directory",
        ),
        (
            Tar::default()
                .entry(
                    "x",
                    EntryType::Regular,
                    0o644,
                    b"",
                    "",
                    &[(b"SCHILY.xattr.user.big", &vec![b'v'; 70_000])],
                )
                .finish(),
            "x",
            "70000-byte value",
        ),
        (
            Tar::default()
                .entry(
                    "y",
                    EntryType::Regular,
                    0o644,
                    b"",
                    "",
                    &[(b"SCHILY.xattr.security.selinux", &vec![b'v'; 40_000])],
                )
                .finish(),
            "y",
            "at most 32767 per inode",
        ),
        (gnu_sparse(), "s", "sparse"),
        (
            Tar::default()
                .entry(
                    "s",
                    EntryType::Regular,
                    0o644,
                    b"",
                    "",
                    &[(b"GNU.sparse.major", b"1")],
                )
                .finish(),
            "s",
            "sparse",
        ),
        (
            Tar::default().file(".", b"root file").finish(),
            ".",
            "root must be a directory",
        ),
    ];
    for (tar, entry, needle) in cases {
        let err = import_err(&repo, &tar);
        assert_bad_entry(&err, entry, needle);
        // The message a user reads names the layer and the entry.
        let msg = format!("{err:#}");
        assert!(msg.contains("sha256:bad"), "{msg}");
    }
    // Absolute paths are taken relative to the root.
    let layer = import(&repo, &Tar::default().file("/etc/abs", b"x").finish());
    assert!(layer.tree.lookup(b"/etc/abs").is_some());
    assert_clean(&td);
}

#[test]
fn truncated_tar_is_an_error_and_leaves_no_object() {
    let (td, repo) = repo();
    let tar = Tar::default().file("big", &big(6)).finish();
    let cut = &tar[..512 + BIG / 2];
    let err = import_err(&repo, cut);
    let msg = format!("{err:#}");
    assert!(msg.contains("sha256:bad") && msg.contains("big"), "{msg}");
    assert!(!repo.has_object(&digest_bytes(Algorithm::Sha256, &big(6))));
    // Cut in the middle of a header.
    let err = import_err(&repo, &tar[..100]);
    assert!(format!("{err:#}").contains("sha256:bad"));
    assert_clean(&td);
}

#[test]
fn duplicate_entries_later_wins() {
    let (_td, repo) = repo();
    let layer = import(
        &repo,
        &Tar::default()
            .file("f", b"first")
            .file("f", b"second")
            .entry("d/", EntryType::Directory, 0o700, b"", "", &[])
            .file("d/child", b"c")
            .entry("d/", EntryType::Directory, 0o750, b"", "", &[])
            .file("x", b"file")
            .dir("x/")
            .finish(),
    );
    let t = &layer.tree;
    assert_eq!(inode(t, "/f").inline.as_deref(), Some(&b"second"[..]));
    assert_eq!(inode(t, "/d").mode, mode::S_IFDIR | 0o750);
    assert!(
        t.lookup(b"/d/child").is_some(),
        "dir over dir keeps children"
    );
    assert!(inode(t, "/x").is_dir());
}

/// Sets an mtime without following symlinks.
fn set_mtime(path: &Path, sec: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Tars `dir` the way an image build would: every entry with its metadata, hard links as
/// Link entries to the first name.
fn tar_dir(dir: &Path) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let mut seen = std::collections::HashMap::new();
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&full)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        entries.reverse();
        for name in entries {
            let r = rel.join(&name);
            let p = dir.join(&r);
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_file() && md.nlink() > 1 {
                if let Some(first) = seen.get(&md.ino()) {
                    let mut h = tar::Header::new_gnu();
                    h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
                    h.set_entry_type(EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &r, first).unwrap();
                    continue;
                }
                seen.insert(md.ino(), r.clone());
            }
            b.append_path_with_name(&p, &r).unwrap();
            if md.is_dir() {
                stack.push(r);
            }
        }
    }
    b.into_inner().unwrap()
}

/// The tar path and the directory path give the same canonical image digest.
#[test]
fn tar_and_directory_paths_agree() {
    let (td, repo) = repo();
    let src = td.path().join("src");
    let w = |p: &str, data: &[u8]| {
        let f = src.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, data).unwrap();
    };
    w("usr/bin/tool", &big(7));
    w("usr/bin/small", b"#!/bin/sh\n");
    w("usr/share/doc/empty", b"");
    w("etc/os-release", b"ID=test\n");
    w("run/lock/stale", b"leftover of a RUN --mount");
    std::fs::hard_link(src.join("usr/bin/tool"), src.join("usr/bin/tool-alias")).unwrap();
    std::fs::hard_link(src.join("usr/bin/tool"), src.join("etc/tool-link")).unwrap();
    std::os::unix::fs::symlink("usr/bin", src.join("bin")).unwrap();
    std::fs::create_dir_all(src.join("tmp")).unwrap();
    std::fs::set_permissions(
        src.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    // Whole-second mtimes: the tar crate records seconds only.
    let mut all = vec![src.clone()];
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            all.push(e.path());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64);
    }

    let tar = tar_dir(&src);
    let layer = import(&repo, &tar);
    let merged = merge_layers(&[layer]).unwrap();
    let copts = CanonicalOptions::default();
    let from_tar = canonicalize(&merged, &copts);

    let scan = cfsctl::scan::ScanOptions {
        hardlinks: true,
        ..Default::default()
    };
    let (dir_tree, _) = cfsctl::scan::read_dir(&src, &scan, None).unwrap();
    let from_dir = canonicalize(&dir_tree, &copts);

    let wo = WriteOptions::default();
    let d_tar = compute_digest(&from_tar, &wo, Algorithm::Sha256).unwrap();
    let d_dir = compute_digest(&from_dir, &wo, Algorithm::Sha256).unwrap();
    if d_tar != d_dir {
        let mut a = Vec::new();
        let mut b = Vec::new();
        cfsctl::dumpfile::print(&from_tar, &mut a).unwrap();
        cfsctl::dumpfile::print(&from_dir, &mut b).unwrap();
        panic!(
            "digests differ\n--- tar\n{}\n--- dir\n{}",
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
    }
    // The rules did something: /run emptied, root took /usr's metadata, hardlinks counted.
    assert!(from_tar.lookup(b"/run/lock").is_none());
    assert_eq!(from_tar.root().mtime, inode(&from_tar, "/usr").mtime);
    assert_eq!(inode(&from_tar, "/usr/bin/tool").nlink, 3);
}

/// A real Debian package's data.tar imported as a layer.
#[test]
fn imports_a_debian_package() {
    let work = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("apt-get")
        .args(["download", "-q", "hello"])
        .current_dir(work.path())
        .output()
        .is_ok_and(|o| o.status.success());
    let deb = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"));
    let Some(deb) = deb.filter(|_| ok) else {
        common::skip_or_fail::<()>("apt-get download hello failed (no network or apt sources)");
        return;
    };
    let out = std::process::Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(out.status.success());
    let tar = out.stdout;
    let (td, repo) = repo();
    let layer = import_layer(&tar[..], &repo, &opts(&sha256(&tar))).unwrap();
    let hello = inode(&layer.tree, "/usr/bin/hello");
    assert_eq!(hello.mode & 0o777, 0o755);
    let digest = hello.digest.unwrap();
    let mut stored = Vec::new();
    repo.open_object(&digest)
        .unwrap()
        .read_to_end(&mut stored)
        .unwrap();
    assert!(stored.starts_with(b"\x7fELF"));
    // dpkg's tar, unpacked by dpkg-deb -x, gives the same canonical image.
    let unpack_dir = tempfile::tempdir().unwrap();
    let unpacked = unpack_dir.path().join("unpacked");
    assert!(
        std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&unpacked)
            .status()
            .unwrap()
            .success()
    );
    let merged = merge_layers(&[layer]).unwrap();
    let copts = CanonicalOptions::default();
    let scan = cfsctl::scan::ScanOptions {
        hardlinks: true,
        ..Default::default()
    };
    let (dir_tree, _) = cfsctl::scan::read_dir(&unpacked, &scan, None).unwrap();
    let wo = WriteOptions::default();
    let a = compute_digest(&canonicalize(&merged, &copts), &wo, Algorithm::Sha256).unwrap();
    let b = compute_digest(&canonicalize(&dir_tree, &copts), &wo, Algorithm::Sha256).unwrap();
    assert_eq!(a, b);
    assert_clean(&td);
}
