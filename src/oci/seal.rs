//! Sealing, the inline mode of the composefs OCI sealing specification ([`super::sealspec`],
//! `docs/oci-conventions.md` section 8): a copy of an image whose manifest carries the
//! composefs digests as annotations: `composefs.layer.erofs.v1.*` on each layer descriptor,
//! `composefs.config.*` on the config descriptor, `composefs.merged.erofs.v1.*` (and, for a
//! bootable image, `composefs.merged.bootable.erofs.v1.*`) in the manifest's annotations, for
//! each algorithm asked for. Layer blobs and the config are copied unchanged (no
//! recompression, same digests); only the manifest is new, so the seal is covered by the
//! manifest digest and by any signature of it.
//!
//! Output goes to an `oci:` layout directly, or to any other transport by way of a temporary
//! layout and `skopeo copy`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

use base64::Engine as _;

use super::artifact;
use super::layout::Layout;
use super::pull::{self, BootVariant, Imported, PullProgress};
use super::reference::ImageReference;
use super::sealspec::{self, LEGACY_LAYER_ANNOTATION, Role};
use super::source::{self, ImageSource, SourceOptions};
use crate::fsverity::signature::SigningKey;
use crate::fsverity::{self, Algorithm, Digest};
use crate::repo::Repository;

/// The config label that marks a bootc image (ARCHITECTURE.md, "Bootable image").
pub const BOOTC_LABEL: &str = "containers.bootc";

/// Options of [`seal`].
#[derive(Default)]
pub struct SealOptions<'a> {
    /// How to read the source.
    pub source: SourceOptions,
    /// Verify TLS when writing to a registry.
    pub dest_tls_verify: bool,
    /// Algorithms to publish digests in; empty: the repository's.
    pub algorithms: Vec<Algorithm>,
    /// Publish the boot variant's digest: `Some(true)` always (an image without one is an
    /// error), `Some(false)` never, `None` when the config has the `containers.bootc=1` label
    /// and the image has one (else a warning).
    pub bootable: Option<bool>,
    /// Progress while importing the source.
    pub progress: Option<&'a dyn PullProgress>,
    /// Sign every digest published (`.sig` keys inline, signature layers in an artifact).
    pub signer: Option<&'a SigningKey>,
    /// Artifact mode: leave the image untouched and write a referrer ([`super::artifact`]).
    pub artifact: bool,
}

impl std::fmt::Debug for SealOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealOptions")
            .field("dest_tls_verify", &self.dest_tls_verify)
            .field("algorithms", &self.algorithms)
            .field("bootable", &self.bootable)
            .field("progress", &self.progress.is_some())
            .field("signer", &self.signer)
            .field("artifact", &self.artifact)
            .finish_non_exhaustive()
    }
}

/// The digests of one algorithm (lower-case hex).
#[derive(Debug, Clone, Serialize)]
pub struct SealedDigests {
    /// `sha256` or `sha512`.
    pub algorithm: String,
    /// The merged image.
    pub merged: String,
    /// The boot variant, when published.
    pub merged_bootable: Option<String>,
    /// The config JSON.
    pub config: String,
    /// The image manifest JSON (artifact mode only).
    pub manifest: Option<String>,
    /// Per layer, bottom first.
    pub layers: Vec<String>,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct SealResult {
    /// Per algorithm, the digests published (the repository's first when asked for).
    pub digests: Vec<SealedDigests>,
    /// The annotations added to the manifest (top level).
    pub annotations: BTreeMap<String, String>,
    /// Digest of the image's manifest: the new one inline, the untouched one with
    /// `--artifact`.
    pub manifest_digest: String,
    /// Artifact mode: the digests of the artifacts written (one per algorithm).
    pub artifacts: Vec<String>,
    /// Whether every digest was signed.
    pub signed: bool,
    /// Digest of the config (unchanged).
    pub config_digest: String,
}

/// Reads `src`, computes the digests (importing into `repo`, which may be a throwaway, and
/// for another algorithm into a temporary repository of that algorithm) and writes the
/// sealed image to `dst`.
pub fn seal(
    repo: &Repository,
    src: &ImageReference,
    dst: Option<&ImageReference>,
    opts: &SealOptions<'_>,
) -> Result<SealResult> {
    if opts.artifact && dst.is_some_and(|d| d != src) {
        anyhow::bail!(
            "with --artifact the image stays where it is and the artifact goes next to it: \
             give no destination"
        );
    }
    let mut algorithms = opts.algorithms.clone();
    if algorithms.is_empty() {
        algorithms.push(repo.algorithm());
    }
    algorithms.sort_by_key(|a| *a != repo.algorithm());
    algorithms.dedup();
    let name = src.to_string();
    let mut digests = Vec::new();
    let mut first: Option<Imported> = None;
    for alg in algorithms {
        let tmp;
        let r = if alg == repo.algorithm() {
            repo
        } else {
            let dir = tempfile::tempdir().context("creating a temporary repository")?;
            tmp = (Repository::init(dir.path(), alg)?, dir);
            &tmp.0
        };
        let source = source::open(src, &opts.source)?;
        let imported = import(r, &*source, &name, opts);
        let closed = source.close();
        let imported = imported?;
        closed?;
        let mut d = digests_of(&imported, alg)?;
        if opts.artifact {
            d.manifest = Some(fsverity::digest_bytes(alg, &imported.manifest.bytes).to_hex());
        }
        digests.push(d);
        first.get_or_insert(imported);
    }
    let imported = first.expect("at least one algorithm");
    if opts.artifact {
        return write_artifacts(src, &imported, digests, opts);
    }
    let dst = dst.context("a destination for the sealed image is needed (or --artifact)")?;
    let source = source::open(src, &opts.source)?;
    let result = write_sealed(&*source, &imported, digests, dst, opts);
    let closed = source.close();
    let result = result?;
    closed?;
    Ok(result)
}

fn import(
    repo: &Repository,
    src: &dyn ImageSource,
    name: &str,
    opts: &SealOptions<'_>,
) -> Result<Imported> {
    let manifest = src.manifest()?;
    crate::oci::policy::check(&opts.source.policy, name, &manifest)?;
    let bootable = match opts.bootable {
        Some(true) => BootVariant::Required,
        Some(false) => BootVariant::No,
        None => {
            let config = source::fetch_config(src, &manifest.manifest)
                .with_context(|| format!("{name}: fetching the config"))?;
            let config: Value = serde_json::from_slice(&config)
                .with_context(|| format!("{name}: parsing the config"))?;
            match config["config"]["Labels"][BOOTC_LABEL] == "1" {
                true => BootVariant::IfPossible,
                false => BootVariant::No,
            }
        }
    };
    pull::import(repo, src, name, manifest, false, bootable, opts.progress)
}

fn digests_of(imported: &Imported, alg: Algorithm) -> Result<SealedDigests> {
    Ok(SealedDigests {
        algorithm: alg.name().to_string(),
        merged: imported.image_digest.to_hex(),
        merged_bootable: imported.bootable_digest.map(|d| d.to_hex()),
        config: fsverity::digest_bytes(alg, &imported.config_bytes).to_hex(),
        manifest: None,
        layers: imported
            .layers
            .iter()
            .map(|l| l.layer_image.clone())
            .collect(),
    })
}

/// Removes every annotation of the sealing specification (and our old layer annotation):
/// the seal written is exactly what was computed, never a stale digest of an earlier one.
fn clear_seal(annotations: &mut Value) {
    if let Some(map) = annotations.as_object_mut() {
        map.retain(|k, _| !k.starts_with("composefs.") && k != LEGACY_LAYER_ANNOTATION);
    }
}

fn annotations_of(desc: &mut Value) -> Result<&mut serde_json::Map<String, Value>> {
    let obj = desc
        .as_object_mut()
        .context("descriptor is not a JSON object")?;
    let ann = obj.entry("annotations").or_insert_with(|| json!({}));
    if ann.is_null() {
        *ann = json!({});
    }
    clear_seal(ann);
    ann.as_object_mut()
        .context("annotations are not a JSON object")
}

/// Signs `hex` (a digest) with `signer`, as a `.sig` annotation value: base64 of the DER.
fn signature_value(signer: &SigningKey, hex: &str) -> Result<String> {
    let digest = Digest::from_hex(hex)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(signer.sign(&digest)?))
}

/// Inserts `key: hex`, and its `.sig` when signing.
fn insert_digest(
    map: &mut impl Extend<(String, String)>,
    key: String,
    hex: &str,
    signer: Option<&SigningKey>,
) -> Result<()> {
    if let Some(signer) = signer {
        map.extend([(sealspec::sig_key(&key), signature_value(signer, hex)?)]);
    }
    map.extend([(key, hex.to_string())]);
    Ok(())
}

fn insert_all(ann: &mut serde_json::Map<String, Value>, entries: BTreeMap<String, String>) {
    for (k, v) in entries {
        ann.insert(k, v.into());
    }
}

fn write_sealed(
    src: &dyn ImageSource,
    imported: &Imported,
    digests: Vec<SealedDigests>,
    dst: &ImageReference,
    opts: &SealOptions<'_>,
) -> Result<SealResult> {
    let signer = opts.signer;
    let mut manifest: Value = serde_json::from_slice(&imported.manifest.bytes)?;
    let mut top = BTreeMap::new();
    {
        let mut entries = BTreeMap::new();
        for d in &digests {
            let alg: Algorithm = d.algorithm.parse()?;
            insert_digest(
                &mut entries,
                sealspec::key(Role::Config, alg),
                &d.config,
                signer,
            )?;
        }
        insert_all(annotations_of(&mut manifest["config"])?, entries);
    }
    let layers = manifest["layers"]
        .as_array_mut()
        .context("manifest has no layers array")?;
    for (i, desc) in layers.iter_mut().enumerate() {
        let mut entries = BTreeMap::new();
        for d in &digests {
            let alg: Algorithm = d.algorithm.parse()?;
            insert_digest(
                &mut entries,
                sealspec::key(Role::Layer, alg),
                &d.layers[i],
                signer,
            )?;
        }
        insert_all(annotations_of(desc)?, entries);
    }
    for d in &digests {
        let alg: Algorithm = d.algorithm.parse()?;
        insert_digest(
            &mut top,
            sealspec::key(Role::Merged, alg),
            &d.merged,
            signer,
        )?;
        if let Some(b) = &d.merged_bootable {
            insert_digest(
                &mut top,
                sealspec::key(Role::MergedBootable, alg),
                b,
                signer,
            )?;
        }
    }
    let ann = annotations_of(&mut manifest)?;
    for (k, v) in &top {
        ann.insert(k.clone(), v.clone().into());
    }
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = source::sha256_of(&manifest_bytes);
    let config_digest = imported.manifest.manifest.config().digest().to_string();

    let write = |dir: &Path, tag: Option<&str>| -> Result<()> {
        let layout = Layout::create(dir)?;
        for desc in imported.manifest.manifest.layers() {
            layout.copy_blob(src, desc)?;
        }
        layout.write_blob(&config_digest, &imported.config_bytes)?;
        layout.write_blob(&manifest_digest, &manifest_bytes)?;
        layout.set_index(tag, &manifest_digest, manifest_bytes.len())
    };
    push(dst, opts, write)?;
    Ok(SealResult {
        digests,
        annotations: top,
        manifest_digest,
        config_digest,
        artifacts: Vec::new(),
        signed: signer.is_some(),
    })
}

/// Artifact mode: one artifact per algorithm, referring to the untouched image, written
/// next to it.
fn write_artifacts(
    src: &ImageReference,
    imported: &Imported,
    digests: Vec<SealedDigests>,
    opts: &SealOptions<'_>,
) -> Result<SealResult> {
    let subject = artifact::Subject {
        digest: imported.manifest.digest.clone(),
        size: imported.manifest.bytes.len(),
    };
    let mut artifacts = Vec::new();
    let mut top = BTreeMap::new();
    for d in &digests {
        let alg: Algorithm = d.algorithm.parse()?;
        let mut entries = Vec::new();
        let roles = [
            (Role::Manifest, d.manifest.as_ref()),
            (Role::Config, Some(&d.config)),
            (Role::Merged, Some(&d.merged)),
            (Role::MergedBootable, d.merged_bootable.as_ref()),
        ];
        for (role, hex) in roles {
            let Some(hex) = hex else { continue };
            let digest = Digest::from_hex(hex)?;
            let signature = match opts.signer {
                Some(s) => Some(s.sign(&digest)?),
                None => None,
            };
            top.insert(sealspec::key(role, alg), hex.clone());
            entries.push(artifact::Entry {
                role,
                digest,
                signature,
            });
        }
        let built = artifact::build(&subject, alg, &entries)?;
        artifact::push(src, &built, &subject.digest, opts.dest_tls_verify)
            .with_context(|| format!("writing the composefs artifact of {src}"))?;
        artifacts.push(built.digest);
    }
    Ok(SealResult {
        digests,
        annotations: top,
        manifest_digest: subject.digest,
        config_digest: imported.manifest.manifest.config().digest().to_string(),
        artifacts,
        signed: opts.signer.is_some(),
    })
}

/// Writes with `write` to an `oci:` layout, or to a temporary one copied to `dst` with skopeo.
fn push(
    dst: &ImageReference,
    opts: &SealOptions<'_>,
    write: impl Fn(&Path, Option<&str>) -> Result<()>,
) -> Result<()> {
    match dst {
        ImageReference::OciDir { path, tag } => write(path, tag.as_deref())
            .with_context(|| format!("writing the sealed image to {dst}"))?,
        ImageReference::Proxy(target) => {
            let tmp = tempfile::tempdir().context("creating a temporary OCI layout")?;
            write(tmp.path(), Some("sealed"))?;
            let mut cmd = Command::new("skopeo");
            cmd.args(["copy", "--quiet"]);
            if !opts.dest_tls_verify {
                cmd.arg("--dest-tls-verify=false");
            }
            cmd.arg(format!("oci:{}:sealed", tmp.path().display()))
                .arg(target);
            let out = cmd.output().context("running skopeo copy")?;
            if !out.status.success() {
                anyhow::bail!(
                    "skopeo copy to {target} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    Ok(())
}
