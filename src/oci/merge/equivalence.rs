//! The in-place compaction against the copying version it replaced: the image digest
//! depends on every detail of the tree, so they must give identical trees, not only
//! equivalent ones.

use proptest::prelude::*;

use super::*;
use crate::tree::Xattr;

fn xattr(name: &[u8], value: &[u8]) -> Xattr {
    Xattr {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn compact_in_place_copies_what_it_cannot_renumber() {
    let mut t = Tree::new(0o755);
    let d = t.add_inode(Inode::new(mode::S_IFDIR | 0o700));
    let f = t.add_inode(Inode::new(mode::S_IFREG | 0o644));
    for (dir, name, inode) in [(ROOT, "d", d), (ROOT, "e", d), (d, "f", f)] {
        let entry = DirEntry {
            inode,
            hardlink: false,
        };
        t.inodes[dir].entries.insert(name.as_bytes().into(), entry);
    }
    // A directory with two names: compact makes two directories sharing the file.
    let mut c = t.clone();
    compact_in_place(&mut c);
    assert_eq!(c, compact(&t));
    assert_eq!(c.inodes.len(), 4);
    // A non-directory with entries keeps them as they were.
    t.inodes[ROOT].entries.remove(&b"e"[..]);
    t.inodes[f].entries = t.inodes[d].entries.clone();
    let mut c = t.clone();
    compact_in_place(&mut c);
    assert_eq!(c, compact(&t));
}

/// A tree from `ops`: (what, a, b) adds a directory, a file or a hardlink (to the `b`th file
/// made) named `nb` in the `a`th directory made, or removes the name `nb` there; names
/// collide, so entries get replaced and subtrees orphaned. Link counts, sizes, hardlink
/// flags and xattr order are left wrong for compaction to fix.
fn tree_of(ops: &[(u8, u8, u8)]) -> Tree {
    let mut t = Tree::new(0o755);
    let (mut dirs, mut files) = (vec![ROOT], Vec::new());
    for &(what, a, b) in ops {
        let dir = dirs[usize::from(a) % dirs.len()];
        let name: Box<[u8]> = format!("n{}", b % 16).into_bytes().into();
        let mut inode = Inode::new(if what == 0 {
            mode::S_IFDIR | 0o755
        } else {
            mode::S_IFREG | 0o644
        });
        inode.nlink = u32::from(b);
        inode.size = u64::from(a);
        inode.xattrs = vec![xattr(b"user.z", &[a]), xattr(b"user.a", &[b])];
        let id = match what {
            0 | 1 => t.add_inode(inode),
            2 if !files.is_empty() => files[usize::from(b) % files.len()],
            _ => {
                t.inodes[dir].entries.remove(&name);
                continue;
            }
        };
        match what {
            0 => dirs.push(id),
            _ => files.push(id),
        }
        let entry = DirEntry {
            inode: id,
            hardlink: a % 3 == 0,
        };
        t.inodes[dir].entries.insert(name, entry);
    }
    t
}

proptest! {
    #[test]
    fn compact_in_place_equals_compact(ops in prop::collection::vec((0u8..4, any::<u8>(), any::<u8>()), 0..60)) {
        let t = tree_of(&ops);
        let mut c = t.clone();
        compact_in_place(&mut c);
        prop_assert_eq!(c, compact(&t));
    }
}
