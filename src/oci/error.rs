//! Errors of the OCI paths that a caller (or a test) decides on. They are the root cause of
//! the `anyhow::Error`s returned by [`pull`](super::pull) and [`seal`](super::seal); blob and
//! layer digest errors travel inside an `io::Error` first (they surface while a reader is
//! consumed), use [`find`] to get at them either way.

/// What went wrong, with both sides of every comparison.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A blob (manifest, config, compressed layer) whose sha256/sha512 is not the one its
    /// descriptor names.
    #[error("{what}: content digest mismatch: expected {expected}, found {actual}")]
    BlobDigestMismatch {
        /// Which blob.
        what: String,
        /// The descriptor's digest.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A blob whose length is not its descriptor's size.
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    BlobSizeMismatch {
        /// Which blob.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// Bytes received (so far, when too many).
        actual: u64,
    },
    /// A composefs digest of the image (merged, bootable variant, config) differs from its
    /// annotation (`docs/oci-conventions.md` section 8).
    #[error(
        "{reference}: {key}: composefs digest mismatch: the image is sealed with {expected}, \
         but its content gives {actual}; nothing was tagged"
    )]
    SealMismatch {
        /// The image reference.
        reference: String,
        /// The annotation.
        key: String,
        /// The label's value.
        expected: String,
        /// The digest computed from the layers.
        actual: String,
    },
    /// A layer's image digest differs from its descriptor's
    /// `composefs.layer.erofs.v1.fsverity-*` annotation.
    #[error(
        "{reference}: layer {layer}: composefs layer digest mismatch: annotated {expected}, \
         computed {actual}; nothing was tagged"
    )]
    LayerSealMismatch {
        /// The image reference.
        reference: String,
        /// The layer's blob digest.
        layer: String,
        /// The annotation's value.
        expected: String,
        /// The digest computed.
        actual: String,
    },
    /// A seal of another fs-verity algorithm than the repository's: the image names its file
    /// objects by their digests, so a sha256 seal describes an image that only a sha256
    /// repository builds.
    #[error(
        "{reference}: {what} is {seal}, but the repository uses {repo} digests: the composefs \
         digest can only be checked in a repository of the seal's algorithm"
    )]
    SealAlgorithm {
        /// The image reference.
        reference: String,
        /// Label or annotation name.
        what: String,
        /// Its value.
        seal: String,
        /// The repository's algorithm.
        repo: String,
    },
    /// `--require-sealed` and the manifest lacks the merged or config annotation of the
    /// repository's algorithm.
    #[error(
        "{reference}: image is not sealed (no {missing} annotation, inline or in a composefs \
         artifact) and a sealed image is required; seal it with `cfsctl oci seal`"
    )]
    Unsealed {
        /// The image reference.
        reference: String,
        /// The annotation wanted.
        missing: String,
    },
    /// An annotation whose value is not a digest of its key's algorithm.
    #[error(
        "{what}: malformed composefs digest '{value}' (want lower-case hex of the key's algorithm)"
    )]
    MalformedSeal {
        /// Label or annotation name.
        what: String,
        /// Its value.
        value: String,
    },
    /// A composefs artifact that breaks the specification's rules.
    #[error("{what}: malformed composefs artifact: {why}")]
    MalformedArtifact {
        /// The image and the artifact's digest.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// Signatures are required (`--verity-cert`) and a digest has none.
    #[error(
        "{reference}: {key} is not signed, and signatures are required (--verity-cert); \
         nothing was tagged"
    )]
    Unsigned {
        /// The image reference.
        reference: String,
        /// The digest's annotation key (and artifact).
        key: String,
    },
    /// A `.sig` that does not verify with the configured certificates.
    #[error("{reference}: the signature of {key} {reason}; nothing was tagged")]
    BadSignature {
        /// The image reference.
        reference: String,
        /// The digest's annotation key (and artifact).
        key: String,
        /// Why.
        reason: String,
    },
    /// No image matched (tag not in an `oci:` dir, no linux/amd64 entry in an index).
    #[error("{0}")]
    NotFound(String),
    /// An image tagged in the repository was not found.
    #[error("no image named '{0}' in the repository (see `cfsctl oci images`)")]
    UnknownTag(String),
    /// Several names given to `oci rm` that name no image; nothing was removed.
    #[error("no images named {} in the repository (see `cfsctl oci images`); nothing removed",
            .0.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "))]
    UnknownTags(Vec<String>),
    /// A tag name that cannot be stored or listed; refused before anything is fetched.
    #[error("tag {name:?}: {reason}")]
    InvalidTag {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A record the tag's object list does not name (a pull interrupted between writing the
    /// record ref and the tag); pulling again repairs it.
    #[error(
        "{name}: the tag's object list {tagged} does not name its record (image {recorded}); pull it again"
    )]
    StaleRecord {
        /// The tag.
        name: String,
        /// The object list the tag points to.
        tagged: String,
        /// The image the record names.
        recorded: String,
    },
    /// A media type this program does not import.
    #[error("{what}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// Which descriptor.
        what: String,
        /// Its media type.
        media_type: String,
    },
}

/// The [`OciError`] in an error chain, looking inside `io::Error`s too.
pub fn find(err: &anyhow::Error) -> Option<&OciError> {
    err.chain().find_map(|e| {
        e.downcast_ref::<OciError>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<OciError>())
        })
    })
}
