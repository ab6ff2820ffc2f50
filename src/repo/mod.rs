//! The content-addressed repository: object store, images, refs.
//!
//! On disk (see `docs/` and ARCHITECTURE.md):
//! ```text
//! <repo>/meta.json               {"version": 1, "algorithm": "fsverity-sha256-12",
//!                                 "oci_erofs_version": 1}
//! <repo>/objects/XX/<rest>       every blob, named by its fs-verity digest
//! <repo>/images/<hex>            -> ../objects/XX/<rest>   the only things that may be mounted
//! <repo>/refs/<name...>          -> ../objects/XX/<rest>   GC roots (tags, deployments)
//! <repo>/layers/v<N>-<alg>-<hex>  -> ../objects/XX/<rest>   OCI layer index (not roots)
//! ```
//! Every access goes through directory file descriptors opened once (`*at()` calls), so a path
//! never escapes the repository and a concurrent rename of the repository cannot redirect us.
//!
//! Crash safety: an object only appears under its final name once it is complete (unnamed
//! `O_TMPFILE` + `linkat`, or a `.tmp-*` name + `renameat`); an image link or ref is published
//! (temporary symlink + `renameat`) only after `syncfs` made the objects it names durable.
//!
//! Errors are `anyhow::Error`s whose root cause is a [`RepoError`] wherever a caller may want
//! to decide on it (`err.downcast_ref::<RepoError>()`), with context naming the path/digest.
//!
//! Locking: [`Repository::open`] holds a shared `flock` on the repository directory for the
//! life of the value; garbage collection ([`Repository::gc`]) takes it exclusively with
//! [`Repository::lock_exclusive`], which waits until no other process has the repository open.

mod format;
mod fsck;
mod gc;
pub(crate) mod images;
mod layers;
mod objects;
mod statcache;
mod stream;
pub(crate) mod trust;

pub use format::OCI_EROFS_VERSION;
pub use objects::Imported;
pub use statcache::StatCache;
pub use stream::StreamObjectError;

pub use fsck::{FsckKind, FsckOptions, FsckProblem, FsckReport};
pub use gc::{
    DanglingRef, GcError, GcOptions, GcReport, OBJECT_LIST_MAGIC, format_object_list,
    parse_object_list,
};

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use crate::atomic::temp_name;

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, CWD, FlockOperation, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::fsverity::Algorithm;
use crate::fsverity::Digest;
use crate::fsverity::ioctl::{EnableError, enable_verity};

/// The `version` written to `meta.json` by this program, and the only one it reads.
pub const REPO_FORMAT_VERSION: u32 = 1;

const META_JSON: &str = "meta.json";
/// Bytes of `meta.json` read at most (it holds about 60).
const META_JSON_MAX: u64 = 64 * 1024;
const OBJECTS: &str = "objects";
const IMAGES: &str = "images";
const REFS: &str = "refs";
/// Prefix of every temporary name; never a valid object, image or ref name.
const TMP_PREFIX: &str = crate::atomic::TMP_PREFIX;

/// Errors a caller may want to act on (found as the root cause of the `anyhow::Error`s
/// returned by [`Repository`]).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// `meta.json` records a composefs EROFS format for OCI images this program does not
    /// write.
    #[error(
        "{path}: OCI images in this repository are recorded as composefs EROFS format \
         v{version}, but this cfsctl writes only v{OCI_EROFS_VERSION}"
    )]
    UnsupportedOciFormat {
        /// The repository.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// The directory has no `meta.json`.
    #[error("{0}: not a repository (no meta.json); create one with `cfsctl init`")]
    NotARepository(PathBuf),
    /// `meta.json` names a format version this program does not read.
    #[error(
        "{path}: repository format version {version} is not supported (expected {REPO_FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The repository.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// `init` on a directory that already holds a repository.
    #[error("{0}: already a repository (meta.json exists)")]
    AlreadyInitialized(PathBuf),
    /// No object with this digest.
    #[error("object {0} is not in the repository")]
    MissingObject(Digest),
    /// No image with this name.
    #[error("image '{0}' is not in the repository")]
    MissingImage(String),
    /// No ref with this name.
    #[error("ref '{0}' does not exist")]
    MissingRef(String),
    /// A ref name that could escape `refs/` or is otherwise unusable.
    #[error("invalid ref name '{name}': {reason}")]
    InvalidRefName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A digest of the wrong algorithm for this repository.
    #[error("digest {digest} is {}, but the repository uses {repo}", digest.algorithm())]
    AlgorithmMismatch {
        /// The digest given.
        digest: Digest,
        /// The repository's algorithm.
        repo: Algorithm,
    },
    /// A repository directory others can write, or owned by another user: its content
    /// cannot be trusted (`docs/repository.md`, "Trust").
    #[error(
        "{path}: untrusted repository: {reason}; check it with `cfsctl fsck`, then `chown` it to its user and `chmod go-w` it"
    )]
    Untrusted {
        /// The directory at fault (the repository or one of its top directories).
        path: PathBuf,
        /// What is wrong with its owner or mode.
        reason: String,
    },
    /// `init` on an existing directory that belongs to another user.
    #[error("{path}: cannot make a repository here: {reason}")]
    UntrustedInit {
        /// The directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// Content whose fs-verity digest differs from the one expected.
    #[error("{what}: fs-verity digest mismatch: expected {expected}, found {actual}")]
    DigestMismatch {
        /// What was checked (an image name, a source file).
        what: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
}

/// `meta.json`.
#[derive(Debug, Serialize, Deserialize)]
struct RepoMeta {
    version: u32,
    /// `fsverity-<alg>-<log2 block size>`, the spelling composefs-rs uses.
    algorithm: String,
    /// The composefs EROFS format version of images made from OCI images (`format.rs`);
    /// absent in repositories from before it was recorded (their OCI images are v0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oci_erofs_version: Option<u32>,
}

fn algorithm_to_meta(a: Algorithm) -> String {
    format!("fsverity-{}-{}", a.name(), crate::fsverity::LOG_BLOCK_SIZE)
}

fn algorithm_from_meta(s: &str) -> Option<Algorithm> {
    let rest = s.strip_prefix("fsverity-")?;
    let (alg, log_bs) = rest.rsplit_once('-')?;
    if log_bs != crate::fsverity::LOG_BLOCK_SIZE.to_string() {
        return None;
    }
    alg.parse().ok()
}

/// A repository opened for use. `Sync`: share one between importer threads by reference.
#[derive(Debug)]
pub struct Repository {
    path: PathBuf,
    /// The repository directory; carries the shared flock.
    dir: OwnedFd,
    objects: OwnedFd,
    images: OwnedFd,
    refs: OwnedFd,
    algorithm: Algorithm,
    verity_supported: bool,
    /// `meta.json`'s `oci_erofs_version`, set once when an old repository is migrated.
    oci_erofs_version: std::sync::OnceLock<u32>,
    /// Objects this handle gave a name (not those another writer stored first).
    stored: AtomicU64,
}

/// Holds the repository lock exclusively; back to shared when dropped.
#[derive(Debug)]
pub struct ExclusiveLock<'a> {
    repo: &'a Repository,
}

impl Drop for ExclusiveLock<'_> {
    fn drop(&mut self) {
        if let Err(e) = rustix::fs::flock(&self.repo.dir, FlockOperation::LockShared) {
            tracing::warn!(
                "{}: downgrading repository lock: {e}",
                self.repo.path.display()
            );
        }
    }
}

impl Repository {
    /// Creates a repository at `path` (the directory may exist, but must not hold one yet):
    /// `meta.json`, `objects/`, `images/`, `refs/`. Returns it opened.
    pub fn init(path: impl AsRef<Path>, algorithm: Algorithm) -> Result<Repository> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match rustix::fs::mkdir(path, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        let dir = open_dir(CWD, path).with_context(|| format!("opening {}", path.display()))?;
        if rustix::fs::statat(&dir, META_JSON, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(RepoError::AlreadyInitialized(path.to_owned()).into());
        }
        trust::repair_new_root(&dir).map_err(|reason| RepoError::UntrustedInit {
            path: path.to_owned(),
            reason,
        })?;
        for sub in [OBJECTS, IMAGES, REFS] {
            mkdir_exist_ok(&dir, sub)
                .with_context(|| format!("creating {}/{sub}", path.display()))?;
        }
        let meta = RepoMeta {
            version: REPO_FORMAT_VERSION,
            algorithm: algorithm_to_meta(algorithm),
            oci_erofs_version: Some(OCI_EROFS_VERSION),
        };
        let json = serde_json::to_vec_pretty(&meta).expect("serializable");
        write_file_atomic(&dir, META_JSON, &json, RenameFlags::NOREPLACE).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                anyhow::Error::new(RepoError::AlreadyInitialized(path.to_owned()))
            } else {
                anyhow::Error::new(e).context(format!("writing {}/{META_JSON}", path.display()))
            }
        })?;
        Repository::open(path)
    }

    /// Opens an existing repository, taking a shared lock on it (waits while a garbage
    /// collection holds it exclusively). A repository that others can write (or that belongs
    /// to another user) is refused with [`RepoError::Untrusted`].
    pub fn open(path: impl AsRef<Path>) -> Result<Repository> {
        let repo = Repository::open_unchecked(path.as_ref())?;
        if let Some((rel, reason)) = repo.untrusted_dirs().into_iter().next() {
            return Err(RepoError::Untrusted {
                path: repo.path.join(rel),
                reason,
            }
            .into());
        }
        Ok(repo)
    }

    /// Opens a repository even if others can write it, for `fsck` to report that (with
    /// every path still resolved beneath it). Nothing else should use it.
    pub fn open_for_fsck(path: impl AsRef<Path>) -> Result<Repository> {
        Repository::open_unchecked(path.as_ref())
    }

    /// The repository's top directories (`""` is the root) that cannot be trusted, and why.
    pub(crate) fn untrusted_dirs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let layers = match self.layers_dir() {
            Ok(fd) => fd,
            Err(e) => {
                out.push((layers::LAYERS, format!("{e:#}")));
                None
            }
        };
        let top = [
            ("", Some(&self.dir)),
            (OBJECTS, Some(&self.objects)),
            (IMAGES, Some(&self.images)),
            (REFS, Some(&self.refs)),
            (layers::LAYERS, layers.as_ref()),
        ];
        for (rel, fd) in top {
            let Some(fd) = fd else { continue };
            match trust::untrusted_reason(fd) {
                Ok(None) => {}
                Ok(Some(reason)) => out.push((rel, reason)),
                Err(e) => out.push((rel, format!("stat: {e}"))),
            }
        }
        out
    }

    fn open_unchecked(path: &Path) -> Result<Repository> {
        let path = path.to_owned();
        let dir = open_dir(CWD, &path)
            .with_context(|| format!("opening repository {}", path.display()))?;
        let meta = read_meta(&dir, &path)?;
        let algorithm = algorithm_from_meta(&meta.algorithm).with_context(|| {
            format!(
                "{}/{META_JSON}: unknown algorithm '{}' (expected fsverity-sha256-12 or fsverity-sha512-12)",
                path.display(),
                meta.algorithm
            )
        })?;
        format::check_oci_erofs_version(&path, meta.oci_erofs_version)?;
        rustix::fs::flock(&dir, FlockOperation::LockShared)
            .with_context(|| format!("locking repository {}", path.display()))?;
        // The top directories are never symlinks: one could lead the repository elsewhere.
        let sub = |name: &str| {
            trust::open_child_dir(&dir, name).with_context(|| {
                format!(
                    "opening {}/{name} (a directory, not a symlink)",
                    path.display()
                )
            })
        };
        let objects = sub(OBJECTS)?;
        let images = sub(IMAGES)?;
        let refs = sub(REFS)?;
        let mut repo = Repository {
            path,
            dir,
            objects,
            images,
            refs,
            algorithm,
            verity_supported: false,
            oci_erofs_version: match meta.oci_erofs_version {
                Some(v) => std::sync::OnceLock::from(v),
                None => std::sync::OnceLock::new(),
            },
            stored: AtomicU64::new(0),
        };
        repo.verity_supported = repo.probe_verity();
        tracing::debug!(
            "opened repository {} ({}, fs-verity {})",
            repo.path.display(),
            repo.algorithm,
            if repo.verity_supported { "on" } else { "off" }
        );
        Ok(repo)
    }

    /// Tries to enable fs-verity on a small temporary file in `objects/`.
    fn probe_verity(&self) -> bool {
        let probe = || -> io::Result<bool> {
            let mut tmp = objects::TmpObject::create(self)?;
            tmp.file().write_all(b"cfsctl fs-verity probe")?;
            tmp.make_read_only()?;
            match enable_verity(tmp.file(), self.algorithm) {
                Ok(()) | Err(EnableError::AlreadyEnabled) => Ok(true),
                Err(EnableError::NotSupported) => Ok(false),
                Err(EnableError::Busy) => Err(Errno::TXTBSY.into()),
                Err(EnableError::Io(e) | EnableError::SignatureRejected(e)) => Err(e),
                Err(EnableError::NoSignatureSupport) => Err(Errno::NOPKG.into()),
            }
        };
        match probe() {
            Ok(supported) => supported,
            Err(e) => {
                // Read-only repositories (an initramfs) cannot create the probe file.
                tracing::debug!("{}: fs-verity probe failed: {e}", self.path.display());
                false
            }
        }
    }

    /// The repository directory as given to `open`/`init`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fs-verity hash algorithm every object is named with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether the filesystem holding the repository can enable fs-verity (probed at open).
    /// When false, objects are stored without verity and digests are computed in userspace.
    pub fn verity_supported(&self) -> bool {
        self.verity_supported
    }

    /// The `objects/` directory, for use as an overlayfs data layer (`datadir+`).
    pub fn objects_dir(&self) -> BorrowedFd<'_> {
        self.objects.as_fd()
    }

    /// Takes the repository lock exclusively (for garbage collection): waits until no other
    /// process holds the repository open. Other users in this process are not excluded.
    pub fn lock_exclusive(&self) -> Result<ExclusiveLock<'_>> {
        rustix::fs::flock(&self.dir, FlockOperation::LockExclusive)
            .with_context(|| format!("locking repository {} exclusively", self.path.display()))?;
        Ok(ExclusiveLock { repo: self })
    }

    /// Objects this handle has stored so far (an object another writer stored first does
    /// not count).
    pub fn objects_stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Makes everything written so far durable (one `syncfs` instead of an fsync per object).
    pub fn sync(&self) -> Result<()> {
        rustix::fs::syncfs(&self.dir)
            .with_context(|| format!("syncing repository {}", self.path.display()))
    }

    fn check_algorithm(&self, digest: &Digest) -> Result<()> {
        if digest.algorithm() != self.algorithm {
            return Err(RepoError::AlgorithmMismatch {
                digest: *digest,
                repo: self.algorithm,
            }
            .into());
        }
        Ok(())
    }
}

fn open_dir(at: impl AsFd, path: impl rustix::path::Arg) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Whether `s` is an object path `XX/rest` of hex digits for a digest of this repository.
pub(crate) fn object_path_digest(repo: &Repository, s: &str) -> Option<Digest> {
    let (xx, rest) = s.split_once('/')?;
    if xx.len() != 2 || rest.contains('/') {
        return None;
    }
    let d = Digest::from_hex(&format!("{xx}{rest}")).ok()?;
    (d.algorithm() == repo.algorithm && d.object_path() == s).then_some(d)
}

fn mkdir_exist_ok(at: impl AsFd, name: &str) -> io::Result<()> {
    match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn read_meta(dir: &OwnedFd, path: &Path) -> Result<RepoMeta> {
    let fd = match rustix::fs::openat(
        dir,
        META_JSON,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(RepoError::NotARepository(path.to_owned()).into()),
        Err(e) => {
            return Err(e).with_context(|| format!("opening {}/{META_JSON}", path.display()));
        }
    };
    // meta.json is two short fields: a larger one is not ours (and is not read whole).
    let mut text = Vec::new();
    File::from(fd)
        .take(META_JSON_MAX)
        .read_to_end(&mut text)
        .with_context(|| format!("reading {}/{META_JSON}", path.display()))?;
    let meta: RepoMeta = serde_json::from_slice(&text)
        .with_context(|| format!("{}/{META_JSON} is corrupt", path.display()))?;
    if meta.version != REPO_FORMAT_VERSION {
        return Err(RepoError::UnsupportedVersion {
            path: path.to_owned(),
            version: meta.version,
        }
        .into());
    }
    Ok(meta)
}

/// Writes `name` in `dir` through a temporary file, fsync and rename.
fn write_file_atomic(dir: &OwnedFd, name: &str, data: &[u8], flags: RenameFlags) -> io::Result<()> {
    crate::atomic::write_file(dir, name, data, 0o644, flags)
}

/// Atomically creates or replaces the symlink `name` in `dir` pointing to `target`, and makes
/// the directory durable so the link survives a crash once this returns.
fn symlink_atomic(dir: &OwnedFd, name: &str, target: &str) -> io::Result<()> {
    let tmp = temp_name("link");
    rustix::fs::symlinkat(target, dir, &tmp)?;
    if let Err(e) = rustix::fs::renameat(dir, &tmp, dir, name) {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
        return Err(e.into());
    }
    rustix::fs::fsync(dir)?;
    Ok(())
}

/// `/proc/self/fd/N`: the magic link that reaches an open file (also an unnamed one).
fn proc_fd_path(fd: impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// A human name for an open file, for error messages.
fn describe_fd(fd: impl AsFd) -> String {
    match std::fs::read_link(proc_fd_path(&fd)) {
        Ok(p) => p.display().to_string(),
        Err(_) => format!("file descriptor {}", fd.as_fd().as_raw_fd()),
    }
}

fn ensure_is_repo_relative(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.starts_with('/') {
        return Err("absolute");
    }
    if name.len() > 1024 {
        return Err("too long");
    }
    if name.contains('\0') {
        return Err("contains NUL");
    }
    for comp in name.split('/') {
        match comp {
            "" => return Err("empty path component"),
            "." | ".." => return Err("'.' or '..' component"),
            c if c.starts_with(TMP_PREFIX) => return Err("component starts with '.tmp-'"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a ref name: relative, no `.`/`..`/empty components, not a temporary name
/// ([`RepoError::InvalidRefName`] otherwise).
pub fn validate_ref_name(name: &str) -> Result<()> {
    ensure_is_repo_relative(name).map_err(|reason| {
        RepoError::InvalidRefName {
            name: name.to_string(),
            reason,
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Repository>();
    }

    #[test]
    fn meta_algorithm_round_trip() {
        for a in [Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(algorithm_from_meta(&algorithm_to_meta(a)), Some(a));
        }
        assert_eq!(algorithm_to_meta(Algorithm::Sha256), "fsverity-sha256-12");
        assert_eq!(algorithm_from_meta("fsverity-sha256-16"), None);
        assert_eq!(algorithm_from_meta("sha256"), None);
    }

    #[test]
    fn ref_names() {
        for ok in ["a", "oci/foo/latest", "deploy/1", "x.y"] {
            validate_ref_name(ok).unwrap();
        }
        for bad in [
            "", "/abs", "a/../b", "..", "a//b", "a/", "./a", ".tmp-x", "a/.tmp-y",
        ] {
            assert!(validate_ref_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn init_open_and_errors() {
        let td = tempfile::tempdir().unwrap();
        let p = td.path().join("repo");
        let err = Repository::open(&p).unwrap_err();
        assert!(err.to_string().contains("repo"), "{err:#}");
        std::fs::create_dir(&p).unwrap();
        let err = Repository::open(&p).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<RepoError>(),
            Some(RepoError::NotARepository(_))
        ));
        let repo = Repository::init(&p, Algorithm::Sha512).unwrap();
        assert_eq!(repo.algorithm(), Algorithm::Sha512);
        assert!(!repo.verity_supported() || repo.verity_supported());
        let err = Repository::init(&p, Algorithm::Sha256).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<RepoError>(),
            Some(RepoError::AlreadyInitialized(_))
        ));
        drop(repo);
        std::fs::write(p.join("meta.json"), b"{not json").unwrap();
        let err = format!("{:#}", Repository::open(&p).unwrap_err());
        assert!(err.contains("meta.json is corrupt"), "{err}");
        assert!(err.contains(&p.display().to_string()), "{err}");
    }

    #[test]
    fn exclusive_lock_round_trip() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        {
            let _lock = repo.lock_exclusive().unwrap();
            // Another open file description cannot take the lock while we hold it.
            let other = open_dir(CWD, td.path()).unwrap();
            assert_eq!(
                rustix::fs::flock(&other, FlockOperation::NonBlockingLockShared),
                Err(Errno::WOULDBLOCK)
            );
        }
        let other = open_dir(CWD, td.path()).unwrap();
        rustix::fs::flock(&other, FlockOperation::NonBlockingLockShared).unwrap();
    }
}
