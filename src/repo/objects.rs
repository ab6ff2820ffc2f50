//! The object store: `objects/XX/<rest of hex>`, named by fs-verity digest.
//!
//! An object is written to an unnamed `O_TMPFILE` in `objects/` (or, on filesystems without
//! it, a `.tmp-object-*` name removed on any failure), fs-verity is enabled on it where the
//! filesystem supports it, and only then is it linked under its final name. `EEXIST` at that
//! point means another writer (thread or process) stored the same content first: fine.
//! No per-object fsync: [`Repository::sync`] (`syncfs`) runs before anything names objects.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::trust::{open_child_dir, open_nofollow};
use super::{RepoError, Repository, describe_fd, mkdir_exist_ok, proc_fd_path, temp_name};
use crate::fsverity::ioctl::enable_verity_signed;
use crate::fsverity::ioctl::{EnableError, compute_digest_at, measure_verity};
use crate::fsverity::{Digest, FsVerityHasher, HashingWriter, digest_bytes, ioctl::enable_verity};

/// How many times `FS_IOC_ENABLE_VERITY` is retried on ETXTBSY: a thread that forks while we
/// hold the writable descriptor keeps it open in the child until that child execs.
const ENABLE_BUSY_RETRIES: u32 = 5;

/// A file being written in `objects/`, invisible under any object name until linked.
pub(super) struct TmpObject<'r> {
    repo: &'r Repository,
    file: File,
    /// `Some(name)` for the named fallback; unlinked on drop unless consumed.
    name: Option<String>,
}

impl Drop for TmpObject<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = rustix::fs::unlinkat(&self.repo.objects, name.as_str(), AtFlags::empty());
        }
    }
}

impl<'r> TmpObject<'r> {
    pub(super) fn create(repo: &'r Repository) -> io::Result<Self> {
        match rustix::fs::openat(
            &repo.objects,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => {
                return Ok(TmpObject {
                    repo,
                    file: fd.into(),
                    name: None,
                });
            }
            // EOPNOTSUPP: filesystem without O_TMPFILE (fuse-overlayfs, NFS...); EISDIR or
            // EINVAL: kernel without O_TMPFILE, which reads the flag as O_DIRECTORY.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
        let name = temp_name("object");
        let fd = rustix::fs::openat(
            &repo.objects,
            name.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        Ok(TmpObject {
            repo,
            file: fd.into(),
            name: Some(name),
        })
    }

    pub(super) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Swaps the writable descriptor for a read-only one: `FS_IOC_ENABLE_VERITY` fails with
    /// ETXTBSY while any writable descriptor is open.
    pub(super) fn make_read_only(&mut self) -> io::Result<()> {
        self.file = self.reopen_read_only()?;
        Ok(())
    }

    /// A read-only descriptor to the same file (the writable one stays open).
    fn reopen_read_only(&self) -> io::Result<File> {
        let fd = match &self.name {
            Some(name) => rustix::fs::openat(
                &self.repo.objects,
                name.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
            None => rustix::fs::openat(
                CWD,
                proc_fd_path(&self.file),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?,
        };
        Ok(fd.into())
    }

    /// Enables fs-verity (when the repository supports it) and names the object `digest`,
    /// or measures it when `digest` is `None`. Checks the kernel's measurement against the
    /// userspace digest when both exist. Returns the object's digest.
    /// Publishes content hashed while it was written: dropped (unnamed, nothing to clean up)
    /// when the object `digest` exists already, linked under it otherwise.
    pub(super) fn link_or_drop(
        self,
        digest: Digest,
        what: &dyn Fn() -> String,
    ) -> Result<Imported> {
        if self.repo.has_object(&digest) {
            return Ok(Imported::AlreadyPresent);
        }
        self.finish(Some(digest), what)?;
        Ok(Imported::Stored)
    }

    pub(super) fn finish(
        mut self,
        known: Option<Digest>,
        what: &dyn Fn() -> String,
    ) -> Result<Digest> {
        let repo = self.repo;
        let mut digest = known;
        if repo.verity_supported {
            self.make_read_only()
                .with_context(|| format!("{}: reopening the new object", what()))?;
            enable_with_retries(&self.file, repo)
                .with_context(|| format!("{}: enabling fs-verity", what()))?;
            let measured = measure_verity(&self.file)
                .with_context(|| format!("{}: measuring fs-verity", what()))?;
            if let Some(expected) = digest
                && expected != measured
            {
                return Err(RepoError::DigestMismatch {
                    what: what(),
                    expected,
                    actual: measured,
                }
                .into());
            }
            digest = Some(measured);
        }
        let digest = match digest {
            Some(d) => d,
            None => compute_digest_at(&self.file, repo.algorithm)
                .with_context(|| format!("{}: computing the fs-verity digest", what()))?,
        };
        self.link_as(&digest)
            .with_context(|| format!("{}: storing object {digest}", what()))?;
        Ok(digest)
    }

    /// Gives the file its final name `objects/XX/rest`; an existing object is kept. The
    /// fan-out directory is created when missing.
    fn link_as(mut self, digest: &Digest) -> io::Result<()> {
        let path = digest.object_path();
        let (xx, rest) = path.split_at(2);
        let rest = &rest[1..];
        // The fan-out directory is opened without following a link: a planted
        // `objects/XX -> elsewhere` must not receive objects.
        let linked = match open_child_dir(&self.repo.objects, xx) {
            Err(Errno::NOENT) => {
                mkdir_exist_ok(&self.repo.objects, xx)?;
                open_child_dir(&self.repo.objects, xx)
            }
            r => r,
        }
        .map_err(|e| io::Error::other(format!("objects/{xx}: {e} (must be a directory)")))
        .map(|dir| self.link_once(&dir, rest));
        let linked = linked?;
        if let Some(name) = self.name.take() {
            let _ = rustix::fs::unlinkat(&self.repo.objects, &name, AtFlags::empty());
        }
        match linked {
            Ok(()) => {
                self.repo.stored.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// One attempt at naming the object `path` (EEXIST: stored already).
    /// One attempt at naming the object `rest` in its fan-out directory `dir` (EEXIST:
    /// stored already).
    fn link_once(&self, dir: &OwnedFd, rest: &str) -> rustix::io::Result<()> {
        let objects = &self.repo.objects;
        if let Some(name) = &self.name {
            return match rustix::fs::renameat_with(objects, name, dir, rest, RenameFlags::NOREPLACE)
            {
                // Filesystems without RENAME_NOREPLACE: link (fails on EEXIST); the caller
                // removes the temporary name.
                Err(Errno::INVAL) => rustix::fs::linkat(objects, name, dir, rest, AtFlags::empty()),
                r => r,
            };
        }
        match rustix::fs::linkat(
            CWD,
            proc_fd_path(&self.file),
            dir,
            rest,
            AtFlags::SYMLINK_FOLLOW,
        ) {
            // No /proc (early boot): AT_EMPTY_PATH does the same but needs CAP_DAC_READ_SEARCH.
            Err(Errno::NOENT) => rustix::fs::linkat(&self.file, "", dir, rest, AtFlags::EMPTY_PATH),
            r => r,
        }
    }
}

fn enable_with_retries(file: &File, repo: &Repository) -> Result<(), EnableError> {
    let mut attempt = 0;
    loop {
        match enable_verity(file, repo.algorithm) {
            Ok(()) | Err(EnableError::AlreadyEnabled) => return Ok(()),
            Err(EnableError::Busy) if attempt < ENABLE_BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(5 << attempt));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether an import wrote a new object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// This call stored the object.
    Stored,
    /// The object was already there; nothing was linked.
    AlreadyPresent,
}

/// How content reached the temporary file.
enum Copied {
    /// The data went through userspace and was hashed on the way.
    Hashed(Digest),
    /// The kernel copied it (reflink or `copy_file_range`); nothing hashed.
    InKernel,
}

/// Copies the whole content of `src` (from offset 0, whatever its current offset) to `dst`.
///
/// FICLONE first (shares extents, no data written). Otherwise, when the digest must be
/// computed in userspace anyway, one read/write pass that hashes on the way; when the kernel
/// will hash (fs-verity on), `copy_file_range`, falling back to read/write.
fn copy_content(src: &File, dst: &File, repo: &Repository) -> io::Result<Copied> {
    match rustix::fs::ioctl_ficlone(dst, src) {
        Ok(()) => return Ok(Copied::InKernel),
        // EOPNOTSUPP/ENOTTY: no reflinks here; EXDEV: different filesystems; EINVAL: odd
        // alignment or a special file.
        Err(Errno::OPNOTSUPP | Errno::NOTTY | Errno::XDEV | Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    if repo.verity_supported && copy_file_range_all(src, dst)? {
        return Ok(Copied::InKernel);
    }
    // Restart from zero: a failed copy_file_range may have written a prefix.
    dst.set_len(0)?;
    let mut buf = vec![0u8; 256 * 1024];
    copy_hashing(src, dst, None, repo.algorithm, &mut buf).map(Copied::Hashed)
}

/// Copies `src` from offset 0 to the start of `dst` through `buf`, hashing on the way: the
/// first `size` bytes (a file shorter than that is an error), or with `None` all of it.
fn copy_hashing(
    src: &File,
    dst: &File,
    size: Option<u64>,
    algorithm: crate::fsverity::Algorithm,
    buf: &mut [u8],
) -> io::Result<Digest> {
    let mut hasher = FsVerityHasher::new(algorithm);
    let mut offset = 0u64;
    while size.is_none_or(|size| offset < size) {
        let left = size.map_or(u64::MAX, |size| size - offset);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match src.read_at(&mut buf[..want], offset) {
            Ok(0) if size.is_none() => break,
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all_at(&buf[..n], offset)?;
        offset += n as u64;
    }
    Ok(hasher.finish())
}

/// `copy_file_range` until EOF. `Ok(false)` when the kernel cannot do it for these files
/// (nothing was copied then).
fn copy_file_range_all(src: &File, dst: &File) -> io::Result<bool> {
    let (mut off_in, mut off_out) = (0u64, 0u64);
    loop {
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), 1 << 30)
        {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) if off_in == 0 => {
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Repository {
    /// `objects/XX/rest` for `digest`, as a full path (for messages and external tools).
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        self.path.join("objects").join(digest.object_path())
    }

    /// Whether an object with this digest is stored.
    pub fn has_object(&self, digest: &Digest) -> bool {
        if digest.algorithm() != self.algorithm {
            return false;
        }
        // O_PATH + fstat instead of one statat: statat would follow a symlinked `XX`.
        let st = open_nofollow(&self.objects, &digest.object_path(), OFlags::PATH)
            .and_then(|fd| rustix::fs::fstat(&fd));
        match st {
            Ok(st) => rustix::fs::FileType::from_raw_mode(st.st_mode).is_file(),
            Err(Errno::NOENT) => false,
            Err(e) => {
                tracing::warn!("{}: {e}", self.object_path(digest).display());
                false
            }
        }
    }

    /// Opens an object read-only. A missing object is [`RepoError::MissingObject`].
    pub fn open_object(&self, digest: &Digest) -> Result<File> {
        self.check_algorithm(digest)?;
        match open_nofollow(&self.objects, &digest.object_path(), OFlags::RDONLY) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::NOENT) => Err(RepoError::MissingObject(*digest).into()),
            Err(e) => {
                Err(e).with_context(|| format!("opening {}", self.object_path(digest).display()))
            }
        }
    }

    /// Replaces the stored object `digest` by a copy whose fs-verity is enabled with
    /// `signature` (see [`Repository::sign_image`]).
    pub(super) fn replace_object_signed(&self, digest: &Digest, signature: &[u8]) -> Result<()> {
        let what = || format!("signing object {digest} in {}", self.path.display());
        let src = self.open_object(digest)?;
        let path = digest.object_path();
        let (xx, rest) = path.split_at(2);
        let dir = open_child_dir(&self.objects, xx)
            .map_err(|e| io::Error::other(format!("objects/{xx}: {e}")))
            .with_context(what)?;
        let name = temp_name("signed");
        let fd = rustix::fs::openat(
            &dir,
            name.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .with_context(what)?;
        let result = (|| -> Result<()> {
            let tmp = File::from(fd);
            let mut buf = vec![0u8; 256 * 1024];
            let copied = copy_hashing(&src, &tmp, None, self.algorithm, &mut buf)?;
            anyhow::ensure!(
                copied == *digest,
                "the object's content changed while copied"
            );
            tmp.sync_all()?;
            drop(tmp);
            let ro: File = rustix::fs::openat(
                &dir,
                name.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?
            .into();
            enable_verity_signed(&ro, self.algorithm, signature)?;
            let measured = measure_verity(&ro)?;
            anyhow::ensure!(measured == *digest, "measured {measured} after signing");
            rustix::fs::renameat(&dir, name.as_str(), &dir, &rest[1..])?;
            rustix::fs::fsync(&dir)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty());
        }
        result.with_context(what)
    }

    /// Stores `data` as an object (nothing is written if it is already present).
    pub fn write_object(&self, data: &[u8]) -> Result<Digest> {
        let digest = digest_bytes(self.algorithm, data);
        if self.has_object(&digest) {
            return Ok(digest);
        }
        let what = || format!("writing object {digest} to {}", self.path.display());
        let mut tmp = TmpObject::create(self).with_context(what)?;
        tmp.file().write_all(data).with_context(what)?;
        tmp.finish(Some(digest), &what)
    }

    /// Stores what `produce` writes as an object and returns its digest, hashed on the way:
    /// nothing is held in memory (an image of a large tree is tens of megabytes). Nothing is
    /// stored if `produce` fails.
    pub fn write_object_with(
        &self,
        produce: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<Digest> {
        let what = || format!("writing an object to {}", self.path.display());
        let mut tmp = TmpObject::create(self).with_context(what)?;
        let digest = {
            let mut out = HashingWriter {
                inner: io::BufWriter::with_capacity(256 * 1024, tmp.file()),
                hasher: FsVerityHasher::new(self.algorithm),
            };
            produce(&mut out)?;
            let HashingWriter { inner, hasher } = out;
            inner
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(what)?;
            hasher.finish()
        };
        tmp.link_or_drop(digest, &what)?;
        Ok(digest)
    }

    /// Stores the whole content of `src` as an object and returns its digest.
    ///
    /// With `expected`, an already present object is not copied again, and content whose
    /// digest differs is refused with [`RepoError::DigestMismatch`] (nothing stored). Callers
    /// that hash first should check [`has_object`](Self::has_object) themselves to skip the
    /// call. Safe to call from several threads at once.
    pub fn import_file(&self, src: &File, expected: Option<Digest>) -> Result<Digest> {
        if let Some(d) = expected {
            self.check_algorithm(&d)?;
            if self.has_object(&d) {
                return Ok(d);
            }
        }
        let what = || {
            format!(
                "importing {} into {}",
                describe_fd(src),
                self.path.display()
            )
        };
        let tmp = TmpObject::create(self).with_context(what)?;
        let copied = copy_content(src, &tmp.file, self).with_context(what)?;
        let userspace = match copied {
            Copied::Hashed(d) => Some(d),
            Copied::InKernel => None,
        };
        if let (Some(expected), Some(actual)) = (expected, userspace)
            && expected != actual
        {
            return Err(RepoError::DigestMismatch {
                what: describe_fd(src),
                expected,
                actual,
            }
            .into());
        }
        // finish() compares the kernel's measurement with whichever digest we know.
        tmp.finish(userspace.or(expected), &what)
    }

    /// Stores the first `size` bytes of `src` in one pass: read into `buf` with `pread`,
    /// hashed and written to an unnamed temporary file in the same loop, then linked under
    /// their digest, or dropped when an object with that digest appeared meanwhile (another
    /// thread or process stored the same content). Returns the digest and whether this call
    /// stored it.
    ///
    /// For callers that do not know the digest yet and expect most content to be new: the
    /// file is read once instead of once to hash and once to copy. On a repository with
    /// fs-verity the kernel copies and hashes instead ([`import_file`](Self::import_file)).
    pub fn import_file_once(
        &self,
        src: &File,
        size: u64,
        buf: &mut [u8],
    ) -> Result<(Digest, Imported)> {
        let what = || {
            format!(
                "importing {} into {}",
                describe_fd(src),
                self.path.display()
            )
        };
        if self.verity_supported {
            let digest = self.import_file(src, None)?;
            return Ok((digest, Imported::Stored));
        }
        let mut tmp = TmpObject::create(self).with_context(what)?;
        let digest =
            copy_hashing(src, tmp.file(), Some(size), self.algorithm, buf).with_context(what)?;
        Ok((digest, tmp.link_or_drop(digest, &what)?))
    }

    /// Stores `data` through the named-temporary-file path (filesystems without O_TMPFILE).
    #[cfg(test)]
    fn import_via_named_tmp(&self, data: &[u8]) -> Result<Digest> {
        let name = temp_name("object");
        let fd: OwnedFd = rustix::fs::openat(
            &self.objects,
            name.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let mut tmp = TmpObject {
            repo: self,
            file: fd.into(),
            name: Some(name),
        };
        tmp.file().write_all(data)?;
        tmp.finish(None, &|| "test".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::Algorithm;

    fn visible_names(repo: &Repository) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(repo.path().join("objects")).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            if e.file_type().unwrap().is_dir() {
                for f in std::fs::read_dir(e.path()).unwrap() {
                    out.push(format!(
                        "{name}/{}",
                        f.unwrap().file_name().to_str().unwrap()
                    ));
                }
            } else {
                out.push(name);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn named_tmp_fallback_links_and_cleans_up() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let d1 = repo.import_via_named_tmp(b"fallback").unwrap();
        let d2 = repo.import_via_named_tmp(b"fallback").unwrap();
        assert_eq!(d1, d2);
        assert_eq!(d1, digest_bytes(Algorithm::Sha256, b"fallback"));
        assert_eq!(visible_names(&repo), vec![d1.object_path()]);
    }

    #[test]
    fn mismatch_stores_nothing() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let mut src = tempfile::tempfile().unwrap();
        src.write_all(b"actual content").unwrap();
        let wrong = digest_bytes(Algorithm::Sha256, b"other");
        let err = repo.import_file(&src, Some(wrong)).unwrap_err();
        match err.downcast_ref::<RepoError>() {
            Some(RepoError::DigestMismatch {
                expected, actual, ..
            }) => {
                assert_eq!(*expected, wrong);
                assert_eq!(*actual, digest_bytes(Algorithm::Sha256, b"actual content"));
            }
            other => panic!("{other:?}"),
        }
        assert!(visible_names(&repo).is_empty());
    }

    #[test]
    fn missing_object_is_typed() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let d = digest_bytes(Algorithm::Sha256, b"nope");
        let err = repo.open_object(&d).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<RepoError>(),
            Some(RepoError::MissingObject(x)) if *x == d
        ));
        let other = digest_bytes(Algorithm::Sha512, b"nope");
        assert!(!repo.has_object(&other));
        assert!(repo.open_object(&other).is_err());
    }
}
