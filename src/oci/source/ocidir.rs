//! OCI image layout directories (`oci:DIR[:TAG]`), read without skopeo: `index.json`, then
//! `blobs/<alg>/<hex>`. The tag is the `org.opencontainers.image.ref.name` annotation.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::{FetchedManifest, ImageSource, MAX_JSON, pick_platform, verify_bytes};
use crate::bounded;
use crate::oci::error::OciError;

/// The annotation naming a manifest in an index (image-spec, annotations.md).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An opened layout directory.
#[derive(Debug)]
pub struct OciDir {
    path: PathBuf,
    tag: Option<String>,
}

impl OciDir {
    /// Checks that `path` looks like a layout (has `index.json`).
    pub fn open(path: &Path, tag: Option<&str>) -> Result<Self> {
        let index = path.join("index.json");
        if !index.is_file() {
            anyhow::bail!(
                "{}: not an OCI image layout (no index.json)",
                path.display()
            );
        }
        Ok(OciDir {
            path: path.to_owned(),
            tag: tag.map(str::to_string),
        })
    }

    fn what(&self) -> String {
        match &self.tag {
            Some(t) => format!("oci:{}:{t}", self.path.display()),
            None => format!("oci:{}", self.path.display()),
        }
    }

    /// `blobs/<alg>/<hex>`; the digest was parsed by oci-spec, which only accepts
    /// `[a-z0-9]` hex of the algorithm's length, so it cannot name a path outside `blobs/`.
    pub fn blob_path(&self, digest: &oci_spec::image::Digest) -> PathBuf {
        self.path
            .join("blobs")
            .join(digest.algorithm().to_string())
            .join(digest.digest())
    }

    fn read_json_blob(&self, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
        if desc.size() > MAX_JSON {
            anyhow::bail!("{what}: {} bytes is too large", desc.size());
        }
        let path = self.blob_path(desc.digest());
        let bytes = bounded::read_file(&path, MAX_JSON).with_context(|| what.to_string())?;
        verify_bytes(what, desc.digest(), &bytes)?;
        Ok(bytes)
    }
}

impl ImageSource for OciDir {
    fn manifest(&self) -> Result<FetchedManifest> {
        let what = self.what();
        let index_path = self.path.join("index.json");
        let index: ImageIndex = serde_json::from_slice(&bounded::read_file(&index_path, MAX_JSON)?)
            .with_context(|| format!("parsing {}", index_path.display()))?;
        let candidates: Vec<&Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| match &self.tag {
                Some(t) => d
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|n| n == t),
                // Artifacts (a composefs seal referring to an image) are not images.
                None => d.artifact_type().is_none(),
            })
            .collect();
        let mut desc = match candidates.as_slice() {
            [one] => (*one).clone(),
            [] => return Err(OciError::NotFound(format!("{what}: no such image")).into()),
            _ => anyhow::bail!("{what}: the index holds several images; name one with :TAG"),
        };
        // A tag may name an index (multi-platform image): descend to linux/amd64.
        for _ in 0..4 {
            if desc.media_type() != &MediaType::ImageIndex {
                break;
            }
            let bytes = self.read_json_blob(&desc, &format!("{what}: index {}", desc.digest()))?;
            let nested: ImageIndex = serde_json::from_slice(&bytes)
                .with_context(|| format!("{what}: parsing index {}", desc.digest()))?;
            desc = pick_platform(&nested, &what)?;
        }
        if desc.media_type() != &MediaType::ImageManifest {
            return Err(OciError::UnsupportedMediaType {
                what: format!("{what}: manifest {}", desc.digest()),
                media_type: desc.media_type().to_string(),
            }
            .into());
        }
        let bytes = self.read_json_blob(&desc, &format!("{what}: manifest {}", desc.digest()))?;
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{what}: parsing manifest {}", desc.digest()))?;
        Ok(FetchedManifest {
            digest: desc.digest().to_string(),
            bytes,
            manifest,
        })
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let path = self.blob_path(desc.digest());
        // A FIFO here would block the pull forever; only regular files are blobs.
        let (file, _) = bounded::open_regular(&path)
            .with_context(|| format!("{}: blob {}", self.what(), desc.digest()))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
