//! What the repository remembers about a pulled image, and the refs that keep it alive.
//!
//! ```text
//! refs/oci/tags/<enc(name)>     -> object list (`cfsctl-object-list 1`) naming everything the
//!                                  tag needs: the merged image, the record, the manifest and
//!                                  config objects, and each layer's metadata image
//! refs/oci/records/<enc(name)>  -> the ImageRecord JSON (how `load` finds it; keeps only
//!                                  itself alive)
//! ```
//! `<enc>` is [`encode_tag`]. Refs are the only GC roots (`docs/repository.md`): the tag's
//! list keeps the image, the JSON objects and, through each layer image, every file object of
//! every layer; untagging ([`remove`]) and a `gc` free what no other tag needs.
//!
//! There is no per-layer ref: the layers an image can reuse by diff_id are found in the
//! records of the existing tags ([`known_layers`]). A layer imported by a pull that then
//! failed is garbage until a pull tags an image using it (its file objects remain until a
//! `gc`, so a re-import writes little). A running pull holds the repository's shared lock, so
//! `gc` (exclusive) cannot remove what it imported but has not tagged yet.
//!
//! Publishing order ([`publish`]): every member is stored, then the record object and the
//! list (which refuses to name a missing object), then the record ref, then the tag ref. So a
//! tag never names something missing, an error tags nothing, and a crash leaves only garbage:
//! at worst a record ref naming a record the tag's list does not contain, which [`load`]
//! reports as [`OciError::StaleRecord`] and the next pull of the tag replaces.

use std::collections::HashMap;

use anyhow::{Context, Result};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::error::OciError;
use super::reference::{decode_tag, encode_tag};
use super::source::{FetchedManifest, MAX_JSON};
use crate::fsverity::Digest;
use crate::repo::{RepoError, Repository};

/// Ref prefixes.
pub const TAGS: &str = "oci/tags";
/// See the module documentation.
pub const RECORDS: &str = "oci/records";

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

/// A pulled image (stored as a JSON object, named by `refs/oci/records/<name>` and by the
/// tag's object list).
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
    /// The composefs EROFS format version of the merged and layer images
    /// ([`crate::oci::erofs_options_for`]); 0 in records made before it was recorded.
    #[serde(default)]
    pub erofs_version: u32,
    /// The merged image's `composefs.merged.erofs.v1.fsverity-*` annotation (hex), when the
    /// image is sealed (verified).
    pub sealed: Option<String>,
    /// The composefs artifacts (manifest digests) the seal was checked against (artifact
    /// mode); empty for an inline seal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seal_artifacts: Vec<String>,
    /// The seal's signatures were checked against configured certificates (`--verity-cert`).
    #[serde(default)]
    pub signed: bool,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
}

/// Longest tag once encoded ([`encode_tag`]): one file name in `refs/oci/tags/`, at most
/// `NAME_MAX` (255) bytes on Linux filesystems.
pub const MAX_ENCODED_TAG: usize = 255;

/// Checks a tag name before a pull fetches anything: not empty, no control characters (a
/// newline or tab would break the one-line-per-tag listing of `oci images`), and short
/// enough, encoded, to be a ref file name.
pub fn validate_tag(name: &str) -> Result<(), OciError> {
    let bad = |reason: String| OciError::InvalidTag {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty".into()));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(bad(format!("contains the control character {c:?}")));
    }
    let encoded = encode_tag(name).len();
    if encoded > MAX_ENCODED_TAG {
        return Err(bad(format!(
            "too long: {encoded} bytes once encoded for the ref name, at most \
             {MAX_ENCODED_TAG} (bytes other than [A-Za-z0-9._:@+=-] take 3)"
        )));
    }
    Ok(())
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

impl ImageRecord {
    /// Every object the tag needs besides the record itself: merged image, manifest and
    /// config objects, layer images.
    pub fn members(&self) -> Result<Vec<Digest>> {
        let mut out = vec![
            Digest::from_hex(&self.image)?,
            Digest::from_hex(&self.manifest_object)?,
            Digest::from_hex(&self.config_object)?,
        ];
        for l in &self.layers {
            out.push(Digest::from_hex(&l.layer_image)?);
        }
        Ok(out)
    }
}

/// Stores `record` and points tag `name` at the object list naming it and its members, which
/// must all be stored already (order: see the module documentation).
pub fn publish(repo: &Repository, name: &str, record: &ImageRecord) -> Result<()> {
    let json = serde_json::to_vec_pretty(record)?;
    let rec = repo.write_object(&json)?;
    let mut members = record.members()?;
    members.push(rec);
    members.sort();
    members.dedup();
    let list = repo
        .write_object_list(&members)
        .with_context(|| format!("listing the objects of {name}"))?;
    repo.set_ref(&record_ref(name), &rec)?;
    repo.set_ref(&tag_ref(name), &list)
        .with_context(|| format!("tagging {name}"))
}

/// The record of tag `name` ([`OciError::UnknownTag`] when there is none), checked against
/// the tag: the tag's list must name the record and everything the record names (otherwise
/// the record is from an interrupted pull: [`OciError::StaleRecord`]).
pub fn load(repo: &Repository, name: &str) -> Result<ImageRecord> {
    let resolve = |r: &str| match repo.resolve_ref(r) {
        Err(e) if missing_ref(&e) => {
            Err(anyhow::Error::from(OciError::UnknownTag(name.to_string())))
        }
        other => other,
    };
    let list = resolve(&tag_ref(name))?;
    let rec = resolve(&record_ref(name))?;
    let members = repo
        .read_object_list(&list)
        .with_context(|| format!("reading the object list of tag {name} (object {list})"))?;
    let bytes = crate::bounded::read_to_end(repo.open_object(&rec)?, MAX_JSON)
        .with_context(|| format!("reading the record of {name} (object {rec})"))?;
    let record: ImageRecord = serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing the record of {name} (object {rec})"))?;
    let named = |d: &Digest| members.binary_search(d).is_ok();
    if !named(&rec) || !record.members()?.iter().all(named) {
        return Err(OciError::StaleRecord {
            name: name.to_string(),
            tagged: list.to_hex(),
            recorded: record.image,
        }
        .into());
    }
    Ok(record)
}

/// The names of all tags (whatever their state).
fn tag_names(repo: &Repository) -> Result<Vec<String>> {
    let prefix = format!("{TAGS}/");
    Ok(repo
        .list_refs()?
        .into_iter()
        .filter_map(|(r, _)| decode_tag(r.strip_prefix(&prefix)?))
        .collect())
}

/// Every tag with its record, sorted by name (stale ones, see [`OciError::StaleRecord`], are
/// left out with a warning in the log).
pub fn list(repo: &Repository) -> Result<Vec<(String, ImageRecord)>> {
    let mut out = Vec::new();
    for name in tag_names(repo)? {
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

/// Removes tag `name` (tag ref first, then the record ref: a crash in between leaves a record
/// ref that a second `remove` or the next pull of the name replaces). [`OciError::UnknownTag`]
/// when neither exists. What only this tag kept is freed by the next `gc`.
pub fn remove(repo: &Repository, name: &str) -> Result<()> {
    let mut found = false;
    for r in [tag_ref(name), record_ref(name)] {
        match repo.remove_ref(&r) {
            Ok(()) => found = true,
            Err(e) if missing_ref(&e) => {}
            Err(e) => return Err(e.context(format!("untagging {name}"))),
        }
    }
    if !found {
        return Err(OciError::UnknownTag(name.to_string()).into());
    }
    Ok(())
}

/// Removes the tags `names`, all or none: when any of them names no image
/// ([`OciError::UnknownTags`], listing every such name), nothing is removed, so a mistyped
/// name in a list does not leave the removal half done.
pub fn remove_all(repo: &Repository, names: &[String]) -> Result<()> {
    let mut missing = Vec::new();
    for name in names {
        let exists = |r: &str| match repo.resolve_ref(r) {
            Ok(_) => Ok(true),
            Err(e) if missing_ref(&e) => Ok(false),
            Err(e) => Err(e),
        };
        if !exists(&tag_ref(name))? && !exists(&record_ref(name))? {
            missing.push(name.clone());
        }
    }
    if !missing.is_empty() {
        return Err(OciError::UnknownTags(missing).into());
    }
    let mut done = std::collections::HashSet::new();
    for name in names.iter().filter(|n| done.insert(*n)) {
        remove(repo, name)?;
    }
    Ok(())
}

/// A layer image some tag keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownLayer {
    /// The layer image.
    pub image: Digest,
    /// Its composefs EROFS format version (from the record that names it).
    pub erofs_version: u32,
}

/// Layer images by diff_id, from the records of the current tags (each checked against its
/// tag's list by [`load`], so these images are kept alive by a ref) whose image is present;
/// an image in the current OCI format is preferred to one in an older format.
/// A tag that does not load only costs a warning: its layers are fetched again.
pub fn known_layers(repo: &Repository) -> Result<HashMap<String, KnownLayer>> {
    let mut out = HashMap::new();
    for name in tag_names(repo)? {
        let record = match load(repo, &name) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("not reusing the layers of tag {name}: {e:#}");
                continue;
            }
        };
        for l in record.layers {
            let known = KnownLayer {
                image: Digest::from_hex(&l.layer_image)?,
                erofs_version: record.erofs_version,
            };
            if !repo.has_object(&known.image) {
                continue;
            }
            let current = |k: &KnownLayer| k.erofs_version == crate::repo::OCI_EROFS_VERSION;
            match out.get(&l.diff_id) {
                Some(have) if current(have) || !current(&known) => {}
                _ => {
                    out.insert(l.diff_id, known);
                }
            }
        }
    }
    Ok(out)
}

/// An image whose layers are all in the repository, merged (not yet tagged).
pub struct Imported {
    /// The manifest as received.
    pub manifest: FetchedManifest,
    /// The config, exact bytes.
    pub config_bytes: Vec<u8>,
    /// The config, parsed.
    pub config: ImageConfiguration,
    /// Per layer, bottom first.
    pub layers: Vec<LayerRecord>,
    /// The fs-verity digest (in the repository's algorithm) of the merged canonical image;
    /// with `store_image`, the image is an object of that digest, not yet under `images/`.
    pub image_digest: Digest,
    /// The digest of the merged image's boot variant ([`super::bootable`]), when asked for.
    pub bootable_digest: Option<Digest>,
    /// Layers fetched (the others were known).
    pub layers_fetched: usize,
    /// Blob bytes read.
    pub bytes_fetched: u64,
}

impl std::fmt::Debug for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imported")
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::Algorithm;

    fn record(image: &Digest, layer: &Digest) -> ImageRecord {
        ImageRecord {
            reference: "oci:/x:v1".into(),
            manifest_digest: format!("sha256:{}", "1".repeat(64)),
            config_digest: format!("sha256:{}", "2".repeat(64)),
            manifest_object: image.to_hex(),
            config_object: image.to_hex(),
            image: image.to_hex(),
            erofs_version: crate::repo::OCI_EROFS_VERSION,
            sealed: None,
            seal_artifacts: Vec::new(),
            signed: false,
            layers: vec![LayerRecord {
                digest: format!("sha256:{}", "3".repeat(64)),
                diff_id: format!("sha256:{}", "4".repeat(64)),
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                size: 1,
                layer_image: layer.to_hex(),
            }],
        }
    }

    #[test]
    fn publish_load_list_stale_remove() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let a = repo.write_object(b"image a").unwrap();
        let b = repo.write_object(b"image b").unwrap();
        let l = repo.write_object(b"layer").unwrap();
        let name = "docker://h:5000/os/x:v1";
        assert!(matches!(
            crate::oci::error::find(&load(&repo, name).unwrap_err()),
            Some(OciError::UnknownTag(_))
        ));
        assert!(known_layers(&repo).unwrap().is_empty());
        publish(&repo, name, &record(&a, &l)).unwrap();
        assert_eq!(load(&repo, name).unwrap(), record(&a, &l));
        assert_eq!(
            list(&repo).unwrap(),
            vec![(name.to_string(), record(&a, &l))]
        );
        let diff_id = format!("sha256:{}", "4".repeat(64));
        assert_eq!(known_layers(&repo).unwrap()[&diff_id].image, l);
        // The tag names one object list holding everything the record needs.
        let list_obj = repo.resolve_ref(&tag_ref(name)).unwrap();
        let members = repo.read_object_list(&list_obj).unwrap();
        let rec = repo.resolve_ref(&record_ref(name)).unwrap();
        let mut want = vec![a, l, rec];
        want.sort();
        assert_eq!(members, want);
        // A record ref moved without its tag (interrupted pull): reported, left out of lists.
        let other = repo
            .write_object(&serde_json::to_vec(&record(&b, &l)).unwrap())
            .unwrap();
        repo.set_ref(&record_ref(name), &other).unwrap();
        assert!(matches!(
            load(&repo, name).unwrap_err().downcast_ref(),
            Some(OciError::StaleRecord { .. })
        ));
        assert!(list(&repo).unwrap().is_empty());
        assert!(known_layers(&repo).unwrap().is_empty());
        publish(&repo, name, &record(&b, &l)).unwrap();
        assert_eq!(load(&repo, name).unwrap().image, b.to_hex());
        // A member that is not stored cannot be tagged.
        let missing = crate::fsverity::digest_bytes(Algorithm::Sha256, b"never stored");
        assert!(publish(&repo, "y", &record(&missing, &l)).is_err());
        assert!(repo.resolve_ref(&tag_ref("y")).is_err());
        // Untagging removes both refs; a second time the tag is unknown.
        remove(&repo, name).unwrap();
        assert!(repo.list_refs().unwrap().is_empty());
        assert!(matches!(
            remove(&repo, name).unwrap_err().downcast_ref(),
            Some(OciError::UnknownTag(_))
        ));
        // A tag that does not load (here: not an object list) does not stop layer lookup.
        repo.set_ref(&tag_ref("broken"), &a).unwrap();
        assert!(list(&repo).is_err());
        assert!(known_layers(&repo).unwrap().is_empty());
    }

    #[test]
    fn known_layers_prefer_the_current_format_and_old_records_read_as_v0() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let a = repo.write_object(b"image a").unwrap();
        let old_layer = repo.write_object(b"layer v0").unwrap();
        let new_layer = repo.write_object(b"layer v1").unwrap();
        // A record as an older cfsctl wrote it: no erofs_version.
        let mut old = serde_json::to_value(record(&a, &old_layer)).unwrap();
        old.as_object_mut().unwrap().remove("erofs_version");
        let old: ImageRecord = serde_json::from_value(old).unwrap();
        assert_eq!(old.erofs_version, 0);
        let diff_id = format!("sha256:{}", "4".repeat(64));
        for (first, second) in [("a", "b"), ("d", "c")] {
            publish(&repo, first, &old).unwrap();
            let k = known_layers(&repo).unwrap()[&diff_id];
            assert_eq!((k.image, k.erofs_version), (old_layer, 0));
            publish(&repo, second, &record(&a, &new_layer)).unwrap();
            let k = known_layers(&repo).unwrap()[&diff_id];
            assert_eq!(
                (k.image, k.erofs_version),
                (new_layer, 1),
                "{first} {second}"
            );
            remove(&repo, first).unwrap();
            remove(&repo, second).unwrap();
        }
    }
}
