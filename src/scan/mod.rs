//! Reading a directory on disk into a [`Tree`], the way `mkcomposefs SOURCE IMAGE` does.
//!
//! The rules follow C composefs 1.0.8 (`lcfs_build`, `lcfs_load_node_from_file`,
//! `lcfs_node_set_from_content` in `libcomposefs/lcfs-writer.c`, and `mkcomposefs.c`):
//!
//! - every entry is stat-ed without following symlinks; mode, uid, gid, rdev and size come
//!   from it, the mtime too (with nanoseconds) unless `--use-epoch` asks for 0;
//! - every xattr the kernel lists is kept, raw: escaping `trusted.overlay.*` is the EROFS
//!   writer's job (C does it in `lcfs-writer-erofs.c` while writing), so it is not done here;
//! - regular files of 1..=64 bytes (`LCFS_RECOMMENDED_INLINE_CONTENT_MAX`) are stored inline;
//!   empty files get nothing; every other regular file gets its fs-verity digest and the
//!   payload `XX/rest-of-hex` (mkcomposefs always passes `COMPUTE_DIGEST | BY_DIGEST`, with
//!   or without `--digest-store`, so the image does not depend on the store);
//! - `lcfs_build` does not look for hard links: each name becomes its own inode with link
//!   count 1. That is the default here too (so images stay byte-identical);
//!   [`ScanOptions::hardlinks`] folds names with the same `(st_dev, st_ino)` into one inode;
//! - sockets are ordinary EROFS inodes to C and are kept by default;
//!   [`ScanOptions::skip_sockets`] drops them (warned and counted).
//!
//! Metadata is read on the calling thread; file contents are hashed (and handed to a
//! [`ContentSink`]) on a pool of worker threads (`hash.rs`). A sink that knows a file's
//! digest from its [`FileKey`](crate::tree::FileKey) (a stat cache) spares the scan from reading it at all.

mod hash;
mod sink;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use rustix::fs::{Advice, AtFlags, CWD, FileType as DirentType, Mode, OFlags, Stat};

use crate::erofs::limits::{INLINE_RECOMMENDED_MAX, MAX_DEPTH};
use crate::fsverity::Algorithm;
use crate::tree::{
    DirEntry, FileKey, FileType, Inode, InodeId, ROOT, Timestamp, Tree, Xattr, mode,
};

pub use hash::digest_file;
pub use sink::{ContentSink, DigestStoreDir, Stored};

/// Which extended attributes to read (mkcomposefs `--skip-xattrs`, `--user-xattrs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrFilter {
    /// All of them (the default).
    #[default]
    All,
    /// Only `user.*` (`--user-xattrs`).
    UserOnly,
    /// None (`--skip-xattrs`).
    None,
}

/// How to read a directory. `Default` is what plain `mkcomposefs SOURCE IMAGE` does.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Set every mtime to 0 (`--use-epoch`).
    pub use_epoch: bool,
    /// Which xattrs to read.
    pub xattrs: XattrFilter,
    /// Leave out character and block devices (`--skip-devices`).
    pub skip_devices: bool,
    /// Fold names sharing `(st_dev, st_ino)` into one inode whose link count is the number
    /// of names found. Off by default: mkcomposefs makes one inode per name.
    pub hardlinks: bool,
    /// Leave out sockets (with a warning). Off by default: mkcomposefs keeps them.
    pub skip_sockets: bool,
    /// fs-verity hash algorithm of the digests (mkcomposefs: always SHA-256).
    pub algorithm: Algorithm,
    /// Hashing threads; 0 means twice `std::thread::available_parallelism()` (at most
    /// 64): the extra threads overlap disk reads of uncached trees, and cost no measurable
    /// CPU time on cached ones.
    pub threads: usize,
}

/// Why an entry was left out of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A socket, and [`ScanOptions::skip_sockets`] was set.
    Socket,
    /// A device, and [`ScanOptions::skip_devices`] was set.
    Device,
    /// A file type no image can hold.
    UnknownType,
}

/// What a scan found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Directories, the root included.
    pub directories: u64,
    /// Regular files (inodes, not names).
    pub regular_files: u64,
    /// Regular files stored inline in the image.
    pub inline_files: u64,
    /// Regular files stored as external objects (these were hashed).
    pub external_files: u64,
    /// Bytes read to compute digests.
    pub hashed_bytes: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Devices, fifos and sockets kept.
    pub special_files: u64,
    /// Extra names of hard-linked inodes (only with [`ScanOptions::hardlinks`]).
    pub hardlinks: u64,
    /// External files the sink already had (the cached ones included).
    pub objects_present: u64,
    /// External files not read because the sink knew their digest from their metadata.
    pub cached_files: u64,
    /// External files the sink stored.
    pub objects_stored: u64,
    /// Entries left out, with the path (relative to the scanned directory) and the reason.
    pub skipped: Vec<(PathBuf, SkipReason)>,
}

/// Reads the directory `path` (following it if it is a symlink, nothing below it) into a
/// tree, the way `mkcomposefs` does with the same options. When `sink` is given, the content
/// of every external file is offered to it after hashing.
pub fn read_dir(
    path: &Path,
    opts: &ScanOptions,
    sink: Option<&dyn ContentSink>,
) -> Result<(Tree, ScanReport)> {
    let root_fd = rustix::fs::openat(
        CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening directory {}", path.display()))?;
    let threads = match opts.threads {
        0 => (2 * std::thread::available_parallelism().map_or(1, |n| n.get())).min(MAX_THREADS),
        n => n,
    };
    let abort = AtomicBool::new(false);

    std::thread::scope(|scope| {
        let pool = hash::Pool::start(scope, threads, opts.algorithm, sink, &abort);
        let mut scanner = Scanner {
            opts,
            root: path,
            tree: Tree::new(0),
            report: ScanReport::default(),
            pool: &pool,
            sink,
            abort: &abort,
            rel: PathBuf::new(),
            depth: 0,
            links: HashMap::new(),
            list_buf: vec![0; XATTR_MAX],
            value_buf: vec![0; XATTR_MAX],
        };
        let scanned = scanner.scan_root(root_fd);
        if scanned.is_err() {
            // Nothing more to hash: let the workers skip what is queued.
            abort.store(true, Ordering::Relaxed);
        }
        let Scanner {
            mut tree,
            mut report,
            ..
        } = scanner;
        // Always drain the pool, also after an error, so no worker outlives the scope
        // holding a job.
        let hashed = pool.finish(&mut tree, &mut report);
        scanned?;
        hashed?;
        if report.hardlinks > 0 {
            mark_primary_links(&mut tree);
        }
        tracing::debug!(
            path = %path.display(),
            inodes = tree.inodes.len(),
            external = report.external_files,
            hashed_bytes = report.hashed_bytes,
            stored = report.objects_stored,
            skipped = report.skipped.len(),
            "read directory"
        );
        Ok((tree, report))
    })
}

/// Upper bound of the default thread count.
const MAX_THREADS: usize = 64;

/// Room for the largest xattr name list and value Linux allows (`XATTR_LIST_MAX`,
/// `XATTR_SIZE_MAX` in `include/uapi/linux/limits.h`), so one call always suffices.
const XATTR_MAX: usize = 65536;

struct Scanner<'a, 'p> {
    opts: &'a ScanOptions,
    root: &'a Path,
    tree: Tree,
    report: ScanReport,
    pool: &'a hash::Pool<'p>,
    sink: Option<&'a dyn ContentSink>,
    abort: &'a AtomicBool,
    /// Path of the entry being read, relative to `root` (for messages).
    rel: PathBuf,
    /// Path components of the directory being listed (the root has none).
    depth: usize,
    /// `(st_dev, st_ino)` of multiply-linked non-directories seen so far.
    links: HashMap<(u64, u64), InodeId>,
    list_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

/// One directory entry waiting to be read.
struct Pending {
    name: Box<[u8]>,
    kind: DirentType,
}

impl Scanner<'_, '_> {
    fn full_path(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    fn scan_root(&mut self, fd: OwnedFd) -> Result<()> {
        let st = rustix::fs::fstat(&fd)
            .with_context(|| format!("reading metadata of {}", self.root.display()))?;
        let xattrs = self.read_xattrs(XattrSource::Fd(fd.as_fd()))?;
        self.tree.inodes[ROOT] = self.inode_from_stat(&st, xattrs);
        self.report.directories += 1;
        self.scan_dir(fd, ROOT)
    }

    fn scan_dir(&mut self, fd: OwnedFd, dir: InodeId) -> Result<()> {
        let entries = self.list_dir(&fd)?;
        let mut subdirs = 0u32;
        for entry in entries {
            if self.abort.load(Ordering::Relaxed) {
                // A worker failed; its error is the one reported.
                return Ok(());
            }
            self.rel.push(OsStr::from_bytes(&entry.name));
            if self.depth >= MAX_DEPTH {
                // Refused before descending: the scan recurses once per level.
                bail!(
                    "{}: more than {MAX_DEPTH} path components, the most a composefs image \
                     holds",
                    self.full_path().display()
                );
            }
            self.depth += 1;
            let added = self.scan_entry(fd.as_fd(), &entry);
            self.depth -= 1;
            let added = added?;
            self.rel.pop();
            if let Some(child) = added {
                if self.tree.inodes[child.inode].is_dir() {
                    subdirs += 1;
                }
                self.tree.inodes[dir].entries.insert(entry.name, child);
            }
        }
        // What the image records for a directory (lcfs_compute_tree fixes it up the same way).
        self.tree.inodes[dir].nlink = 2 + subdirs;
        Ok(())
    }

    fn list_dir(&self, fd: &OwnedFd) -> Result<Vec<Pending>> {
        let path = || format!("reading directory {}", self.full_path().display());
        let mut dir = rustix::fs::Dir::read_from(fd).with_context(path)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.with_context(path)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push(Pending {
                name: name.into(),
                kind: entry.file_type(),
            });
        }
        Ok(out)
    }

    /// Reads one entry of the directory `dirfd`; `None` when it is left out.
    fn scan_entry(&mut self, dirfd: BorrowedFd, entry: &Pending) -> Result<Option<DirEntry>> {
        let name = &*entry.name;
        // d_type saves a stat for the two common kinds; anything else (including
        // DT_UNKNOWN) is stat-ed first and dispatched on the real type.
        let kind = match entry.kind {
            DirentType::Directory | DirentType::RegularFile => entry.kind,
            _ => {
                let st = rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW).with_context(
                    || format!("reading metadata of {}", self.full_path().display()),
                )?;
                match FileType::from_mode(st.st_mode) {
                    Some(FileType::Directory) => DirentType::Directory,
                    Some(FileType::Regular) => DirentType::RegularFile,
                    _ => return self.scan_special(dirfd, name, &st),
                }
            }
        };
        let dir = kind == DirentType::Directory;
        let flags = OFlags::RDONLY
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            // A file swapped for a fifo after readdir must not block the scan.
            | OFlags::NONBLOCK
            | if dir { OFlags::DIRECTORY } else { OFlags::empty() };
        let fd = match rustix::fs::openat(dirfd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            // mkcomposefs opens a regular file only to read its content, so an unreadable
            // empty file is fine (its xattrs are read through O_PATH like a symlink's).
            Err(e @ (rustix::io::Errno::ACCESS | rustix::io::Errno::PERM)) if !dir => {
                let st = rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW).with_context(
                    || format!("reading metadata of {}", self.full_path().display()),
                )?;
                if st.st_mode & mode::S_IFMT == mode::S_IFREG && st.st_size == 0 {
                    return self.scan_special(dirfd, name, &st);
                }
                return Err(e).with_context(|| format!("opening {}", self.full_path().display()));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("opening {}", self.full_path().display()));
            }
        };
        let st = rustix::fs::fstat(&fd)
            .with_context(|| format!("reading metadata of {}", self.full_path().display()))?;
        match FileType::from_mode(st.st_mode) {
            Some(FileType::Directory) if dir => {
                let xattrs = self.read_xattrs(XattrSource::Fd(fd.as_fd()))?;
                let id = self.tree.add_inode(self.inode_from_stat(&st, xattrs));
                self.report.directories += 1;
                self.scan_dir(fd, id)?;
                Ok(Some(DirEntry {
                    inode: id,
                    hardlink: false,
                }))
            }
            Some(FileType::Regular) if !dir => self.scan_regular(fd, &st),
            _ => bail!(
                "{} changed type while being read",
                self.full_path().display()
            ),
        }
    }

    fn scan_regular(&mut self, fd: OwnedFd, st: &Stat) -> Result<Option<DirEntry>> {
        if let Some(entry) = self.existing_link(st) {
            return Ok(Some(entry));
        }
        let xattrs = self.read_xattrs(XattrSource::Fd(fd.as_fd()))?;
        let mut inode = self.inode_from_stat(st, xattrs);
        let size = inode.size;
        self.report.regular_files += 1;
        let mut job = None;
        if size == 0 {
            // Empty files have neither content nor digest (lcfs_node_set_from_content).
        } else if size <= INLINE_RECOMMENDED_MAX {
            let mut buf = [0u8; INLINE_RECOMMENDED_MAX as usize];
            let data = &mut buf[..size as usize];
            hash::read_exact_at(&fd, data, 0)
                .with_context(|| format!("reading {}", self.full_path().display()))?;
            inode.inline = Some(data.into());
            self.report.inline_files += 1;
        } else {
            self.report.external_files += 1;
            let key = FileKey::from_stat(st);
            match self.sink.and_then(|s| Some((s, s.cached_digest(&key)?))) {
                Some((sink, digest)) => {
                    sink.remember(&key, &digest);
                    inode.payload = Some(digest.object_path().into_bytes().into_boxed_slice());
                    inode.digest = Some(digest);
                    self.report.cached_files += 1;
                    self.report.objects_present += 1;
                }
                None => job = Some((fd, key)),
            }
        }
        let id = self.tree.add_inode(inode);
        self.remember_link(st, id);
        if let Some((fd, key)) = job {
            // Start reading it from disk now, while the workers are busy with earlier
            // files (measured on a cold ext4 tree: a quarter to a third faster; no cost
            // on cached data). Only advice: failure changes nothing.
            let _ = rustix::fs::fadvise(&fd, 0, NonZeroU64::new(size), Advice::WillNeed);
            self.pool.submit(hash::Job {
                inode: id,
                file: fd.into(),
                size,
                path: self.full_path(),
                key,
            });
            self.pool.collect_ready(&mut self.tree, &mut self.report);
        }
        Ok(Some(DirEntry {
            inode: id,
            hardlink: false,
        }))
    }

    /// Symlinks, devices, fifos, sockets, unknown types, and empty regular files that cannot
    /// be opened: everything read without a readable fd.
    fn scan_special(
        &mut self,
        dirfd: BorrowedFd,
        name: &[u8],
        st: &Stat,
    ) -> Result<Option<DirEntry>> {
        let skip = match FileType::from_mode(st.st_mode) {
            Some(FileType::Socket) if self.opts.skip_sockets => Some(SkipReason::Socket),
            Some(FileType::CharDevice | FileType::BlockDevice) if self.opts.skip_devices => {
                Some(SkipReason::Device)
            }
            None => Some(SkipReason::UnknownType),
            _ => None,
        };
        if let Some(reason) = skip {
            if reason != SkipReason::Device {
                tracing::warn!(
                    path = %self.full_path().display(),
                    mode = format_args!("{:o}", st.st_mode),
                    "leaving out {reason:?}: not put in the image"
                );
            }
            self.report.skipped.push((self.rel.clone(), reason));
            return Ok(None);
        }
        if let Some(entry) = self.existing_link(st) {
            return Ok(Some(entry));
        }
        let symlink = st.st_mode & mode::S_IFMT == mode::S_IFLNK;
        let target = if symlink {
            let target = rustix::fs::readlinkat(dirfd, name, Vec::new())
                .with_context(|| format!("reading symlink {}", self.full_path().display()))?;
            Some(target.into_bytes().into_boxed_slice())
        } else {
            None
        };
        let xattrs = if self.opts.xattrs == XattrFilter::None {
            Vec::new()
        } else {
            // No readable fd can be opened on these; an O_PATH fd reached through
            // /proc/self/fd reads the xattrs of the inode itself, not of a symlink's target.
            let fd = rustix::fs::openat(
                dirfd,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("opening {}", self.full_path().display()))?;
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            self.read_xattrs(XattrSource::Path(&proc_path))?
        };
        let mut inode = self.inode_from_stat(st, xattrs);
        if let Some(target) = target {
            self.report.symlinks += 1;
            inode.payload = Some(target);
        } else if st.st_mode & mode::S_IFMT == mode::S_IFREG {
            self.report.regular_files += 1;
        } else {
            self.report.special_files += 1;
        }
        let id = self.tree.add_inode(inode);
        self.remember_link(st, id);
        Ok(Some(DirEntry {
            inode: id,
            hardlink: false,
        }))
    }

    /// With hard-link folding on, the entry for a name of an inode already in the tree.
    fn existing_link(&mut self, st: &Stat) -> Option<DirEntry> {
        if !self.opts.hardlinks || st.st_nlink < 2 {
            return None;
        }
        let id = *self.links.get(&(st.st_dev, st.st_ino))?;
        self.tree.inodes[id].nlink += 1;
        self.report.hardlinks += 1;
        // Which name is primary is settled once the whole tree is known.
        Some(DirEntry {
            inode: id,
            hardlink: true,
        })
    }

    fn remember_link(&mut self, st: &Stat, id: InodeId) {
        if self.opts.hardlinks && st.st_nlink > 1 {
            self.links.insert((st.st_dev, st.st_ino), id);
        }
    }

    fn inode_from_stat(&self, st: &Stat, xattrs: Vec<Xattr>) -> Inode {
        let mut inode = Inode::new(st.st_mode);
        inode.uid = st.st_uid;
        inode.gid = st.st_gid;
        inode.rdev = st.st_rdev;
        inode.xattrs = xattrs;
        if st.st_mode & mode::S_IFMT != mode::S_IFDIR {
            // Directory sizes are the writer's to compute.
            inode.size = st.st_size as u64;
        }
        if !self.opts.use_epoch {
            inode.mtime = Timestamp {
                sec: st.st_mtime,
                nsec: st.st_mtime_nsec as u32,
            };
        }
        inode
    }

    fn read_xattrs(&mut self, from: XattrSource) -> Result<Vec<Xattr>> {
        if self.opts.xattrs == XattrFilter::None {
            return Ok(Vec::new());
        }
        let len = match with_small_buf_first(&mut self.list_buf, |buf| match from {
            XattrSource::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            XattrSource::Path(p) => rustix::fs::listxattr(p, buf),
        }) {
            Ok(len) => len,
            // Filesystems without xattr support have none to copy.
            Err(rustix::io::Errno::OPNOTSUPP) => 0,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading xattrs of {}", self.full_path().display()));
            }
        };
        let mut xattrs = Vec::new();
        for name in self.list_buf[..len]
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
        {
            if self.opts.xattrs == XattrFilter::UserOnly && !name.starts_with(b"user.") {
                continue;
            }
            let vlen = with_small_buf_first(&mut self.value_buf, |buf| match from {
                XattrSource::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
                XattrSource::Path(p) => rustix::fs::getxattr(p, name, buf),
            });
            let vlen = match vlen {
                Ok(n) => n,
                // Removed between list and get: it is simply not there any more.
                Err(rustix::io::Errno::NODATA) => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "reading xattr {} of {}",
                            String::from_utf8_lossy(name),
                            self.full_path().display()
                        )
                    });
                }
            };
            xattrs.push(Xattr {
                name: name.into(),
                value: self.value_buf[..vlen].into(),
            });
        }
        Ok(xattrs)
    }
}

/// Calls `f` with the first [`XATTR_TRY`] bytes of `buf`, and again with all of it when that
/// was too small. The kernel allocates (and for values zeroes) a buffer of the size passed
/// in on every `listxattr`/`getxattr` (`fs/xattr.c`); at 64 KiB that cost a tenth of a
/// cached re-import, while nearly every list and value fits in a few hundred bytes.
fn with_small_buf_first(
    buf: &mut [u8],
    mut f: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<usize> {
    match f(&mut buf[..XATTR_TRY]) {
        Err(rustix::io::Errno::RANGE) => f(buf),
        other => other,
    }
}

/// Size of the first try of [`with_small_buf_first`].
const XATTR_TRY: usize = 1024;

#[derive(Clone, Copy)]
enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    Path(&'a str),
}

/// Makes the first name of each hard-linked inode, in depth-first name order (the order
/// `composefs-info dump` lists an image in, and the dump parser's "first one defines it"),
/// its primary entry, and every later name a hard link.
fn mark_primary_links(tree: &mut Tree) {
    fn visit(tree: &mut Tree, dir: InodeId, seen: &mut [bool]) {
        let linked: Vec<(Box<[u8]>, DirEntry)> = tree.inodes[dir]
            .entries
            .iter()
            .filter(|(_, e)| tree.inodes[e.inode].is_dir() || tree.inodes[e.inode].nlink > 1)
            .map(|(n, e)| (n.clone(), *e))
            .collect();
        for (name, entry) in linked {
            if tree.inodes[entry.inode].is_dir() {
                visit(tree, entry.inode, seen);
            } else {
                let hardlink = std::mem::replace(&mut seen[entry.inode], true);
                if let Some(e) = tree.inodes[dir].entries.get_mut(&name) {
                    e.hardlink = hardlink;
                }
            }
        }
    }
    let mut seen = vec![false; tree.inodes.len()];
    visit(tree, ROOT, &mut seen);
}
