//! `install`: an image from a repository onto a root filesystem + ESP, or a raw disk image.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::boot::disk::install_to_disk;
use crate::boot::{InstallOptions, Installed, install_to_root};
use crate::repo::Repository;

/// `cfsctl install`.
#[derive(Debug, Args)]
pub struct Install {
    #[command(flatten)]
    repo: super::RepoArg,
    /// The image: a hex digest or a ref (e.g. the ref `cfsctl oci pull` made).
    image: String,
    /// Target root filesystem (gets composefs/ and state/).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "to_disk",
        requires = "boot"
    )]
    root: Option<PathBuf>,
    /// The ESP for --root (gets EFI/, loader/, cfsctl/).
    #[arg(long, value_name = "DIR", requires = "root")]
    boot: Option<PathBuf>,
    /// Write a raw GPT disk image (ESP + ext4 root with the verity feature) instead.
    #[arg(long, value_name = "FILE", requires = "size")]
    to_disk: Option<PathBuf>,
    /// Size of the disk image: bytes, or with a K/M/G suffix.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// Extra kernel argument (repeatable); --root installs need at least root=... here.
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// systemd-boot EFI binary, when the image does not ship one.
    #[arg(long, value_name = "FILE")]
    bootloader: Option<PathBuf>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}' is not a size (e.g. 2G, 512M)"))
}

fn print(installed: &Installed) {
    println!("installed {} (kernel {})", installed.digest, installed.kver);
    println!("  entry:   {}", installed.entry.display());
    println!("  options: {}", installed.options.join(" "));
    println!("  objects copied: {}", installed.objects_copied);
    if installed.verity_on_first_boot {
        println!("  fs-verity: enabled on first boot (target filesystem could not enable it now)");
    }
}

impl Install {
    pub fn run(self) -> Result<()> {
        let src = Repository::open(&self.repo.repo)?;
        if let Some(disk) = &self.to_disk {
            let size = self.size.unwrap_or_default();
            let made =
                install_to_disk(&src, &self.image, disk, size, &self.kargs, self.bootloader)?;
            print(&made.installed);
            println!(
                "  disk:    {} (root=UUID={})",
                disk.display(),
                made.root_uuid
            );
            for (name, (off, len)) in ["ESP", "root"].iter().zip(made.partitions) {
                println!("  {name:<5} offset {off} size {len}");
            }
            return Ok(());
        }
        let (Some(root), Some(boot)) = (self.root, self.boot) else {
            bail!("give --root DIR --boot DIR, or --to-disk FILE --size SIZE");
        };
        let opts = InstallOptions {
            root,
            boot,
            kargs: self.kargs,
            bootloader: self.bootloader,
        };
        print(&install_to_root(&src, &self.image, &opts)?);
        Ok(())
    }
}
