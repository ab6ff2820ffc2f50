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
//! - [`seal`]: publishing the composefs digests in an image.

pub mod error;
pub mod layer;
pub mod merge;
pub mod pull;
pub mod record;
pub mod reference;
pub mod seal;
pub mod source;
pub mod stream;
