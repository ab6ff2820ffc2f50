//! `cfsctl oci ...`: pull, images, inspect, rm, mount, compute-id, seal.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::output::outln;
use crate::fsverity::Algorithm;
use crate::fsverity::signature::{SigningKey, TrustedCerts};
use crate::mount;
use crate::oci::pull::{self, PullOptions, PullProgress, PullResult, Tagging};
use crate::oci::record;
use crate::oci::reference::ImageReference;
use crate::oci::seal::{self, SealOptions};
use crate::oci::source::SourceOptions;
use crate::repo::Repository;

/// `cfsctl oci`.
#[derive(Debug, Args)]
pub struct Oci {
    #[command(subcommand)]
    command: OciCommand,
}

#[derive(Debug, Subcommand)]
enum OciCommand {
    /// Pull an image into the repository and tag it; prints the composefs image digest.
    Pull(Pull),
    /// List the tagged images.
    Images(Images),
    /// Show what the repository knows about a tagged image.
    Inspect(Inspect),
    /// Remove a tag; the next `cfsctl gc` frees what no other tag needs.
    Rm(Rm),
    /// Mount a tagged image read-only.
    Mount(MountCmd),
    /// Print the composefs digest of an image without tagging it.
    ComputeId(ComputeId),
    /// Write a copy of an image whose manifest carries its composefs digests (the composefs
    /// OCI sealing specification's inline annotations).
    Seal(Seal),
}

impl Oci {
    pub fn run(self) -> Result<()> {
        match self.command {
            OciCommand::Pull(c) => c.run(),
            OciCommand::Images(c) => c.run(),
            OciCommand::Inspect(c) => c.run(),
            OciCommand::Rm(c) => c.run(),
            OciCommand::Mount(c) => c.run(),
            OciCommand::ComputeId(c) => c.run(),
            OciCommand::Seal(c) => c.run(),
        }
    }
}

/// Source options shared by the commands that read images.
#[derive(Debug, Args)]
pub(crate) struct TransportArgs {
    /// Verify registry TLS certificates (`--tls-verify=false` for a local registry).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    tls_verify: bool,
    #[command(flatten)]
    signatures: super::signature::SignatureArgs,
}

impl TransportArgs {
    pub(crate) fn options(&self) -> SourceOptions {
        SourceOptions {
            tls_verify: self.tls_verify,
            policy: self.signatures.options(),
        }
    }
}

/// A progress bar on stderr (only when it is a terminal).
pub(crate) struct Bar(ProgressBar);

impl Bar {
    pub(crate) fn new() -> Option<Bar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(Bar(bar))
    }
}

impl PullProgress for Bar {
    fn start(&self, layers: usize, bytes: u64) {
        self.0.set_length(bytes);
        self.0.set_message(format!("fetching {layers} layers"));
    }
    fn fetched(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn merging(&self) {
        self.0.set_message("merging");
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

pub(crate) fn parse_ref(s: &str) -> Result<ImageReference> {
    s.parse::<ImageReference>()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("image reference '{s}'"))
}

/// `cfsctl oci pull`.
#[derive(Debug, Args)]
pub struct Pull {
    #[command(flatten)]
    repo: super::RepoArg,
    #[command(flatten)]
    transport: TransportArgs,
    /// Tag name (default: the reference as written).
    #[arg(long, value_name = "NAME")]
    tag: Option<String>,
    /// Refuse images without the merged and config composefs digests (`oci seal`): inline
    /// annotations, or a composefs artifact referring to the image (`oci seal --artifact`).
    #[arg(long)]
    require_sealed: bool,
    #[command(flatten)]
    signatures: SignatureArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// The image: docker://..., oci:DIR[:TAG], or any skopeo transport.
    reference: String,
}

/// fs-verity signatures of the seal (`oci pull`, `install`).
#[derive(Debug, Args)]
pub struct SignatureArgs {
    /// Require fs-verity signatures (`oci seal --sign-key`) on the sealed digests, made by
    /// the key of this certificate (PEM or DER; repeat for several). Implies a sealed image.
    #[arg(long, value_name = "CERT")]
    pub verity_cert: Vec<PathBuf>,
    /// Also enable fs-verity on the merged image with its signature, so the kernel checks it
    /// against its .fs-verity keyring (the certificate must be loaded there:
    /// `keyctl padd asymmetric '' %keyring:.fs-verity < cert.der`).
    #[arg(long, requires = "verity_cert")]
    pub kernel_signature: bool,
}

impl SignatureArgs {
    /// The certificates, loaded (`None` without `--verity-cert`).
    pub fn certs(&self) -> Result<Option<TrustedCerts>> {
        if self.verity_cert.is_empty() {
            return Ok(None);
        }
        TrustedCerts::load(&self.verity_cert).map(Some)
    }
}

impl Pull {
    pub fn run(self) -> Result<()> {
        let reference = parse_ref(&self.reference)?;
        let repo = Repository::open(&self.repo.repo)?;
        let certs = self.signatures.certs()?;
        let bar = Bar::new();
        let opts = PullOptions {
            tagging: self.tag.map_or(Tagging::Reference, Tagging::Name),
            require_sealed: self.require_sealed,
            source: self.transport.options(),
            progress: bar.as_ref().map(|b| b as &dyn PullProgress),
            verity_certs: certs.as_ref(),
            kernel_signature: self.signatures.kernel_signature,
        };
        let result =
            pull::pull(&repo, &reference, &opts).with_context(|| format!("pulling {reference}"))?;
        drop(bar);
        print_pull(&result, self.json)
    }
}

fn print_pull(result: &PullResult, json: bool) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(result)?)?;
        return Ok(());
    }
    if result.up_to_date {
        tracing::info!("{}: up to date", result.record.reference);
    } else {
        tracing::info!(
            "{}: {} layers fetched ({} bytes), {} already present, {} objects written",
            result.record.reference,
            result.layers_fetched,
            result.bytes_fetched,
            result.layers_skipped,
            result.objects_written
        );
    }
    outln!("{}", result.image_digest)?;
    Ok(())
}

/// `cfsctl oci images`.
#[derive(Debug, Args)]
pub struct Images {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Images {
    pub fn run(self) -> Result<()> {
        let repo = Repository::open(&self.repo.repo)?;
        let images = record::list(&repo)?;
        if self.json {
            let v: Vec<_> = images
                .iter()
                .map(|(name, r)| serde_json::json!({"name": name, "record": r}))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&v)?)?;
            return Ok(());
        }
        for (name, r) in images {
            let sealed = if r.sealed.is_some() { "sealed" } else { "-" };
            outln!("{name}\t{}\t{sealed}\t{}", r.image, r.manifest_digest)?;
        }
        Ok(())
    }
}

/// `cfsctl oci inspect`.
#[derive(Debug, Args)]
pub struct Inspect {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Tag name.
    name: String,
}

impl Inspect {
    pub fn run(self) -> Result<()> {
        let repo = Repository::open(&self.repo.repo)?;
        let r = record::load(&repo, &self.name)?;
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&r)?)?;
            return Ok(());
        }
        outln!("name:      {}", self.name)?;
        outln!("reference: {}", r.reference)?;
        outln!("image:     {}", r.image)?;
        outln!("manifest:  {}", r.manifest_digest)?;
        outln!("config:    {}", r.config_digest)?;
        outln!("sealed:    {}", r.sealed.as_deref().unwrap_or("no"))?;
        for (i, l) in r.layers.iter().enumerate() {
            outln!(
                "layer {i}:   {} ({} bytes, {})\n           diff_id {}\n           composefs {}",
                l.digest,
                l.size,
                l.media_type,
                l.diff_id,
                l.layer_image
            )?;
        }
        Ok(())
    }
}

/// `cfsctl oci rm`.
#[derive(Debug, Args)]
pub struct Rm {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Tag names; when one names no image, none is removed.
    #[arg(required = true)]
    names: Vec<String>,
}

impl Rm {
    pub fn run(self) -> Result<()> {
        let repo = Repository::open(&self.repo.repo)?;
        record::remove_all(&repo, &self.names)
    }
}

/// `cfsctl oci mount`.
#[derive(Debug, Args)]
pub struct MountCmd {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Tag name.
    name: String,
    /// Where to mount it.
    mountpoint: PathBuf,
    #[command(flatten)]
    flags: super::repo::MountFlags,
}

impl MountCmd {
    pub fn run(self) -> Result<()> {
        let repo = Repository::open(&self.repo.repo)?;
        let record = record::load(&repo, &self.name)?;
        let opts = self.flags.options(&repo);
        mount::mount_image(&repo, &record.image, &self.mountpoint, &opts)?;
        Ok(())
    }
}

/// A repository named with --repo, or a temporary one (deleted afterwards).
fn repo_or_temp(path: Option<&PathBuf>) -> Result<(Repository, Option<tempfile::TempDir>)> {
    match path {
        Some(p) => Ok((Repository::open(p)?, None)),
        None => {
            let dir = tempfile::tempdir().context("creating a temporary repository")?;
            Ok((Repository::init(dir.path(), Algorithm::Sha256)?, Some(dir)))
        }
    }
}

/// `cfsctl oci compute-id`.
#[derive(Debug, Args)]
pub struct ComputeId {
    /// Repository to import into (nothing is tagged: a later pull writes fewer objects, until
    /// a `gc` removes them); default: a temporary one.
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    #[command(flatten)]
    transport: TransportArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Print the digest of the boot variant (`/boot` and `/sysroot` emptied, as bootc
    /// mounts it) instead.
    #[arg(long)]
    bootable: bool,
    /// The image.
    reference: String,
}

impl ComputeId {
    pub fn run(self) -> Result<()> {
        let reference = parse_ref(&self.reference)?;
        let (repo, _tmp) = repo_or_temp(self.repo.as_ref())?;
        if self.bootable {
            let bar = Bar::new();
            let progress = bar.as_ref().map(|b| b as &dyn PullProgress);
            let imported =
                pull::compute(&repo, &reference, &self.transport.options(), true, progress)
                    .with_context(|| format!("reading {reference}"))?;
            drop(bar);
            let boot = imported
                .bootable_digest
                .context("no boot variant computed")?;
            if self.json {
                let v = serde_json::json!({
                    "image_digest": imported.image_digest.to_hex(),
                    "bootable_digest": boot.to_hex(),
                });
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                outln!("{boot}")?;
            }
            return Ok(());
        }
        let bar = Bar::new();
        let opts = PullOptions {
            tagging: Tagging::None,
            require_sealed: false,
            source: self.transport.options(),
            progress: bar.as_ref().map(|b| b as &dyn PullProgress),
            ..Default::default()
        };
        let result =
            pull::pull(&repo, &reference, &opts).with_context(|| format!("reading {reference}"))?;
        drop(bar);
        print_pull(&result, self.json)
    }
}

/// `cfsctl oci seal`.
#[derive(Debug, Args)]
pub struct Seal {
    /// Repository to import into; default: a temporary one.
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    #[command(flatten)]
    transport: TransportArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// fs-verity algorithm of the published digests (repeat or comma-separate for both);
    /// default: the repository's (sha256 for a temporary one).
    #[arg(long = "algorithm", value_name = "ALG", value_delimiter = ',')]
    algorithms: Vec<Algorithm>,
    /// Publish the boot variant's digest (default: when the config has containers.bootc=1).
    #[arg(long, overrides_with = "no_bootable")]
    bootable: bool,
    /// Do not publish the boot variant's digest.
    #[arg(long)]
    no_bootable: bool,
    /// Artifact mode: leave the image untouched and write the digests (and signatures) as an
    /// OCI artifact referring to it, next to it (registry: pushed by digest and listed under
    /// the referrers tag sha256-<hex>; oci: layout: an untagged index entry).
    #[arg(long, conflicts_with = "destination")]
    artifact: bool,
    /// Sign every digest published with this private key (PEM or DER): PKCS#7 over the
    /// kernel's fsverity_formatted_digest, as `fsverity sign` does. Needs --sign-cert.
    #[arg(long, value_name = "KEY", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The certificate of --sign-key (PEM or DER).
    #[arg(long, value_name = "CERT", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// The image to seal.
    source: String,
    /// Where to write the sealed image: oci:DIR[:TAG], docker://..., any skopeo transport
    /// (not with --artifact).
    #[arg(required_unless_present = "artifact")]
    destination: Option<String>,
}

impl Seal {
    pub fn run(self) -> Result<()> {
        let src = parse_ref(&self.source)?;
        let dst = self.destination.as_deref().map(parse_ref).transpose()?;
        let signer = match (&self.sign_key, &self.sign_cert) {
            (Some(k), Some(c)) => Some(SigningKey::load(k, c)?),
            _ => None,
        };
        let (repo, _tmp) = repo_or_temp(self.repo.as_ref())?;
        let bar = Bar::new();
        let opts = SealOptions {
            source: self.transport.options(),
            dest_tls_verify: self.transport.tls_verify,
            algorithms: self.algorithms,
            bootable: match (self.bootable, self.no_bootable) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            progress: bar.as_ref().map(|b| b as &dyn PullProgress),
            signer: signer.as_ref(),
            artifact: self.artifact,
        };
        let result = seal::seal(&repo, &src, dst.as_ref(), &opts)
            .with_context(|| format!("sealing {src}"))?;
        drop(bar);
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&result)?)?;
        } else {
            // The merged digest of the first algorithm (the repository's), as `pull` prints.
            outln!("{}", result.digests[0].merged)?;
        }
        Ok(())
    }
}
