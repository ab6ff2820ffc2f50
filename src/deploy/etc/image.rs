//! An image's `/etc`: the part of a composefs image tree below `/etc`, with the repository
//! that holds the content of its external files.

use std::fmt;
use std::fs::File;

use anyhow::{Context, Result, bail};

use super::path::EtcPath;
use crate::fsverity::{Algorithm, Digest, digest_bytes};
use crate::repo::Repository;
use crate::tree::{Inode, InodeId, Tree};

/// The `/etc` of one image (the booted one or the new one). An image without `/etc` has an
/// empty `/etc`.
#[derive(Clone, Copy)]
pub struct ImageEtc<'a> {
    tree: &'a Tree,
    repo: &'a Repository,
    etc: Option<InodeId>,
}

impl fmt::Debug for ImageEtc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageEtc")
            .field("repo", &self.repo.path())
            .field("etc", &self.etc)
            .finish()
    }
}

/// Where the content of an image's regular file is.
pub(crate) enum Content<'a> {
    /// Inside the image (small files), or empty.
    Inline(&'a [u8]),
    /// A content object in the repository.
    Object(File),
}

impl<'a> ImageEtc<'a> {
    /// The `/etc` of `tree`, whose external files are objects in `repo`. Fails when the
    /// image's `/etc` exists but is not a directory (overlayfs could not use it as a lower
    /// layer).
    pub fn new(tree: &'a Tree, repo: &'a Repository) -> Result<Self> {
        let etc = tree.lookup(b"/etc");
        if let Some(id) = etc
            && !tree.inodes[id].is_dir()
        {
            bail!(
                "the image's /etc is not a directory (mode {:o})",
                tree.inodes[id].mode
            );
        }
        Ok(ImageEtc { tree, repo, etc })
    }

    /// The inode at `path` (not following symlinks), `None` when the image has nothing there.
    pub fn lookup(&self, path: &EtcPath) -> Option<&'a Inode> {
        let mut cur = self.etc?;
        for comp in path.components() {
            cur = self.child(cur, comp)?;
        }
        Some(self.inode(cur))
    }

    /// The fs-verity algorithm content is compared with: the repository's.
    pub fn algorithm(&self) -> Algorithm {
        self.repo.algorithm()
    }

    /// The inode of `/etc`, if the image has one.
    pub(crate) fn root(&self) -> Option<InodeId> {
        self.etc
    }

    pub(crate) fn inode(&self, id: InodeId) -> &'a Inode {
        &self.tree.inodes[id]
    }

    /// The entry `name` of directory `dir`; `None` if `dir` is not a directory.
    pub(crate) fn child(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        let inode = self.inode(dir);
        if !inode.is_dir() {
            return None;
        }
        inode.entries.get(name).map(|e| e.inode)
    }

    /// `child` of an optional directory.
    pub(crate) fn child_of(&self, dir: Option<InodeId>, name: &[u8]) -> Option<InodeId> {
        dir.and_then(|d| self.child(d, name))
    }

    /// The names in directory `dir` (none for a non-directory or `None`).
    pub(crate) fn names(&self, dir: Option<InodeId>) -> impl Iterator<Item = &'a [u8]> {
        dir.map(|d| self.inode(d))
            .filter(|i| i.is_dir())
            .into_iter()
            .flat_map(|i| i.entries.keys().map(|k| &**k))
    }

    /// The fs-verity digest of a regular file's content (computed for inline content).
    pub(crate) fn content_digest(&self, inode: &Inode, path: &EtcPath) -> Result<Digest> {
        let algorithm = self.algorithm();
        if let Some(d) = object_digest(inode) {
            if d.algorithm() != algorithm {
                bail!(
                    "{path}: the image names its content with {}, the repository uses {algorithm}",
                    d.algorithm()
                );
            }
            return Ok(d);
        }
        match (&inode.inline, inode.size) {
            (Some(data), _) => Ok(digest_bytes(algorithm, data)),
            (None, 0) => Ok(digest_bytes(algorithm, b"")),
            (None, _) => bail!("{path}: the image has neither content nor a digest for this file"),
        }
    }

    /// The content of a regular file, for copying it.
    pub(crate) fn content(&self, inode: &'a Inode, path: &EtcPath) -> Result<Content<'a>> {
        if let Some(d) = object_digest(inode) {
            let file = self
                .repo
                .open_object(&d)
                .with_context(|| format!("{path}: opening the image's content object"))?;
            return Ok(Content::Object(file));
        }
        match (&inode.inline, inode.size) {
            (Some(data), _) => Ok(Content::Inline(data)),
            (None, 0) => Ok(Content::Inline(b"")),
            (None, _) => bail!("{path}: the image has neither content nor a digest for this file"),
        }
    }
}

/// The content object of an external file: its digest, or the digest its payload
/// (`XX/rest-of-hex`) names when an image (mkcomposefs without a digest) has only that.
fn object_digest(inode: &Inode) -> Option<Digest> {
    inode.digest.or_else(|| {
        let payload = std::str::from_utf8(inode.payload.as_deref()?).ok()?;
        let (fan, rest) = payload.split_once('/')?;
        if fan.len() != 2 || rest.contains('/') {
            return None;
        }
        Digest::from_hex(&format!("{fan}{rest}")).ok()
    })
}
