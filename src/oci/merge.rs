//! Layer trees -> one image tree, and the canonical form that is hashed.
//!
//! [`LayerMerger`] applies the layers in order the way an OCI "applying changesets"
//! extraction does, one layer at a time ([`merge_layers`] for a slice of layers);
//! [`canonicalize`](crate::tree::transform::canonicalize) then applies the rules of
//! `docs/oci-conventions.md` that make the digest independent of how the image was obtained
//! (tar layers or an unpacked directory read with [`crate::scan::read_dir`]).

use crate::oci::layer::{
    IMPLICIT_DIR_MODE, IMPLICIT_DIR_XATTR, LayerTree, OPAQUE_XATTR, is_implicit, is_opaque,
};
use crate::tree::transform::{
    CanonicalOptions, canonicalize_in_place, compact_in_place, is_whiteout,
};
use crate::tree::{DirEntry, Inode, InodeId, ROOT, Tree, mode};

/// A layer stack that cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A layer puts entries below a path that a lower layer made a non-directory (often a
    /// symlink), without replacing it by a directory: the merge never follows symlinks.
    #[error(
        "layer {layer} (0-based): '{path}' is not a directory in the layers below (a symlink?); \
         the layer adds entries below it without replacing it"
    )]
    ThroughNonDirectory {
        /// Index of the upper layer in the stack (the slice passed to [`merge_layers`], the
        /// order of [`LayerMerger::add`] calls).
        layer: usize,
        /// The path.
        path: String,
    },
}

/// Merges layer trees, lowest first: whiteouts remove a name, an opaque directory drops what
/// the layers below had in it (its own layer's entries stay), a directory over a directory
/// keeps the children and takes the upper metadata (unless the upper one is only an implicit
/// parent), anything else replaces. Hardlinks stay shared inodes; link counts are the names
/// in the result; no whiteout or marker remains.
///
/// Holds every layer at once and copies each; [`LayerMerger`] takes one layer at a time.
pub fn merge_layers(layers: &[LayerTree]) -> Result<Tree, MergeError> {
    let mut merger = LayerMerger::new();
    for layer in layers {
        merger.add(layer.clone())?;
    }
    Ok(merger.finish())
}

/// [`merge_layers`] one layer at a time, so that a caller can load a layer, add it and drop
/// it before loading the next: only the merged tree and the layer being added are in memory,
/// and the layer's inodes move into the merged tree rather than being copied.
#[derive(Debug)]
pub struct LayerMerger {
    out: Tree,
    /// Layers added so far (the next one's index in errors).
    added: usize,
}

impl Default for LayerMerger {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerMerger {
    /// A merger with no layer yet: an empty root directory.
    pub fn new() -> Self {
        let mut root = Inode::new(mode::S_IFDIR | IMPLICIT_DIR_MODE);
        root.nlink = 2;
        LayerMerger {
            out: Tree { inodes: vec![root] },
            added: 0,
        }
    }

    /// Applies `layer` over the layers added before; errors name it by its 0-based position
    /// in the stack. The layer must be compact, as the importer and [`load_layer`] return it
    /// (each directory has one name). After an error the merged tree is half-updated: drop
    /// the merger.
    ///
    /// [`load_layer`]: crate::oci::layer::load_layer
    pub fn add(&mut self, layer: LayerTree) -> Result<(), MergeError> {
        let mut layer = layer.tree;
        let mut add = LayerAdd {
            out: &mut self.out,
            links: vec![None; layer.inodes.len()],
            layer: &mut layer,
            li: self.added,
        };
        self.added += 1;
        let src = &mut add.layer.inodes[ROOT];
        if is_opaque(src) {
            add.out.inodes[ROOT].entries.clear();
        }
        if !is_implicit(src) {
            take_dir_metadata(&mut add.out.inodes[ROOT], src);
        }
        add.merge_dir(ROOT, ROOT, &mut Vec::new())
    }

    /// The merged tree, [`compact`].
    pub fn finish(self) -> Tree {
        let mut out = self.out;
        compact_in_place(&mut out);
        out
    }

    /// The merged tree in canonical form: [`finish`](Self::finish) then
    /// [`canonicalize_in_place`], compacting once (the canonical step compacts anyway).
    pub fn finish_canonical(self, opts: &CanonicalOptions) -> Tree {
        let mut out = self.out;
        canonicalize_in_place(&mut out, opts);
        out
    }
}

/// One [`LayerMerger::add`]: moves inodes out of `layer` into `out`.
struct LayerAdd<'a> {
    out: &'a mut Tree,
    layer: &'a mut Tree,
    /// The layer's index, for errors.
    li: usize,
    /// Inode in `layer` -> inode in `out`, for hardlinks (a moved inode leaves a blank).
    links: Vec<Option<InodeId>>,
}

impl LayerAdd<'_> {
    fn merge_dir(
        &mut self,
        src_dir: InodeId,
        dst_dir: InodeId,
        path: &mut Vec<u8>,
    ) -> Result<(), MergeError> {
        let entries = std::mem::take(&mut self.layer.inodes[src_dir].entries);
        for (name, entry) in entries {
            let src = &mut self.layer.inodes[entry.inode];
            if is_whiteout(src) {
                self.out.inodes[dst_dir].entries.remove(&name);
                continue;
            }
            if !src.is_dir() {
                let id = match self.links[entry.inode] {
                    Some(id) => id,
                    None => {
                        let id = self.out.add_inode(std::mem::replace(src, Inode::new(0)));
                        self.links[entry.inode] = Some(id);
                        id
                    }
                };
                self.out.inodes[dst_dir].entries.insert(
                    name,
                    DirEntry {
                        inode: id,
                        hardlink: false,
                    },
                );
                continue;
            }
            let (opaque, implicit) = (is_opaque(src), is_implicit(src));
            let len = path.len();
            path.push(b'/');
            path.extend_from_slice(&name);
            let existing = self.out.inodes[dst_dir].entries.get(&name).map(|e| e.inode);
            let dst = match existing {
                Some(id) if self.out.inodes[id].is_dir() => {
                    if opaque {
                        self.out.inodes[id].entries.clear();
                    }
                    if !implicit {
                        take_dir_metadata(&mut self.out.inodes[id], src);
                    }
                    id
                }
                Some(_) if implicit => {
                    return Err(MergeError::ThroughNonDirectory {
                        layer: self.li,
                        path: path.escape_ascii().to_string(),
                    });
                }
                _ => {
                    let mut dir = Inode::new(mode::S_IFDIR | IMPLICIT_DIR_MODE);
                    if !implicit {
                        take_dir_metadata(&mut dir, src);
                    }
                    let id = self.out.add_inode(dir);
                    self.out.inodes[dst_dir].entries.insert(
                        name,
                        DirEntry {
                            inode: id,
                            hardlink: false,
                        },
                    );
                    id
                }
            };
            self.merge_dir(entry.inode, dst, path)?;
            path.truncate(len);
        }
        Ok(())
    }
}

/// A directory's metadata from a layer, without the layer markers (moved out of `src`).
fn take_dir_metadata(dst: &mut Inode, src: &mut Inode) {
    dst.mode = src.mode;
    dst.uid = src.uid;
    dst.gid = src.gid;
    dst.mtime = src.mtime;
    dst.xattrs = std::mem::take(&mut src.xattrs);
    dst.xattrs
        .retain(|x| &*x.name != OPAQUE_XATTR && &*x.name != IMPLICIT_DIR_XATTR);
}

#[cfg(test)]
mod equivalence;
