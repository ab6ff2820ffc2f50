//! `init`, `mount`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::fsverity::Algorithm;
use crate::mount::{self, MountOptions};
use crate::repo::Repository;

/// `cfsctl init`.
#[derive(Debug, Args)]
pub struct Init {
    #[command(flatten)]
    repo: super::RepoArg,
    /// fs-verity hash algorithm naming every object and image.
    #[arg(long, default_value = "sha256")]
    algorithm: Algorithm,
}

impl Init {
    pub fn run(self) -> Result<()> {
        let repo = Repository::init(&self.repo.repo, self.algorithm)?;
        if !repo.verity_supported() {
            tracing::warn!(
                "{} has no fs-verity: objects are not kernel-verified and mounts run with \
                 verity off (insecure)",
                repo.path().display()
            );
        }
        Ok(())
    }
}

/// `cfsctl mount`.
#[derive(Debug, Args)]
pub struct Mount {
    #[command(flatten)]
    repo: super::RepoArg,
    /// An image file path, or an image digest or ref in the repository.
    image: String,
    /// Where to mount it.
    mountpoint: PathBuf,
}

impl Mount {
    pub fn run(self) -> Result<()> {
        let repo = Repository::open(&self.repo.repo)?;
        let opts = MountOptions::for_repository(&repo);
        let as_path = std::path::Path::new(&self.image);
        if self.image.contains('/') && as_path.exists() {
            // A file outside the repository: mount it as is, objects from the repository.
            let file = std::fs::File::open(as_path)
                .with_context(|| format!("opening image {}", as_path.display()))?;
            mount::mount_composefs(&file, Some(repo.objects_dir()), &self.mountpoint, &opts)
        } else {
            mount::mount_image(&repo, &self.image, &self.mountpoint, &opts).map(|_| ())
        }
    }
}
