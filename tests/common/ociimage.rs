//! OCI images for tests, built from real Debian packages: each layer is the filesystem tar of a
//! .deb (`dpkg-deb --fsys-tarfile`), compressed as asked, written as an OCI image layout.
//! Also: unpacking an image into a directory honouring whiteouts (the reference for the
//! "tar path == directory path" digest test).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

/// Layer blob compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// An uncompressed layer tar and how to publish it.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The tar.
    pub tar: Vec<u8>,
    /// Blob compression.
    pub compression: Compression,
    /// Descriptor annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Layer {
    /// A layer with no annotations.
    pub fn new(tar: Vec<u8>, compression: Compression) -> Self {
        Layer {
            tar,
            compression,
            annotations: BTreeMap::new(),
        }
    }
}

/// `sha256:<hex>`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Downloads (once, cached under the cargo target dir) the named .debs and returns the
/// filesystem tar of each; `None` (skip) when apt cannot download.
pub fn deb_tars(packages: &[&str]) -> Option<Vec<Vec<u8>>> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debs");
    std::fs::create_dir_all(&cache).unwrap();
    let mut out = Vec::new();
    for pkg in packages {
        let find = |dir: &Path| {
            std::fs::read_dir(dir).unwrap().find_map(|e| {
                let p = e.unwrap().path();
                let n = p.file_name()?.to_str()?.to_string();
                (n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb")).then_some(p)
            })
        };
        let deb = match find(&cache) {
            Some(p) => p,
            None => {
                // Tests run concurrently (threads and test binaries): download into a private
                // directory and rename into the cache, so nobody reads a half-written .deb.
                let tmp = tempfile::tempdir_in(&cache).unwrap();
                let ok = Command::new("apt-get")
                    .args(["download", "-qq", "-o", "APT::Sandbox::User=root", pkg])
                    .current_dir(tmp.path())
                    .status()
                    .is_ok_and(|s| s.success());
                match (ok, find(tmp.path())) {
                    (true, Some(p)) => {
                        let dest = cache.join(p.file_name().unwrap());
                        std::fs::rename(&p, &dest).unwrap();
                        dest
                    }
                    _ => return super::skip_or_fail(&format!("apt-get download {pkg} failed")),
                }
            }
        };
        let tar = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .output()
            .expect("dpkg-deb");
        assert!(
            tar.status.success(),
            "dpkg-deb --fsys-tarfile {}",
            deb.display()
        );
        out.push(tar.stdout);
    }
    Some(out)
}

/// A tar that deletes and replaces files of the `hello` and `bash` packages: a whiteout
/// (`usr/share/doc/hello/.wh.copyright`), an opaque directory (`usr/share/doc/bash/` emptied
/// then given one new file), a replaced binary and a new hardlink.
pub fn whiteout_tar(version: u32) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("./usr/", tar::EntryType::Directory, b"", 0o755);
    add("./usr/share/", tar::EntryType::Directory, b"", 0o755);
    add("./usr/share/doc/", tar::EntryType::Directory, b"", 0o755);
    add(
        "./usr/share/doc/hello/.wh.copyright",
        tar::EntryType::Regular,
        b"",
        0o644,
    );
    add(
        "./usr/share/doc/bash/",
        tar::EntryType::Directory,
        b"",
        0o755,
    );
    add(
        "./usr/share/doc/bash/.wh..wh..opq",
        tar::EntryType::Regular,
        b"",
        0o644,
    );
    add(
        "./usr/share/doc/bash/README.replaced",
        tar::EntryType::Regular,
        format!("bash docs were replaced (v{version})\n")
            .repeat(40)
            .as_bytes(),
        0o644,
    );
    add("./usr/bin/", tar::EntryType::Directory, b"", 0o755);
    add(
        "./usr/bin/hello",
        tar::EntryType::Regular,
        format!("#!/bin/sh\necho replaced hello v{version}\n").as_bytes(),
        0o755,
    );
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_mode(0o755);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    b.append_link(&mut h, "./usr/bin/hello-again", "./usr/bin/hello")
        .unwrap();
    b.into_inner().unwrap()
}

/// What [`write_layout`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// Manifest digest.
    pub manifest: String,
    /// Config digest.
    pub config: String,
    /// Per layer: (blob digest, blob size, diff_id).
    pub layers: Vec<(String, u64, String)>,
}

fn compress(data: &[u8], c: Compression) -> (Vec<u8>, &'static str) {
    match c {
        Compression::None => (data.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            (
                e.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Compression::Zstd => (
            zstd::encode_all(data, 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    }
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    let p = dir.join("blobs/sha256").join(&d["sha256:".len()..]);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
    d
}

/// Writes an image as an OCI layout at `dir` (adding to its index if it exists) under `tag`.
pub fn write_layout(
    dir: &Path,
    tag: &str,
    layers: &[Layer],
    labels: &BTreeMap<String, String>,
) -> Written {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut written = Vec::new();
    for l in layers {
        let (blob, mt) = compress(&l.tar, l.compression);
        let digest = write_blob(dir, &blob);
        let diff_id = sha256(&l.tar);
        let mut desc = serde_json::json!({"mediaType": mt, "digest": digest, "size": blob.len()});
        if !l.annotations.is_empty() {
            desc["annotations"] = serde_json::to_value(&l.annotations).unwrap();
        }
        descs.push(desc);
        written.push((digest, blob.len() as u64, diff_id.clone()));
        diff_ids.push(diff_id);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": labels, "Cmd": ["/usr/bin/hello"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    }))
    .unwrap();
    let config_digest = write_blob(dir, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = write_blob(dir, &manifest);
    add_to_index(dir, tag, &manifest_digest, manifest.len());
    Written {
        manifest: manifest_digest,
        config: config_digest,
        layers: written,
    }
}

fn add_to_index(dir: &Path, tag: &str, digest: &str, size: usize) {
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({"schemaVersion": 2, "manifests": []}));
    let manifests = index["manifests"].as_array_mut().unwrap();
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
    manifests.push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    std::fs::write(index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Reads a blob of a layout.
pub fn read_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
}

/// Replaces the manifest of `tag` by `f(manifest JSON, config JSON)` (both edited in place),
/// writing new blobs as needed: for tampering tests.
pub fn edit_image(
    dir: &Path,
    tag: &str,
    f: impl FnOnce(&mut serde_json::Value, &mut serde_json::Value),
) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()
        .clone();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&read_blob(dir, entry["digest"].as_str().unwrap())).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&read_blob(
        dir,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    f(&mut manifest, &mut config);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = write_blob(dir, &config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let d = write_blob(dir, &manifest_bytes);
    add_to_index(dir, tag, &d, manifest_bytes.len());
}

/// Unpacks layer tars into `dest` as a container runtime would: per layer, whiteouts first
/// (`.wh.NAME` removes NAME, `.wh..wh..opq` empties its directory of lower-layer content),
/// then the entries; directory mtimes are set last (creating files changes them).
pub fn unpack(tars: &[Vec<u8>], dest: &Path) {
    let mut dir_mtimes: BTreeMap<PathBuf, u64> = BTreeMap::new();
    for tar_bytes in tars {
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().into_owned();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let parent = dest.join(path.parent().unwrap());
            if name == ".wh..wh..opq" {
                if let Ok(rd) = std::fs::read_dir(&parent) {
                    for c in rd {
                        let c = c.unwrap().path();
                        if c.is_dir() && !c.is_symlink() {
                            std::fs::remove_dir_all(&c).unwrap();
                        } else {
                            std::fs::remove_file(&c).unwrap();
                        }
                    }
                }
            } else if let Some(victim) = name.strip_prefix(".wh.") {
                let v = parent.join(victim);
                if v.is_dir() && !v.is_symlink() {
                    std::fs::remove_dir_all(&v).unwrap();
                } else {
                    let _ = std::fs::remove_file(&v);
                }
            }
        }
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        ar.set_preserve_permissions(true);
        ar.set_preserve_ownerships(true);
        ar.set_preserve_mtime(true);
        ar.set_unpack_xattrs(true);
        ar.set_overwrite(true);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().into_owned();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(".wh.") {
                continue;
            }
            if e.header().entry_type().is_dir() {
                dir_mtimes.insert(path.clone(), e.header().mtime().unwrap());
            } else {
                // A non-directory replaces whatever was there (even a directory).
                let target = dest.join(&path);
                if target.is_dir() && !target.is_symlink() {
                    std::fs::remove_dir_all(&target).unwrap();
                }
            }
            e.unpack_in(dest).unwrap();
        }
    }
    for (path, mtime) in dir_mtimes {
        let p = dest.join(path);
        if p.is_dir() {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            let f = std::fs::File::open(&p).unwrap();
            f.set_modified(t).unwrap();
        }
    }
}
