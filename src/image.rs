//! Building composefs images from a source: the operations behind `create-image` and
//! `compute-id`. A source is a composefs-dump(5) file or a directory; the tree it yields is
//! written with the mkcomposefs-compatible EROFS writer and, optionally, stored in a
//! repository or a `--digest-store` directory together with the file contents.
//!
//! With [`BuildOptions::canonical`] set (`--oci`), the tree gets the canonicalization `oci
//! pull` applies to merged layers (`docs/oci-conventions.md`), so an image unpacked to a
//! directory (or `/` inside a container build) gives the digest its pull gives.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::dumpfile::{self, ParseMode};
use crate::erofs::writer::{self, WriteOptions};
use crate::fsverity::{Algorithm, Digest, FsVerityHasher, HashingWriter};
use crate::repo::{Imported, Repository, StatCache};
use crate::scan::{self, ContentSink, ScanOptions, ScanReport, Stored, XattrFilter};
use crate::tree::transform::{CanonicalOptions, canonicalize_in_place};
use crate::tree::{FileKey, Tree};

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
    /// mtimes kept, hard links folded into one inode (as tar hard links are), the EROFS
    /// format version pull writes (v1, [`crate::oci::erofs_options`]), then `canonical`.
    pub fn oci(canonical: CanonicalOptions, algorithm: Algorithm, threads: usize) -> BuildOptions {
        BuildOptions {
            write: crate::oci::erofs_options(),
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
        canonicalize_in_place(&mut loaded.tree, canonical);
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
            let (tree, report) = scan::read_dir(path, &opts.scan, sink)?;
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

/// Writes the image of `tree` to `path` and returns its fs-verity digest, computed while
/// the bytes are written. The file appears atomically (temporary file in the same directory,
/// then rename), so a reader never sees a partial image; `-` writes to standard output.
pub fn write_image_file(
    path: &Path,
    tree: &Tree,
    opts: &WriteOptions,
    algorithm: Algorithm,
) -> Result<Digest> {
    use std::io::Write;
    let stream = |out: &mut dyn Write| -> Result<Digest> {
        // The writer buffers its output itself.
        let mut out = HashingWriter {
            inner: out,
            hasher: FsVerityHasher::new(algorithm),
        };
        writer::write_image(tree, opts, &mut out)?;
        out.inner.flush()?;
        Ok(out.hasher.finish())
    };
    if path == Path::new("-") {
        return stream(&mut std::io::stdout().lock())
            .context("writing the image to standard output");
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // 0666 less the umask, as mkcomposefs's fopen() creates it (0644 under the usual 022);
    // a temporary file would otherwise stay 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".cfsctl-image-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let digest = stream(tmp.as_file_mut())
        .and_then(|d| Ok(tmp.as_file().sync_all().map(|()| d)?))
        .with_context(|| format!("writing image {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming the new image to {}", path.display()))?;
    Ok(digest)
}

/// Object paths the tree's external files name that `repo` does not hold (e.g. an image made
/// from a dump whose contents were never imported): by digest, and by payload, which is the
/// path overlayfs opens in the object store (`XX/rest-of-hex`); a payload that is no object
/// path at all can never be there.
pub fn missing_objects(tree: &Tree, repo: &Repository) -> Vec<String> {
    let mut missing = Vec::new();
    let regular = |i: &&crate::tree::Inode| i.file_type() == Some(crate::tree::FileType::Regular);
    for inode in tree.inodes.iter().filter(regular) {
        if let Some(d) = &inode.digest
            && !repo.has_object(d)
        {
            missing.push(d.object_path());
        }
        let Some(payload) = inode.payload.as_deref() else {
            continue;
        };
        let path = String::from_utf8_lossy(payload);
        let path = path.trim_start_matches('/');
        match object_of_path(path) {
            Some(d) if Some(&d) == inode.digest.as_ref() => {}
            Some(d) if repo.has_object(&d) => {}
            _ => missing.push(path.to_string()),
        }
    }
    missing.sort();
    missing.dedup();
    missing
}

/// The digest an object path (`XX/rest-of-hex`) names.
fn object_of_path(path: &str) -> Option<Digest> {
    let (dir, rest) = path.split_once('/')?;
    if dir.len() != 2 || rest.contains('/') {
        return None;
    }
    Digest::from_hex(&format!("{dir}{rest}")).ok()
}

/// Reads a whole image file (images are metadata only: megabytes, not gigabytes); a file
/// over [`MAX_IMAGE`](crate::bounded::MAX_IMAGE) bytes, or not a regular file, is refused.
pub fn read_image_file(path: &Path) -> Result<Vec<u8>> {
    crate::bounded::read_file(path, crate::bounded::MAX_IMAGE)
        .with_context(|| format!("reading image {}", path.display()))
}

/// A repository as the [`ContentSink`] of a directory scan: new files are read once (hashed
/// while copied into the store), and with a [`StatCache`] unchanged files are not read at all.
pub struct RepoSink<'r> {
    repo: &'r Repository,
    /// `None`: `--no-cache`, neither read nor written.
    cache: Option<StatCache>,
    scan_start: SystemTime,
    seen: Mutex<Vec<(FileKey, Digest)>>,
    /// Files found already stored / newly stored by [`ContentSink::import`], to choose how
    /// the next one is imported.
    present: AtomicU64,
    stored: AtomicU64,
}

impl std::fmt::Debug for RepoSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoSink")
            .field("repo", &self.repo.path())
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl<'r> RepoSink<'r> {
    /// A sink storing into `repo`; `use_cache` reads and, on [`save_cache`](Self::save_cache),
    /// rewrites its stat cache.
    pub fn new(repo: &'r Repository, use_cache: bool) -> Self {
        RepoSink {
            repo,
            cache: use_cache.then(|| StatCache::load(repo)),
            scan_start: SystemTime::now(),
            seen: Mutex::new(Vec::new()),
            present: AtomicU64::new(0),
            stored: AtomicU64::new(0),
        }
    }

    /// Replaces the repository's stat cache with the files of this scan. Call it only once
    /// the scan succeeded.
    pub fn save_cache(self) -> Result<()> {
        if self.cache.is_none() {
            return Ok(());
        }
        drop(self.cache);
        let seen = self
            .seen
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        StatCache::save(self.repo, seen, self.scan_start)
    }
}

impl ContentSink for RepoSink<'_> {
    fn contains(&self, digest: &Digest) -> bool {
        self.repo.has_object(digest)
    }

    fn store(&self, file: &File, _size: u64, digest: &Digest) -> Result<()> {
        self.repo.import_file(file, Some(*digest)).map(|_| ())
    }

    fn import(
        &self,
        file: &File,
        size: u64,
        algorithm: Algorithm,
        buf: &mut [u8],
    ) -> Result<(Digest, Stored)> {
        // Mostly new content: copy while hashing (one read). Mostly known content: hash
        // first and skip the write.
        if self.present.load(Ordering::Relaxed) > self.stored.load(Ordering::Relaxed) {
            let digest = scan::digest_file(file, size, algorithm, buf).context("reading")?;
            if self.repo.has_object(&digest) {
                self.present.fetch_add(1, Ordering::Relaxed);
                return Ok((digest, Stored::AlreadyPresent));
            }
            self.repo.import_file(file, Some(digest))?;
            self.stored.fetch_add(1, Ordering::Relaxed);
            return Ok((digest, Stored::New));
        }
        let (digest, imported) = self.repo.import_file_once(file, size, buf)?;
        Ok(match imported {
            Imported::Stored => {
                self.stored.fetch_add(1, Ordering::Relaxed);
                (digest, Stored::New)
            }
            Imported::AlreadyPresent => {
                self.present.fetch_add(1, Ordering::Relaxed);
                (digest, Stored::AlreadyPresent)
            }
        })
    }

    fn cached_digest(&self, file: &FileKey) -> Option<Digest> {
        self.cache
            .as_ref()?
            .lookup(file)
            .filter(|d| self.repo.has_object(d))
    }

    fn remember(&self, file: &FileKey, digest: &Digest) {
        if self.cache.is_some() {
            self.seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((*file, *digest));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::fsverity::digest_bytes;

    /// Imports `dir` into `repo` with the stat cache, as if the scan had started at
    /// `scan_start`, and saves the cache.
    fn import(repo: &Repository, dir: &Path, scan_start: SystemTime) -> (Tree, ScanReport) {
        let mut sink = RepoSink::new(repo, true);
        sink.scan_start = scan_start;
        let loaded = load(
            &Source::Directory(dir.to_owned()),
            &BuildOptions::default(),
            Some(&sink),
        )
        .unwrap();
        sink.save_cache().unwrap();
        (loaded.tree, loaded.report.unwrap())
    }

    fn digest_of(tree: &Tree, path: &str) -> Digest {
        tree.inodes[tree.lookup(path.as_bytes()).unwrap()]
            .digest
            .unwrap()
    }

    #[test]
    fn stat_cache_hits_misses_and_racy_entries() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path().join("repo"), Algorithm::Sha256).unwrap();
        let src = td.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), [b'a'; 100]).unwrap();
        std::fs::write(src.join("b"), [b'b'; 200]).unwrap();
        // Files changed "long before" the scan: trusted.
        let later = SystemTime::now() + Duration::from_secs(60);

        let (_, first) = import(&repo, &src, later);
        assert_eq!((first.cached_files, first.objects_stored), (0, 2));
        let (tree, second) = import(&repo, &src, later);
        assert_eq!((second.cached_files, second.hashed_bytes), (2, 0));
        assert_eq!(
            digest_of(&tree, "a"),
            digest_bytes(Algorithm::Sha256, &[b'a'; 100])
        );

        // Same size, mtime put back: the ctime still tells.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(src.join("a"))
            .unwrap();
        let mtime = f.metadata().unwrap().modified().unwrap();
        std::io::Write::write_all(&mut &f, &[b'c'; 100]).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let (tree, third) = import(&repo, &src, later);
        assert_eq!((third.cached_files, third.objects_stored), (1, 1));
        assert_eq!(
            digest_of(&tree, "a"),
            digest_bytes(Algorithm::Sha256, &[b'c'; 100])
        );

        // An object gone from the store (gc) is read again.
        let b = digest_bytes(Algorithm::Sha256, &[b'b'; 200]);
        std::fs::remove_file(repo.object_path(&b)).unwrap();
        let (_, fourth) = import(&repo, &src, later);
        assert_eq!((fourth.cached_files, fourth.objects_stored), (1, 1));

        // Scanned right after the files changed: racy, so not cached.
        let (_, fifth) = import(&repo, &src, SystemTime::now());
        assert_eq!(fifth.cached_files, 2);
        let (_, sixth) = import(&repo, &src, SystemTime::now());
        assert_eq!(sixth.cached_files, 0);
        assert_eq!(sixth.objects_present, 2);
    }
}
