//! What the repository remembers about a pulled image, and the refs that keep it alive.
//!
//! ```text
//! refs/oci/tags/<enc(name)>           -> the merged image (mountable; what `oci mount` opens)
//! refs/oci/records/<enc(name)>        -> ImageRecord JSON (manifest digest, layers, ...)
//! refs/oci/manifests/<alg>-<hex>      -> the manifest JSON, exact bytes
//! refs/oci/configs/<alg>-<hex>        -> the config JSON, exact bytes
//! refs/oci/layers/<alg>-<diff_id hex> -> the layer's metadata image (per-layer composefs digest)
//! ```
//! `<enc>` is [`encode_tag`]. Every ref is a GC root; the record is written before the tag,
//! so a tag never names an image whose record is missing (a crash in between leaves a record
//! that the tag does not match yet, which the next pull replaces).

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::error::OciError;
use super::reference::{decode_tag, encode_tag};
use crate::fsverity::Digest;
use crate::repo::{RepoError, Repository};

/// Ref prefixes.
pub const TAGS: &str = "oci/tags";
/// See the module documentation.
pub const RECORDS: &str = "oci/records";
/// See the module documentation.
pub const MANIFESTS: &str = "oci/manifests";
/// See the module documentation.
pub const CONFIGS: &str = "oci/configs";
/// See the module documentation.
pub const LAYERS: &str = "oci/layers";

/// One layer of a pulled image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Blob digest (`sha256:<hex>`), compressed as published.
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Blob media type.
    pub media_type: String,
    /// Blob size in bytes.
    pub size: u64,
    /// fs-verity digest (hex) of the layer's metadata image: the per-layer composefs digest.
    pub layer_image: String,
}

/// A pulled image (stored as a JSON object, named by `refs/oci/records/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference it was pulled from.
    pub reference: String,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the config.
    pub config_digest: String,
    /// fs-verity digest (hex) of the manifest object.
    pub manifest_object: String,
    /// fs-verity digest (hex) of the config object.
    pub config_object: String,
    /// fs-verity digest (hex) of the merged, canonical image.
    pub image: String,
    /// The `containers.composefs.fsverity` label, when the image is sealed (verified).
    pub sealed: Option<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
}

/// `refs/<prefix>/<alg>-<hex>` for an OCI digest `alg:hex`.
pub fn digest_ref(prefix: &str, oci_digest: &str) -> String {
    format!("{prefix}/{}", oci_digest.replacen(':', "-", 1))
}

/// Ref name of a tag.
pub fn tag_ref(name: &str) -> String {
    format!("{TAGS}/{}", encode_tag(name))
}

fn record_ref(name: &str) -> String {
    format!("{RECORDS}/{}", encode_tag(name))
}

fn missing_ref(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref(), Some(RepoError::MissingRef(_)))
}

/// Stores `record` and points tag `name` at its image (record first, see module docs).
pub fn publish(repo: &Repository, name: &str, record: &ImageRecord) -> Result<()> {
    let json = serde_json::to_vec_pretty(record)?;
    let rec = repo.write_object(&json)?;
    let image = Digest::from_hex(&record.image)?;
    repo.set_ref(&record_ref(name), &rec)?;
    repo.set_ref(&tag_ref(name), &image)
        .with_context(|| format!("tagging {name}"))
}

/// The record of tag `name` ([`OciError::UnknownTag`] when there is none), checked against
/// the tag (a record the tag does not match is from an interrupted pull: also unknown).
pub fn load(repo: &Repository, name: &str) -> Result<ImageRecord> {
    let resolve = |r: &str| match repo.resolve_ref(r) {
        Err(e) if missing_ref(&e) => {
            Err(anyhow::Error::from(OciError::UnknownTag(name.to_string())))
        }
        other => other,
    };
    let image = resolve(&tag_ref(name))?;
    let rec = resolve(&record_ref(name))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut repo.open_object(&rec)?, &mut bytes)
        .with_context(|| format!("reading the record of {name}"))?;
    let record: ImageRecord = serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing the record of {name} (object {rec})"))?;
    if record.image != image.to_hex() {
        return Err(OciError::StaleRecord {
            name: name.to_string(),
            tagged: image.to_hex(),
            recorded: record.image,
        }
        .into());
    }
    Ok(record)
}

/// Every tag with its record, sorted by name (stale ones, see [`OciError::StaleRecord`], are
/// left out with a warning in the log).
pub fn list(repo: &Repository) -> Result<Vec<(String, ImageRecord)>> {
    let prefix = format!("{TAGS}/");
    let mut out = Vec::new();
    for (r, _) in repo.list_refs()? {
        let Some(enc) = r.strip_prefix(&prefix) else {
            continue;
        };
        let Some(name) = decode_tag(enc) else {
            continue;
        };
        match load(repo, &name) {
            Ok(r) => out.push((name, r)),
            Err(e) if matches!(e.downcast_ref(), Some(OciError::StaleRecord { .. })) => {
                tracing::warn!("{e}");
            }
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The layer image recorded for `diff_id`, if that layer was imported before and its image
/// is still present.
pub fn known_layer(repo: &Repository, diff_id: &str) -> Result<Option<Digest>> {
    match repo.resolve_ref(&digest_ref(LAYERS, diff_id)) {
        Ok(d) if repo.has_object(&d) => Ok(Some(d)),
        Ok(_) => Ok(None),
        Err(e) if missing_ref(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::Algorithm;

    fn record(image: &Digest) -> ImageRecord {
        ImageRecord {
            reference: "oci:/x:v1".into(),
            manifest_digest: format!("sha256:{}", "1".repeat(64)),
            config_digest: format!("sha256:{}", "2".repeat(64)),
            manifest_object: image.to_hex(),
            config_object: image.to_hex(),
            image: image.to_hex(),
            sealed: None,
            layers: vec![],
        }
    }

    #[test]
    fn publish_load_list_and_stale() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let a = repo.write_object(b"image a").unwrap();
        let b = repo.write_object(b"image b").unwrap();
        let name = "docker://h:5000/os/x:v1";
        assert!(matches!(
            crate::oci::error::find(&load(&repo, name).unwrap_err()),
            Some(OciError::UnknownTag(_))
        ));
        publish(&repo, name, &record(&a)).unwrap();
        assert_eq!(load(&repo, name).unwrap(), record(&a));
        assert_eq!(list(&repo).unwrap(), vec![(name.to_string(), record(&a))]);
        // A tag moved without its record (interrupted pull): reported, and left out of lists.
        repo.set_ref(&tag_ref(name), &b).unwrap();
        assert!(matches!(
            load(&repo, name).unwrap_err().downcast_ref(),
            Some(OciError::StaleRecord { .. })
        ));
        assert!(list(&repo).unwrap().is_empty());
        publish(&repo, name, &record(&b)).unwrap();
        assert_eq!(load(&repo, name).unwrap().image, b.to_hex());
    }

    #[test]
    fn layer_refs() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let diff_id = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(known_layer(&repo, &diff_id).unwrap(), None);
        let d = repo.write_object(b"layer").unwrap();
        repo.set_ref(&digest_ref(LAYERS, &diff_id), &d).unwrap();
        assert_eq!(known_layer(&repo, &diff_id).unwrap(), Some(d));
        assert_eq!(
            digest_ref(LAYERS, &diff_id),
            format!("oci/layers/sha256-{}", "ab".repeat(32))
        );
    }
}
