//! The layer index: which layer image an OCI layer, known by its `diff_id`, was imported as.
//!
//! ```text
//! <repo>/layers/v<N>-<alg>-<hex>  -> ../objects/XX/<rest>   (N: the OCI EROFS version)
//! ```
//! A pull looks a layer up here when no tag's record names it, so a pull that failed after
//! some layers were imported (a cut blob, a stall, a full disk) is retried without fetching
//! them again, and `oci compute-id` leaves layers a later pull reuses. The index is *not* a
//! GC root: `gc` keeps an entry only while a ref reaches its layer image (a tag whose image
//! uses the layer) and removes the others before their objects, so what a failed pull left
//! lives until the next `gc`, as before. An entry is written only after `syncfs` made its
//! layer image (and the file objects it names) durable, so a power cut cannot leave an entry
//! naming a half-written object; a lookup still checks that the object is there.

use std::io;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use rustix::fs::AtFlags;
use rustix::io::Errno;

use super::{
    OCI_EROFS_VERSION, Repository, mkdir_exist_ok, object_path_digest, symlink_atomic, trust,
};
use crate::fsverity::Digest;

/// The index directory under the repository root.
pub(super) const LAYERS: &str = "layers";

/// The entry name of `diff_id` (`sha256:<hex>`) in the current format, or `None` for a
/// diff_id that is not a lower-case `alg:hex` digest (never indexed).
fn entry_name(diff_id: &str) -> Option<String> {
    let (alg, hex) = diff_id.split_once(':')?;
    let alg_ok = !alg.is_empty()
        && alg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let hex_ok = (32..=128).contains(&hex.len())
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (alg_ok && hex_ok).then(|| format!("v{OCI_EROFS_VERSION}-{alg}-{hex}"))
}

/// The object an entry's link names, if it is a well-formed link to an object path.
pub(super) fn entry_target(repo: &Repository, dir: &OwnedFd, name: &str) -> Option<Digest> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new()).ok()?;
    let target = target.to_str().ok()?;
    object_path_digest(repo, target.strip_prefix("../objects/")?)
}

impl Repository {
    /// The `layers/` directory, `None` while nothing was ever indexed (older repositories).
    pub(super) fn layers_dir(&self) -> Result<Option<OwnedFd>> {
        match trust::open_child_dir(&self.dir, LAYERS) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "opening {}/{LAYERS} (a directory, not a symlink)",
                    self.path.display()
                )
            }),
        }
    }

    /// Records that the layer `diff_id` was imported as the layer image `image`. The caller
    /// has made `image` and the objects it names durable ([`sync`](Self::sync)) first.
    pub fn index_layer(&self, diff_id: &str, image: &Digest) -> Result<()> {
        let Some(name) = entry_name(diff_id) else {
            return Ok(());
        };
        if !self.has_object(image) {
            return Err(super::RepoError::MissingObject(*image).into());
        }
        let dir = match self.layers_dir()? {
            Some(d) => d,
            None => {
                mkdir_exist_ok(&self.dir, LAYERS)
                    .and_then(|()| rustix::fs::fsync(&self.dir).map_err(io::Error::from))
                    .with_context(|| format!("creating {}/{LAYERS}", self.path.display()))?;
                self.layers_dir()?
                    .with_context(|| format!("{}/{LAYERS} vanished", self.path.display()))?
            }
        };
        let target = format!("../objects/{}", image.object_path());
        symlink_atomic(&dir, &name, &target)
            .with_context(|| format!("writing {}/{LAYERS}/{name}", self.path.display()))
    }

    /// The layer image the layer `diff_id` was imported as, if the index has one in the
    /// current format and its object is present.
    pub fn indexed_layer(&self, diff_id: &str) -> Result<Option<Digest>> {
        let Some(name) = entry_name(diff_id) else {
            return Ok(None);
        };
        let Some(dir) = self.layers_dir()? else {
            return Ok(None);
        };
        match rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading {}/{LAYERS}/{name}", self.path.display()));
            }
        }
        Ok(entry_target(self, &dir, &name).filter(|d| self.has_object(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::Algorithm;

    #[test]
    fn names_only_for_digest_shaped_diff_ids() {
        let hex = "ab".repeat(32);
        assert_eq!(
            entry_name(&format!("sha256:{hex}")),
            Some(format!("v{OCI_EROFS_VERSION}-sha256-{hex}"))
        );
        for bad in [
            "sha256".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:../{hex}"),
            format!("sha/256:{hex}"),
            format!(":{hex}"),
            "sha256:abc".to_string(),
        ] {
            assert_eq!(entry_name(&bad), None, "{bad}");
        }
    }

    #[test]
    fn index_round_trip_and_missing_objects() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path().join("r"), Algorithm::Sha256).unwrap();
        let diff = format!("sha256:{}", "cd".repeat(32));
        assert_eq!(repo.indexed_layer(&diff).unwrap(), None, "no layers/ yet");
        let image = repo.write_object(b"a layer image").unwrap();
        repo.index_layer(&diff, &image).unwrap();
        assert_eq!(repo.indexed_layer(&diff).unwrap(), Some(image));
        let other = format!("sha256:{}", "ef".repeat(32));
        assert_eq!(repo.indexed_layer(&other).unwrap(), None);
        // An object that is not there is refused, and a lost one is not returned.
        let absent = Digest::from_hex(&"12".repeat(32)).unwrap();
        assert!(repo.index_layer(&other, &absent).is_err());
        std::fs::remove_file(repo.object_path(&image)).unwrap();
        assert_eq!(repo.indexed_layer(&diff).unwrap(), None);
    }

    #[test]
    fn gc_keeps_entries_a_ref_reaches_and_drops_the_others() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path().join("r"), Algorithm::Sha256).unwrap();
        let (tagged, failed) = (
            format!("sha256:{}", "01".repeat(32)),
            format!("sha256:{}", "02".repeat(32)),
        );
        let kept = repo.write_object(b"layer of a tagged image").unwrap();
        let garbage = repo.write_object(b"layer of a pull that failed").unwrap();
        repo.index_layer(&tagged, &kept).unwrap();
        repo.index_layer(&failed, &garbage).unwrap();
        let list = repo.write_object_list(&[kept]).unwrap();
        repo.set_ref("oci/tags/t", &list).unwrap();
        let report = repo.gc(crate::repo::GcOptions::default()).unwrap();
        assert_eq!(report.layers_pruned, 1);
        assert_eq!(repo.indexed_layer(&tagged).unwrap(), Some(kept));
        assert_eq!(repo.indexed_layer(&failed).unwrap(), None);
        assert!(!repo.has_object(&garbage));
        let names: Vec<_> = std::fs::read_dir(td.path().join("r/layers"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "the dropped entry is gone from layers/");
    }
}
