//! Where the content of external files goes while a directory is read: the [`ContentSink`]
//! trait, and [`DigestStoreDir`], the directory mkcomposefs `--digest-store` fills.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;

use super::hash::digest_file;
use crate::fsverity::{Algorithm, Digest};
use crate::tree::FileKey;

/// Receives the content of every external file of a scan, after it was hashed.
///
/// Called from several hashing threads at once.
pub trait ContentSink: Sync {
    /// True when content with this digest is already stored (then nothing is written).
    fn contains(&self, digest: &Digest) -> bool;
    /// Store the content of `file` (already hashed to `digest`, `size` bytes).
    ///
    /// The file position is unspecified: read with explicit offsets (`pread`,
    /// `copy_file_range` with offsets), from 0 to `size`.
    fn store(&self, file: &File, size: u64, digest: &Digest) -> Result<()>;

    /// Hashes the first `size` bytes of `file` and makes sure the sink holds them; `buf` is
    /// scratch space for reading. The default hashes first, then asks
    /// [`contains`](Self::contains) and calls [`store`](Self::store) only for new content; a
    /// sink that can write while hashing overrides it to read each new file only once.
    fn import(
        &self,
        file: &File,
        size: u64,
        algorithm: Algorithm,
        buf: &mut [u8],
    ) -> Result<(Digest, Stored)> {
        let digest = digest_file(file, size, algorithm, buf).context("reading")?;
        if self.contains(&digest) {
            return Ok((digest, Stored::AlreadyPresent));
        }
        self.store(file, size, &digest)
            .context("storing the content")?;
        Ok((digest, Stored::New))
    }

    /// The digest of a file the sink already holds, known from its metadata alone (a stat
    /// cache), so that the scan need not read it. The default knows nothing.
    fn cached_digest(&self, _file: &FileKey) -> Option<Digest> {
        None
    }

    /// Tells the sink the digest of a file the scan read or took from
    /// [`cached_digest`](Self::cached_digest) (to fill its cache). Called from several
    /// threads.
    fn remember(&self, _file: &FileKey, _digest: &Digest) {}
}

/// What [`ContentSink::import`] did with a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The content was new and is now stored.
    New,
    /// The sink held it already.
    AlreadyPresent,
}

/// A directory laid out like mkcomposefs `--digest-store`: the content with digest `d` at
/// `DIR/` + [`Digest::object_path`] (`XX/rest-of-hex`), mode 0644, directories 0755
/// (`copy_file_with_dirs_if_needed` in `tools/mkcomposefs.c`).
///
/// Objects appear atomically (an `O_TMPFILE` linked into place, or a temporary file renamed
/// when the filesystem has no `O_TMPFILE`) and are synced first, so a crash never leaves a
/// partial object under its final name. Enabling fs-verity on them, which mkcomposefs tries,
/// is left to the repository's object store.
#[derive(Debug)]
pub struct DigestStoreDir {
    dir: OwnedFd,
    path: PathBuf,
    /// Sync each object before publishing it (mkcomposefs does).
    sync: bool,
    tmp_counter: AtomicU64,
    /// Open `00`..`ff` directories, by first digest byte.
    fanouts: Box<[OnceLock<OwnedFd>]>,
}

/// Mode of stored objects: readable by all, as mkcomposefs sets it.
const OBJECT_MODE: u32 = 0o644;
/// Mode of the `XX` fan-out directories.
const DIR_MODE: u32 = 0o755;

impl DigestStoreDir {
    /// Opens the store at `path`, creating it (and its parents) when missing.
    pub fn open(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating digest store {}", path.display()))?;
        let dir = rustix::fs::openat(
            CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening digest store {}", path.display()))?;
        Ok(DigestStoreDir {
            dir,
            path: path.to_owned(),
            sync: true,
            tmp_counter: AtomicU64::new(0),
            fanouts: (0..256).map(|_| OnceLock::new()).collect(),
        })
    }

    /// Whether to fsync each object before it gets its name (default: yes).
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// Path of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open `XX` directory for `digest` (created on first use, then kept open) and the
    /// object's name inside it.
    pub(super) fn fanout_dir(&self, digest: &Digest) -> Result<(&OwnedFd, String)> {
        let object = digest.object_path();
        let (fanout, name) = (&object[..2], &object[3..]);
        let slot = &self.fanouts[usize::from(digest.as_bytes()[0])];
        if let Some(fd) = slot.get() {
            return Ok((fd, name.to_string()));
        }
        match rustix::fs::mkdirat(&self.dir, fanout, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating {}", self.path.join(fanout).display()));
            }
        }
        let fd = rustix::fs::openat(
            &self.dir,
            fanout,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {}", self.path.join(fanout).display()))?;
        // Another thread may have won the race; its fd is as good as ours.
        Ok((slot.get_or_init(|| fd), name.to_string()))
    }
}

impl ContentSink for DigestStoreDir {
    fn contains(&self, digest: &Digest) -> bool {
        // mkcomposefs checks with lstat too: anything under the name counts as present.
        rustix::fs::statat(&self.dir, digest.object_path(), AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    fn store(&self, file: &File, size: u64, digest: &Digest) -> Result<()> {
        let (fanout, name) = self.fanout_dir(digest)?;
        let dest = || self.path.join(digest.object_path());
        let mode = Mode::from_raw_mode(OBJECT_MODE);
        match rustix::fs::openat(
            fanout,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            mode,
        ) {
            Ok(tmp) => {
                self.fill(&tmp, file, size)
                    .with_context(|| format!("writing {}", dest().display()))?;
                // Through /proc: AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH (and measured
                // no faster).
                let proc_path = format!("/proc/self/fd/{}", tmp.as_raw_fd());
                match rustix::fs::linkat(CWD, &proc_path, fanout, &name, AtFlags::SYMLINK_FOLLOW) {
                    // Another writer stored the same content first: same bytes.
                    Ok(()) | Err(Errno::EXIST) => Ok(()),
                    Err(e) => Err(e).with_context(|| format!("linking {}", dest().display())),
                }
            }
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => self
                .store_via_rename(fanout, &name, file, size)
                .with_context(|| format!("writing {}", dest().display())),
            Err(e) => Err(e).with_context(|| format!("creating {}", dest().display())),
        }
    }
}

impl DigestStoreDir {
    pub(super) fn store_via_rename(
        &self,
        fanout: &OwnedFd,
        name: &str,
        file: &File,
        size: u64,
    ) -> Result<()> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".tmp-{}-{n}", std::process::id());
        let tmp = rustix::fs::openat(
            fanout,
            &tmp_name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(OBJECT_MODE),
        )?;
        let result = self
            .fill(&tmp, file, size)
            .and_then(|()| Ok(rustix::fs::renameat(fanout, &tmp_name, fanout, name)?));
        if result.is_err() {
            let _ = rustix::fs::unlinkat(fanout, &tmp_name, AtFlags::empty());
        }
        result
    }

    /// Copies `size` bytes of `src` into `dst`, sets the mode and syncs.
    fn fill(&self, dst: &OwnedFd, src: &File, size: u64) -> Result<()> {
        copy_range(src, dst, size)?;
        // The umask may have cut the creation mode.
        rustix::fs::fchmod(dst, Mode::from_raw_mode(OBJECT_MODE))?;
        if self.sync {
            rustix::fs::fsync(dst)?;
        }
        Ok(())
    }
}

/// Copies the first `size` bytes of `src` to the start of `dst`: `copy_file_range` (which
/// reflinks or copies in the kernel), and plain `pread`/`write` where the kernel cannot.
fn copy_range(src: &File, dst: &OwnedFd, size: u64) -> std::io::Result<()> {
    let mut in_off = 0u64;
    let mut out_off = 0u64;
    while in_off < size {
        let want = (size - in_off).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut in_off), dst, Some(&mut out_off), want) {
            Ok(0) => return Err(shrank()),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            // Cross-filesystem on old kernels, unsupported filesystems, seccomp: fall back
            // for the rest of this file.
            Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL | Errno::PERM) => {
                return copy_plain(src, dst, in_off, size);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(super) fn copy_plain(
    src: &File,
    dst: &OwnedFd,
    mut offset: u64,
    size: u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    while offset < size {
        let want = buf.len().min((size - offset) as usize);
        let n = match rustix::io::pread(src, &mut buf[..want], offset) {
            Ok(0) => return Err(shrank()),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut done = 0;
        while done < n {
            match rustix::io::pwrite(dst.as_fd(), &buf[done..n], offset + done as u64) {
                Ok(w) => done += w,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        offset += n as u64;
    }
    Ok(())
}

fn shrank() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "file shrank while being copied",
    )
}
