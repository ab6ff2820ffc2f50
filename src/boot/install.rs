//! Installing an image from a repository onto a root filesystem and its ESP: the repository
//! (only the objects the image needs), the deployment state, the kernel and initramfs, a BLS
//! entry whose options carry `composefs=<hex>`, and systemd-boot.
//!
//! The source is any image in a repository (a digest or a ref, e.g. one `cfsctl oci pull`
//! created), so installing a pulled OCI tag is installing the image its ref names.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::bls::{self, BootEntry, loader_conf};
use super::image::BootableImage;
use super::kargs::{host_arch, kargs_from_files};
use crate::fsverity::Digest;
use crate::repo::Repository;
use crate::setup_root::ENABLE_VERITY_MARKER;

/// Where systemd-boot comes from when the image does not ship it (Debian `systemd-boot-efi`).
pub const HOST_SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// What to install where.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// The target root filesystem (gets `composefs/` and `state/`).
    pub root: PathBuf,
    /// The ESP (gets `EFI/`, `loader/`, `cfsctl/<short>/`).
    pub boot: PathBuf,
    /// Kernel arguments before the image's own (`root=...`, `rw`, `console=...`).
    pub kargs: Vec<String>,
    /// systemd-boot binary to install when the image has none.
    pub bootloader: Option<PathBuf>,
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
    let image = BootableImage::load(src, name)?;
    let digest = image.digest;
    let hex = digest.to_hex();

    // The repository: the image's objects, the image, a ref keeping them alive.
    let repo_path = opts.root.join("composefs");
    let dest = if repo_path.join("meta.json").exists() {
        Repository::open(&repo_path)?
    } else {
        fs::create_dir_all(&opts.root)
            .with_context(|| format!("creating {}", opts.root.display()))?;
        Repository::init(&repo_path, src.algorithm())?
    };
    let mut objects_copied = 0;
    for d in &image.objects {
        if !dest.has_object(d) {
            dest.import_file(&src.open_object(d)?, Some(*d))?;
            objects_copied += 1;
        }
    }
    let (image_file, _) = src.open_image(&hex)?;
    dest.import_file(&image_file, Some(digest))?;
    dest.link_image(&digest)?;
    dest.set_ref(&format!("deploy/{hex}"), &digest)?;
    dest.sync()?;

    // The deployment state; /etc upper and /var are created by cfs-setup-root at boot.
    let state = opts.root.join("state");
    let deploy = state.join("deploy").join(&hex);
    fs::create_dir_all(&deploy).with_context(|| format!("creating {}", deploy.display()))?;
    fs::write(
        deploy.join("origin"),
        format!("image {name}\ndigest {hex}\n"),
    )
    .with_context(|| format!("writing {}/origin", deploy.display()))?;
    let verity_on_first_boot = !dest.verity_supported();
    if verity_on_first_boot {
        fs::write(state.join(ENABLE_VERITY_MARKER), "")
            .with_context(|| format!("writing {}/{ENABLE_VERITY_MARKER}", state.display()))?;
    }

    // The ESP: kernel, initramfs, entry, loader.
    let short = bls::short(&digest);
    let kdir = format!("cfsctl/{short}");
    write_file(&opts.boot.join(&kdir).join("vmlinuz"), &image.vmlinuz)?;
    write_file(
        &opts.boot.join(&kdir).join("initramfs.img"),
        &image.initramfs,
    )?;
    let mut options = vec![format!("composefs={hex}")];
    options.extend(opts.kargs.iter().cloned());
    options.extend(kargs_from_files(&image.kargs_files, host_arch())?);
    let entry = BootEntry {
        title: format!("cfsctl {short} ({})", image.kver),
        version: image.kver.clone(),
        linux: format!("/{kdir}/vmlinuz"),
        initrd: format!("/{kdir}/initramfs.img"),
        options: options.clone(),
    };
    let entry_name = BootEntry::file_name(&digest);
    let entry_path = opts.boot.join("loader/entries").join(&entry_name);
    write_file(&entry_path, entry.render().as_bytes())?;
    write_file(
        &opts.boot.join("loader/loader.conf"),
        loader_conf(&entry_name).as_bytes(),
    )?;
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
    write_file(&opts.boot.join("EFI/BOOT/BOOTX64.EFI"), &sd_boot)?;
    write_file(&opts.boot.join("EFI/systemd/systemd-bootx64.efi"), &sd_boot)?;

    Ok(Installed {
        digest,
        kver: image.kver,
        entry: entry_path,
        options,
        objects_copied,
        verity_on_first_boot,
    })
}

/// Writes a file atomically (temporary name, fsync, rename), creating parent directories.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("path without parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("cfsctl-tmp");
    let write = || -> std::io::Result<()> {
        let f = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &f, bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}
