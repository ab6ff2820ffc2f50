//! OCI images: references and transports, layer blobs in, merged canonical trees out,
//! pulling into the repository, sealing.
//!
//! - [`reference`], [`source`]: `oci:` layouts natively, other transports through skopeo;
//! - [`stream`]: digest-verified, decompressed, size-capped blob streams;
//! - [`layer`]: one layer's tar -> objects in the repository + a layer tree (kept in the
//!   repository as a composefs image, so images can be re-merged without fetching);
//! - [`merge`]: layer trees -> one image tree (whiteouts, opaque directories, hardlinks) and
//!   the canonicalization rules of `docs/oci-conventions.md`;
//! - [`pull`], [`record`]: the pull orchestration and what the repository remembers;
//! - [`seal`]: publishing the composefs digests in an image;
//! - [`policy`]: containers-policy.json(5) and signature verification, before anything is stored.

pub mod artifact;
pub mod bootable;
pub mod error;
pub mod layer;
pub mod layout;
pub mod merge;
pub mod policy;
pub mod pull;
pub mod record;
pub mod reference;
pub mod seal;
pub mod sealspec;
pub mod selabel;
pub mod source;
pub mod stream;

use crate::erofs::writer::WriteOptions;

/// EROFS writer options of every image made from an OCI image (merged and per-layer):
/// composefs format v1 always (`mkcomposefs --min-version=1 --max-version=1`), the OCI
/// sealing specification's `erofs.v1` and composefs-rs's default, recorded in the
/// repository's `meta.json` ([`crate::repo::OCI_EROFS_VERSION`]; `docs/oci-conventions.md`).
pub fn erofs_options() -> WriteOptions {
    erofs_options_for(crate::repo::OCI_EROFS_VERSION)
}

/// Writer options of OCI images made in format `version` (0: before v1 was recorded; kept
/// to rebuild and check what an old repository holds).
pub fn erofs_options_for(version: u32) -> WriteOptions {
    if version == 0 {
        return WriteOptions::default();
    }
    WriteOptions {
        min_version: version,
        max_version: version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dumpfile::{ParseMode, parse};
    use crate::erofs::writer::image_bytes;

    /// What `docs/oci-conventions.md` section 7 says: without whiteouts, v1 is the default
    /// output with `composefs_version` (bytes 12..16) set to 1.
    #[test]
    fn v1_differs_from_the_default_only_in_the_header() {
        let dump = b"/ 0 40755 3 0 0 0 1.5 - - -\n\
            /usr 0 40755 2 0 0 0 7.25 - - - security.capability=\\x01\n\
            /usr/f 5000 100644 1 0 0 0 3.0 ab/cdef - -\n\
            /usr/g 3 100644 1 0 0 0 3.0 - abc -\n\
            /l 4 120777 1 0 0 0 2.0 /usr - -\n";
        let tree = parse(dump, ParseMode::Lenient).unwrap();
        let v0 = image_bytes(&tree, &WriteOptions::default()).unwrap();
        let v1 = image_bytes(&tree, &erofs_options()).unwrap();
        assert_eq!(v0.len(), v1.len());
        let differ: Vec<usize> = (0..v0.len()).filter(|&i| v0[i] != v1[i]).collect();
        assert_eq!(differ, vec![12]);
        assert_eq!((v0[12], v1[12]), (0, 1));
        assert_eq!(erofs_options_for(0), WriteOptions::default());
    }
}
