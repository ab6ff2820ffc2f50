//! What "equal" means for `/etc` entries: same type, permission bits, owner, xattrs (other
//! than overlayfs' own `trusted.overlay.*`) and content (bytes, symlink target, device
//! number). The modification time is ignored: a copy-up or a package touching a file
//! does not make it a local change.

use anyhow::{Result, bail};

use super::image::ImageEtc;
use super::path::EtcPath;
use super::upper::Leaf;
use crate::erofs::format::overlay_xattr;
use crate::tree::{FileType, Inode, InodeId, Xattr, mode};

/// One way a path differs between two versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Difference {
    /// The file type (the other fields are not compared then).
    Type,
    /// Regular file bytes, or the number of a device.
    Content,
    /// Symlink target.
    Target,
    /// Permission bits (`mode & 0o7777`).
    Mode,
    /// uid or gid.
    Owner,
    /// Extended attributes (other than `trusted.overlay.*`).
    Xattrs,
}

impl Difference {
    /// The word used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Difference::Type => "type",
            Difference::Content => "content",
            Difference::Target => "target",
            Difference::Mode => "mode",
            Difference::Owner => "owner",
            Difference::Xattrs => "xattrs",
        }
    }
}

/// True for the xattrs overlayfs keeps for itself in an upper layer (`trusted.overlay.*`:
/// origin, impure, opaque, redirect, ...): never compared, never copied.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(overlay_xattr::PREFIX)
}

/// The metadata of an entry that the merge compares and copies (not the mtime).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, `mode & 0o7777`.
    pub perms: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Xattrs without `trusted.overlay.*`, sorted by name.
    pub xattrs: Vec<Xattr>,
}

impl Meta {
    /// Metadata from a full `st_mode` and the rest; `xattrs` is filtered and sorted here.
    pub fn new(mode: u32, uid: u32, gid: u32, xattrs: impl IntoIterator<Item = Xattr>) -> Self {
        let mut xattrs: Vec<Xattr> = xattrs
            .into_iter()
            .filter(|x| !is_overlay_xattr(&x.name))
            .collect();
        xattrs.sort();
        Meta {
            perms: mode & 0o7777,
            uid,
            gid,
            xattrs,
        }
    }

    /// An image inode's metadata.
    pub fn of_inode(inode: &Inode) -> Self {
        Meta::new(
            inode.mode,
            inode.uid,
            inode.gid,
            inode.xattrs.iter().cloned(),
        )
    }

    /// What `/etc` looks like when nobody set anything: the upper directory as
    /// `cfs-setup-root` creates it (0755, root, no xattrs; composefs-rs#287), and the `/etc`
    /// of an image that has none.
    pub fn etc_default() -> Self {
        Meta::new(0o755, 0, 0, [])
    }

    /// Appends how `self` differs from `other`. Symlink permission bits mean nothing on
    /// Linux (always 0777) and are not compared.
    pub fn differences(&self, other: &Meta, ftype: FileType, out: &mut Vec<Difference>) {
        if ftype != FileType::Symlink && self.perms != other.perms {
            out.push(Difference::Mode);
        }
        if (self.uid, self.gid) != (other.uid, other.gid) {
            out.push(Difference::Owner);
        }
        if self.xattrs != other.xattrs {
            out.push(Difference::Xattrs);
        }
    }

    /// True when `self` and `other` are equal as metadata of an entry of type `ftype`.
    pub fn same_as(&self, other: &Meta, ftype: FileType) -> bool {
        let mut d = Vec::new();
        self.differences(other, ftype, &mut d);
        d.is_empty()
    }
}

/// The file type of an inode's mode (an unknown type reads as a regular file: the image
/// reader refuses those anyway).
pub(crate) fn inode_type(inode: &Inode) -> FileType {
    inode.file_type().unwrap_or(FileType::Regular)
}

/// How the host's non-directory `leaf` differs from the image's `inode` at `path` (empty:
/// equal). The leaf's digest must have been computed when the sizes match (see
/// [`super::upper::scan`]).
pub(crate) fn leaf_differences(
    leaf: &Leaf,
    inode: &Inode,
    image: &ImageEtc,
    path: &EtcPath,
) -> Result<Vec<Difference>> {
    let ftype = inode_type(inode);
    if leaf.ftype != ftype {
        return Ok(vec![Difference::Type]);
    }
    let mut out = Vec::new();
    match ftype {
        FileType::Regular => {
            if !leaf_content_equal(leaf, inode, image, path)? {
                out.push(Difference::Content);
            }
        }
        FileType::Symlink => {
            if leaf.target.as_deref() != inode.payload.as_deref() {
                out.push(Difference::Target);
            }
        }
        FileType::CharDevice | FileType::BlockDevice => {
            if leaf.rdev != inode.rdev {
                out.push(Difference::Content);
            }
        }
        FileType::Directory | FileType::Fifo | FileType::Socket => {}
    }
    leaf.meta
        .differences(&Meta::of_inode(inode), ftype, &mut out);
    Ok(out)
}

/// Size first; the fs-verity digest only when the sizes agree.
fn leaf_content_equal(
    leaf: &Leaf,
    inode: &Inode,
    image: &ImageEtc,
    path: &EtcPath,
) -> Result<bool> {
    if leaf.size != inode.size {
        return Ok(false);
    }
    if leaf.size == 0 {
        return Ok(true);
    }
    let Some(local) = leaf.digest else {
        bail!("{path}: the upper file's digest was not computed (internal error)");
    };
    Ok(local == image.content_digest(inode, path)?)
}

/// True when the entries `a` (in image `ia`) and `b` (in `ib`) are equal, directories with
/// everything beneath them.
pub(crate) fn images_equal(
    ia: &ImageEtc,
    a: InodeId,
    ib: &ImageEtc,
    b: InodeId,
    path: &EtcPath,
) -> Result<bool> {
    let (x, y) = (ia.inode(a), ib.inode(b));
    let ftype = inode_type(x);
    if ftype != inode_type(y) || !Meta::of_inode(x).same_as(&Meta::of_inode(y), ftype) {
        return Ok(false);
    }
    Ok(match ftype {
        FileType::Regular => {
            x.size == y.size && ia.content_digest(x, path)? == ib.content_digest(y, path)?
        }
        FileType::Symlink => x.payload == y.payload,
        FileType::CharDevice | FileType::BlockDevice => x.rdev == y.rdev,
        FileType::Fifo | FileType::Socket => true,
        FileType::Directory => {
            if !x.entries.keys().eq(y.entries.keys()) {
                return Ok(false);
            }
            for (name, e) in &x.entries {
                let other = y.entries[name].inode;
                if !images_equal(ia, e.inode, ib, other, &path.join(name))? {
                    return Ok(false);
                }
            }
            true
        }
    })
}

/// [`images_equal`] for entries that may be missing: two missing entries are equal.
pub(crate) fn images_equal_opt(
    ia: &ImageEtc,
    a: Option<InodeId>,
    ib: &ImageEtc,
    b: Option<InodeId>,
    path: &EtcPath,
) -> Result<bool> {
    match (a, b) {
        (None, None) => Ok(true),
        (Some(a), Some(b)) => images_equal(ia, a, ib, b, path),
        _ => Ok(false),
    }
}

/// True when `inode` is a directory (for optional ids).
pub(crate) fn is_dir(image: &ImageEtc, id: Option<InodeId>) -> bool {
    id.is_some_and(|i| image.inode(i).mode & mode::S_IFMT == mode::S_IFDIR)
}
