//! The host's view of `/etc` (the upper directory over the booted image's `/etc`) and what
//! it changed: `cfsctl etc diff`, and the "what changed beneath" of merge conflicts.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use anyhow::Result;

use super::compare::{Difference, Meta, inode_type, is_dir, leaf_differences};
use super::image::ImageEtc;
use super::path::EtcPath;
use super::upper::{Leaf, UpperDir, UpperNode, scan};
use crate::tree::{FileType, InodeId};

/// One path the host changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The path.
    pub path: EtcPath,
    /// What happened to it.
    #[serde(flatten)]
    pub kind: ChangeKind,
}

/// How a path was changed. Serialized as `"kind": "added" | "modified" | "deleted"`, with
/// `"what": [...]` for `modified`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ChangeKind {
    /// Not in the booted image. Everything inside an added directory is listed too.
    Added,
    /// In the booted image, different now.
    Modified {
        /// What differs (`type` alone when the file type changed).
        what: Vec<Difference>,
    },
    /// In the booted image, gone now. A deleted directory is one change: what it held is
    /// not listed.
    Deleted,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ChangeKind::Added => write!(f, "{} added", self.path),
            ChangeKind::Deleted => write!(f, "{} deleted", self.path),
            ChangeKind::Modified { what } => {
                let what: Vec<&str> = what.iter().map(|d| d.as_str()).collect();
                write!(f, "{} modified ({})", self.path, what.join(", "))
            }
        }
    }
}

/// Every path the host changed in `/etc`, relative to `base` (the booted image), sorted by
/// path. `upper_dir` is the booted deployment's `/etc` upper directory.
pub fn diff(base: &ImageEtc, upper_dir: &Path) -> Result<Vec<Change>> {
    let upper = scan(upper_dir, &[base])?;
    let mut out = Vec::new();
    let root = base.root();
    let what = root_differences(&upper.meta, &image_root_meta(base));
    if !what.is_empty() {
        out.push(Change {
            path: EtcPath::root(),
            kind: ChangeKind::Modified { what },
        });
    }
    let local = LocalDir {
        upper: &upper,
        lower: root,
    };
    children_changes(base, &EtcPath::root(), local, root, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The metadata of an image's `/etc` (the default when it has none).
pub(crate) fn image_root_meta(image: &ImageEtc) -> Meta {
    image
        .root()
        .map(|r| Meta::of_inode(image.inode(r)))
        .unwrap_or_else(Meta::etc_default)
}

/// How the host changed `/etc`'s own metadata. The upper directory's metadata is what the
/// host sees, but `cfs-setup-root` creates it as 0755 root without xattrs whatever the
/// image says: that state is "unchanged".
pub(crate) fn root_differences(local: &Meta, base: &Meta) -> Vec<Difference> {
    let mut what = Vec::new();
    if *local != Meta::etc_default() {
        local.differences(base, FileType::Directory, &mut what);
    }
    what
}

/// The host's view of a directory: an upper directory, merged with the booted image's
/// directory `lower` unless that is hidden (opaque upper, or no directory below).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalDir<'u> {
    /// The upper directory.
    pub upper: &'u UpperDir,
    /// The base directory showing through, if any.
    pub lower: Option<InodeId>,
}

/// What the host has at a name it may have changed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LocalChild<'u> {
    /// Nothing: deleted (whiteout), or hidden by an opaque directory.
    Absent,
    /// A non-directory from the upper layer.
    Leaf(&'u Leaf),
    /// A directory from the upper layer.
    Dir(LocalDir<'u>),
}

impl<'u> LocalDir<'u> {
    /// The names that may differ from the base directory `b` (this path in the booted
    /// image), sorted, each with what the host has there: every name in the upper
    /// directory and, when nothing shows through, every name of `b` (those not in the
    /// upper directory are gone). Names only in the lower directory are unchanged.
    pub fn children(&self, base: &ImageEtc, b: Option<InodeId>) -> Vec<(Vec<u8>, LocalChild<'u>)> {
        let mut names: BTreeSet<&[u8]> = self.upper.entries.keys().map(|k| &**k).collect();
        if self.lower.is_none() {
            names.extend(base.names(b));
        }
        names
            .into_iter()
            .map(|name| {
                let child = match self.upper.entries.get(name) {
                    None | Some(UpperNode::Whiteout) => LocalChild::Absent,
                    Some(UpperNode::Leaf(leaf)) => LocalChild::Leaf(leaf),
                    Some(UpperNode::Dir(dir)) => LocalChild::Dir(LocalDir {
                        upper: dir,
                        lower: if dir.opaque {
                            None
                        } else {
                            base.child_of(self.lower, name)
                                .filter(|&c| is_dir(base, Some(c)))
                        },
                    }),
                };
                (name.to_vec(), child)
            })
            .collect()
    }
}

/// Appends the host's changes to a directory (at `path`, `b` in the booted image) and
/// everything beneath it.
pub(crate) fn dir_changes(
    base: &ImageEtc,
    path: &EtcPath,
    local: LocalDir,
    b: Option<InodeId>,
    out: &mut Vec<Change>,
) -> Result<()> {
    let kind = match b.map(|b| base.inode(b)) {
        None => Some(ChangeKind::Added),
        Some(inode) if inode_type(inode) != FileType::Directory => Some(ChangeKind::Modified {
            what: vec![Difference::Type],
        }),
        Some(inode) => {
            let mut what = Vec::new();
            let meta = Meta::of_inode(inode);
            local
                .upper
                .meta
                .differences(&meta, FileType::Directory, &mut what);
            (!what.is_empty()).then_some(ChangeKind::Modified { what })
        }
    };
    if let Some(kind) = kind {
        out.push(Change {
            path: path.clone(),
            kind,
        });
    }
    let b_dir = b.filter(|&b| is_dir(base, Some(b)));
    children_changes(base, path, local, b_dir, out)
}

/// The host's changes beneath a directory, not to the directory itself.
pub(crate) fn children_changes(
    base: &ImageEtc,
    path: &EtcPath,
    local: LocalDir,
    b_dir: Option<InodeId>,
    out: &mut Vec<Change>,
) -> Result<()> {
    for (name, child) in local.children(base, b_dir) {
        let path = path.join(&name);
        let b = base.child_of(b_dir, &name);
        match child {
            LocalChild::Absent => {
                if b.is_some() {
                    out.push(Change {
                        path,
                        kind: ChangeKind::Deleted,
                    });
                }
            }
            LocalChild::Leaf(leaf) => {
                let kind = match b {
                    None => Some(ChangeKind::Added),
                    Some(b) => {
                        let what = leaf_differences(leaf, base.inode(b), base, &path)?;
                        (!what.is_empty()).then_some(ChangeKind::Modified { what })
                    }
                };
                if let Some(kind) = kind {
                    out.push(Change { path, kind });
                }
            }
            LocalChild::Dir(dir) => dir_changes(base, &path, dir, b, out)?,
        }
    }
    Ok(())
}
