//! Keeping layer trees in the repository: a layer tree is written as a composefs image in
//! the OCI format version ([`crate::oci::erofs_options`]: v1, exactly as `mkcomposefs
//! --min-version=1` would for the same tree, whiteouts escaped) and stored as an object. Its
//! fs-verity digest is the layer's `composefs.layer.erofs.v1.fsverity-*` value; reading the
//! object back gives the same tree (whatever version it was written in), so images can be
//! re-merged without fetching the layer again.

use anyhow::{Context, Result};

use super::{LayerTree, OPAQUE_XATTR};
use crate::erofs::reader::read_image;
use crate::erofs::writer::{WriteOptions, compute_digest, write_image};
use crate::fsverity::{Algorithm, Digest};
use crate::repo::Repository;
use crate::tree::transform::compact_in_place;

/// Format version of layer images: the OCI one.
fn write_options() -> WriteOptions {
    crate::oci::erofs_options()
}

/// The fs-verity digest of the layer's composefs image, without storing anything.
pub fn layer_digest(layer: &LayerTree, algorithm: Algorithm) -> Result<Digest> {
    Ok(compute_digest(&layer.tree, &write_options(), algorithm)?)
}

/// Writes the layer's composefs image into the repository as an object; returns its digest.
/// The image names the layer's file objects, so a gc that keeps it keeps them.
pub fn store_layer(repo: &Repository, layer: &LayerTree) -> Result<Digest> {
    repo.write_object_with(|mut w| Ok(write_image(&layer.tree, &write_options(), &mut w)?))
        .context("writing the layer image")
}

/// Reads a layer tree stored by [`store_layer`].
pub fn load_layer(repo: &Repository, digest: &Digest) -> Result<LayerTree> {
    let bytes = crate::bounded::read_to_end(repo.open_object(digest)?, crate::bounded::MAX_IMAGE)
        .with_context(|| format!("reading layer image {digest}"))?;
    let mut tree = read_image(&bytes).with_context(|| format!("reading layer image {digest}"))?;
    drop(bytes);
    // The writer marks a directory holding whiteouts with an opaque value "x" (format
    // version 1) and `user.overlay.*` twins of its markers; the reader hands those back as
    // xattrs. Imported trees never hold such xattrs (`trusted.overlay.*` and
    // `user.overlay.*` are dropped from tars), so they are the writer's and go.
    for inode in &mut tree.inodes {
        inode.xattrs.retain(|x| {
            !(x.name.starts_with(b"user.overlay.")
                || (&*x.name == OPAQUE_XATTR && &*x.value != b"y"))
        });
    }
    compact_in_place(&mut tree);
    Ok(LayerTree { tree })
}
