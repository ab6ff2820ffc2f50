//! The merge itself, as a pure computation: from the booted image's `/etc`, the host's
//! upper directory and the new image's `/etc`, the list of entries the new deployment's
//! upper directory must hold, and the conflicts. Nothing is written here.
//!
//! Per path, with B the booted image, L the host's view and N the new image:
//! - L == B: N's version shows (nothing written);
//! - L != B, N == B: L is written (a whiteout when L deleted the path);
//! - L == N: nothing to carry;
//! - otherwise a conflict, resolved by the policy.
//!
//! Directories present on all sides are merged name by name. A directory in the new upper
//! is opaque only where N has a non-directory; the host's opaque directories (`rm -r` then
//! `mkdir`) become whiteouts for what it removed, so that what N adds still shows.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Result, bail};

use super::compare::{Meta, images_equal, images_equal_opt, inode_type, is_dir, leaf_differences};
use super::conflict::{Conflict, ConflictError, ConflictKind, ConflictPolicy, EntryType, classify};
use super::diff::{LocalChild, LocalDir, dir_changes, image_root_meta, root_differences};
use super::image::ImageEtc;
use super::path::EtcPath;
use super::upper::{Leaf, UpperDir, UpperNode, scan};
use crate::tree::{FileType, InodeId};

/// When an operation is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Under every policy.
    Always,
    /// Only when conflict `conflict` (an index into [`Plan::conflicts`]) is resolved with
    /// `policy` ([`ConflictPolicy::KeepLocal`] or [`ConflictPolicy::TakeNew`]).
    Resolved {
        /// The conflict.
        conflict: usize,
        /// The policy this operation belongs to.
        policy: ConflictPolicy,
    },
}

/// What to write at one path of the new upper directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A directory with this metadata.
    Directory {
        /// Mode, owner and xattrs.
        meta: Meta,
        /// Set `trusted.overlay.opaque=y`: the new image has a non-directory here.
        opaque: bool,
        /// The directory must exist even when nothing is written beneath it; otherwise it
        /// only holds what is (it carries the new image's metadata then).
        required: bool,
    },
    /// The host's non-directory, copied from the upper directory.
    CopyLocal,
    /// The booted image's non-directory with this inode (inside a directory of the host
    /// that is kept whole over a non-directory in the new image).
    CopyBase(InodeId),
    /// A whiteout: the host's deletion stays.
    Whiteout,
}

/// One entry of the new upper directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Where.
    pub path: EtcPath,
    /// What.
    pub action: Action,
    /// Under which policy.
    pub when: When,
}

/// The merge of the host's `/etc` changes into a new image: the new upper directory, as
/// operations sorted by path, and the conflicts found.
#[derive(Debug)]
pub struct Plan<'a> {
    base: ImageEtc<'a>,
    ops: Vec<Op>,
    conflicts: Vec<Conflict>,
}

impl<'a> Plan<'a> {
    /// Every operation, under every policy, sorted by path (`/etc` itself first).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Every conflict, sorted by path.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// The booted image's `/etc` the plan was made against.
    pub fn base(&self) -> &ImageEtc<'a> {
        &self.base
    }

    /// The operations carried out under `policy`, in path order: the unconditional ones
    /// and each conflict's resolution; a directory that is not required is kept only when
    /// something is written beneath it. With conflicts, [`ConflictPolicy::Refuse`] is the
    /// error listing them.
    pub fn resolve(&self, policy: ConflictPolicy) -> Result<Vec<&Op>, ConflictError> {
        if policy == ConflictPolicy::Refuse && !self.conflicts.is_empty() {
            return Err(ConflictError {
                conflicts: self.conflicts.clone(),
            });
        }
        let mut chosen: Vec<&Op> = self
            .ops
            .iter()
            .filter(|op| match op.when {
                When::Always => true,
                When::Resolved { policy: p, .. } => p == policy,
            })
            .collect();
        let optional = |op: &Op| {
            matches!(
                op.action,
                Action::Directory {
                    required: false,
                    ..
                }
            )
        };
        let needed: HashSet<EtcPath> = chosen
            .iter()
            .filter(|op| !optional(op))
            .flat_map(|op| op.path.ancestors())
            .collect();
        chosen.retain(|op| !optional(op) || needed.contains(&op.path));
        Ok(chosen)
    }
}

/// Plans the new deployment's upper directory: `base` is the booted image's `/etc`,
/// `upper_dir` the booted deployment's upper directory, `new` the new image's `/etc`.
/// Reads the upper directory (hashing only files whose size matches an image's), writes
/// nothing.
pub fn plan<'a>(base: &ImageEtc<'a>, upper_dir: &Path, new: &ImageEtc) -> Result<Plan<'a>> {
    if base.algorithm() != new.algorithm() {
        bail!(
            "the booted image's repository uses {}, the new image's {}",
            base.algorithm(),
            new.algorithm()
        );
    }
    let upper = scan(upper_dir, &[base, new])?;
    let mut planner = Planner {
        base,
        new,
        ops: Vec::new(),
        conflicts: Vec::new(),
    };
    planner.root(&upper)?;
    let Planner {
        mut ops, conflicts, ..
    } = planner;
    // Stable: alternatives for one path keep their order.
    ops.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Plan {
        base: *base,
        ops,
        conflicts,
    })
}

struct Planner<'p, 'a, 'n> {
    base: &'p ImageEtc<'a>,
    new: &'p ImageEtc<'n>,
    ops: Vec<Op>,
    conflicts: Vec<Conflict>,
}

fn keep(conflict: usize) -> When {
    When::Resolved {
        conflict,
        policy: ConflictPolicy::KeepLocal,
    }
}

fn take(conflict: usize) -> When {
    When::Resolved {
        conflict,
        policy: ConflictPolicy::TakeNew,
    }
}

fn dir_op(meta: &Meta, opaque: bool, required: bool) -> Action {
    Action::Directory {
        meta: meta.clone(),
        opaque,
        required,
    }
}

impl Planner<'_, '_, '_> {
    fn push(&mut self, path: &EtcPath, action: Action, when: When) {
        self.ops.push(Op {
            path: path.clone(),
            action,
            when,
        });
    }

    fn conflict(&mut self, path: &EtcPath, kind: ConflictKind) -> usize {
        self.conflicts.push(Conflict {
            path: path.clone(),
            kind,
        });
        self.conflicts.len() - 1
    }

    fn base_type(&self, id: Option<InodeId>) -> Option<FileType> {
        id.map(|i| inode_type(self.base.inode(i)))
    }

    fn new_type(&self, id: Option<InodeId>) -> Option<FileType> {
        id.map(|i| inode_type(self.new.inode(i)))
    }

    /// `/etc` itself: always in the new upper. The host's metadata only when it changed
    /// it (see [`root_differences`]), N's otherwise (overlayfs shows the upper's).
    fn root(&mut self, upper: &UpperDir) -> Result<()> {
        let path = EtcPath::root();
        let (b, n) = (self.base.root(), self.new.root());
        let local = &upper.meta;
        let b_meta = image_root_meta(self.base);
        let n_meta = image_root_meta(self.new);
        let local_changed = !root_differences(local, &b_meta).is_empty();
        if !local_changed || *local == n_meta {
            self.push(&path, dir_op(&n_meta, false, true), When::Always);
        } else if n_meta == b_meta {
            self.push(&path, dir_op(local, false, true), When::Always);
        } else {
            let c = self.conflict(&path, ConflictKind::BothChanged);
            self.push(&path, dir_op(local, false, true), keep(c));
            self.push(&path, dir_op(&n_meta, false, true), take(c));
        }
        // The root of an overlay always merges its lower layer.
        let local = LocalDir { upper, lower: b };
        self.children(&path, local, b, n)
    }

    /// Merges the names of a directory present in the host's view and in N.
    fn children(
        &mut self,
        path: &EtcPath,
        local: LocalDir,
        b_dir: Option<InodeId>,
        n_dir: Option<InodeId>,
    ) -> Result<()> {
        for (name, child) in local.children(self.base, b_dir) {
            let path = path.join(&name);
            let b = self.base.child_of(b_dir, &name);
            let n = self.new.child_of(n_dir, &name);
            match child {
                LocalChild::Absent => self.absent(&path, b, n)?,
                LocalChild::Leaf(leaf) => self.leaf(&path, b, leaf, n)?,
                LocalChild::Dir(dir) => self.dir(&path, b, dir, n)?,
            }
        }
        Ok(())
    }

    /// The host has nothing at `path`.
    fn absent(&mut self, path: &EtcPath, b: Option<InodeId>, n: Option<InodeId>) -> Result<()> {
        let (Some(bi), Some(ni)) = (b, n) else {
            // Nothing was there, or both deleted it.
            return Ok(());
        };
        if images_equal(self.base, bi, self.new, ni, path)? {
            self.push(path, Action::Whiteout, When::Always);
            return Ok(());
        }
        let kind = classify(self.base_type(b), None, self.new_type(n));
        let c = self.conflict(path, kind);
        self.push(path, Action::Whiteout, keep(c));
        Ok(())
    }

    /// The host has a non-directory at `path`.
    fn leaf(
        &mut self,
        path: &EtcPath,
        b: Option<InodeId>,
        leaf: &Leaf,
        n: Option<InodeId>,
    ) -> Result<()> {
        if let Some(bi) = b
            && leaf_differences(leaf, self.base.inode(bi), self.base, path)?.is_empty()
        {
            return Ok(());
        }
        if images_equal_opt(self.base, b, self.new, n, path)? {
            self.push(path, Action::CopyLocal, When::Always);
            return Ok(());
        }
        if let Some(ni) = n
            && leaf_differences(leaf, self.new.inode(ni), self.new, path)?.is_empty()
        {
            return Ok(());
        }
        let kind = classify(self.base_type(b), Some(leaf.ftype), self.new_type(n));
        let c = self.conflict(path, kind);
        self.push(path, Action::CopyLocal, keep(c));
        Ok(())
    }

    /// The host has a directory at `path`.
    fn dir(
        &mut self,
        path: &EtcPath,
        b: Option<InodeId>,
        local: LocalDir,
        n: Option<InodeId>,
    ) -> Result<()> {
        let b_dir = b.filter(|&i| is_dir(self.base, Some(i)));
        let local_meta = &local.upper.meta;
        if let Some(ni) = n.filter(|&i| is_dir(self.new, Some(i))) {
            // A directory on both sides: its own metadata, then its names.
            let n_meta = Meta::of_inode(self.new.inode(ni));
            let local_changed =
                b_dir.is_none_or(|bi| *local_meta != Meta::of_inode(self.base.inode(bi)));
            let new_changed = b_dir.is_none_or(|bi| n_meta != Meta::of_inode(self.base.inode(bi)));
            if !local_changed || *local_meta == n_meta {
                self.push(path, dir_op(&n_meta, false, false), When::Always);
            } else if !new_changed {
                self.push(path, dir_op(local_meta, false, true), When::Always);
            } else {
                // Only the metadata conflicts: the names beneath merge on their own.
                let c = self.conflict(path, ConflictKind::BothChanged);
                self.push(path, dir_op(local_meta, false, true), keep(c));
                self.push(path, dir_op(&n_meta, false, false), take(c));
            }
            return self.children(path, local, b_dir, Some(ni));
        }
        if b_dir.is_some() {
            // N deleted the directory or replaced it with a non-directory.
            let mut changes = Vec::new();
            dir_changes(self.base, path, local, b, &mut changes)?;
            if changes.is_empty() {
                return Ok(());
            }
            let beneath = changes.iter().any(|c| c.path != *path);
            let kind = if beneath {
                ConflictKind::DirectoryRemoved {
                    replaced_by: self.new_type(n).map(EntryType::from),
                    local_changes: changes,
                }
            } else {
                classify(
                    Some(FileType::Directory),
                    Some(FileType::Directory),
                    self.new_type(n),
                )
            };
            let c = self.conflict(path, kind);
            return match n {
                None => self.keep_changes(path, local, b_dir, keep(c)),
                Some(_) => self.copy_local_dir(path, local, true, keep(c)),
            };
        }
        // The booted image had no directory here: the host's directory is all upper.
        let opaque = n.is_some();
        if images_equal_opt(self.base, b, self.new, n, path)? {
            return self.copy_local_dir(path, local, opaque, When::Always);
        }
        let kind = classify(
            self.base_type(b),
            Some(FileType::Directory),
            self.new_type(n),
        );
        let c = self.conflict(path, kind);
        self.copy_local_dir(path, local, opaque, keep(c))
    }

    /// The host's changes at and beneath a directory the new image deleted: the
    /// directory chain is recreated with the host's metadata, holding only what the host
    /// changed (what it left alone goes, as the new image wants).
    fn keep_changes(
        &mut self,
        path: &EtcPath,
        local: LocalDir,
        b_dir: Option<InodeId>,
        when: When,
    ) -> Result<()> {
        let own_changed = b_dir.is_none_or(|bi| {
            !local
                .upper
                .meta
                .same_as(&Meta::of_inode(self.base.inode(bi)), FileType::Directory)
        });
        self.push(path, dir_op(&local.upper.meta, false, own_changed), when);
        for (name, child) in local.children(self.base, b_dir) {
            let path = path.join(&name);
            let b = self.base.child_of(b_dir, &name);
            match child {
                // The new image has nothing here to hide.
                LocalChild::Absent => {}
                LocalChild::Leaf(leaf) => {
                    let changed = match b {
                        None => true,
                        Some(bi) => !leaf_differences(leaf, self.base.inode(bi), self.base, &path)?
                            .is_empty(),
                    };
                    if changed {
                        self.push(&path, Action::CopyLocal, when);
                    }
                }
                LocalChild::Dir(dir) if is_dir(self.base, b) => {
                    self.keep_changes(&path, dir, b, when)?
                }
                LocalChild::Dir(dir) => self.copy_local_dir(&path, dir, false, when)?,
            }
        }
        Ok(())
    }

    /// The host's whole directory as it sees it: the upper directory, plus what shows
    /// through from the booted image.
    fn copy_local_dir(
        &mut self,
        path: &EtcPath,
        local: LocalDir,
        opaque: bool,
        when: When,
    ) -> Result<()> {
        self.push(path, dir_op(&local.upper.meta, opaque, true), when);
        for (name, node) in &local.upper.entries {
            let path = path.join(name);
            match node {
                // Nothing can show through beneath: no lower, or an opaque top.
                UpperNode::Whiteout => {}
                UpperNode::Leaf(_) => self.push(&path, Action::CopyLocal, when),
                UpperNode::Dir(dir) => {
                    let lower = if dir.opaque {
                        None
                    } else {
                        self.base
                            .child_of(local.lower, name)
                            .filter(|&c| is_dir(self.base, Some(c)))
                    };
                    let child = LocalDir { upper: dir, lower };
                    self.copy_local_dir(&path, child, false, when)?;
                }
            }
        }
        let lower_names: Vec<&[u8]> = self.base.names(local.lower).collect();
        for name in lower_names {
            if !local.upper.entries.contains_key(name) {
                let id = self.base.child_of(local.lower, name).expect("listed name");
                self.copy_base(&path.join(name), id, when);
            }
        }
        Ok(())
    }

    /// An entry of the booted image, with everything beneath it.
    fn copy_base(&mut self, path: &EtcPath, id: InodeId, when: When) {
        let inode = self.base.inode(id);
        if !inode.is_dir() {
            self.push(path, Action::CopyBase(id), when);
            return;
        }
        self.push(path, dir_op(&Meta::of_inode(inode), false, true), when);
        for (name, entry) in &inode.entries {
            self.copy_base(&path.join(name), entry.inode, when);
        }
    }
}
