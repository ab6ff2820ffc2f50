//! The streaming merge and the in-place compaction against the copying versions they
//! replaced: the image digest depends on every detail of the merged tree, so they must give
//! identical trees, not only equivalent ones.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::tree::Xattr;
use crate::tree::transform::{canonicalize, compact};

/// `merge_layers` before [`LayerMerger`]: every layer borrowed at once, inodes cloned.
fn merge_layers_by_copy(layers: &[LayerTree]) -> Result<Tree, MergeError> {
    fn merge_dir(
        out: &mut Tree,
        links: &mut HashMap<(usize, InodeId), InodeId>,
        li: usize,
        layer: &Tree,
        src_dir: InodeId,
        dst_dir: InodeId,
        path: &mut Vec<u8>,
    ) -> Result<(), MergeError> {
        for (name, entry) in &layer.inodes[src_dir].entries {
            let src = &layer.inodes[entry.inode];
            if is_whiteout(src) {
                out.inodes[dst_dir].entries.remove(name);
                continue;
            }
            let existing = out.inodes[dst_dir].entries.get(name).map(|e| e.inode);
            let link = |inode| DirEntry {
                inode,
                hardlink: false,
            };
            if !src.is_dir() {
                let id = match links.get(&(li, entry.inode)) {
                    Some(&id) => id,
                    None => {
                        let id = out.add_inode(src.clone());
                        links.insert((li, entry.inode), id);
                        id
                    }
                };
                out.inodes[dst_dir].entries.insert(name.clone(), link(id));
                continue;
            }
            let len = path.len();
            path.push(b'/');
            path.extend_from_slice(name);
            let dst = match existing {
                Some(id) if out.inodes[id].is_dir() => {
                    if is_opaque(src) {
                        out.inodes[id].entries.clear();
                    }
                    if !is_implicit(src) {
                        copy_dir_metadata(&mut out.inodes[id], src);
                    }
                    id
                }
                Some(_) if is_implicit(src) => {
                    return Err(MergeError::ThroughNonDirectory {
                        layer: li,
                        path: path.escape_ascii().to_string(),
                    });
                }
                _ => {
                    let mut dir = Inode::new(mode::S_IFDIR | IMPLICIT_DIR_MODE);
                    if !is_implicit(src) {
                        copy_dir_metadata(&mut dir, src);
                    }
                    let id = out.add_inode(dir);
                    out.inodes[dst_dir].entries.insert(name.clone(), link(id));
                    id
                }
            };
            merge_dir(out, links, li, layer, entry.inode, dst, path)?;
            path.truncate(len);
        }
        Ok(())
    }
    fn copy_dir_metadata(dst: &mut Inode, src: &Inode) {
        dst.mode = src.mode;
        dst.uid = src.uid;
        dst.gid = src.gid;
        dst.mtime = src.mtime;
        dst.xattrs = src
            .xattrs
            .iter()
            .filter(|x| &*x.name != OPAQUE_XATTR && &*x.name != IMPLICIT_DIR_XATTR)
            .cloned()
            .collect();
    }
    let mut root = Inode::new(mode::S_IFDIR | IMPLICIT_DIR_MODE);
    root.nlink = 2;
    let mut out = Tree { inodes: vec![root] };
    let mut links = HashMap::new();
    for (li, layer) in layers.iter().enumerate() {
        let src = &layer.tree.inodes[ROOT];
        if is_opaque(src) {
            out.inodes[ROOT].entries.clear();
        }
        if !is_implicit(src) {
            copy_dir_metadata(&mut out.inodes[ROOT], src);
        }
        merge_dir(
            &mut out,
            &mut links,
            li,
            &layer.tree,
            ROOT,
            ROOT,
            &mut Vec::new(),
        )?;
    }
    Ok(compact(&out))
}

fn xattr(name: &[u8], value: &[u8]) -> Xattr {
    Xattr {
        name: name.into(),
        value: value.into(),
    }
}

/// A layer tree built from `/`-separated paths, parents implicit as the importer makes them.
struct Layer(Tree);

fn implicit_dir() -> Inode {
    let mut dir = Inode::new(mode::S_IFDIR | IMPLICIT_DIR_MODE);
    dir.xattrs.push(xattr(IMPLICIT_DIR_XATTR, b""));
    dir
}

impl Layer {
    fn new() -> Self {
        Layer(Tree {
            inodes: vec![implicit_dir()],
        })
    }

    /// The directory holding `path` (created implicit where missing) and the last name.
    fn parent<'p>(&mut self, path: &'p str) -> (InodeId, &'p str) {
        let (dirs, name) = path.rsplit_once('/').unwrap_or(("", path));
        let mut cur = ROOT;
        for comp in dirs.split('/').filter(|c| !c.is_empty()) {
            cur = match self.0.inodes[cur].entries.get(comp.as_bytes()) {
                Some(e) => e.inode,
                None => self.put(cur, comp, implicit_dir()),
            };
        }
        (cur, name)
    }

    fn put(&mut self, dir: InodeId, name: &str, inode: Inode) -> InodeId {
        let id = self.0.add_inode(inode);
        self.link(dir, name, id);
        id
    }

    fn link(&mut self, dir: InodeId, name: &str, id: InodeId) {
        let entry = DirEntry {
            inode: id,
            hardlink: false,
        };
        self.0.inodes[dir]
            .entries
            .insert(name.as_bytes().into(), entry);
    }

    fn add(mut self, path: &str, inode: Inode) -> Self {
        let (dir, name) = self.parent(path);
        self.put(dir, name, inode);
        self
    }

    fn file(self, path: &str, content: &[u8]) -> Self {
        let mut f = Inode::new(mode::S_IFREG | 0o644);
        f.size = content.len() as u64;
        f.inline = Some(content.into());
        f.mtime.sec = 1_000 + content.len() as i64;
        self.add(path, f)
    }

    fn dir(self, path: &str, perm: u32, xattrs: Vec<Xattr>) -> Self {
        let mut d = Inode::new(mode::S_IFDIR | perm);
        d.uid = perm;
        d.mtime.sec = 2_000 + i64::from(perm);
        d.xattrs = xattrs;
        self.add(path, d)
    }

    /// Explicit root metadata (`./` in the tar).
    fn root(mut self, perm: u32, xattrs: Vec<Xattr>) -> Self {
        let root = &mut self.0.inodes[ROOT];
        root.mode = mode::S_IFDIR | perm;
        root.mtime.sec = 3_000;
        root.xattrs = xattrs;
        self
    }

    fn opaque(self, path: &str) -> Self {
        self.dir(path, 0o711, vec![xattr(OPAQUE_XATTR, b"y")])
    }

    fn whiteout(self, path: &str) -> Self {
        self.add(path, Inode::new(mode::S_IFCHR))
    }

    fn hardlink(mut self, path: &str, target: &str) -> Self {
        let id = self.0.lookup(target.as_bytes()).unwrap();
        let (dir, name) = self.parent(path);
        self.link(dir, name, id);
        self
    }

    fn finish(self) -> LayerTree {
        LayerTree {
            tree: compact(&self.0),
        }
    }
}

/// A stack with whiteouts (of a file, a directory and one name of a hardlinked file), opaque
/// directories (with the layer's own entries), hardlinks within layers, a directory replaced
/// by a file and back, implicit parents over explicit directories, and root metadata.
fn stack() -> Vec<LayerTree> {
    let cap = || {
        vec![
            xattr(b"security.capability", b"\x01"),
            xattr(b"user.a", b"1"),
        ]
    };
    vec![
        Layer::new()
            .dir("usr", 0o755, cap())
            .file("usr/bin/a", b"aaaa")
            .hardlink("usr/bin/b", "usr/bin/a")
            .hardlink("etc/b", "usr/bin/a")
            .file("etc/conf", b"conf")
            .file("opq/lower", b"lower")
            .file("opq/sub/deep", b"deep")
            .file("d2f/child", b"child")
            .file("f2d", b"file")
            .file("gone", b"gone")
            .file("gonedir/x", b"x")
            .file("run/secret", b"s")
            .finish(),
        Layer::new()
            .whiteout("gone")
            .whiteout("gonedir")
            .whiteout("usr/bin/a")
            .opaque("opq")
            .file("opq/new", b"new")
            .file("d2f", b"now a file")
            .dir("f2d", 0o755, Vec::new())
            .file("f2d/in", b"in")
            .file("usr/bin/c", b"c")
            .dir("etc", 0o700, vec![xattr(b"user.e", b"2")])
            .file("h1", b"h")
            .hardlink("h2", "h1")
            .hardlink("usr/h3", "h1")
            .finish(),
        Layer::new()
            .root(0o700, vec![xattr(b"user.root", b"r")])
            .file("h1", b"replaced")
            .dir("d2f", 0o750, Vec::new())
            .file("d2f/again", b"again")
            .opaque("usr/bin")
            .hardlink("usr/bin/c2", "h1")
            .finish(),
    ]
}

#[test]
fn the_streaming_merge_gives_the_copying_merge_s_tree() {
    let layers = stack();
    for n in 1..=layers.len() {
        let expected = merge_layers_by_copy(&layers[..n]).unwrap();
        assert_eq!(merge_layers(&layers[..n]).unwrap(), expected, "{n} layers");
        let mut merger = LayerMerger::new();
        for layer in layers[..n].iter().cloned() {
            merger.add(layer).unwrap();
        }
        let merged = merger.finish();
        assert_eq!(merged, expected, "{n} layers");
        let opts = CanonicalOptions::default();
        assert_eq!(
            canonicalize(&merged, &opts),
            compact(&canonicalize(&expected, &opts))
        );
    }
    let merged = merge_layers(&layers).unwrap();
    let names = |p: &str| merged.inodes[merged.lookup(p.as_bytes()).unwrap()].nlink;
    assert_eq!(
        names("/etc/b"),
        1,
        "/usr/bin/a whited out, /usr/bin/b below opaque /usr/bin"
    );
    assert_eq!(names("/h2"), 2, "/h2 and /usr/h3: layer 2 replaced /h1");
    assert_eq!(names("/h1"), 2);
    assert_eq!(merged.lookup(b"/h1"), merged.lookup(b"/usr/bin/c2"));
    assert!(merged.lookup(b"/opq/lower").is_none() && merged.lookup(b"/gonedir").is_none());
    assert!(merged.lookup(b"/opq/new").is_some() && merged.lookup(b"/f2d/in").is_some());
    assert!(
        merged.inodes[merged.lookup(b"/d2f/again").unwrap()]
            .inline
            .is_some()
    );
    assert_eq!(merged.root().mode, mode::S_IFDIR | 0o700);

    // An opaque root drops everything below.
    let mut with_opaque_root = layers.clone();
    with_opaque_root.push(
        Layer::new()
            .root(0o755, vec![xattr(OPAQUE_XATTR, b"y")])
            .file("only", b"o")
            .finish(),
    );
    assert_eq!(
        merge_layers(&with_opaque_root).unwrap(),
        merge_layers_by_copy(&with_opaque_root).unwrap()
    );
}

#[test]
fn the_streaming_merge_fails_where_the_copying_merge_did() {
    let mut layers = stack();
    layers.push(Layer::new().file("etc/conf/below", b"x").finish());
    let by_copy = merge_layers_by_copy(&layers).unwrap_err();
    let err = merge_layers(&layers).unwrap_err();
    assert_eq!(err.to_string(), by_copy.to_string());
    assert!(
        matches!(&err, MergeError::ThroughNonDirectory { layer: 3, path } if path == "/etc/conf")
    );
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
