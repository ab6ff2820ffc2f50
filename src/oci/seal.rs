//! Sealing: a copy of an image whose config carries the merged composefs digest
//! (`containers.composefs.fsverity` label) and whose layer descriptors carry each layer's
//! (`containers.composefs.layer.fsverity` annotation). Layer blobs are copied unchanged (no
//! recompression, same digests); only the config and the manifest are new. The label is
//! covered by the config digest, hence by the manifest digest and any signature of it.
//!
//! Output goes to an `oci:` layout directly, or to any other transport by way of a temporary
//! layout and `skopeo copy`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

use super::pull::{self, IMAGE_LABEL, LAYER_ANNOTATION, PullProgress, seal_value};
use super::reference::ImageReference;
use super::source::{self, ImageSource, SourceOptions, ocidir::REF_NAME};
use super::stream::VerifyingReader;
use crate::fsverity::Digest;
use crate::repo::Repository;

/// Options of [`seal`].
#[derive(Default)]
pub struct SealOptions<'a> {
    /// How to read the source.
    pub source: SourceOptions,
    /// Verify TLS when writing to a registry.
    pub dest_tls_verify: bool,
    /// Progress while importing the source.
    pub progress: Option<&'a dyn PullProgress>,
}

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct SealResult {
    /// The label value: `sha256:<hex>` of the merged image.
    pub image_digest: String,
    /// Per layer, the annotation value.
    pub layer_digests: Vec<String>,
    /// Digest of the new manifest.
    pub manifest_digest: String,
    /// Digest of the new config.
    pub config_digest: String,
}

/// Reads `src`, computes the digests (importing into `repo`, which may be a throwaway) and
/// writes the sealed image to `dst`.
pub fn seal(
    repo: &Repository,
    src: &ImageReference,
    dst: &ImageReference,
    opts: &SealOptions<'_>,
) -> Result<SealResult> {
    let source = source::open(src, &opts.source)?;
    let result = seal_from(repo, &*source, &src.to_string(), dst, opts);
    let closed = source.close();
    let result = result?;
    closed?;
    Ok(result)
}

fn seal_from(
    repo: &Repository,
    src: &dyn ImageSource,
    name: &str,
    dst: &ImageReference,
    opts: &SealOptions<'_>,
) -> Result<SealResult> {
    let manifest = src.manifest()?;
    let imported = pull::import(repo, src, name, manifest, false, opts.progress)?;
    let image_digest = seal_value(&imported.image_digest);
    let layer_digests = imported
        .layers
        .iter()
        .map(|l| Ok(seal_value(&Digest::from_hex(&l.layer_image)?)))
        .collect::<Result<Vec<_>>>()?;

    let mut config: Value = serde_json::from_slice(&imported.config_bytes)?;
    let cfg = config
        .as_object_mut()
        .context("config is not a JSON object")?
        .entry("config")
        .or_insert_with(|| json!({}));
    if cfg.is_null() {
        *cfg = json!({});
    }
    let labels = cfg
        .as_object_mut()
        .context("config.config is not a JSON object")?
        .entry("Labels")
        .or_insert_with(|| json!({}));
    if labels.is_null() {
        *labels = json!({});
    }
    labels
        .as_object_mut()
        .context("config.config.Labels is not a JSON object")?
        .insert(IMAGE_LABEL.to_string(), image_digest.clone().into());
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = source::sha256_of(&config_bytes);

    let mut manifest: Value = serde_json::from_slice(&imported.manifest.bytes)?;
    manifest["config"]["digest"] = config_digest.clone().into();
    manifest["config"]["size"] = config_bytes.len().into();
    let layers = manifest["layers"]
        .as_array_mut()
        .context("manifest has no layers array")?;
    for (desc, value) in layers.iter_mut().zip(&layer_digests) {
        let ann = desc
            .as_object_mut()
            .context("layer descriptor is not a JSON object")?
            .entry("annotations")
            .or_insert_with(|| json!({}));
        ann.as_object_mut()
            .context("layer annotations are not a JSON object")?
            .insert(LAYER_ANNOTATION.to_string(), value.clone().into());
    }
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = source::sha256_of(&manifest_bytes);

    let write = |dir: &Path, tag: Option<&str>| -> Result<()> {
        let layout = Layout::create(dir)?;
        for desc in imported.manifest.manifest.layers() {
            layout.copy_blob(src, desc)?;
        }
        layout.write_blob(&config_digest, &config_bytes)?;
        layout.write_blob(&manifest_digest, &manifest_bytes)?;
        layout.set_index(tag, &manifest_digest, manifest_bytes.len())
    };
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
    Ok(SealResult {
        image_digest,
        layer_digests,
        manifest_digest,
        config_digest,
    })
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
