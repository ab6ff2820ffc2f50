//! One OCI layer: its tar stream -> file contents in the object store + a *layer tree*.
//!
//! The layer tree is a [`Tree`] holding exactly what the tar says, with the OCI change-set
//! markers in the overlayfs convention (so the layer, written as a composefs image, is what
//! an overlay lower layer would be):
//!
//! - `.wh.NAME` becomes a whiteout: a character device 0/0 named `NAME` (owner, mode and
//!   mtime from the `.wh.` entry); `.wh..wh..opq` marks its directory opaque with the xattr
//!   [`OPAQUE_XATTR`]` = y`; other `.wh..wh.*` names are ignored (OCI image-spec,
//!   "Whiteouts"). A literal 0/0 character device in the tar is a whiteout too (that is what
//!   it becomes on any overlay-based extraction). Whiteouts below an opaque directory of the
//!   same layer are dropped: the opaque marker already hides everything below.
//! - parent directories the tar does not list are created with mode [`IMPLICIT_DIR_MODE`],
//!   owner 0:0, mtime 0 and the marker xattr [`IMPLICIT_DIR_XATTR`], so a merge can keep the
//!   lower layer's metadata for them (as extraction onto an existing tree does);
//! - xattrs come from PAX `SCHILY.xattr.*` records, raw; `trusted.overlay.*`,
//!   `user.overlay.*` and `trusted.cfsctl.*` are dropped, so the markers above are
//!   unambiguous;
//! - later entries win over earlier ones with the same path, except that a directory over a
//!   directory only replaces its metadata (as tar extraction does); hard links name an earlier
//!   entry of the same layer; non-directory link counts are the names in the layer.
//!
//! Adversarial input is refused with [`LayerError`] naming the layer and the entry: `..`
//! escaping the root, NUL in names, an entry below a symlink or other non-directory, a hard
//! link to a missing, later, or directory entry, an xattr value too large for composefs,
//! sparse files, unknown entry types, paths of more than [`MAX_DEPTH`] components, and
//! streams over the [`Limits`]. Nothing is written
//! outside the repository; objects stored before an error are unreferenced and left to gc.

mod guard;
mod pax;
mod store;

use pax::parse_pax_id;
pub use pax::parse_pax_time;
#[cfg(test)]
mod tests;

use std::io::Read;

use anyhow::{Context, Result};

use self::guard::HeaderGuard;
use crate::erofs::limits::{
    INLINE_RECOMMENDED_MAX, MAX_DEPTH, NAME_MAX, PAYLOAD_MAX, XATTR_NAME_MAX, XATTR_VALUE_MAX,
    XATTRS_INPUT_MAX,
};
use oci_spec::image::Descriptor;

use crate::oci::stream::{LimitedReader, VerifyingReader, decompress, drain, unwrap_io};
use crate::repo::Repository;
use crate::tree::transform::{compact_in_place, is_whiteout};
use crate::tree::{DirEntry, FileType, Inode, InodeId, ROOT, Timestamp, Tree, Xattr, mode};

pub use store::{layer_digest, load_layer, store_layer};

/// Marks an opaque directory (overlayfs's own xattr for it).
pub const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";
/// Marks a directory created only because an entry below it needed a parent.
pub const IMPLICIT_DIR_XATTR: &[u8] = b"trusted.cfsctl.implicit";
/// Permission bits of implicitly created parent directories (what `mkdir -p` under umask 022,
/// containerd and containers/storage use).
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Caps that keep a hostile layer from using unbounded disk or memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Decompressed tar bytes (bounds disk use: file contents land in the repository).
    pub max_tar_bytes: u64,
    /// Tar entries (bounds the tree's size in memory).
    pub max_entries: u64,
    /// Bytes of paths, link targets, xattrs and inline contents kept in memory.
    pub max_metadata_bytes: u64,
    /// Bytes of one PAX extended header or GNU long name/link (read whole by the parser).
    pub max_extension_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tar_bytes: 64 << 30,
            max_entries: 10_000_000,
            max_metadata_bytes: 1 << 30,
            max_extension_bytes: 1 << 20,
        }
    }
}

/// How to import a layer.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The layer's name in messages: its diff_id (`sha256:...`) where known.
    pub layer: String,
    /// Resource caps.
    pub limits: Limits,
}

/// One layer as a tree; see the module documentation for what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerTree {
    /// The tree, root inode 0, compact (every inode reachable).
    pub tree: Tree,
}

/// A layer the importer refuses; found as the root cause of the returned `anyhow::Error`.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An entry that cannot be imported safely or faithfully.
    #[error("layer {layer}: entry '{path}': {problem}")]
    BadEntry {
        /// The layer (diff_id).
        layer: String,
        /// The entry's path as written in the tar.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The layer exceeds one of the [`Limits`].
    #[error("layer {layer}: more than {limit} {what}")]
    LimitExceeded {
        /// The layer (diff_id).
        layer: String,
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: u64,
    },
}

/// Imports a layer's (decompressed) tar stream: regular files over
/// [`INLINE_RECOMMENDED_MAX`] bytes are streamed into `repo` as objects, everything else is
/// kept in the returned tree.
///
/// Reads the stream to its end (the end-of-archive padding is part of the diff_id), so a
/// [`VerifyingReader`] below `tar` gets to check its digest; its error is the root cause of
/// the returned error then. [`import_blob`] is the whole path from a compressed blob. Memory use does not grow with file sizes; it grows with the number of
/// entries (bounded by [`Limits`]). Layers can be imported on several threads at once.
pub fn import_layer(tar: impl Read, repo: &Repository, opts: &ImportOptions) -> Result<LayerTree> {
    let layer = &opts.layer;
    let limited = LimitedReader::new(tar, opts.limits.max_tar_bytes, format!("layer {layer}"));
    let guarded = HeaderGuard::new(limited, opts.limits.max_extension_bytes, layer);
    let mut archive = tar::Archive::new(guarded);
    let mut importer = Importer {
        repo,
        opts,
        tree: Tree::new(IMPLICIT_DIR_MODE),
        entries: 0,
        metadata: 0,
    };
    mark_implicit(&mut importer.tree.inodes[ROOT]);
    {
        let entries = archive.entries().map_err(|e| tar_error(e, layer))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_error(e, layer))?;
            importer.entry(&mut entry)?;
        }
    }
    let rest = drain(archive.into_inner().into_inner()).map_err(|e| tar_error(e, layer))?;
    if rest > 0 {
        tracing::debug!("layer {layer}: {rest} bytes after the end-of-archive marker");
    }
    let Importer { mut tree, .. } = importer;
    drop_whiteouts_in_opaque_dirs(&mut tree);
    compact_in_place(&mut tree);
    Ok(LayerTree { tree })
}

/// Imports a layer blob as the manifest describes it: the blob is checked against `desc`
/// (digest and size), decompressed by its media type, and the tar checked against `diff_id`
/// (the config's `rootfs.diff_ids` entry) on its way into [`import_layer`]. Both streams are
/// read to their end, so both checks run whatever the decompressor or the tar parser
/// needed; a mismatch is the root cause of the returned error
/// ([`OciError`](crate::oci::error::OciError), found with [`crate::oci::error::find`]).
pub fn import_blob(
    blob: impl Read + Send,
    desc: &Descriptor,
    diff_id: &oci_spec::image::Digest,
    repo: &Repository,
    opts: &ImportOptions,
) -> Result<LayerTree> {
    let mut blob = VerifyingReader::for_descriptor(blob, desc, format!("blob {}", desc.digest()))?;
    let media_type = desc.media_type().to_string();
    let tree = {
        let tar = decompress(&media_type, &mut blob)?;
        let mut tar = VerifyingReader::new(tar, diff_id, None, format!("diff_id {diff_id}"))?;
        let tree = import_layer(&mut tar, repo, opts)?;
        tar.finish().map_err(unwrap_io)?;
        tree
    };
    blob.finish().map_err(unwrap_io)?;
    Ok(tree)
}

/// An error of the tar stream: a [`LayerError`] or `StreamError` carried in the
/// `io::Error` becomes the root cause; anything else gets the layer as context.
fn tar_error(e: std::io::Error, layer: &str) -> anyhow::Error {
    if e.get_ref().is_some_and(|i| i.is::<LayerError>()) {
        if let Some(Ok(inner)) = e.into_inner().map(|i| i.downcast::<LayerError>()) {
            return anyhow::Error::new(*inner);
        }
        unreachable!("checked: the error carries a LayerError");
    }
    unwrap_io(e).context(format!("layer {layer}: reading the tar stream"))
}

/// Adds the implicit-directory marker.
fn mark_implicit(inode: &mut Inode) {
    inode.xattrs.push(Xattr {
        name: IMPLICIT_DIR_XATTR.into(),
        value: Box::default(),
    });
}

/// True for a directory carrying the opaque marker.
pub fn is_opaque(inode: &Inode) -> bool {
    inode.is_dir() && inode.xattr(OPAQUE_XATTR) == Some(b"y")
}

/// True for a directory the tar did not list.
pub fn is_implicit(inode: &Inode) -> bool {
    inode.is_dir() && inode.xattr(IMPLICIT_DIR_XATTR).is_some()
}

fn drop_whiteouts_in_opaque_dirs(tree: &mut Tree) {
    for id in 0..tree.inodes.len() {
        if !is_opaque(&tree.inodes[id]) {
            continue;
        }
        let whiteouts: Vec<Box<[u8]>> = tree.inodes[id]
            .entries
            .iter()
            .filter(|(_, e)| is_whiteout(&tree.inodes[e.inode]))
            .map(|(n, _)| n.clone())
            .collect();
        for name in whiteouts {
            tree.inodes[id].entries.remove(&name);
        }
    }
}

/// Xattr name prefixes never taken from a tar: overlayfs's own (they would be confused with
/// the whiteout/opaque markers, and mean nothing inside an image) and ours.
const DROPPED_XATTR_PREFIXES: [&[u8]; 3] =
    [b"trusted.overlay.", b"user.overlay.", b"trusted.cfsctl."];
/// PAX record prefix of xattrs (GNU tar, Go's archive/tar, libarchive's compat records).
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// What a tar entry becomes.
enum Node {
    /// A new inode (any type).
    Inode(Inode),
    /// Another name for an existing inode.
    Hardlink(InodeId),
}

struct Importer<'a> {
    repo: &'a Repository,
    opts: &'a ImportOptions,
    tree: Tree,
    entries: u64,
    metadata: u64,
}

/// What the PAX records of one entry say, beyond what the tar crate applies itself
/// (path, linkpath, size, uid, gid).
#[derive(Default)]
struct Pax {
    xattrs: Vec<Xattr>,
    mtime: Option<Timestamp>,
    uid: Option<u32>,
    gid: Option<u32>,
    sparse: bool,
}

impl Importer<'_> {
    fn bad(&self, path: &[u8], problem: impl Into<String>) -> anyhow::Error {
        LayerError::BadEntry {
            layer: self.opts.layer.clone(),
            path: String::from_utf8_lossy(path).into_owned(),
            problem: problem.into(),
        }
        .into()
    }

    fn limit(&self, what: &'static str, limit: u64) -> anyhow::Error {
        LayerError::LimitExceeded {
            layer: self.opts.layer.clone(),
            what,
            limit,
        }
        .into()
    }

    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.metadata = self.metadata.saturating_add(bytes as u64);
        let max = self.opts.limits.max_metadata_bytes;
        if self.metadata > max {
            return Err(self.limit("bytes of metadata", max));
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        use tar::EntryType as T;
        self.entries += 1;
        if self.entries > self.opts.limits.max_entries {
            return Err(self.limit("entries", self.opts.limits.max_entries));
        }
        let raw_path = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        match kind {
            // Global PAX headers apply defaults to later entries; nothing an image needs
            // (Go's archive/tar and buildah never write them for layers).
            T::XGlobalHeader => {
                tracing::debug!("layer {}: ignoring a global PAX header", self.opts.layer);
                return Ok(());
            }
            T::GNUSparse => return Err(self.bad(&raw_path, "sparse files are not supported")),
            _ => {}
        }
        self.charge(raw_path.len())?;
        let pax = self.pax(entry, &raw_path)?;
        if pax.sparse {
            return Err(self.bad(&raw_path, "sparse files (PAX GNU.sparse) are not supported"));
        }
        let comps = self.components(&raw_path, &raw_path)?;

        // OCI whiteouts.
        if let Some(name) = comps.last().and_then(|n| n.strip_prefix(b".wh.")) {
            let parent = &comps[..comps.len() - 1];
            if name == b".wh..opq" {
                let dir = self.dir_at(parent, &raw_path)?;
                set_xattr(&mut self.tree.inodes[dir], OPAQUE_XATTR, b"y");
                return Ok(());
            }
            if name.starts_with(b".wh.") {
                tracing::debug!(
                    "layer {}: ignoring '{}'",
                    self.opts.layer,
                    raw_path.escape_ascii()
                );
                return Ok(());
            }
            if name.is_empty() || name == b"." || name == b".." {
                return Err(self.bad(&raw_path, "whiteout without a valid name"));
            }
            let mut inode = self.metadata_of(entry, &raw_path, mode::S_IFCHR, &pax)?;
            inode.xattrs.clear();
            inode.rdev = 0;
            let dir = self.dir_at(parent, &raw_path)?;
            self.link(dir, name, Node::Inode(inode));
            return Ok(());
        }

        let node = match kind {
            T::Regular | T::Continuous => {
                let mut inode = self.metadata_of(entry, &raw_path, mode::S_IFREG, &pax)?;
                let size = entry.size();
                inode.size = size;
                if size > INLINE_RECOMMENDED_MAX {
                    let digest = self
                        .repo
                        .import_reader(&mut *entry, size)
                        .map_err(|e| match e.downcast::<std::io::Error>() {
                            Ok(io) => unwrap_io(io),
                            Err(e) => e,
                        })
                        .with_context(|| {
                            format!(
                                "layer {}: entry '{}': storing the content",
                                self.opts.layer,
                                raw_path.escape_ascii()
                            )
                        })?;
                    inode.payload = Some(digest.object_path().into_bytes().into());
                    inode.digest = Some(digest);
                } else if size > 0 {
                    let mut data = vec![0u8; size as usize];
                    entry.read_exact(&mut data).map_err(|e| {
                        unwrap_io(e).context(format!(
                            "layer {}: entry '{}': reading the content",
                            self.opts.layer,
                            raw_path.escape_ascii()
                        ))
                    })?;
                    self.charge(data.len())?;
                    inode.inline = Some(data.into());
                }
                Node::Inode(inode)
            }
            T::Directory => Node::Inode(self.metadata_of(entry, &raw_path, mode::S_IFDIR, &pax)?),
            T::Symlink => {
                let mut inode = self.metadata_of(entry, &raw_path, mode::S_IFLNK, &pax)?;
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.is_empty() || target.len() > PAYLOAD_MAX || target.contains(&0) {
                    return Err(self.bad(
                        &raw_path,
                        format!(
                            "symlink target of {} bytes, empty or with NUL",
                            target.len()
                        ),
                    ));
                }
                self.charge(target.len())?;
                inode.size = target.len() as u64;
                inode.payload = Some(target.into());
                Node::Inode(inode)
            }
            T::Char | T::Block => {
                let ty = if kind == T::Char {
                    mode::S_IFCHR
                } else {
                    mode::S_IFBLK
                };
                let mut inode = self.metadata_of(entry, &raw_path, ty, &pax)?;
                let header = entry.header();
                let major = header.device_major().ok().flatten();
                let minor = header.device_minor().ok().flatten();
                let (Some(major), Some(minor)) = (major, minor) else {
                    return Err(self.bad(&raw_path, "device without a valid device number"));
                };
                inode.rdev = rustix::fs::makedev(major, minor);
                Node::Inode(inode)
            }
            T::Fifo => Node::Inode(self.metadata_of(entry, &raw_path, mode::S_IFIFO, &pax)?),
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let shown_target = target.escape_ascii().to_string();
                let target_comps = self.components(&target, &raw_path)?;
                let found = self.lookup(&target_comps).filter(|&id| {
                    let inode = &self.tree.inodes[id];
                    !inode.is_dir() && !is_whiteout(inode)
                });
                match found {
                    Some(id) => Node::Hardlink(id),
                    None => {
                        return Err(self.bad(
                            &raw_path,
                            format!(
                                "hard link to '{shown_target}', which is not an earlier \
                                 non-directory entry of this layer"
                            ),
                        ));
                    }
                }
            }
            other => {
                return Err(self.bad(&raw_path, format!("unsupported tar entry type {other:?}")));
            }
        };

        let Some((name, parent)) = comps.split_last() else {
            // The root itself ("./" or "/").
            return match node {
                Node::Inode(inode) if inode.is_dir() => {
                    update_dir(&mut self.tree.inodes[ROOT], inode);
                    Ok(())
                }
                _ => Err(self.bad(&raw_path, "the root must be a directory")),
            };
        };
        let dir = self.dir_at(parent, &raw_path)?;
        self.link(dir, name, node);
        Ok(())
    }

    /// The PAX records of the entry that the tar crate does not apply itself.
    fn pax<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, path: &[u8]) -> Result<Pax> {
        let mut out = Pax::default();
        let exts = entry.pax_extensions().map_err(|e| {
            unwrap_io(e).context(format!(
                "layer {}: entry '{}': reading PAX records",
                self.opts.layer,
                path.escape_ascii()
            ))
        })?;
        let Some(exts) = exts else { return Ok(out) };
        let mut charge = 0usize;
        for ext in exts {
            let ext = ext.map_err(|e| self.bad(path, format!("malformed PAX record: {e}")))?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                if DROPPED_XATTR_PREFIXES.iter().any(|p| name.starts_with(p)) {
                    tracing::debug!(
                        "layer {}: entry '{}': dropping xattr {}",
                        self.opts.layer,
                        path.escape_ascii(),
                        name.escape_ascii()
                    );
                    continue;
                }
                if name.is_empty() || name.len() > XATTR_NAME_MAX || name.contains(&0) {
                    return Err(self.bad(
                        path,
                        format!(
                            "xattr name '{}' empty, too long or with NUL",
                            name.escape_ascii()
                        ),
                    ));
                }
                if value.len() > XATTR_VALUE_MAX {
                    return Err(self.bad(
                        path,
                        format!(
                            "xattr {} has a {}-byte value; composefs images hold at most {}",
                            name.escape_ascii(),
                            value.len(),
                            XATTR_VALUE_MAX
                        ),
                    ));
                }
                charge += name.len() + value.len();
                out.xattrs.retain(|x| &*x.name != name);
                out.xattrs.push(Xattr {
                    name: name.into(),
                    value: value.into(),
                });
            } else if key == b"uid" || key == b"gid" {
                // The tar crate applies these itself but silently keeps the header's value
                // when one does not parse; an owner must never be guessed.
                let id = parse_pax_id(value).ok_or_else(|| {
                    self.bad(
                        path,
                        format!(
                            "PAX {} '{}' is not a 32-bit decimal id",
                            key.escape_ascii(),
                            value.escape_ascii()
                        ),
                    )
                })?;
                if key == b"uid" {
                    out.uid = Some(id);
                } else {
                    out.gid = Some(id);
                }
            } else if key == b"mtime" {
                out.mtime = Some(
                    parse_pax_time(value).ok_or_else(|| self.bad(path, "malformed PAX mtime"))?,
                );
            } else if key.starts_with(b"GNU.sparse.") {
                out.sparse = true;
            }
        }
        // mkcomposefs's per-inode budget (`LCFS_INODE_EXTERNAL_XATTR_MAX`): 12 bytes of
        // header, 7 + name + value per xattr. The writer refuses more, so refuse it here,
        // naming the entry.
        let budget: usize = 12
            + out
                .xattrs
                .iter()
                .map(|x| 7 + x.name.len() + x.value.len())
                .sum::<usize>();
        if !out.xattrs.is_empty() && budget > XATTRS_INPUT_MAX {
            return Err(self.bad(
                path,
                format!(
                    "xattrs take {budget} bytes; composefs images hold at most {XATTRS_INPUT_MAX} \
                     per inode"
                ),
            ));
        }
        self.charge(charge)?;
        Ok(out)
    }

    /// An inode of type `ty` with the entry's permission bits, owner, mtime and xattrs.
    fn metadata_of<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        path: &[u8],
        ty: u32,
        pax: &Pax,
    ) -> Result<Inode> {
        let h = entry.header();
        let field = |what: &str, e: std::io::Error| self.bad(path, format!("bad {what}: {e}"));
        let perm = h.mode().map_err(|e| field("mode", e))? & 0o7777;
        let mut inode = Inode::new(ty | perm);
        let uid = h.uid().map_err(|e| field("uid", e))?;
        let gid = h.gid().map_err(|e| field("gid", e))?;
        inode.uid = match pax.uid {
            Some(uid) => uid,
            None => {
                u32::try_from(uid).map_err(|_| self.bad(path, format!("uid {uid} over 32 bits")))?
            }
        };
        inode.gid = match pax.gid {
            Some(gid) => gid,
            None => {
                u32::try_from(gid).map_err(|_| self.bad(path, format!("gid {gid} over 32 bits")))?
            }
        };
        inode.mtime = match pax.mtime {
            Some(t) => t,
            None => Timestamp {
                sec: i64::try_from(h.mtime().map_err(|e| field("mtime", e))?).unwrap_or(i64::MAX),
                nsec: 0,
            },
        };
        inode.xattrs = pax.xattrs.clone();
        Ok(inode)
    }

    /// Splits a tar path into its names: leading `/` and `.` components dropped, `..`
    /// resolved lexically; refused when it would leave the root or holds NUL or an
    /// over-long name. `entry` is the path shown in errors.
    fn components(&self, path: &[u8], entry: &[u8]) -> Result<Vec<Box<[u8]>>> {
        if path.contains(&0) {
            return Err(self.bad(entry, "path contains NUL"));
        }
        let mut out: Vec<Box<[u8]>> = Vec::new();
        for comp in path.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    if out.pop().is_none() {
                        return Err(self.bad(
                            entry,
                            format!("path '{}' leaves the root with '..'", path.escape_ascii()),
                        ));
                    }
                }
                name if name.len() > NAME_MAX => {
                    return Err(self.bad(entry, format!("a name of {} bytes", name.len())));
                }
                name => out.push(name.into()),
            }
        }
        if out.len() > MAX_DEPTH {
            return Err(self.bad(
                entry,
                format!(
                    "a path of {} components; composefs images hold at most {MAX_DEPTH}",
                    out.len()
                ),
            ));
        }
        Ok(out)
    }

    /// Looks up a path without following symlinks.
    fn lookup(&self, comps: &[Box<[u8]>]) -> Option<InodeId> {
        let mut cur = ROOT;
        for c in comps {
            let inode = &self.tree.inodes[cur];
            if !inode.is_dir() {
                return None;
            }
            cur = inode.entries.get(c)?.inode;
        }
        Some(cur)
    }

    /// The directory at `comps`, creating missing ones as implicit directories. A whiteout
    /// in the way becomes an opaque directory (the lower one is deleted and replaced);
    /// any other non-directory in the way is an error: the tree never follows symlinks.
    fn dir_at(&mut self, comps: &[Box<[u8]>], entry: &[u8]) -> Result<InodeId> {
        let mut cur = ROOT;
        for (i, c) in comps.iter().enumerate() {
            let existing = self.tree.inodes[cur].entries.get(c).map(|e| e.inode);
            cur = match existing {
                Some(id) if self.tree.inodes[id].is_dir() => id,
                Some(id) if is_whiteout(&self.tree.inodes[id]) => {
                    let mut dir = implicit_dir();
                    set_xattr(&mut dir, OPAQUE_XATTR, b"y");
                    self.replace(cur, c, dir)
                }
                Some(id) => {
                    let prefix = comps[..=i].join(&b'/');
                    let inode = &self.tree.inodes[id];
                    let what = match (inode.file_type(), &inode.payload) {
                        (Some(FileType::Symlink), Some(t)) => {
                            format!("a symlink (to '{}')", t.escape_ascii())
                        }
                        _ => "not a directory".to_string(),
                    };
                    return Err(self.bad(
                        entry,
                        format!(
                            "'{}' is {what}; entries below it are refused (symlinks are never \
                             followed)",
                            prefix.escape_ascii()
                        ),
                    ));
                }
                None => self.replace(cur, c, implicit_dir()),
            };
        }
        Ok(cur)
    }

    /// Adds `inode` and names it `name` in `dir`, replacing what had that name.
    fn replace(&mut self, dir: InodeId, name: &[u8], inode: Inode) -> InodeId {
        let id = self.tree.add_inode(inode);
        self.tree.inodes[dir].entries.insert(
            name.into(),
            DirEntry {
                inode: id,
                hardlink: false,
            },
        );
        id
    }

    /// Names `node` `name` in `dir`, with tar extraction's rules for an existing name.
    fn link(&mut self, dir: InodeId, name: &[u8], node: Node) {
        let existing = self.tree.inodes[dir].entries.get(name).map(|e| e.inode);
        match node {
            Node::Hardlink(target) => {
                if existing == Some(target) {
                    return;
                }
                self.tree.inodes[dir].entries.insert(
                    name.into(),
                    DirEntry {
                        inode: target,
                        hardlink: true,
                    },
                );
            }
            Node::Inode(mut inode) => {
                match existing {
                    Some(id) if inode.is_dir() && self.tree.inodes[id].is_dir() => {
                        update_dir(&mut self.tree.inodes[id], inode);
                        return;
                    }
                    Some(id) if inode.is_dir() && is_whiteout(&self.tree.inodes[id]) => {
                        set_xattr(&mut inode, OPAQUE_XATTR, b"y");
                    }
                    _ => {}
                }
                self.replace(dir, name, inode);
            }
        }
    }
}

fn implicit_dir() -> Inode {
    let mut dir = Inode::new(mode::S_IFDIR | IMPLICIT_DIR_MODE);
    mark_implicit(&mut dir);
    dir
}

/// A directory entry over an existing directory: takes its metadata, keeps its children
/// and its opaque marker; it is no longer implicit.
fn update_dir(dir: &mut Inode, new: Inode) {
    let opaque = is_opaque(dir);
    dir.mode = new.mode;
    dir.uid = new.uid;
    dir.gid = new.gid;
    dir.mtime = new.mtime;
    dir.xattrs = new.xattrs;
    if opaque {
        set_xattr(dir, OPAQUE_XATTR, b"y");
    }
}

fn set_xattr(inode: &mut Inode, name: &[u8], value: &[u8]) {
    inode.xattrs.retain(|x| &*x.name != name);
    inode.xattrs.push(Xattr {
        name: name.into(),
        value: value.into(),
    });
}
