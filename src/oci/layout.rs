//! Writing an OCI image layout (`oci:DIR`): blobs by digest, written through a temporary
//! name and renamed (a crash leaves no blob with wrong content), and `index.json` entries.
//! Used for `oci seal` output, and for the temporary layouts `skopeo copy` pushes from.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::source::ImageSource;
use super::source::ocidir::REF_NAME;
use super::stream::VerifyingReader;

/// An OCI image layout being written.
#[derive(Debug)]
pub struct Layout<'a> {
    dir: &'a Path,
}

impl<'a> Layout<'a> {
    /// Makes `dir` a layout (`blobs/sha256`, `oci-layout`) if it is not one yet.
    pub fn create(dir: &'a Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("blobs/sha256"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            std::fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .with_context(|| format!("writing {}", marker.display()))?;
        }
        Ok(Layout { dir })
    }

    /// `blobs/<alg>/<hex>` of `digest` (`alg:hex`).
    pub fn blob_path(&self, digest: &str) -> Result<std::path::PathBuf> {
        let d: oci_spec::image::Digest = digest.parse()?;
        Ok(self
            .dir
            .join("blobs")
            .join(d.algorithm().to_string())
            .join(d.digest()))
    }

    /// Writes via a temporary name and rename, so a crash leaves no blob with wrong content.
    pub fn write_with(&self, digest: &str, f: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
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

    /// Writes a blob whose digest the caller computed.
    pub fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        self.write_with(digest, |f| Ok(f.write_all(bytes)?))
    }

    /// Copies a blob from the source, verified on the way.
    pub fn copy_blob(
        &self,
        src: &dyn ImageSource,
        desc: &oci_spec::image::Descriptor,
    ) -> Result<()> {
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
    pub fn set_index(&self, tag: Option<&str>, digest: &str, size: usize) -> Result<()> {
        let mut entry = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
        });
        self.update_index(|manifests| {
            match tag {
                Some(t) => {
                    manifests.retain(|m| m["annotations"][REF_NAME] != t);
                    entry["annotations"] = json!({ REF_NAME: t });
                }
                None => manifests.clear(),
            }
            manifests.push(entry);
        })
    }

    /// Adds `entry` (a descriptor, untagged: an artifact) to `index.json`, replacing an entry
    /// of the same digest.
    pub fn add_untagged(&self, entry: Value) -> Result<()> {
        self.update_index(|manifests| {
            manifests.retain(|m| m["digest"] != entry["digest"]);
            manifests.push(entry);
        })
    }

    /// Rewrites `index.json` (made when missing) with `f` applied to its `manifests`.
    pub fn update_index(&self, f: impl FnOnce(&mut Vec<Value>)) -> Result<()> {
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
        f(manifests);
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir)?;
        tmp.write_all(&serde_json::to_vec(&index)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}
