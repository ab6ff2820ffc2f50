//! First stage of writing: turns a [`Tree`] into the list of inodes mkcomposefs would write,
//! in its order and with its rewrites (`rewrite_tree_for_erofs` and `lcfs_compute_tree` in
//! `lcfs-writer-erofs.c` / `lcfs-writer.c`, composefs 1.0.8):
//!
//! - inodes are numbered breadth-first from the root, children in bytewise name order;
//!   extra hard-link names are not inodes of their own;
//! - every directory gets `.` and `..` entries, sorted in among the others;
//! - existing `trusted.overlay.*` xattrs are escaped to `trusted.overlay.overlay.*`;
//! - external regular files get `trusted.overlay.metacopy` (with the fs-verity digest) and
//!   `trusted.overlay.redirect` (`/` + backing path);
//! - character devices 0:0 (whiteouts) become empty regular files marked with escaped
//!   whiteout xattrs, their directory marked too (and opaque `x` from format version 1);
//! - the root gets `trusted.overlay.opaque=y` and 256 real whiteouts `00`..`ff` (those not
//!   already present), so overlayfs can use the image as a data-only lower layer.

use std::borrow::Cow;

use super::{TreeRule, WriteError};
use crate::erofs::limits::{
    INLINE_CONTENT_MAX, MAX_CHUNKS, MAX_DEPTH, NAME_MAX, PAYLOAD_MAX, XATTR_NAME_MAX,
    XATTR_VALUE_MAX, XATTRS_INPUT_MAX, chunk_bits, chunk_count,
};
use crate::tree::{FileType, InodeId, ROOT, Timestamp, Tree, mode};

use crate::erofs::format::overlay_xattr::{
    ESCAPE_PREFIX as OVERLAY_ESCAPE_PREFIX, ESCAPED_OPAQUE as XATTR_ESCAPED_OPAQUE,
    ESCAPED_WHITEOUT as XATTR_ESCAPED_WHITEOUT, ESCAPED_WHITEOUTS as XATTR_ESCAPED_WHITEOUTS,
    METACOPY as XATTR_METACOPY, OPAQUE as XATTR_OPAQUE, PREFIX as OVERLAY_PREFIX,
    REDIRECT as XATTR_REDIRECT, USER_OPAQUE as XATTR_USER_OPAQUE,
    USER_WHITEOUT as XATTR_USER_WHITEOUT, USER_WHITEOUTS as XATTR_USER_WHITEOUTS,
};
const XATTR_SELINUX: &[u8] = b"security.selinux";
/// Version byte of overlayfs's `struct ovl_metacopy` (`fs/overlayfs/overlayfs.h`), the value
/// of `trusted.overlay.metacopy`: version, length, flags, fs-verity algorithm, digest.
const METACOPY_VERSION: u8 = 0;

/// Names of the 256 whiteout stubs, `00`..`ff`.
static STUB_NAMES: [[u8; 2]; 256] = {
    let hex = b"0123456789abcdef";
    let mut names = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        names[i] = [hex[i >> 4], hex[i & 15]];
        i += 1;
    }
    names
};

/// One xattr as written.
#[derive(Debug, Clone)]
pub struct NodeXattr<'a> {
    pub name: Cow<'a, [u8]>,
    pub value: Cow<'a, [u8]>,
}

/// What follows an inode's metadata.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// Nothing (empty files, devices, fifos, sockets, whiteouts).
    None,
    /// A directory; its entries are `children[start..end]` of [`Prepared`].
    Dir { start: usize, end: usize },
    /// A symlink target.
    Symlink(&'a [u8]),
    /// Content stored in the image.
    Inline(&'a [u8]),
    /// An external file: a chunk table of holes, the data comes from the backing file.
    External { chunks: u64, chunk_bits: u32 },
}

/// One inode as mkcomposefs writes it, before layout.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// The tree inode, `None` for a whiteout stub.
    pub src: Option<InodeId>,
    /// Primary name and parent node, for error messages.
    pub name: &'a [u8],
    pub parent: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    pub mtime: Timestamp,
    /// Sorted by name.
    pub xattrs: Vec<NodeXattr<'a>>,
    pub data: Data<'a>,
}

/// A directory entry as written: name and target node.
#[derive(Debug, Clone, Copy)]
pub struct Child<'a> {
    pub name: &'a [u8],
    pub node: u32,
}

/// The whole prepared image content.
#[derive(Debug)]
pub struct Prepared<'a> {
    pub nodes: Vec<Node<'a>>,
    pub children: Vec<Child<'a>>,
    pub version: u32,
    pub min_mtime: Timestamp,
    pub has_acl: bool,
}

/// `/`-separated path of a node, for messages.
pub fn node_path(nodes: &[Node], mut idx: u32) -> String {
    let mut parts = Vec::new();
    while idx != 0 {
        let n = &nodes[idx as usize];
        parts.push(n.name.escape_ascii().to_string());
        idx = n.parent;
    }
    parts.reverse();
    format!("/{}", parts.join("/"))
}

fn ftype(mode: u32) -> Option<FileType> {
    FileType::from_mode(mode)
}

/// mkcomposefs's whiteout test: a character device with device number 0:0.
fn is_whiteout(mode: u32, rdev: u32) -> bool {
    mode & mode::S_IFMT == mode::S_IFCHR && rdev == 0
}

/// The format version to write (`lcfs_write_to` and `lcfs_write_update_version`): the
/// minimum, raised to 1 when the maximum allows it and the tree has whiteouts, whose
/// handling changed in version 1.
fn choose_version(tree: &Tree, min: u32, max: u32) -> u32 {
    let max = max.max(min);
    if min >= 1 || max < 1 {
        return min;
    }
    let mut any = false;
    let mut stack = vec![ROOT];
    while let Some(id) = stack.pop() {
        let inode = &tree.inodes[id];
        if is_whiteout(inode.mode, inode.rdev as u32) {
            any = true;
            break;
        }
        stack.extend(
            inode
                .entries
                .values()
                .filter(|e| !e.hardlink && e.inode < tree.inodes.len())
                .map(|e| e.inode),
        );
    }
    if any { 1 } else { min }
}

/// Sets an xattr as `lcfs_node_set_xattr` does on mkcomposefs's cloned tree: a repeated
/// name replaces the old value. The clone starts its size accounting at 0 (the count is not
/// copied), so replacing an xattr that came from the input underflows it and can make the
/// C writer fail; this reproduces that accounting with the same wrapping arithmetic.
fn set_xattr<'a>(
    xattrs: &mut Vec<NodeXattr<'a>>,
    budget: &mut u64,
    name: &'a [u8],
    value: Cow<'a, [u8]>,
) -> Result<(), TreeRule> {
    const META: u64 = 2 * 4 - 1;
    if let Some(pos) = xattrs.iter().position(|x| *x.name == *name) {
        let old = xattrs.swap_remove(pos);
        if xattrs.is_empty() {
            *budget = 0;
        } else {
            *budget = budget.wrapping_sub(META + name.len() as u64 + old.value.len() as u64);
        }
    }
    let mut entry = META + name.len() as u64 + value.len() as u64;
    if xattrs.is_empty() {
        entry += 12;
    }
    if budget.wrapping_add(entry) > XATTRS_INPUT_MAX as u64 {
        return Err(TreeRule::WriterXattrsTooLarge);
    }
    *budget = budget.wrapping_add(entry);
    xattrs.push(NodeXattr {
        name: Cow::Borrowed(name),
        value,
    });
    Ok(())
}

fn check_name(name: &[u8]) -> Result<(), TreeRule> {
    if name.is_empty() {
        Err(TreeRule::EmptyName)
    } else if name == b"." || name == b".." {
        Err(TreeRule::DotName)
    } else if name.len() > NAME_MAX {
        Err(TreeRule::NameTooLong)
    } else if name.contains(&b'/') || name.contains(&0) {
        Err(TreeRule::NameWithSlashOrNul)
    } else {
        Ok(())
    }
}

/// Builds the node list.
pub fn prepare(
    tree: &Tree,
    min_version: u32,
    max_version: u32,
) -> Result<Prepared<'_>, WriteError> {
    let version = choose_version(tree, min_version, max_version);
    let mut map: Vec<u32> = vec![u32::MAX; tree.inodes.len()];
    let mut nodes: Vec<Node> = Vec::with_capacity(tree.inodes.len() + 256);
    let mut children: Vec<Child> = Vec::with_capacity(tree.inodes.len() + 2 * 256);
    // Hard-link entries whose target may not be numbered yet: (child slot, tree inode).
    let mut pending: Vec<(usize, InodeId)> = Vec::new();
    // Per node writer-side xattr accounting, see `set_xattr`.
    let mut budgets: Vec<u64> = Vec::with_capacity(tree.inodes.len() + 256);

    nodes.push(source_node(tree, ROOT, b"", 0)?);
    budgets.push(0);
    map[ROOT] = 0;
    // Path components of each node (the root has none); stubs are never directories.
    let mut depths: Vec<usize> = Vec::with_capacity(tree.inodes.len() + 256);
    depths.push(0);

    let mut i = 0;
    while i < nodes.len() {
        let Some(id) = nodes[i].src else {
            i += 1;
            continue;
        };
        let inode = &tree.inodes[id];
        let err = |nodes: &Vec<Node>, rule: TreeRule| WriteError::Invalid {
            path: node_path(nodes, i as u32),
            rule,
        };
        if !inode.is_dir() {
            if !inode.entries.is_empty() {
                return Err(err(&nodes, TreeRule::EntriesOnNonDirectory));
            }
            i += 1;
            continue;
        }
        if depths[i] >= MAX_DEPTH
            && let Some(name) = inode.entries.keys().next()
        {
            // The reader refuses entries this deep: write nothing it cannot read.
            return Err(WriteError::Invalid {
                path: format!("{}/{}", node_path(&nodes, i as u32), name.escape_ascii()),
                rule: TreeRule::TooDeep,
            });
        }
        let start = children.len();
        let mut subdirs = 0u32;
        // Collect all names first and number the new inodes in sorted name order, as the
        // C writer's queue does; `.`, `..` and the stubs sort in bytewise.
        let mut dir: Vec<(&[u8], Slot)> = Vec::with_capacity(inode.entries.len() + 2);
        for (name, entry) in &inode.entries {
            check_name(name).map_err(|r| err(&nodes, r))?;
            if entry.inode >= tree.inodes.len() {
                return Err(err(&nodes, TreeRule::DanglingEntry));
            }
            if entry.hardlink {
                if tree.inodes[entry.inode].is_dir() {
                    return Err(err(&nodes, TreeRule::DirectoryHardlink));
                }
                dir.push((name, Slot::Link(entry.inode)));
            } else {
                dir.push((name, Slot::Primary(entry.inode)));
            }
        }
        dir.push((b".", Slot::Node(i as u32)));
        dir.push((b"..", Slot::Node(nodes[i].parent)));
        if i == 0 {
            for name in &STUB_NAMES {
                if !inode.entries.contains_key(&name[..]) {
                    dir.push((name, Slot::Stub));
                }
            }
        }
        dir.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (name, slot) in dir {
            let node = match slot {
                Slot::Node(n) => n,
                Slot::Link(id) => {
                    pending.push((children.len(), id));
                    u32::MAX
                }
                Slot::Primary(id) => {
                    if map[id] != u32::MAX {
                        return Err(err(&nodes, TreeRule::MultiplePrimaryEntries));
                    }
                    let idx = nodes.len() as u32;
                    map[id] = idx;
                    nodes.push(source_node(tree, id, name, i as u32)?);
                    budgets.push(0);
                    depths.push(depths[i] + 1);
                    if tree.inodes[id].is_dir() {
                        subdirs += 1;
                    }
                    idx
                }
                Slot::Stub => {
                    let idx = nodes.len() as u32;
                    nodes.push(stub_node(tree, &nodes[0], name));
                    budgets.push(0);
                    depths.push(1);
                    idx
                }
            };
            children.push(Child { name, node });
        }
        nodes[i].nlink = 2 + subdirs;
        nodes[i].data = Data::Dir {
            start,
            end: children.len(),
        };
        i += 1;
    }

    for (slot, id) in pending {
        let idx = map[id];
        if idx == u32::MAX {
            return Err(WriteError::Invalid {
                path: format!("(entry) {}", children[slot].name.escape_ascii()),
                rule: TreeRule::NoPrimaryEntry,
            });
        }
        children[slot].node = idx;
    }

    // Rewrite pass, in node order so a directory's own escaping happens before its
    // whiteout children mark it. Stubs (no `src`) are untouched.
    for i in 0..nodes.len() {
        let Some(id) = nodes[i].src else { continue };
        let inode = &tree.inodes[id];
        let fail = |nodes: &Vec<Node>, rule| WriteError::Invalid {
            path: node_path(nodes, i as u32),
            rule,
        };
        let node = &mut nodes[i];
        if node.mode & mode::S_IFMT == mode::S_IFREG
            && node.size > 0
            && matches!(node.data, Data::External { .. })
        {
            let value: Cow<[u8]> = match &inode.digest {
                Some(d) => {
                    let raw = d.as_bytes();
                    let mut v = Vec::with_capacity(4 + raw.len());
                    // struct ovl_metacopy: version, length, flags, algorithm, digest.
                    v.extend_from_slice(&[
                        METACOPY_VERSION,
                        (4 + raw.len()) as u8,
                        0,
                        d.algorithm().kernel_id(),
                    ]);
                    v.extend_from_slice(raw);
                    Cow::Owned(v)
                }
                None => Cow::Borrowed(&[]),
            };
            let budget = &mut budgets[i];
            // Usually the only two: no room for more (a Vec grows to 4).
            node.xattrs.reserve_exact(2);
            let added =
                set_xattr(&mut node.xattrs, budget, XATTR_METACOPY, value).and_then(
                    |()| match inode.payload.as_deref() {
                        Some(p) if !p.is_empty() => {
                            let mut v = Vec::with_capacity(1 + p.len());
                            v.push(b'/');
                            v.extend_from_slice(p);
                            set_xattr(&mut node.xattrs, budget, XATTR_REDIRECT, Cow::Owned(v))
                        }
                        _ => Ok(()),
                    },
                );
            added.map_err(|r| fail(&nodes, r))?;
        }
        let node = &mut nodes[i];
        if is_whiteout(node.mode, node.rdev) {
            node.size = 0;
            node.mode = mode::S_IFREG | (node.mode & !mode::S_IFMT);
            node.data = Data::None;
            let budget = &mut budgets[i];
            let empty = || Cow::Borrowed(&b""[..]);
            set_xattr(&mut node.xattrs, budget, XATTR_ESCAPED_WHITEOUT, empty())
                .and_then(|()| set_xattr(&mut node.xattrs, budget, XATTR_USER_WHITEOUT, empty()))
                .map_err(|r| fail(&nodes, r))?;
            let parent = nodes[i].parent as usize;
            let pnode = &mut nodes[parent];
            let budget = &mut budgets[parent];
            let mut r = set_xattr(&mut pnode.xattrs, budget, XATTR_ESCAPED_WHITEOUTS, empty())
                .and_then(|()| set_xattr(&mut pnode.xattrs, budget, XATTR_USER_WHITEOUTS, empty()));
            if version >= 1 {
                let x = || Cow::Borrowed(&b"x"[..]);
                r = r
                    .and_then(|()| set_xattr(&mut pnode.xattrs, budget, XATTR_ESCAPED_OPAQUE, x()))
                    .and_then(|()| set_xattr(&mut pnode.xattrs, budget, XATTR_USER_OPAQUE, x()));
            }
            r.map_err(|r| fail(&nodes, r))?;
        }
    }
    set_xattr(
        &mut nodes[0].xattrs,
        &mut budgets[0],
        XATTR_OPAQUE,
        Cow::Borrowed(b"y"),
    )
    .map_err(|rule| WriteError::Invalid {
        path: "/".into(),
        rule,
    })?;
    drop(budgets);

    let mut min_mtime = nodes[0].mtime;
    let mut has_acl = false;
    for node in &mut nodes {
        node.xattrs.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if (node.mtime.sec, node.mtime.nsec) < (min_mtime.sec, min_mtime.nsec) {
            min_mtime = node.mtime;
        }
        has_acl |= node.xattrs.iter().any(|x| {
            &*x.name == b"system.posix_acl_access" || &*x.name == b"system.posix_acl_default"
        });
    }
    Ok(Prepared {
        nodes,
        children,
        version,
        min_mtime,
        has_acl,
    })
}

/// Where a directory entry points while the directory is being numbered.
enum Slot {
    /// The inode's primary name: a new node.
    Primary(InodeId),
    /// An extra hard-link name, resolved once all nodes are numbered.
    Link(InodeId),
    /// `.` or `..`.
    Node(u32),
    /// A whiteout stub in the root.
    Stub,
}

/// A whiteout stub `00`..`ff`. Stubs are added after the rewrite pass, so they stay real
/// whiteouts, and inherit the root's owner, mtime and SELinux label
/// (`add_overlay_whiteouts`).
fn stub_node<'a>(tree: &'a Tree, root: &Node, name: &'a [u8]) -> Node<'a> {
    let mut xattrs = Vec::new();
    if let Some(label) = tree.inodes[ROOT].xattr(XATTR_SELINUX) {
        xattrs.push(NodeXattr {
            name: Cow::Borrowed(XATTR_SELINUX),
            value: Cow::Borrowed(label),
        });
    }
    Node {
        src: None,
        name,
        parent: 0,
        mode: mode::S_IFCHR | 0o644,
        nlink: 1,
        uid: root.uid,
        gid: root.gid,
        rdev: 0,
        size: 0,
        mtime: root.mtime,
        xattrs,
        data: Data::None,
    }
}

/// A node for tree inode `id`, with its input xattrs escaped, checked against mkcomposefs's
/// limits.
fn source_node<'a>(
    tree: &'a Tree,
    id: InodeId,
    name: &'a [u8],
    parent: u32,
) -> Result<Node<'a>, WriteError> {
    let inode = &tree.inodes[id];
    let invalid = |rule| WriteError::Invalid {
        path: format!("(inode {id}) {}", name.escape_ascii()),
        rule,
    };
    let ft = ftype(inode.mode).ok_or_else(|| invalid(TreeRule::InvalidMode))?;
    let mut xattrs = Vec::with_capacity(inode.xattrs.len());
    let mut size_budget = 0usize;
    for x in &inode.xattrs {
        if x.name.is_empty() || x.name.len() > XATTR_NAME_MAX || x.name.contains(&0) {
            return Err(invalid(TreeRule::InvalidXattrName));
        }
        if x.value.len() > XATTR_VALUE_MAX {
            return Err(invalid(TreeRule::XattrValueTooLarge));
        }
        size_budget += 7 + x.name.len() + x.value.len();
        if xattrs.iter().any(|y: &NodeXattr| *y.name == *x.name) {
            return Err(invalid(TreeRule::DuplicateXattr));
        }
        let name: Cow<[u8]> = match x.name.strip_prefix(OVERLAY_PREFIX) {
            Some(rest) => {
                let mut n = OVERLAY_ESCAPE_PREFIX.to_vec();
                n.extend_from_slice(rest);
                Cow::Owned(n)
            }
            None => Cow::Borrowed(&x.name),
        };
        xattrs.push(NodeXattr {
            name,
            value: Cow::Borrowed(&x.value),
        });
    }
    if !inode.xattrs.is_empty() && 12 + size_budget > XATTRS_INPUT_MAX {
        return Err(invalid(TreeRule::XattrsTooLarge));
    }
    let mut size = inode.size;
    let data = match ft {
        FileType::Directory => Data::None,
        FileType::Symlink => {
            let target = inode.payload.as_deref().unwrap_or_default();
            if target.is_empty() || target.len() > PAYLOAD_MAX || target.contains(&0) {
                return Err(invalid(TreeRule::InvalidSymlinkTarget));
            }
            size = target.len() as u64;
            Data::Symlink(target)
        }
        FileType::Regular => match inode.inline.as_deref() {
            Some(content) if !content.is_empty() => {
                if content.len() as u64 != inode.size {
                    return Err(invalid(TreeRule::InlineSizeMismatch));
                }
                if content.len() > INLINE_CONTENT_MAX {
                    return Err(invalid(TreeRule::InlineTooLarge));
                }
                Data::Inline(content)
            }
            _ if inode.size == 0 => Data::None,
            _ => {
                let chunks = chunk_count(inode.size);
                if chunks > MAX_CHUNKS {
                    return Err(invalid(TreeRule::FileTooBig));
                }
                Data::External {
                    chunks,
                    chunk_bits: chunk_bits(inode.size),
                }
            }
        },
        _ => Data::None,
    };
    Ok(Node {
        src: Some(id),
        name,
        parent,
        mode: inode.mode,
        nlink: inode.nlink,
        uid: inode.uid,
        gid: inode.gid,
        // The C inode keeps 32 bits of rdev, and only for devices.
        rdev: match ft {
            FileType::CharDevice | FileType::BlockDevice => inode.rdev as u32,
            _ => 0,
        },
        size,
        mtime: inode.mtime,
        xattrs,
        data,
    })
}
