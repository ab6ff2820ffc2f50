//! Reading an `/etc` upper directory: what the host changed, as overlayfs recorded it.
//!
//! The upper directory is host-writable, so it is read as hostile: every entry is opened
//! with `O_PATH | O_NOFOLLOW` relative to its directory's descriptor and everything else
//! (type, xattrs, symlink target, content) is read through that descriptor, so no symlink
//! is ever followed and a name swapped between two calls cannot redirect a read. Regular
//! files are reopened for reading through `/proc/self/fd`, which reaches the same inode.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustix::fs::{CWD, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::compare::{Meta, is_overlay_xattr};
use super::image::ImageEtc;
use super::path::EtcPath;
use crate::erofs::format::overlay_xattr;
use crate::fsverity::Digest;
use crate::fsverity::ioctl::compute_digest_at;
use crate::tree::{FileType, InodeId, Xattr};

/// Deepest directory nesting read from an upper directory. A real `/etc` is a handful of
/// levels deep; the bound keeps a hostile upper from exhausting descriptors or the stack
/// (one open directory and one stack frame per level).
pub const MAX_UPPER_DEPTH: usize = 256;

/// Room for the largest xattr name list or value (`XATTR_LIST_MAX`, `XATTR_SIZE_MAX` in
/// `include/uapi/linux/limits.h`).
const XATTR_MAX: usize = 65536;

/// A directory of the upper layer.
#[derive(Debug)]
pub(crate) struct UpperDir {
    /// Its own metadata.
    pub meta: Meta,
    /// `trusted.overlay.opaque=y`: the lower directory is hidden.
    pub opaque: bool,
    /// Its entries by name.
    pub entries: BTreeMap<Box<[u8]>, UpperNode>,
}

/// One entry of the upper layer.
#[derive(Debug)]
pub(crate) enum UpperNode {
    /// A character device 0:0: the lower entry is deleted.
    Whiteout,
    /// A directory (created, or copied up to hold changed entries).
    Dir(UpperDir),
    /// Anything else: file, symlink, device, fifo, socket.
    Leaf(Leaf),
}

/// A non-directory of the upper layer.
#[derive(Debug)]
pub(crate) struct Leaf {
    /// File type (never a directory).
    pub ftype: FileType,
    /// Metadata.
    pub meta: Meta,
    /// Size of a regular file.
    pub size: u64,
    /// Device number of a device.
    pub rdev: u64,
    /// Symlink target.
    pub target: Option<Box<[u8]>>,
    /// fs-verity digest of a regular file, computed only when an image being compared has
    /// a regular file of the same size at the same path.
    pub digest: Option<Digest>,
}

/// Reads the upper directory at `upper`. Regular files are hashed (with the algorithm of
/// the first image) only where one of `images` has a regular file of the same non-zero
/// size at the same path: the comparisons need nothing more.
pub(crate) fn scan(upper: &Path, images: &[&ImageEtc]) -> Result<UpperDir> {
    let fd = rustix::fs::openat(
        CWD,
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening the /etc upper directory {}", upper.display()))?;
    let mut scanner = Scanner {
        upper,
        images,
        algorithm: images.first().map(|i| i.algorithm()).unwrap_or_default(),
    };
    let at: Vec<Option<InodeId>> = images.iter().map(|i| i.root()).collect();
    scanner
        .dir(fd, &EtcPath::root(), &at, 0)
        .with_context(|| format!("reading the /etc upper directory {}", upper.display()))
}

struct Scanner<'s, 'i> {
    upper: &'s Path,
    images: &'s [&'s ImageEtc<'i>],
    algorithm: crate::fsverity::Algorithm,
}

impl Scanner<'_, '_> {
    /// Reads directory `fd` (at `path`); `at[i]` is the same path in `images[i]`.
    fn dir(
        &mut self,
        fd: OwnedFd,
        path: &EtcPath,
        at: &[Option<InodeId>],
        depth: usize,
    ) -> Result<UpperDir> {
        if depth > MAX_UPPER_DEPTH {
            bail!("{path}: nested deeper than {MAX_UPPER_DEPTH} directories");
        }
        let st = rustix::fs::fstat(&fd).with_context(|| format!("{path}: stat"))?;
        let (meta, flags) = read_meta(fd.as_fd(), &st, path)?;
        if flags.redirect {
            // redirect_dir=on would make this directory show another lower directory.
            bail!(
                "{path}: has trusted.overlay.redirect; the /etc overlay must be mounted without redirect_dir"
            );
        }
        let mut entries = BTreeMap::new();
        let mut dir =
            rustix::fs::Dir::read_from(&fd).with_context(|| format!("{path}: opendir"))?;
        while let Some(entry) = dir.read() {
            let entry = entry.with_context(|| format!("{path}: readdir"))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let child_path = path.join(name);
            let child_at: Vec<Option<InodeId>> = self
                .images
                .iter()
                .zip(at)
                .map(|(img, &d)| img.child_of(d, name))
                .collect();
            if let Some(node) = self.entry(fd.as_fd(), name, &child_path, &child_at, depth)? {
                entries.insert(name.into(), node);
            }
        }
        Ok(UpperDir {
            meta,
            opaque: flags.opaque,
            entries,
        })
    }

    fn entry(
        &mut self,
        dirfd: BorrowedFd,
        name: &[u8],
        path: &EtcPath,
        at: &[Option<InodeId>],
        depth: usize,
    ) -> Result<Option<UpperNode>> {
        let fd = match open_path(dirfd, name) {
            Ok(fd) => fd,
            // Removed since readdir (the host keeps running): not there.
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{path}: open")),
        };
        let st = rustix::fs::fstat(&fd).with_context(|| format!("{path}: stat"))?;
        let ftype = FileType::from_mode(st.st_mode)
            .with_context(|| format!("{path}: unknown file type {:o}", st.st_mode))?;
        match ftype {
            FileType::CharDevice if st.st_rdev == 0 => Ok(Some(UpperNode::Whiteout)),
            FileType::Directory => {
                let dir = rustix::fs::openat(
                    &fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .with_context(|| format!("{path}: opening directory"))?;
                Ok(Some(UpperNode::Dir(self.dir(dir, path, at, depth + 1)?)))
            }
            _ => {
                let (meta, flags) = read_meta(fd.as_fd(), &st, path)?;
                if flags.metacopy {
                    bail!(
                        "{path}: has trusted.overlay.metacopy; the /etc overlay must be mounted without metacopy"
                    );
                }
                let target = if ftype == FileType::Symlink {
                    let t = rustix::fs::readlinkat(&fd, "", Vec::new())
                        .with_context(|| format!("{path}: readlink"))?;
                    Some(t.into_bytes().into_boxed_slice())
                } else {
                    None
                };
                let size = st.st_size as u64;
                let digest = if ftype == FileType::Regular && size > 0 && self.same_size(at, size) {
                    let file = reopen_regular(&fd).with_context(|| format!("{path}: open"))?;
                    let d = compute_digest_at(&file, self.algorithm).with_context(|| {
                        format!("{path}: reading it in {}", self.upper.display())
                    })?;
                    Some(d)
                } else {
                    None
                };
                Ok(Some(UpperNode::Leaf(Leaf {
                    ftype,
                    meta,
                    size,
                    rdev: st.st_rdev,
                    target,
                    digest,
                })))
            }
        }
    }

    /// True when one of the images has a regular file of `size` bytes here.
    fn same_size(&self, at: &[Option<InodeId>], size: u64) -> bool {
        self.images.iter().zip(at).any(|(img, id)| {
            id.map(|i| img.inode(i))
                .is_some_and(|i| i.file_type() == Some(FileType::Regular) && i.size == size)
        })
    }
}

/// The overlayfs xattrs of an upper entry that change how it is read.
#[derive(Default)]
pub(crate) struct OverlayFlags {
    /// `trusted.overlay.opaque` is `y`.
    pub opaque: bool,
    /// `trusted.overlay.redirect` is set.
    pub redirect: bool,
    /// `trusted.overlay.metacopy` is set.
    pub metacopy: bool,
}

/// Opens `name` in `dirfd` without following it, whatever it is.
pub(crate) fn open_path(dirfd: BorrowedFd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dirfd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// A readable descriptor of the regular file behind an `O_PATH` descriptor.
pub(crate) fn reopen_regular(fd: &OwnedFd) -> Result<File> {
    let st = rustix::fs::fstat(fd)?;
    if FileType::from_mode(st.st_mode) != Some(FileType::Regular) {
        bail!("not a regular file any more");
    }
    let file = rustix::fs::openat(
        CWD,
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(file))
}

/// Metadata and overlay flags of the entry behind `fd` (any descriptor, `O_PATH` included).
pub(crate) fn read_meta(fd: BorrowedFd, st: &Stat, path: &EtcPath) -> Result<(Meta, OverlayFlags)> {
    let xattrs = read_xattrs(fd).with_context(|| format!("{path}: reading xattrs"))?;
    let mut flags = OverlayFlags::default();
    for x in xattrs.iter().filter(|x| is_overlay_xattr(&x.name)) {
        match &*x.name {
            n if n == overlay_xattr::OPAQUE => flags.opaque = &*x.value == b"y",
            n if n == overlay_xattr::REDIRECT => flags.redirect = true,
            n if n == overlay_xattr::METACOPY => flags.metacopy = true,
            _ => {}
        }
    }
    Ok((Meta::new(st.st_mode, st.st_uid, st.st_gid, xattrs), flags))
}

/// Every xattr of the inode behind `fd`. Through `/proc/self/fd`, `getxattr` reaches the
/// inode itself even for an `O_PATH` descriptor of a symlink, not the symlink's target.
pub(crate) fn read_xattrs(fd: BorrowedFd) -> rustix::io::Result<Vec<Xattr>> {
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut buf = vec![0u8; XATTR_MAX];
    let len = match rustix::fs::listxattr(&proc, &mut buf[..]) {
        Ok(n) => n,
        Err(Errno::OPNOTSUPP) => 0,
        Err(e) => return Err(e),
    };
    let names: Vec<Vec<u8>> = buf[..len]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let n = match rustix::fs::getxattr(&proc, &name[..], &mut buf[..]) {
            Ok(n) => n,
            // Removed between list and get.
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e),
        };
        out.push(Xattr {
            name: name.into_boxed_slice(),
            value: buf[..n].into(),
        });
    }
    Ok(out)
}
