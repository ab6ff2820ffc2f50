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

use anyhow::Result;

use super::error::OciError;
use super::record::Imported;
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
}

/// The annotation key of `role` for digests of `algorithm`.
pub fn key(role: Role, algorithm: Algorithm) -> String {
    let alg = format!("fsverity-{}-{LOG_BLOCK_SIZE}", algorithm.name());
    match role {
        Role::Layer => format!("composefs.layer.erofs.v1.{alg}"),
        Role::Merged => format!("composefs.merged.erofs.v1.{alg}"),
        Role::MergedBootable => format!("composefs.merged.bootable.erofs.v1.{alg}"),
        Role::Config => format!("composefs.config.{alg}"),
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

/// Whether the manifest asks for the boot variant in `algorithm` (so the import computes it).
pub fn wants_bootable(manifest: &oci_spec::image::ImageManifest, algorithm: Algorithm) -> bool {
    manifest
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(&key(Role::MergedBootable, algorithm)))
}

/// Checks every annotation of the repository's algorithm against what the import computed;
/// returns the merged digest (hex) when the image carries it (then it was checked).
/// Annotations of the other algorithm cannot be checked here (the images name their file
/// objects by digests of the repository's algorithm): when they are the only ones, the image
/// is refused ([`OciError::SealAlgorithm`]) rather than taken as unsealed. With `require`,
/// the merged and config annotations must be present ([`OciError::Unsealed`]).
pub fn verify(
    repo: &Repository,
    name: &str,
    imported: &Imported,
    require: bool,
) -> Result<Option<String>> {
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
    let ours = |k: &String| {
        [
            Role::Layer,
            Role::Merged,
            Role::MergedBootable,
            Role::Config,
        ]
        .iter()
        .any(|&r| *k == key(r, alg))
    };
    if !found.all().any(ours) {
        let other = found
            .all()
            .find(|k| k.starts_with("composefs.") && !k.ends_with(".sig"));
        if let Some(other) = other {
            return Err(OciError::SealAlgorithm {
                reference: name.to_string(),
                what: other.clone(),
                seal: other.clone(),
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
    }

    let config_key = key(Role::Config, alg);
    let config_value = found.config.and_then(|a| a.get(&config_key));
    if let Some(value) = config_value {
        let expected = parse_value(&config_key, value, alg)?;
        let actual = fsverity::digest_bytes(alg, &imported.config_bytes);
        if actual != expected {
            return Err(mismatch(config_key.clone(), value, &actual).into());
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
    }

    let merged_key = key(Role::Merged, alg);
    let merged_value = found.manifest.and_then(|a| a.get(&merged_key));
    if let Some(value) = merged_value {
        let expected = parse_value(&merged_key, value, alg)?;
        if imported.image_digest != expected {
            return Err(mismatch(merged_key.clone(), value, &imported.image_digest).into());
        }
    }
    if require {
        for (k, v) in [(&merged_key, merged_value), (&config_key, config_value)] {
            if v.is_none() {
                return Err(OciError::Unsealed {
                    reference: name.to_string(),
                    missing: k.clone(),
                }
                .into());
            }
        }
    }
    Ok(merged_value.cloned())
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
