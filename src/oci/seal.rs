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
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

use super::pull::{self, BootVariant, Imported, PullProgress};
use super::reference::ImageReference;
use super::sealspec::{self, LEGACY_LAYER_ANNOTATION, Role};
use super::source::{self, ImageSource, SourceOptions, ocidir::REF_NAME};
use super::stream::VerifyingReader;
use crate::fsverity::{self, Algorithm};
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
}

impl std::fmt::Debug for SealOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealOptions")
            .field("dest_tls_verify", &self.dest_tls_verify)
            .field("algorithms", &self.algorithms)
            .field("bootable", &self.bootable)
            .field("progress", &self.progress.is_some())
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
    /// Digest of the new manifest.
    pub manifest_digest: String,
    /// Digest of the config (unchanged).
    pub config_digest: String,
}

/// Reads `src`, computes the digests (importing into `repo`, which may be a throwaway, and
/// for another algorithm into a temporary repository of that algorithm) and writes the
/// sealed image to `dst`.
pub fn seal(
    repo: &Repository,
    src: &ImageReference,
    dst: &ImageReference,
    opts: &SealOptions<'_>,
) -> Result<SealResult> {
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
        digests.push(digests_of(&imported, alg)?);
        first.get_or_insert(imported);
    }
    let imported = first.expect("at least one algorithm");
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

fn write_sealed(
    src: &dyn ImageSource,
    imported: &Imported,
    digests: Vec<SealedDigests>,
    dst: &ImageReference,
    opts: &SealOptions<'_>,
) -> Result<SealResult> {
    let mut manifest: Value = serde_json::from_slice(&imported.manifest.bytes)?;
    let mut top = BTreeMap::new();
    {
        let config = annotations_of(&mut manifest["config"])?;
        for d in &digests {
            let alg: Algorithm = d.algorithm.parse()?;
            config.insert(sealspec::key(Role::Config, alg), d.config.clone().into());
        }
    }
    let layers = manifest["layers"]
        .as_array_mut()
        .context("manifest has no layers array")?;
    for (i, desc) in layers.iter_mut().enumerate() {
        let ann = annotations_of(desc)?;
        for d in &digests {
            let alg: Algorithm = d.algorithm.parse()?;
            ann.insert(sealspec::key(Role::Layer, alg), d.layers[i].clone().into());
        }
    }
    for d in &digests {
        let alg: Algorithm = d.algorithm.parse()?;
        top.insert(sealspec::key(Role::Merged, alg), d.merged.clone());
        if let Some(b) = &d.merged_bootable {
            top.insert(sealspec::key(Role::MergedBootable, alg), b.clone());
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

/// An OCI image layout being written.
struct Layout<'a> {
    dir: &'a Path,
}

impl<'a> Layout<'a> {
    fn create(dir: &'a Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("blobs/sha256"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .with_context(|| format!("writing {}", marker.display()))?;
        }
        Ok(Layout { dir })
    }

    fn blob_path(&self, digest: &str) -> Result<std::path::PathBuf> {
        let d: oci_spec::image::Digest = digest.parse()?;
        Ok(self
            .dir
            .join("blobs")
            .join(d.algorithm().to_string())
            .join(d.digest()))
    }

    /// Writes via a temporary name and rename, so a crash leaves no blob with wrong content.
    fn write_with(&self, digest: &str, f: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        let parent = path.parent().context("blob path has no parent")?;
        std::fs::create_dir_all(parent)?;
        let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
        f(tmp.as_file_mut())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        self.write_with(digest, |f| Ok(f.write_all(bytes)?))
    }

    /// Copies a blob from the source, verified on the way.
    fn copy_blob(&self, src: &dyn ImageSource, desc: &oci_spec::image::Descriptor) -> Result<()> {
        self.write_with(desc.digest().as_ref(), |f| {
            let mut r = VerifyingReader::for_descriptor(
                src.open_blob(desc)?,
                desc,
                format!("blob {}", desc.digest()),
            )?;
            std::io::copy(&mut r, f).with_context(|| format!("copying blob {}", desc.digest()))?;
            Ok(())
        })
    }

    /// Names the manifest in `index.json` under `tag` (replacing an entry of that tag), or,
    /// without a tag, makes it the only entry.
    fn set_index(&self, tag: Option<&str>, digest: &str, size: usize) -> Result<()> {
        let path = self.dir.join("index.json");
        let mut index: Value = match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                json!({"schemaVersion": 2, "manifests": []})
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let manifests = index["manifests"]
            .as_array_mut()
            .with_context(|| format!("{}: no manifests array", path.display()))?;
        let mut entry = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
        });
        match tag {
            Some(t) => {
                manifests.retain(|m| m["annotations"][REF_NAME] != t);
                entry["annotations"] = json!({ REF_NAME: t });
            }
            None => manifests.clear(),
        }
        manifests.push(entry);
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir)?;
        tmp.write_all(&serde_json::to_vec(&index)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}
