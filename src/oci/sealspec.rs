//! The annotations of the composefs "OCI Sealing Specification" (composefs-rs
//! `crates/composefs-oci/src/sealing_spec.rs`), inline mode: their keys, and checking an
//! imported image against them. `docs/oci-conventions.md` section 8 says which rule is
//! where.
//!
//! | object | key | where |
//! |---|---|---|
//! | layer image | `composefs.layer.erofs.v1.fsverity-{alg}-12` | layer descriptor |
//! | merged image | `composefs.merged.erofs.v1.fsverity-{alg}-12` | manifest `annotations` |
//! | boot variant | `composefs.merged.bootable.erofs.v1.fsverity-{alg}-12` | manifest `annotations` |
//! | config JSON | `composefs.config.fsverity-{alg}-12` | config descriptor |
//!
//! Values are lower-case hex fs-verity digests (4096-byte blocks, no salt). The `erofs.v1`
//! segment is the format the images are written in ([`crate::oci::erofs_options`]).

use std::collections::HashMap;

use anyhow::{Context, Result};
use base64::Engine as _;

use super::error::OciError;
use super::record::Imported;
use crate::fsverity::signature::TrustedCerts;
use crate::fsverity::{self, Algorithm, Digest, LOG_BLOCK_SIZE};
use crate::repo::Repository;

/// Our first keys, before the specification: a config label and a layer annotation holding
/// `alg:hex` of the v0 images. No longer written nor trusted (see `docs/oci-conventions.md`
/// section 8); a pull that finds them says so.
pub const LEGACY_LABEL: &str = "containers.composefs.fsverity";
/// See [`LEGACY_LABEL`].
pub const LEGACY_LAYER_ANNOTATION: &str = "containers.composefs.layer.fsverity";

/// What a digest covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One layer's own image.
    Layer,
    /// The merged image.
    Merged,
    /// The merged image's boot variant ([`crate::oci::bootable`]).
    MergedBootable,
    /// The config JSON, as stored in the registry.
    Config,
    /// The image manifest JSON, as stored in the registry (artifact mode only: inline, the
    /// key would change the bytes it covers).
    Manifest,
}

impl Role {
    /// Every role, in the order artifact layers list them (`Layer` is inline only).
    pub const ALL: [Role; 5] = [
        Role::Manifest,
        Role::Config,
        Role::Merged,
        Role::MergedBootable,
        Role::Layer,
    ];
}

/// The role and algorithm of a digest key (`None` for any other key, `.sig` keys included).
pub fn parse_key(k: &str) -> Option<(Role, Algorithm)> {
    Role::ALL.into_iter().find_map(|role| {
        [Algorithm::Sha256, Algorithm::Sha512]
            .into_iter()
            .find(|&alg| key(role, alg) == k)
            .map(|alg| (role, alg))
    })
}

/// The key of the signature of the digest under `digest_key`.
pub fn sig_key(digest_key: &str) -> String {
    format!("{digest_key}.sig")
}

/// The annotation key of `role` for digests of `algorithm`.
pub fn key(role: Role, algorithm: Algorithm) -> String {
    let alg = format!("fsverity-{}-{LOG_BLOCK_SIZE}", algorithm.name());
    match role {
        Role::Layer => format!("composefs.layer.erofs.v1.{alg}"),
        Role::Merged => format!("composefs.merged.erofs.v1.{alg}"),
        Role::MergedBootable => format!("composefs.merged.bootable.erofs.v1.{alg}"),
        Role::Config => format!("composefs.config.{alg}"),
        Role::Manifest => format!("composefs.manifest.{alg}"),
    }
}

/// Parses an annotation value: lower-case hex of `algorithm`'s length.
pub fn parse_value(key: &str, value: &str, algorithm: Algorithm) -> Result<Digest> {
    let bad = || OciError::MalformedSeal {
        what: key.to_string(),
        value: value.to_string(),
    };
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad().into());
    }
    let digest = Digest::from_hex(value).map_err(|_| bad())?;
    if digest.algorithm() != algorithm {
        return Err(bad().into());
    }
    Ok(digest)
}

/// One sealed object: its role, digest, and signature when signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What the digest covers.
    pub role: Role,
    /// The fs-verity digest.
    pub digest: Digest,
    /// PKCS#7 DER over the digest's `fsverity_formatted_digest`.
    pub signature: Option<Vec<u8>>,
}

/// A composefs metadata artifact of one image (artifact mode: [`super::artifact`]).
#[derive(Debug, Clone)]
pub struct Artifact {
    /// `sha256:<hex>` of the artifact's manifest.
    pub digest: String,
    /// The algorithm of every entry.
    pub algorithm: Algorithm,
    /// In the specification's order.
    pub entries: Vec<Entry>,
}

impl Artifact {
    /// The entry of `role`, if any.
    pub fn entry(&self, role: Role) -> Option<&Entry> {
        self.entries.iter().find(|e| e.role == role)
    }
}

/// The annotations of one image, by where they sit.
struct Annotations<'a> {
    manifest: Option<&'a HashMap<String, String>>,
    config: Option<&'a HashMap<String, String>>,
    layers: Vec<Option<&'a HashMap<String, String>>>,
}

impl Annotations<'_> {
    fn all(&self) -> impl Iterator<Item = &String> {
        let maps = [self.manifest, self.config]
            .into_iter()
            .chain(self.layers.iter().copied());
        maps.flatten().flat_map(|m| m.keys())
    }
}

/// Whether the manifest, or one of the artifacts, asks for the boot variant in `algorithm`
/// (so the import computes it).
pub fn wants_bootable(
    manifest: &oci_spec::image::ImageManifest,
    artifacts: &[Artifact],
    algorithm: Algorithm,
) -> bool {
    manifest
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(&key(Role::MergedBootable, algorithm)))
        || artifacts
            .iter()
            .any(|a| a.algorithm == algorithm && a.entry(Role::MergedBootable).is_some())
}

/// What [`verify`] established.
#[derive(Debug, Clone, Default)]
pub struct Sealed {
    /// The merged image's digest (hex) as sealed (inline or by an artifact), checked.
    pub merged: Option<String>,
    /// The composefs artifacts checked (their manifest digests).
    pub artifacts: Vec<String>,
    /// Signatures were checked against the configured certificates.
    pub signed: bool,
    /// The merged image's signature (PKCS#7 DER), checked, when signed.
    pub merged_signature: Option<Vec<u8>>,
}

/// Whether the manifest carries an inline seal (any digest key) of `algorithm`.
pub fn has_inline(manifest: &oci_spec::image::ImageManifest, algorithm: Algorithm) -> bool {
    let maps = [
        manifest.annotations().as_ref(),
        manifest.config().annotations().as_ref(),
    ]
    .into_iter()
    .chain(manifest.layers().iter().map(|l| l.annotations().as_ref()));
    maps.flatten()
        .flat_map(|m| m.keys())
        .any(|k| parse_key(k).is_some_and(|(_, a)| a == algorithm))
}

/// Checks the signature of `key` (found in `map` as `key.sig`, base64) over `digest`;
/// `Ok(None)` when there is none (the caller decides whether one is required).
fn inline_signature(
    name: &str,
    map: Option<&HashMap<String, String>>,
    key: &str,
    digest: &Digest,
    certs: &TrustedCerts,
) -> Result<Option<Vec<u8>>> {
    let Some(value) = map.and_then(|m| m.get(&sig_key(key))) else {
        return Ok(None);
    };
    let bad = |reason: String| OciError::BadSignature {
        reference: name.to_string(),
        key: key.to_string(),
        reason,
    };
    let der = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| bad(format!("is not base64 ({e})")))?;
    certs.verify(&der, digest).map_err(|e| bad(e.to_string()))?;
    Ok(Some(der))
}

fn required<T>(name: &str, key: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| {
        OciError::Unsigned {
            reference: name.to_string(),
            key: key.to_string(),
        }
        .into()
    })
}

/// Checks every annotation of the repository's algorithm against what the import computed,
/// and every composefs artifact of that algorithm in `artifacts` (found by the caller:
/// [`super::artifact::find`]). Annotations of the other algorithm cannot be checked here
/// (the images name their file objects by digests of the repository's algorithm): when they
/// are the only ones, the image is refused ([`OciError::SealAlgorithm`]) rather than taken
/// as unsealed. With `require`, the merged and config digests must be sealed, inline or by
/// an artifact ([`OciError::Unsealed`]). With `certs`, signatures are required on the merged
/// and config digests (and, in an artifact, the manifest's), and every signature present
/// must verify with them.
pub fn verify(
    repo: &Repository,
    name: &str,
    imported: &Imported,
    require: bool,
    artifacts: &[Artifact],
    certs: Option<&TrustedCerts>,
) -> Result<Sealed> {
    let alg = repo.algorithm();
    let manifest = &imported.manifest.manifest;
    let found = Annotations {
        manifest: manifest.annotations().as_ref(),
        config: manifest.config().annotations().as_ref(),
        layers: manifest
            .layers()
            .iter()
            .map(|l| l.annotations().as_ref())
            .collect(),
    };
    let legacy = found.all().any(|k| k == LEGACY_LAYER_ANNOTATION)
        || imported
            .config
            .config()
            .as_ref()
            .and_then(|c| c.labels().as_ref())
            .is_some_and(|l| l.contains_key(LEGACY_LABEL));
    if legacy {
        tracing::warn!(
            "{name}: ignoring the old {LEGACY_LABEL} seal (not checked: it names format v0 \
             images); seal the image again with `cfsctl oci seal`"
        );
    }
    let ours: Vec<&Artifact> = artifacts.iter().filter(|a| a.algorithm == alg).collect();
    if !has_inline(manifest, alg) && ours.is_empty() {
        let other = found
            .all()
            .find(|k| k.starts_with("composefs.") && !k.ends_with(".sig"))
            .cloned()
            .or_else(|| {
                artifacts
                    .first()
                    .map(|a| format!("composefs artifact {} ({})", a.digest, a.algorithm))
            });
        if let Some(other) = other {
            return Err(OciError::SealAlgorithm {
                reference: name.to_string(),
                what: other.clone(),
                seal: other,
                repo: alg.name().to_string(),
            }
            .into());
        }
    }
    let mismatch = |key: String, expected: &str, actual: &Digest| OciError::SealMismatch {
        reference: name.to_string(),
        key,
        expected: expected.to_string(),
        actual: actual.to_hex(),
    };
    let mut sealed = Sealed {
        signed: certs.is_some(),
        ..Default::default()
    };

    let layer_key = key(Role::Layer, alg);
    for ((ann, desc), layer) in found
        .layers
        .iter()
        .zip(manifest.layers())
        .zip(&imported.layers)
    {
        let Some(value) = ann.and_then(|a| a.get(&layer_key)) else {
            continue;
        };
        let expected = parse_value(&layer_key, value, alg)?;
        let actual = Digest::from_hex(&layer.layer_image)?;
        if actual != expected {
            return Err(OciError::LayerSealMismatch {
                reference: name.to_string(),
                layer: desc.digest().to_string(),
                expected: value.clone(),
                actual: actual.to_hex(),
            }
            .into());
        }
        if let Some(certs) = certs {
            let k = format!("{layer_key} (layer {})", desc.digest());
            inline_signature(name, *ann, &layer_key, &actual, certs).with_context(|| k.clone())?;
        }
    }

    let config_actual = fsverity::digest_bytes(alg, &imported.config_bytes);
    let manifest_actual = fsverity::digest_bytes(alg, &imported.manifest.bytes);
    let config_key = key(Role::Config, alg);
    let config_value = found.config.and_then(|a| a.get(&config_key));
    if let Some(value) = config_value {
        let expected = parse_value(&config_key, value, alg)?;
        if config_actual != expected {
            return Err(mismatch(config_key.clone(), value, &config_actual).into());
        }
        if let Some(certs) = certs {
            let sig = inline_signature(name, found.config, &config_key, &config_actual, certs)?;
            required(name, &config_key, sig)?;
        }
    }

    let bootable_key = key(Role::MergedBootable, alg);
    if let Some(value) = found.manifest.and_then(|a| a.get(&bootable_key)) {
        let expected = parse_value(&bootable_key, value, alg)?;
        let actual = imported
            .bootable_digest
            .expect("the import computes the boot variant the manifest names");
        if actual != expected {
            return Err(mismatch(bootable_key, value, &actual).into());
        }
        if let Some(certs) = certs {
            inline_signature(name, found.manifest, &bootable_key, &actual, certs)?;
        }
    }

    let merged_key = key(Role::Merged, alg);
    let merged_value = found.manifest.and_then(|a| a.get(&merged_key));
    if let Some(value) = merged_value {
        let expected = parse_value(&merged_key, value, alg)?;
        if imported.image_digest != expected {
            return Err(mismatch(merged_key.clone(), value, &imported.image_digest).into());
        }
        if let Some(certs) = certs {
            let sig = inline_signature(
                name,
                found.manifest,
                &merged_key,
                &imported.image_digest,
                certs,
            )?;
            sealed.merged_signature = Some(required(name, &merged_key, sig)?);
        }
        sealed.merged = Some(value.clone());
    }
    let inline_config = config_value.is_some();

    for a in ours {
        for e in &a.entries {
            let k = format!("{} (artifact {})", key(e.role, alg), a.digest);
            let actual = match e.role {
                Role::Manifest => manifest_actual,
                Role::Config => config_actual,
                Role::Merged => imported.image_digest,
                Role::MergedBootable => imported
                    .bootable_digest
                    .expect("the import computes the boot variant an artifact names"),
                Role::Layer => unreachable!("artifact::parse refuses layer entries"),
            };
            if actual != e.digest {
                return Err(mismatch(k, &e.digest.to_hex(), &actual).into());
            }
            if let (Some(certs), Some(sig)) = (certs, &e.signature) {
                certs
                    .verify(sig, &actual)
                    .map_err(|err| OciError::BadSignature {
                        reference: name.to_string(),
                        key: k.clone(),
                        reason: err.to_string(),
                    })?;
            }
        }
        if certs.is_some() {
            for role in [Role::Manifest, Role::Config, Role::Merged] {
                let k = format!("{} (artifact {})", key(role, alg), a.digest);
                let sig = a.entry(role).and_then(|e| e.signature.clone());
                let sig = required(name, &k, sig)?;
                if role == Role::Merged {
                    sealed.merged_signature = Some(sig);
                }
            }
        }
        let merged = a.entry(Role::Merged).expect("artifact::parse checks it");
        sealed.merged = Some(merged.digest.to_hex());
        sealed.artifacts.push(a.digest.clone());
    }
    let artifact_config = artifacts
        .iter()
        .any(|a| a.algorithm == alg && a.entry(Role::Config).is_some());

    if require || certs.is_some() {
        if sealed.merged.is_none() {
            return Err(OciError::Unsealed {
                reference: name.to_string(),
                missing: merged_key,
            }
            .into());
        }
        if !inline_config && !artifact_config {
            return Err(OciError::Unsealed {
                reference: name.to_string(),
                missing: config_key,
            }
            .into());
        }
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_specifications() {
        assert_eq!(
            key(Role::Layer, Algorithm::Sha512),
            "composefs.layer.erofs.v1.fsverity-sha512-12"
        );
        assert_eq!(
            key(Role::Merged, Algorithm::Sha256),
            "composefs.merged.erofs.v1.fsverity-sha256-12"
        );
        assert_eq!(
            key(Role::MergedBootable, Algorithm::Sha512),
            "composefs.merged.bootable.erofs.v1.fsverity-sha512-12"
        );
        assert_eq!(
            key(Role::Config, Algorithm::Sha256),
            "composefs.config.fsverity-sha256-12"
        );
    }

    #[test]
    fn values_are_lower_case_hex_of_the_keys_algorithm() {
        let hex = "0f".repeat(32);
        let d = parse_value("k", &hex, Algorithm::Sha256).unwrap();
        assert_eq!(d.to_hex(), hex);
        for (bad, alg) in [
            (hex.to_uppercase(), Algorithm::Sha256),
            (hex.clone(), Algorithm::Sha512),
            (format!("sha256:{hex}"), Algorithm::Sha256),
            ("zz".repeat(32), Algorithm::Sha256),
            (String::new(), Algorithm::Sha256),
        ] {
            let e = parse_value("k", &bad, alg).unwrap_err();
            assert!(
                matches!(e.downcast_ref(), Some(OciError::MalformedSeal { .. })),
                "{bad}"
            );
        }
    }
}
