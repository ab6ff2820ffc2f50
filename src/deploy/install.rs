//! Installing an image from a repository onto a root filesystem and its ESP: the first
//! deployment of a host. The repository (only the objects the image needs), the state
//! directory, the kernel and initramfs, a BLS entry whose options carry `composefs=<hex>`, the
//! deployment record with its origin, and systemd-boot. Everything goes where
//! [`super::layout`] says, through the same pieces `upgrade` uses ([`super::stage`]).
//!
//! The source is any image in a repository (a digest or a ref, e.g. one `cfsctl oci pull`
//! created). The first entry gets no boot counter: with nothing to fall back to, counting its
//! tries would change nothing.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::RenameFlags;

use super::host::{Host, HostOptions, open_dir};
use super::layout::{
    self, ENABLE_VERITY_MARKER, ENTRIES_DIR, ESP_FALLBACK_LOADER, ESP_SYSTEMD_BOOT,
    IMAGE_SYSTEMD_BOOT, LOADER_CONF,
};
use super::stage::{self, NewDeployment, OciInfo};
use crate::boot::{BootableImage, EntryName};
use crate::fsverity::Digest;
use crate::oci::record::{self as oci_record, ImageRecord};
use crate::repo::Repository;

/// Where systemd-boot comes from when the image does not ship it (Debian `systemd-boot-efi`).
pub const HOST_SYSTEMD_BOOT: &str = IMAGE_SYSTEMD_BOOT;

/// What to install where.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    /// The target's physical root filesystem (gets the repository and the state directory).
    pub sysroot: PathBuf,
    /// The target's ESP (gets `EFI/`, `loader/`, `cfsctl/`).
    pub esp: PathBuf,
    /// Kernel arguments of the host, before the image's own (`root=...`, `rw`, `console=...`).
    pub kargs: Vec<String>,
    /// systemd-boot binary to install when the image has none.
    pub bootloader: Option<PathBuf>,
    /// The reference `upgrade` will pull (`--target-imgref`, else the source reference).
    pub origin: Option<String>,
    /// What is installed, as the user named it.
    pub source: String,
    /// Manifest, config and version of the image, when it came from an OCI image.
    pub oci: OciInfo,
    /// The source repository's record of that OCI image: copied with its layers, and tagged
    /// with the origin, so the first `upgrade` fetches only the layers that changed.
    pub oci_record: Option<ImageRecord>,
}

/// What was installed.
#[derive(Clone, Debug)]
pub struct Installed {
    /// The deployed image.
    pub digest: Digest,
    /// Its kernel version.
    pub kver: String,
    /// Path of the boot entry written.
    pub entry: PathBuf,
    /// The entry's kernel command line.
    pub options: Vec<String>,
    /// Objects copied into the target repository.
    pub objects_copied: usize,
    /// The target repository could not enable fs-verity: the first boot does.
    pub verity_on_first_boot: bool,
}

/// Installs image `name` of `src` according to `opts`.
pub fn install_to_root(src: &Repository, name: &str, opts: &InstallOptions) -> Result<Installed> {
    for k in &opts.kargs {
        stage::check_karg(k)?;
    }
    let image = BootableImage::load(src, name)?;
    let digest = image.digest;
    for dir in [&opts.sysroot, &opts.esp] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut host = Host::open(&HostOptions {
        sysroot: Some(opts.sysroot.clone()),
        esp: Some(opts.esp.clone()),
        ..HostOptions::default()
    })?;
    host.lock()?;

    // The repository: the image's objects, the image, a ref keeping them alive.
    let repo_path = &host.paths.repo;
    let dest = if repo_path.join("meta.json").exists() {
        Repository::open(repo_path)?
    } else {
        Repository::init(repo_path, src.algorithm())?
    };
    let mut objects_copied = 0;
    for d in &image.objects {
        if !dest.has_object(d) {
            dest.import_file(&src.open_object(d)?, Some(*d))?;
            objects_copied += 1;
        }
    }
    let (image_file, _) = src.open_image(&digest.to_hex())?;
    dest.import_file(&image_file, Some(digest))?;
    dest.link_image(&digest)?;
    if let (Some(rec), Some(origin)) = (&opts.oci_record, &opts.origin) {
        objects_copied += copy_oci_record(src, &dest, rec, origin)?;
    }
    dest.set_ref(&layout::deploy_ref(&digest), &digest)?;
    dest.sync()?;

    // /etc upper and /var are created by cfs-setup-root at boot.
    let verity_on_first_boot = !dest.verity_supported();
    if verity_on_first_boot {
        crate::atomic::write_file(
            host.state_dir(),
            ENABLE_VERITY_MARKER,
            b"",
            0o644,
            RenameFlags::empty(),
        )
        .with_context(|| {
            format!(
                "writing {}/{ENABLE_VERITY_MARKER}",
                host.paths.state.display()
            )
        })?;
    }

    // The ESP: kernel, initramfs, record, entry, loader.
    let (boot_files, _) = stage::write_boot_files(&opts.esp, &image)?;
    let new = NewDeployment {
        image: digest,
        origin: opts.origin.clone(),
        source: opts.source.clone(),
        oci: opts.oci.clone(),
        kargs: opts.kargs.clone(),
    };
    let rec = stage::record_for(&new, &image, boot_files)?;
    host.write_record(&rec)?;
    let priority = host.read_state()?.max_priority() + 1;
    let entry = stage::entry_for(&rec, priority)?;
    let entry_name = EntryName {
        id: layout::entry_id(&digest),
        tries_left: None,
        tries_done: None,
    }
    .file_name();
    let entries = host.entries_dir()?;
    crate::atomic::write_file(
        &entries,
        &entry_name,
        entry.render().as_bytes(),
        0o644,
        RenameFlags::empty(),
    )
    .with_context(|| format!("writing {}/{ENTRIES_DIR}/{entry_name}", opts.esp.display()))?;
    write_file(&opts.esp.join(LOADER_CONF), LOADER_CONF_TEXT.as_bytes())?;
    let sd_boot = match &image.systemd_boot {
        Some(bytes) => bytes.clone(),
        None => {
            let p = opts
                .bootloader
                .as_deref()
                .unwrap_or(Path::new(HOST_SYSTEMD_BOOT));
            fs::read(p).with_context(|| {
                format!(
                    "reading systemd-boot from {} (package systemd-boot-efi)",
                    p.display()
                )
            })?
        }
    };
    write_file(&opts.esp.join(ESP_FALLBACK_LOADER), &sd_boot)?;
    write_file(&opts.esp.join(ESP_SYSTEMD_BOOT), &sd_boot)?;
    rustix::fs::syncfs(open_dir(&opts.esp)?).context("syncing the ESP")?;

    Ok(Installed {
        digest,
        kver: image.kver,
        entry: opts.esp.join(ENTRIES_DIR).join(entry_name),
        options: entry.options,
        objects_copied,
        verity_on_first_boot,
    })
}

/// Copies what the OCI record of an image names (manifest, config, each layer's metadata
/// image and every object those reference) from `src` to `dest`, and tags it there as `tag`.
/// Returns the number of objects copied.
fn copy_oci_record(
    src: &Repository,
    dest: &Repository,
    rec: &ImageRecord,
    tag: &str,
) -> Result<usize> {
    let mut copied = 0;
    let mut copy = |d: &Digest| -> Result<()> {
        if !dest.has_object(d) {
            dest.import_file(&src.open_object(d)?, Some(*d))?;
            copied += 1;
        }
        Ok(())
    };
    for member in rec.members()? {
        copy(&member)?;
    }
    for layer in &rec.layers {
        let d = Digest::from_hex(&layer.layer_image)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut src.open_object(&d)?, &mut bytes)
            .with_context(|| format!("reading layer image {d}"))?;
        for r in crate::erofs::reader::referenced_objects(&bytes)
            .with_context(|| format!("reading layer image {d}"))?
        {
            if let Some(obj) = &r.digest {
                copy(obj)?;
            }
        }
    }
    dest.sync()?;
    oci_record::publish(dest, tag, rec)?;
    Ok(copied)
}

/// `loader/loader.conf`: boot at once, and never a `default` line (it would defeat boot
/// counting's fallback; the order of the entries decides).
pub const LOADER_CONF_TEXT: &str = "timeout 0\nconsole-mode keep\neditor no\n";

/// Writes a file atomically (temporary name, fsync, rename), creating parent directories.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("path without parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("path without a file name")?;
    crate::atomic::write_file(open_dir(dir)?, name, bytes, 0o644, RenameFlags::empty())
        .with_context(|| format!("writing {}", path.display()))
}
