//! The container side: OCI layer blobs in, merged canonical trees out.
//!
//! - [`stream`]: digest-verified, decompressed, size-capped blob streams;
//! - [`layer`]: one layer's tar -> objects in the repository + a layer tree (kept in the
//!   repository as a composefs image, so images can be re-merged without fetching);
//! - [`merge`]: layer trees -> one image tree (whiteouts, opaque directories, hardlinks) and
//!   the canonicalization rules of `docs/oci-conventions.md`.

pub mod layer;
pub mod merge;
pub mod stream;
