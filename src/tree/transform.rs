//! Whole-tree transforms that image builders share: [`compact`] (renumbering, primary
//! entries, link counts) and [`canonicalize`] (the rules of `docs/oci-conventions.md` that
//! make an OCI image's digest independent of how it was obtained). They take a [`Tree`] and
//! give a [`Tree`], so the OCI merge, the layer import and `cfsctl create-image --oci` use
//! them alike. Every rule that changes the digest is listed in the doc; keep the two in step.

use super::{DirEntry, FileType, Inode, InodeId, ROOT, Timestamp, Tree, mode};

/// True for an overlay whiteout: a character device 0/0.
pub fn is_whiteout(inode: &Inode) -> bool {
    inode.file_type() == Some(FileType::CharDevice) && inode.rdev == 0
}

/// A copy of `tree` holding only the inodes reachable from the root, numbered in depth-first
/// name order, xattrs sorted (as the image stores them). The first name of a non-directory in
/// that order is its primary entry (the others are hardlinks, the rule `scan` uses
/// with hardlinks on); link counts are the number of names (non-directories) and 2 +
/// subdirectories (directories); directory sizes are 0 (the writer computes them).
/// [`compact_in_place`] does the same without the copy.
pub fn compact(tree: &Tree) -> Tree {
    fn visit(
        src: &Tree,
        dir: InodeId,
        out: &mut Tree,
        out_dir: InodeId,
        map: &mut [Option<InodeId>],
    ) {
        for (name, entry) in &src.inodes[dir].entries {
            let inode = &src.inodes[entry.inode];
            let (id, hardlink) = if inode.is_dir() {
                let mut copy = inode.clone();
                copy.entries.clear();
                copy.nlink = 2;
                copy.size = 0;
                copy.xattrs.sort();
                let id = out.add_inode(copy);
                out.inodes[out_dir].nlink += 1;
                (id, false)
            } else if let Some(id) = map[entry.inode] {
                out.inodes[id].nlink += 1;
                (id, true)
            } else {
                let mut copy = inode.clone();
                copy.nlink = 1;
                copy.xattrs.sort();
                let id = out.add_inode(copy);
                map[entry.inode] = Some(id);
                (id, false)
            };
            out.inodes[out_dir].entries.insert(
                name.clone(),
                DirEntry {
                    inode: id,
                    hardlink,
                },
            );
            if inode.is_dir() {
                visit(src, entry.inode, out, id, map);
            }
        }
    }
    let mut root = tree.inodes[ROOT].clone();
    root.entries.clear();
    root.nlink = 2;
    root.size = 0;
    root.xattrs.sort();
    let mut out = Tree { inodes: vec![root] };
    let mut map = vec![None; tree.inodes.len()];
    visit(tree, ROOT, &mut out, ROOT, &mut map);
    out
}

/// [`compact`] without a copy: the inodes are renumbered where they are and the unreachable
/// ones dropped. A tree that `compact` would have to duplicate parts of (a directory or the
/// root with two names, a non-directory with entries) is compacted by copying.
pub fn compact_in_place(tree: &mut Tree) {
    let Some(new_ids) = numbering(tree) else {
        *tree = compact(tree);
        return;
    };
    let mut names = vec![0u32; tree.inodes.len()];
    relink(tree, ROOT, &new_ids, &mut names);
    for (inode, &n) in tree.inodes.iter_mut().zip(&names) {
        if n > 0 {
            inode.nlink = n;
            inode.xattrs.sort();
        }
    }
    drop(names);
    // Move every inode to its new number, the unreachable ones to the end, then drop those.
    let reachable = new_ids.iter().filter(|&&id| id != UNSEEN).count();
    let mut dest = new_ids;
    for (d, id) in dest.iter_mut().filter(|d| **d == UNSEEN).zip(reachable..) {
        *d = id;
    }
    for i in 0..dest.len() {
        // Each swap puts the inode at `i` where it belongs.
        while dest[i] != i {
            let j = dest[i];
            tree.inodes.swap(i, j);
            dest.swap(i, j);
        }
    }
    tree.inodes.truncate(reachable);
}

const UNSEEN: InodeId = InodeId::MAX;

/// The number [`compact`] gives each reachable inode (others [`UNSEEN`]), or `None` when it
/// would duplicate an inode.
fn numbering(tree: &Tree) -> Option<Vec<InodeId>> {
    fn visit(tree: &Tree, dir: InodeId, ids: &mut [InodeId], next: &mut InodeId) -> Option<()> {
        for entry in tree.inodes[dir].entries.values() {
            let t = entry.inode;
            let inode = &tree.inodes[t];
            if ids[t] != UNSEEN {
                if t == ROOT || inode.is_dir() {
                    return None;
                }
                continue;
            }
            ids[t] = *next;
            *next += 1;
            if inode.is_dir() {
                visit(tree, t, ids, next)?;
            } else if !inode.entries.is_empty() {
                return None;
            }
        }
        Some(())
    }
    let mut ids = vec![UNSEEN; tree.inodes.len()];
    ids[ROOT] = ROOT;
    visit(tree, ROOT, &mut ids, &mut (ROOT + 1))?;
    Some(ids)
}

/// Rewrites the entries below `dir` to the new numbers, with [`compact`]'s primary entries,
/// directory link counts and sizes; counts the names of non-directories in `names`.
fn relink(tree: &mut Tree, dir: InodeId, new_ids: &[InodeId], names: &mut [u32]) {
    let mut entries = std::mem::take(&mut tree.inodes[dir].entries);
    let mut subdirs = 0;
    for entry in entries.values_mut() {
        let t = entry.inode;
        if tree.inodes[t].is_dir() {
            subdirs += 1;
            entry.hardlink = false;
            relink(tree, t, new_ids, names);
        } else {
            names[t] += 1;
            entry.hardlink = names[t] > 1;
        }
        entry.inode = new_ids[t];
    }
    let d = &mut tree.inodes[dir];
    d.entries = entries;
    d.nlink = 2 + subdirs;
    d.size = 0;
    d.xattrs.sort();
}

/// Which xattrs the canonical form keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrPolicy {
    /// Only `security.capability` (the default, as composefs-rs).
    #[default]
    CapabilitiesOnly,
    /// `security.capability` and `user.*` (composefs-rs `--xattrs keep-user-xattrs`).
    KeepUser,
}

/// Options of [`canonicalize`]; the default is the convention `oci seal` publishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CanonicalOptions {
    /// Xattr filtering.
    pub xattrs: XattrPolicy,
}

/// The xattr kept under every policy: file capabilities are part of what a program can do.
pub const CAPABILITY_XATTR: &[u8] = b"security.capability";

/// Applies the canonicalization rules of `docs/oci-conventions.md` (in this order):
/// 1. sockets and whiteouts (character devices 0/0) are removed;
/// 2. xattrs are filtered by [`CanonicalOptions::xattrs`];
/// 3. symlink permission bits are 0777;
/// 4. `/run`, when a directory, is emptied and gets the mtime of `/usr` (when a directory);
/// 5. the root directory takes mode, owner, mtime and (filtered) xattrs of `/usr` when it is
///    a directory, else 0755, 0:0, mtime 0, no xattrs;
/// 6. the tree is [`compact`]ed: primary entries and link counts recomputed.
///
/// Works on merged layer trees and on directory trees read with hardlinks folded alike.
/// [`canonicalize_in_place`] does the same without the copy.
pub fn canonicalize(tree: &Tree, opts: &CanonicalOptions) -> Tree {
    let mut tree = tree.clone();
    canonicalize_in_place(&mut tree, opts);
    tree
}

/// [`canonicalize`] without a copy.
pub fn canonicalize_in_place(tree: &mut Tree, opts: &CanonicalOptions) {
    let removable =
        |inode: &Inode| matches!(inode.file_type(), Some(FileType::Socket)) || is_whiteout(inode);
    let gone: Vec<bool> = tree.inodes.iter().map(removable).collect();
    for inode in &mut tree.inodes {
        inode.entries.retain(|_, e| !gone[e.inode]);
        inode.xattrs.retain(|x| keep_xattr(&x.name, opts.xattrs));
        if inode.file_type() == Some(FileType::Symlink) {
            inode.mode = mode::S_IFLNK | 0o777;
        }
    }
    let usr = tree
        .root()
        .entries
        .get(&b"usr"[..])
        .map(|e| e.inode)
        .filter(|&id| tree.inodes[id].is_dir());
    let usr_mtime = usr.map(|id| tree.inodes[id].mtime);
    if let Some(run) = tree.root().entries.get(&b"run"[..]).map(|e| e.inode)
        && tree.inodes[run].is_dir()
    {
        tree.inodes[run].entries.clear();
        if let Some(t) = usr_mtime {
            tree.inodes[run].mtime = t;
        }
    }
    let (perm, uid, gid, mtime, xattrs) = match usr {
        Some(id) => {
            let u = &tree.inodes[id];
            (
                u.mode & !mode::S_IFMT,
                u.uid,
                u.gid,
                u.mtime,
                u.xattrs.clone(),
            )
        }
        None => (0o755, 0, 0, Timestamp::default(), Vec::new()),
    };
    let root = &mut tree.inodes[ROOT];
    root.mode = mode::S_IFDIR | perm;
    root.uid = uid;
    root.gid = gid;
    root.mtime = mtime;
    root.xattrs = xattrs;
    compact_in_place(tree);
}

fn keep_xattr(name: &[u8], policy: XattrPolicy) -> bool {
    name == CAPABILITY_XATTR || (policy == XattrPolicy::KeepUser && name.starts_with(b"user."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Xattr;

    fn add(tree: &mut Tree, dir: InodeId, name: &str, inode: Inode) -> InodeId {
        let id = tree.add_inode(inode);
        tree.inodes[dir].entries.insert(
            name.as_bytes().into(),
            DirEntry {
                inode: id,
                hardlink: false,
            },
        );
        id
    }

    fn xattr(name: &str, value: &[u8]) -> Xattr {
        Xattr {
            name: name.as_bytes().into(),
            value: value.into(),
        }
    }

    #[test]
    fn canonical_rules() {
        let mut t = Tree::new(0o700);
        t.inodes[ROOT].mtime = Timestamp { sec: 99, nsec: 1 };
        let mut file = Inode::new(mode::S_IFREG | 0o755);
        file.xattrs = vec![
            xattr("security.selinux", b"system_u:object_r:bin_t:s0"),
            xattr("user.keep", b"\0\xff"),
            xattr("security.capability", b"\x01\0\0\x02"),
            xattr("system.posix_acl_access", b"acl"),
        ];
        add(&mut t, ROOT, "f", file);
        add(&mut t, ROOT, "sock", Inode::new(mode::S_IFSOCK | 0o777));
        add(&mut t, ROOT, "wh", Inode::new(mode::S_IFCHR));
        add(&mut t, ROOT, "ln", Inode::new(mode::S_IFLNK | 0o755));
        let run = add(&mut t, ROOT, "run", Inode::new(mode::S_IFDIR | 0o755));
        add(&mut t, run, "stale", Inode::new(mode::S_IFREG | 0o644));

        // No /usr: fixed root metadata; /run emptied, its mtime kept.
        let c = canonicalize(&t, &CanonicalOptions::default());
        let names: Vec<_> = c.root().entries.keys().map(|k| k.to_vec()).collect();
        assert_eq!(names, [&b"f"[..], b"ln", b"run"]);
        let root = c.root();
        assert_eq!(
            (root.mode, root.uid, root.mtime),
            (mode::S_IFDIR | 0o755, 0, Timestamp::default())
        );
        let cf = &c.inodes[c.lookup(b"/f").unwrap()];
        assert_eq!(
            cf.xattrs,
            vec![xattr("security.capability", b"\x01\0\0\x02")]
        );
        assert_eq!(
            c.inodes[c.lookup(b"/ln").unwrap()].mode,
            mode::S_IFLNK | 0o777
        );
        assert!(c.inodes[c.lookup(b"/run").unwrap()].entries.is_empty());

        let keep = CanonicalOptions {
            xattrs: XattrPolicy::KeepUser,
        };
        let c = canonicalize(&t, &keep);
        let cf = &c.inodes[c.lookup(b"/f").unwrap()];
        let kept: Vec<_> = cf.xattrs.iter().map(|x| x.name.to_vec()).collect();
        assert_eq!(kept, [&b"security.capability"[..], b"user.keep"]);

        // With /usr: the root copies it, /run gets its mtime.
        let mut usr = Inode::new(mode::S_IFDIR | 0o751);
        usr.uid = 7;
        usr.mtime = Timestamp { sec: 5, nsec: 6 };
        usr.xattrs = vec![xattr("security.selinux", b"x"), xattr("user.u", b"1")];
        add(&mut t, ROOT, "usr", usr);
        let c = canonicalize(&t, &keep);
        let root = c.root();
        assert_eq!(
            (root.mode, root.uid, root.mtime),
            (mode::S_IFDIR | 0o751, 7, Timestamp { sec: 5, nsec: 6 })
        );
        assert_eq!(root.xattrs, vec![xattr("user.u", b"1")]);
        assert_eq!(
            c.inodes[c.lookup(b"/run").unwrap()].mtime,
            Timestamp { sec: 5, nsec: 6 }
        );
    }

    #[test]
    fn compact_picks_the_first_name_in_depth_first_order() {
        let mut t = Tree::new(0o755);
        let shared = Inode::new(mode::S_IFREG | 0o644);
        let z = add(&mut t, ROOT, "z", shared);
        let a = add(&mut t, ROOT, "a", Inode::new(mode::S_IFDIR | 0o755));
        t.inodes[a].entries.insert(
            b"deep".as_slice().into(),
            DirEntry {
                inode: z,
                hardlink: true,
            },
        );
        add(&mut t, ROOT, "orphaned-later", Inode::new(mode::S_IFREG));
        t.inodes[ROOT].entries.remove(&b"orphaned-later"[..]);
        let c = compact(&t);
        assert_eq!(c.inodes.len(), 3, "orphan dropped");
        let a = c.root().entries[&b"a"[..]];
        let deep = c.inodes[a.inode].entries[&b"deep"[..]];
        assert!(!deep.hardlink, "/a/deep comes first depth-first");
        assert!(c.root().entries[&b"z"[..]].hardlink);
        assert_eq!(c.inodes[deep.inode].nlink, 2);
        assert_eq!(c.root().nlink, 3);
    }
}
