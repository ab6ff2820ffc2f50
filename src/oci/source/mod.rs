//! Where image bytes come from: an `oci:` layout read directly ([`ocidir`]) or skopeo's image
//! proxy ([`proxy`]). Both give the manifest, the config and raw layer blobs; digests are
//! checked by us ([`VerifyingReader`], [`verify_bytes`]) whatever the source claims to check.

pub mod ocidir;
pub mod proxy;

use std::io::Read;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, DigestAlgorithm, ImageIndex, ImageManifest, MediaType};
use sha2::Digest as _;

use super::error::OciError;
use super::reference::ImageReference;
use super::stream::VerifyingReader;

/// How to reach a source.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Verify registry TLS certificates (`--tls-verify=false` turns it off, for a local
    /// registry).
    pub tls_verify: bool,
    /// The signature policy and where signatures are looked up ([`crate::oci::policy`]).
    pub policy: crate::oci::policy::PolicyOptions,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            tls_verify: true,
            policy: Default::default(),
        }
    }
}

/// A manifest as received.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// `sha256:<hex>` of the manifest as published (what a signature or `@digest` names).
    pub digest: String,
    /// The exact bytes (OCI image manifest JSON).
    pub bytes: Vec<u8>,
    /// Parsed.
    pub manifest: ImageManifest,
}

/// A readable image. `Sync`: layer blobs are opened from several threads at once.
pub trait ImageSource: Sync {
    /// The image manifest (for an index: the linux/amd64 entry), digest-checked.
    fn manifest(&self) -> Result<FetchedManifest>;
    /// The config, checked against the manifest's config descriptor.
    fn config(&self, manifest: &ImageManifest) -> Result<Vec<u8>> {
        config_blob(self, manifest)
    }
    /// How many blobs may stream at once (importer threads beyond it would only wait).
    fn max_parallel_blobs(&self) -> usize {
        usize::MAX
    }
    /// Raw bytes of a blob, NOT verified: wrap them in a [`VerifyingReader`].
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;
    /// Frees what the source holds (the skopeo process); errors here are worth reporting.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Opens `reference`.
pub fn open(reference: &ImageReference, opts: &SourceOptions) -> Result<Box<dyn ImageSource>> {
    Ok(match reference {
        ImageReference::OciDir { path, tag } => {
            Box::new(ocidir::OciDir::open(path, tag.as_deref())?)
        }
        ImageReference::Proxy(r) => Box::new(proxy::ProxySource::open(r, opts)?),
    })
}

/// The config, checked against its descriptor.
pub fn fetch_config(source: &dyn ImageSource, manifest: &ImageManifest) -> Result<Vec<u8>> {
    source.config(manifest)
}

/// The config blob, read whole (configs are small) and checked against its descriptor.
fn config_blob<S: ImageSource + ?Sized>(source: &S, manifest: &ImageManifest) -> Result<Vec<u8>> {
    let desc = manifest.config();
    let what = format!("config {}", desc.digest());
    if desc.size() > MAX_JSON {
        anyhow::bail!("{what}: {} bytes is too large for a config", desc.size());
    }
    let mut reader = VerifyingReader::for_descriptor(source.open_blob(desc)?, desc, what.clone())?;
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what}"))?;
    Ok(bytes)
}

/// Bound on manifests, indexes and configs read into memory (the registry's own limit is 4 MiB
/// for manifests).
pub const MAX_JSON: u64 = 64 << 20;

/// `alg:hex` of `bytes` with the algorithm of `like`.
fn digest_of(alg: &DigestAlgorithm, bytes: &[u8]) -> Result<String> {
    Ok(match alg {
        DigestAlgorithm::Sha256 => format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))),
        DigestAlgorithm::Sha512 => format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes))),
        other => anyhow::bail!("unsupported digest algorithm {other}"),
    })
}

/// Checks that `bytes` have `expected` (`alg:hex`) as digest.
pub fn verify_bytes(what: &str, expected: &oci_spec::image::Digest, bytes: &[u8]) -> Result<()> {
    let actual = digest_of(expected.algorithm(), bytes)?;
    if actual != expected.to_string() {
        return Err(OciError::BlobDigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        }
        .into());
    }
    Ok(())
}

/// sha256 of bytes, as `sha256:<hex>`.
pub fn sha256_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The linux/amd64 manifest of an index (or the only one, if it names no platform).
pub fn pick_platform(index: &ImageIndex, what: &str) -> Result<Descriptor> {
    let manifests: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| {
            matches!(
                d.media_type(),
                MediaType::ImageManifest | MediaType::Other(_)
            ) || d.media_type().to_string() == DOCKER_MANIFEST
        })
        .collect();
    let wanted = manifests.iter().find(|d| {
        d.platform().as_ref().is_some_and(|p| {
            p.os() == &oci_spec::image::Os::Linux
                && p.architecture() == &oci_spec::image::Arch::Amd64
        })
    });
    match (wanted, manifests.as_slice()) {
        (Some(d), _) => Ok((*d).clone()),
        (None, [only]) if only.platform().is_none() => Ok((*only).clone()),
        _ => Err(OciError::NotFound(format!("{what}: no linux/amd64 image in the index")).into()),
    }
}

/// Docker's schema 2 manifest media type (skopeo converts these to OCI for us; an `oci:`
/// layout should not hold them).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
