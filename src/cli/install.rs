//! `install`: an image (from a registry or layout, or already in a repository) onto a root
//! filesystem + ESP, or a raw disk image: the host's first deployment.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::oci::{Bar, TransportArgs};
use super::output::{self, outln};
use crate::deploy::disk::{DiskImage, install_to_disk};
use crate::deploy::install::{InstallOptions, Installed, install_to_root};
use crate::deploy::upgrade::oci_info;
use crate::oci::error::OciError;
use crate::oci::pull::{self, PullOptions, PullProgress, Tagging};
use crate::oci::record::{self, ImageRecord};
use crate::oci::reference::ImageReference;
use crate::repo::Repository;

/// `cfsctl install`.
#[derive(Debug, Args)]
pub struct Install {
    #[command(flatten)]
    repo: super::RepoArg,
    #[command(flatten)]
    transport: TransportArgs,
    /// The image: a tag `cfsctl oci pull` made (used as it is, also when it is the reference
    /// the pull printed: pull again to update it), an image reference (docker://...,
    /// oci:DIR[:TAG]: pulled into --repo first), or an image digest or ref in --repo.
    image: String,
    /// The target's physical root filesystem (gets composefs/ and state/).
    #[arg(
        long,
        alias = "root",
        value_name = "DIR",
        conflicts_with = "to_disk",
        requires = "esp"
    )]
    sysroot: Option<PathBuf>,
    /// The target's ESP, for --sysroot (gets EFI/, loader/, cfsctl/).
    #[arg(long, alias = "boot", value_name = "DIR", requires = "sysroot")]
    esp: Option<PathBuf>,
    /// Write a raw GPT disk image (ESP + ext4 root with the verity feature) instead.
    #[arg(long, value_name = "FILE", requires = "size")]
    to_disk: Option<PathBuf>,
    /// Size of the disk image: bytes, or with a K/M/G suffix.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// Extra kernel argument (repeatable); --sysroot installs need at least root=... here.
    #[arg(long = "karg", value_name = "ARG")]
    kargs: Vec<String>,
    /// The reference `cfsctl upgrade` pulls on the installed host (default: the image
    /// reference installed), e.g. the registry as the host will reach it.
    #[arg(long, value_name = "REF")]
    target_imgref: Option<String>,
    /// systemd-boot EFI binary, when the image does not ship one.
    #[arg(long, value_name = "FILE")]
    bootloader: Option<PathBuf>,
    /// Print the result as JSON (keys in camelCase, as `status --json`).
    #[arg(long)]
    json: bool,
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

/// `install --json`: the deployment installed, and for a disk image its layout.
fn installed_json(installed: &Installed, disk: Option<&DiskImage>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "digest": installed.digest.to_hex(),
        "kernelVersion": installed.kver,
        "entry": installed.entry,
        "options": installed.options,
        "objectsCopied": installed.objects_copied,
        "verityOnFirstBoot": installed.verity_on_first_boot,
    });
    if let (Some(d), Some(obj)) = (disk, v.as_object_mut()) {
        let part = |(offset, size): (u64, u64)| serde_json::json!({"offset": offset, "size": size});
        obj.insert(
            "disk".into(),
            serde_json::json!({
                "rootUuid": d.root_uuid,
                "esp": part(d.partitions[0]),
                "root": part(d.partitions[1]),
            }),
        );
    }
    v
}

fn print(installed: &Installed) -> Result<()> {
    outln!("installed {} (kernel {})", installed.digest, installed.kver)?;
    outln!("  entry:   {}", installed.entry.display())?;
    outln!("  options: {}", installed.options.join(" "))?;
    outln!("  objects copied: {}", installed.objects_copied)?;
    if installed.verity_on_first_boot {
        outln!("  fs-verity: enabled on first boot (target filesystem could not enable it now)")?;
    }
    Ok(())
}

impl Install {
    pub fn run(self) -> Result<()> {
        if let Some(t) = &self.target_imgref {
            super::oci::parse_ref(t).context("--target-imgref")?;
        }
        let src = Repository::open(&self.repo.repo)?;
        let (name, origin, oci_record) = self.resolve(&src)?;
        let template = InstallOptions {
            kargs: self.kargs.clone(),
            bootloader: self.bootloader.clone(),
            origin: self.target_imgref.clone().or(origin),
            source: self.image.clone(),
            oci: oci_record
                .as_ref()
                .map(|r| oci_info(&src, r))
                .unwrap_or_default(),
            oci_record,
            ..InstallOptions::default()
        };
        if let Some(disk) = &self.to_disk {
            let size = self.size.unwrap_or_default();
            let made = install_to_disk(&src, &name, disk, size, &template)?;
            if self.json {
                return output::json(&installed_json(&made.installed, Some(&made)));
            }
            print(&made.installed)?;
            outln!(
                "  disk:    {} (root=UUID={})",
                disk.display(),
                made.root_uuid
            )?;
            for (name, (off, len)) in ["ESP", "root"].iter().zip(made.partitions) {
                outln!("  {name:<5} offset {off} size {len}")?;
            }
            return Ok(());
        }
        let (Some(sysroot), Some(esp)) = (self.sysroot.clone(), self.esp.clone()) else {
            bail!("give --sysroot DIR --esp DIR, or --to-disk FILE --size SIZE");
        };
        let opts = InstallOptions {
            sysroot,
            esp,
            ..template
        };
        let installed = install_to_root(&src, &name, &opts)?;
        if self.json {
            return output::json(&installed_json(&installed, None));
        }
        print(&installed)
    }

    /// The image to install (a name `BootableImage::load` takes), the origin it implies and
    /// its OCI record: a tag of the repository is used as it is, even one that reads as a
    /// reference (`oci pull` tags an image with the reference it pulled, and prints that
    /// name); any other reference is pulled first.
    fn resolve(&self, src: &Repository) -> Result<(String, Option<String>, Option<ImageRecord>)> {
        match record::load(src, &self.image) {
            Ok(r) => return Ok((r.image.clone(), Some(r.reference.clone()), Some(r))),
            Err(e) if matches!(crate::oci::error::find(&e), Some(OciError::UnknownTag(_))) => {}
            Err(e) => return Err(e),
        }
        if let Ok(reference) = self.image.parse::<ImageReference>() {
            let bar = Bar::new();
            let opts = PullOptions {
                tagging: Tagging::Reference,
                require_sealed: false,
                source: self.transport.options(),
                progress: bar.as_ref().map(|b| b as &dyn PullProgress),
                ..Default::default()
            };
            let pulled = pull::pull(src, &reference, &opts)
                .with_context(|| format!("pulling {reference}"))?;
            drop(bar);
            return Ok((
                pulled.image_digest.to_hex(),
                Some(reference.to_string()),
                Some(pulled.record),
            ));
        }
        Ok((self.image.clone(), None, None))
    }
}
