//! OCI images: references and transports, pulling into the repository, sealing.
//!
//! Conventions (labels, annotations, canonicalization): `docs/oci-conventions.md`.

pub mod error;
pub mod reference;
pub mod source;
