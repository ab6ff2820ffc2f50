//! Building composefs images from a source: the operations behind `create-image` and
//! `compute-id`. A source is a composefs-dump(5) file or a directory; the tree it yields is
//! written with the mkcomposefs-compatible EROFS writer and, optionally, stored in a
//! repository or a `--digest-store` directory together with the file contents.
//!
//! With [`BuildOptions::canonical`] set (`--oci`), the tree gets the canonicalization `oci
//! pull` applies to merged layers (`docs/oci-conventions.md`), so an image unpacked to a
//! directory (or `/` inside a container build) gives the digest its pull gives.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::dumpfile::{self, ParseMode};
use crate::erofs::writer::{self, WriteOptions};
use crate::fsverity::{self, Algorithm, Digest};
use crate::oci::merge::{self, CanonicalOptions};
use crate::repo::Repository;
use crate::tree::Tree;
use crate::tree::from_dir::{self, ContentSink, ScanOptions, ScanReport, XattrFilter};

/// Where a tree comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A composefs-dump(5) file; `-` reads standard input.
    Dump(PathBuf),
    /// A directory on disk.
    Directory(PathBuf),
}

/// How to turn a source into an image.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// EROFS format versions.
    pub write: WriteOptions,
    /// Directory scanning (ignored for dumps, except the algorithm).
    pub scan: ScanOptions,
    /// Dump parsing strictness.
    pub parse: ParseMode,
    /// Canonicalize the tree as `oci pull` does its merged layers.
    pub canonical: Option<CanonicalOptions>,
}

impl BuildOptions {
    /// What reproduces `oci pull`'s digest from the image's root filesystem on disk: every
    /// file type and xattr read as the layers carry them (the canonicalization then filters),
    /// mtimes kept, hard links folded into one inode (as tar hard links are), the default
    /// EROFS versions pull writes, then `canonical`.
    pub fn oci(canonical: CanonicalOptions, algorithm: Algorithm, threads: usize) -> BuildOptions {
        BuildOptions {
            write: WriteOptions::default(),
            scan: ScanOptions {
                use_epoch: false,
                xattrs: XattrFilter::All,
                skip_devices: false,
                hardlinks: true,
                // Removed by the canonicalization anyway; skipping them avoids a warning.
                skip_sockets: true,
                algorithm,
                threads,
            },
            parse: ParseMode::Lenient,
            canonical: Some(canonical),
        }
    }
}

/// A loaded source: the tree, and for directories what the scan found.
#[derive(Debug)]
pub struct Loaded {
    /// The filesystem tree.
    pub tree: Tree,
    /// Scan statistics (directories only).
    pub report: Option<ScanReport>,
}

/// Reads `source` into a tree (canonicalized when [`BuildOptions::canonical`] says so).
/// Directory contents are offered to `sink` as they are hashed.
pub fn load(
    source: &Source,
    opts: &BuildOptions,
    sink: Option<&dyn ContentSink>,
) -> Result<Loaded> {
    let mut loaded = load_raw(source, opts, sink)?;
    if let Some(canonical) = &opts.canonical {
        loaded.tree = merge::canonicalize(&loaded.tree, canonical);
    }
    Ok(loaded)
}

fn load_raw(
    source: &Source,
    opts: &BuildOptions,
    sink: Option<&dyn ContentSink>,
) -> Result<Loaded> {
    match source {
        Source::Dump(path) => {
            let tree = if path == Path::new("-") {
                dumpfile::parse_reader(BufReader::new(std::io::stdin().lock()), opts.parse)
                    .context("reading dump from standard input")?
            } else {
                let file =
                    File::open(path).with_context(|| format!("opening dump {}", path.display()))?;
                dumpfile::parse_reader(BufReader::with_capacity(1 << 20, file), opts.parse)
                    .with_context(|| format!("reading dump {}", path.display()))?
            };
            Ok(Loaded { tree, report: None })
        }
        Source::Directory(path) => {
            let (tree, report) = from_dir::read_dir(path, &opts.scan, sink)?;
            Ok(Loaded {
                tree,
                report: Some(report),
            })
        }
    }
}

/// The fs-verity digest of the image `tree` would give, computed while streaming the image
/// bytes (nothing written anywhere).
pub fn compute_id(tree: &Tree, opts: &WriteOptions, algorithm: Algorithm) -> Result<Digest> {
    Ok(writer::compute_digest(tree, opts, algorithm)?)
}

/// Image bytes and their fs-verity digest.
pub fn build_image(
    tree: &Tree,
    opts: &WriteOptions,
    algorithm: Algorithm,
) -> Result<(Vec<u8>, Digest)> {
    let bytes = writer::image_bytes(tree, opts)?;
    let digest = fsverity::digest_bytes(algorithm, &bytes);
    Ok((bytes, digest))
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename),
/// so a reader never sees a partial image; `-` writes to standard output.
pub fn write_image_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        return Ok(out.flush()?);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cfsctl-image-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing image {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming the new image to {}", path.display()))?;
    Ok(())
}

/// External objects the tree names that `repo` does not hold (e.g. an image made from a dump
/// whose contents were never imported).
pub fn missing_objects(tree: &Tree, repo: &Repository) -> Vec<Digest> {
    let mut missing: Vec<Digest> = tree
        .inodes
        .iter()
        .filter_map(|i| i.digest)
        .filter(|d| !repo.has_object(d))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// Reads a whole image file (images are metadata only: megabytes, not gigabytes).
pub fn read_image_file(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading image {}", path.display()))?;
    Ok(bytes)
}

impl ContentSink for Repository {
    fn contains(&self, digest: &Digest) -> bool {
        self.has_object(digest)
    }

    fn store(&self, file: &File, _size: u64, digest: &Digest) -> Result<()> {
        self.import_file(file, Some(*digest)).map(|_| ())
    }
}
