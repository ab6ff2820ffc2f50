//! The composefs EROFS format the repository writes OCI images in, recorded in `meta.json`
//! as `oci_erofs_version`.
//!
//! OCI images (merged and per-layer) are written as format v1, the OCI sealing
//! specification's `erofs.v1` (`docs/oci-conventions.md`), so their digests equal
//! composefs-rs's and bootc's. Repositories made before the field existed wrote them as v0
//! (mkcomposefs's default); such a repository opens as before and is migrated by the first
//! OCI import ([`Repository::record_oci_erofs_version`]): its existing images stay valid and
//! mountable under their old digests, and OCI records say which format they were made in
//! (`oci::record`). A repository recording any other version is refused at open, naming both
//! versions, rather than mixing formats under one tag.
//!
//! Directory and dump images (`create-image`, `compute-id` without `--oci`) are not covered:
//! they keep mkcomposefs's defaults or the versions given on the command line.

use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::RenameFlags;

use super::{META_JSON, RepoError, Repository, read_meta, write_file_atomic};

/// The composefs EROFS format version (`composefs_version` in the image header) of every
/// image this program makes from an OCI image.
pub const OCI_EROFS_VERSION: u32 = 1;

/// Refuses a recorded version other than [`OCI_EROFS_VERSION`] (absent is an old repository).
pub(super) fn check_oci_erofs_version(path: &Path, recorded: Option<u32>) -> Result<()> {
    match recorded {
        None => Ok(()),
        Some(OCI_EROFS_VERSION) => Ok(()),
        Some(version) => Err(RepoError::UnsupportedOciFormat {
            path: path.to_owned(),
            version,
        }
        .into()),
    }
}

impl Repository {
    /// The format version `meta.json` records for OCI images; `None` for a repository made
    /// before it was recorded (its OCI images are v0) and not migrated yet.
    pub fn oci_erofs_version(&self) -> Option<u32> {
        self.oci_erofs_version.get().copied()
    }

    /// Records [`OCI_EROFS_VERSION`] in `meta.json` of a repository made before the field
    /// existed (a no-op when it is recorded). Called before an OCI import writes anything, so
    /// a repository holding v1 OCI images always says so. `meta.json` is replaced atomically;
    /// everything else in it is kept.
    pub fn record_oci_erofs_version(&self) -> Result<()> {
        if self.oci_erofs_version().is_some() {
            return Ok(());
        }
        let mut meta = read_meta(&self.dir, &self.path)?;
        check_oci_erofs_version(&self.path, meta.oci_erofs_version)?;
        if meta.oci_erofs_version.is_none() {
            meta.oci_erofs_version = Some(OCI_EROFS_VERSION);
            let json = serde_json::to_vec_pretty(&meta).expect("serializable");
            write_file_atomic(&self.dir, META_JSON, &json, RenameFlags::empty()).with_context(
                || {
                    format!(
                        "{}/{META_JSON}: recording OCI image format v{OCI_EROFS_VERSION}",
                        self.path.display()
                    )
                },
            )?;
            tracing::info!(
                "{}: OCI images are now written as composefs EROFS v{OCI_EROFS_VERSION} \
                 (recorded in {META_JSON}); existing images keep their digests",
                self.path.display()
            );
        }
        let _ = self.oci_erofs_version.set(OCI_EROFS_VERSION);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::Algorithm;

    fn meta_value(repo: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(repo.join(META_JSON)).unwrap()).unwrap()
    }

    #[test]
    fn new_repositories_record_v1() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        assert_eq!(repo.oci_erofs_version(), Some(OCI_EROFS_VERSION));
        assert_eq!(meta_value(td.path())["oci_erofs_version"], 1);
    }

    #[test]
    fn old_repository_is_migrated_and_other_versions_refused() {
        let td = tempfile::tempdir().unwrap();
        drop(Repository::init(td.path(), Algorithm::Sha512).unwrap());
        // As written before the field existed.
        let old = r#"{"version": 1, "algorithm": "fsverity-sha512-12"}"#;
        std::fs::write(td.path().join(META_JSON), old).unwrap();
        let repo = Repository::open(td.path()).unwrap();
        assert_eq!(repo.oci_erofs_version(), None);
        repo.record_oci_erofs_version().unwrap();
        assert_eq!(repo.oci_erofs_version(), Some(1));
        let meta = meta_value(td.path());
        assert_eq!(meta["oci_erofs_version"], 1);
        assert_eq!(meta["algorithm"], "fsverity-sha512-12");
        drop(repo);
        assert_eq!(
            Repository::open(td.path()).unwrap().oci_erofs_version(),
            Some(1)
        );

        let newer = r#"{"version": 1, "algorithm": "fsverity-sha512-12", "oci_erofs_version": 2}"#;
        std::fs::write(td.path().join(META_JSON), newer).unwrap();
        let err = Repository::open(td.path()).unwrap_err();
        assert!(
            matches!(
                err.downcast_ref::<RepoError>(),
                Some(RepoError::UnsupportedOciFormat { version: 2, .. })
            ),
            "{err:#}"
        );
        assert!(err.to_string().contains("v2"), "{err}");
    }
}
