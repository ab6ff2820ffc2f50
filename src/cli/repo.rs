//! `init`, `mount`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use rustix::fs::{Mode, OFlags};

use crate::fsverity::{Algorithm, Digest};
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
    /// An image digest or ref in the repository, or an image file: a path starting with `/`,
    /// `./` or `../` (anything else is never read as a path, so `local/test` is the ref).
    image: String,
    /// Where to mount it.
    mountpoint: PathBuf,
    /// Refuse to mount unless the image's fs-verity digest is this (hex).
    #[arg(long, value_name = "HEX")]
    digest: Option<String>,
    #[command(flatten)]
    flags: MountFlags,
}

/// Options shared by `mount` and `oci mount`.
#[derive(Debug, Args)]
pub struct MountFlags {
    /// Let setuid/setgid bits and device nodes in the image take effect (by default the
    /// mount is nosuid,nodev: an image from elsewhere must not give anyone root).
    #[arg(long)]
    pub allow_setuid_devices: bool,
}

impl MountFlags {
    /// The repository's mount options with these flags applied.
    pub fn options(&self, repo: &Repository) -> MountOptions {
        MountOptions {
            allow_setuid_devices: self.allow_setuid_devices,
            ..MountOptions::for_repository(repo)
        }
    }
}

/// Whether `cfsctl mount` reads IMAGE as a file path (see [`Mount::image`]).
fn names_a_file(image: &str) -> bool {
    image.starts_with('/') || image.starts_with("./") || image.starts_with("../")
}

impl Mount {
    pub fn run(self) -> Result<()> {
        let repo = Repository::open(&self.repo.repo)?;
        let opts = self.flags.options(&repo);
        let expected = self
            .digest
            .as_deref()
            .map(Digest::from_hex)
            .transpose()
            .context("--digest")?;
        if !names_a_file(&self.image) {
            let (image, digest) = repo.open_image(&self.image)?;
            if let Some(expected) = expected.filter(|e| *e != digest) {
                bail!("image {}: digest is {digest}, not {expected}", self.image);
            }
            return mount::mount_composefs(
                &image,
                Some(repo.objects_dir()),
                &self.mountpoint,
                &opts,
            )
            .with_context(|| format!("mounting image {digest} on {}", self.mountpoint.display()));
        }
        // A file outside the repository, objects from the repository. O_NONBLOCK: a FIFO
        // in its place must not hang the open (mount_composefs refuses non-regular files).
        let path = std::path::Path::new(&self.image);
        let file = std::fs::File::from(
            rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
                Mode::empty(),
            )
            .with_context(|| format!("opening image {}", path.display()))?,
        );
        if let Some(expected) = expected {
            let actual = mount::image_file_digest(&file, expected.algorithm())
                .with_context(|| format!("measuring image {}", path.display()))?;
            if actual != expected {
                bail!(
                    "image {}: digest is {actual}, not {expected}",
                    path.display()
                );
            }
        }
        mount::mount_composefs(&file, Some(repo.objects_dir()), &self.mountpoint, &opts)
            .with_context(|| {
                format!(
                    "mounting image {} on {}",
                    path.display(),
                    self.mountpoint.display()
                )
            })
    }
}
