//! The host lifecycle commands: `upgrade`, `switch`, `rollback`, `status`, `pin`, `unpin`,
//! `finalize`, `etc diff`, `health-check`. They work on the booted host, or on a mounted target
//! with `--sysroot DIR --esp DIR`. Exit codes: docs/lifecycle.md ("Exit codes").

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::oci::Bar;
use super::output::{json as print_json, note, outln};
use crate::deploy::config::AutoUpdate;
use crate::deploy::etc::ConflictPolicy;
use crate::deploy::status::{DeploymentStatus, Status};
use crate::deploy::upgrade::{UpgradeOptions, UpgradeOutcome};
use crate::deploy::{Host, HostOptions, finalize, health, rollback, stage, status, upgrade};
use crate::fsverity::signature::TrustedCerts;
use crate::oci::pull::PullProgress;
use crate::oci::source::SourceOptions;

/// Exit status of `upgrade`/`switch` when there is nothing new (as rpm-ostree's
/// `--check`): scripts tell "updated" (0), "no update" (77) and "failed" (1) apart.
pub const EXIT_NO_UPDATE: u8 = 77;

/// Which host.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// Work on a mounted target whose physical root is DIR, not the booted host.
    #[arg(long, value_name = "DIR", requires = "esp")]
    sysroot: Option<PathBuf>,
    /// The ESP (default on a booted host: the partition systemd-boot was loaded from).
    #[arg(long, value_name = "DIR")]
    esp: Option<PathBuf>,
    /// Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl HostArgs {
    fn open(&self) -> Result<Host> {
        Host::open(&HostOptions {
            sysroot: self.sysroot.clone(),
            esp: self.esp.clone(),
            config: self.config.clone(),
            setup_conf: None,
        })
    }
}

/// `cfsctl upgrade` and `cfsctl switch`.
#[derive(Debug, Args)]
pub struct Upgrade {
    #[command(flatten)]
    host: HostArgs,
    /// Only fetch the manifest and say what would change; write nothing.
    #[arg(long, conflicts_with_all = ["download_only", "apply"])]
    check: bool,
    /// Download and record the update, but do not make it the next boot until `cfsctl
    /// upgrade` (or `--apply`) runs again.
    #[arg(long, conflicts_with = "apply")]
    download_only: bool,
    /// Reboot into the update (on a --sysroot target: finalize it now).
    #[arg(long)]
    apply: bool,
    /// What to do when /etc changed locally and in the new image (default: the config's
    /// etc-conflict, refuse).
    #[arg(long, value_name = "POLICY")]
    etc_conflict: Option<ConflictPolicy>,
    /// Verify registry TLS certificates (default: the config's tls-verify, true).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    tls_verify: Option<bool>,
    #[command(flatten)]
    signatures: super::signature::SignatureArgs,
    /// Do what the config's auto-update says (none, check, stage, apply): what
    /// cfsctl-upgrade.service runs.
    #[arg(long, conflicts_with_all = ["check", "download_only", "apply"])]
    auto: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `cfsctl switch`.
#[derive(Debug, Args)]
pub struct Switch {
    #[command(flatten)]
    upgrade: Upgrade,
    /// The image reference to follow from now on (docker://..., oci:DIR[:TAG]).
    reference: String,
}

impl Switch {
    pub fn run(self) -> Result<ExitCode> {
        super::oci::parse_ref(&self.reference)?;
        self.upgrade.run_with(Some(&self.reference))
    }
}

impl Upgrade {
    pub fn run(self) -> Result<ExitCode> {
        self.run_with(None)
    }

    fn run_with(mut self, origin: Option<&str>) -> Result<ExitCode> {
        let mut host = self.host.open()?;
        if self.auto {
            match host.config.auto_update {
                AutoUpdate::None => {
                    note!("cfsctl: auto-update = none in the config: nothing to do");
                    return Ok(ExitCode::SUCCESS);
                }
                AutoUpdate::Check => self.check = true,
                AutoUpdate::Stage => {}
                AutoUpdate::Apply => self.apply = true,
            }
        }
        if !self.check {
            host.lock()?;
        }
        let certs = match host.config.verity_cert.as_slice() {
            [] => None,
            paths => Some(TrustedCerts::load(paths).context("verity-cert in the host config")?),
        };
        let bar = if self.json { None } else { Bar::new() };
        let opts = UpgradeOptions {
            check: self.check,
            download_only: self.download_only,
            policy: self.etc_conflict.unwrap_or(host.config.etc_conflict),
            source: SourceOptions {
                tls_verify: self.tls_verify.unwrap_or(host.config.tls_verify),
                policy: self.signatures.options(),
            },
            progress: bar.as_ref().map(|b| b as &dyn PullProgress),
            require_sealed: host.config.require_sealed,
            verity_certs: certs.as_ref(),
            kernel_signature: host.config.kernel_signature,
        };
        let outcome = upgrade::upgrade(&host, origin, &opts)?;
        drop(bar);
        if self.json {
            print_json(&outcome)?;
        }
        let code = match &outcome {
            UpgradeOutcome::NoUpdate { origin, id, reason } => {
                if !self.json {
                    outln!("no update: {origin} gives {id} ({reason})")?;
                }
                return Ok(ExitCode::from(EXIT_NO_UPDATE));
            }
            UpgradeOutcome::Available {
                origin,
                manifest_digest,
                layers_to_fetch,
                bytes_to_fetch,
                layers_total,
            } => {
                if !self.json {
                    outln!(
                        "update available: {origin} now names {manifest_digest}: \
                         {layers_to_fetch} of {layers_total} layers to fetch ({bytes_to_fetch} bytes)"
                    )?;
                }
                ExitCode::SUCCESS
            }
            UpgradeOutcome::DownloadOnly {
                id,
                layers_fetched,
                bytes_fetched,
                ..
            } => {
                if !self.json {
                    outln!(
                        "downloaded {id} ({layers_fetched} layer(s), {bytes_fetched} bytes); \
                         `cfsctl upgrade` stages it"
                    )?;
                }
                ExitCode::SUCCESS
            }
            UpgradeOutcome::Staged {
                id,
                layers_fetched,
                bytes_fetched,
                ..
            } => {
                if !self.json {
                    outln!(
                        "staged {id} ({layers_fetched} layer(s), {bytes_fetched} bytes fetched); \
                         it becomes the next boot when the host shuts down"
                    )?;
                }
                after_staging(&host, self.apply)?;
                ExitCode::SUCCESS
            }
        };
        Ok(code)
    }
}

/// On a booted host, arms the shutdown step (and reboots with `--apply`); on a target,
/// `--apply` finalizes at once.
fn after_staging(host: &Host, apply: bool) -> Result<()> {
    if !host.is_booted() {
        if apply {
            report_finalized(finalize::finalize(host)?)?;
        }
        return Ok(());
    }
    match systemctl(&["start", "cfsctl-finalize.service"]) {
        Ok(()) => {}
        Err(e) => note!(
            "cfsctl: warning: {e:#}; run `cfsctl finalize` before rebooting, or the update \
             applies at the next shutdown that runs cfsctl-finalize.service"
        ),
    }
    if apply {
        systemctl(&["reboot"])?;
    }
    Ok(())
}

fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn report_finalized(f: Option<finalize::Finalized>) -> Result<()> {
    match f {
        None => outln!("nothing staged")?,
        Some(f) => {
            outln!("{} is now the next boot (entry {})", f.id, f.entry)?;
            if f.etc_carried > 0 || f.etc_conflicts_resolved > 0 {
                outln!(
                    "  /etc: {} local changes carried over, {} conflicts resolved by policy",
                    f.etc_carried,
                    f.etc_conflicts_resolved
                )?;
            }
            for p in &f.pruned {
                outln!("  removed deployment {p} (beyond `keep`)")?;
            }
        }
    }
    Ok(())
}

/// `cfsctl rollback`.
#[derive(Debug, Args)]
pub struct Rollback {
    #[command(flatten)]
    host: HostArgs,
    /// Reboot into it.
    #[arg(long)]
    apply: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl Rollback {
    pub fn run(self) -> Result<ExitCode> {
        let mut host = self.host.open()?;
        host.lock()?;
        let r = rollback::rollback(&host)?;
        if self.json {
            print_json(&r)?;
        } else {
            if let Some(u) = &r.unstaged {
                outln!("withdrew the staged deployment {u} (kept as download-only)")?;
            }
            outln!("{} is now the next boot (was {})", r.id, r.previous)?;
        }
        if self.apply && host.is_booted() {
            systemctl(&["reboot"])?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `cfsctl finalize`: what cfsctl-finalize.service runs at shutdown.
#[derive(Debug, Args)]
pub struct Finalize {
    #[command(flatten)]
    host: HostArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl Finalize {
    pub fn run(self) -> Result<ExitCode> {
        let mut host = self.host.open()?;
        host.lock()?;
        if let Some(s) = &host.read_state()?.staged {
            // On the console at shutdown: what the machine is doing, and when.
            note!("cfsctl: finalizing {}", s.id);
        }
        let f = finalize::finalize(&host)?;
        if self.json {
            print_json(&f)?;
        } else {
            report_finalized(f)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `cfsctl status`.
#[derive(Debug, Args)]
pub struct StatusCmd {
    #[command(flatten)]
    host: HostArgs,
    /// Print JSON (schema: docs/lifecycle.md).
    #[arg(long)]
    json: bool,
}

impl StatusCmd {
    pub fn run(self) -> Result<ExitCode> {
        let host = self.host.open()?;
        let s = status::status(&host)?;
        if self.json {
            print_json(&s)?;
        } else {
            print_status(&s)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_status(s: &Status) -> Result<()> {
    let h = &s.host;
    outln!("host {} (ESP {})", h.sysroot, h.esp)?;
    if let Some(b) = &h.booted_id {
        outln!(
            "  booted {b}, verity {}, measured {}",
            h.verity.as_deref().unwrap_or("-"),
            h.measured_digest.as_deref().unwrap_or("(not measurable)")
        )?;
    }
    if h.fallback {
        outln!("  FALLBACK: a newer deployment ran out of boot tries; the booted one took over")?;
    }
    if let Some(f) = &h.last_failure {
        outln!("  last failure ({} at {}): {}", f.step, f.at, f.error)?;
    }
    for w in &h.warnings {
        outln!("  warning: {w}")?;
    }
    outln!("deployments (boot order):")?;
    for d in &s.deployments {
        print_deployment(d)?;
    }
    for f in &h.foreign_entries {
        outln!("  (entry {f}: not cfsctl's)")?;
    }
    Ok(())
}

fn print_deployment(d: &DeploymentStatus) -> Result<()> {
    let mut flags = Vec::new();
    for (on, name) in [
        (d.booted, "booted"),
        (d.default, "default"),
        (d.rollback, "rollback"),
        (d.staged, "staged"),
        (d.download_only, "download-only"),
        (d.pinned, "pinned"),
    ] {
        if on {
            flags.push(name);
        }
    }
    let counter = match (d.tries_left, d.tries_done) {
        (Some(l), Some(t)) => format!(" ({l} tries left, {t} done)"),
        _ => String::new(),
    };
    outln!(
        "{} {} [{}] {}{counter}",
        if d.booted { "*" } else { " " },
        d.id,
        flags.join(", "),
        d.boot_state.as_str()
    )?;
    outln!(
        "    image {}  version {}  kernel {}  staged {}",
        d.image.as_deref().unwrap_or("-"),
        d.version.as_deref().unwrap_or("-"),
        d.kernel.as_deref().unwrap_or("-"),
        d.staged_at.as_deref().unwrap_or("-")
    )?;
    for p in &d.problems {
        outln!("    problem: {p}")?;
    }
    Ok(())
}

/// `cfsctl pin` / `cfsctl unpin`.
#[derive(Debug, Args)]
pub struct Pin {
    #[command(flatten)]
    host: HostArgs,
    /// The deployment: its image digest, or at least 6 hex digits of it.
    id: String,
    /// Print the result as JSON (`{"id": HEX, "pinned": BOOL}`).
    #[arg(long)]
    json: bool,
}

impl Pin {
    pub fn run(self, pinned: bool) -> Result<ExitCode> {
        let mut host = self.host.open()?;
        host.lock()?;
        let id = rollback::set_pinned(&host, &self.id, pinned)?;
        if self.json {
            print_json(&serde_json::json!({ "id": id.to_hex(), "pinned": pinned }))?;
            return Ok(ExitCode::SUCCESS);
        }
        outln!("{} {id}", if pinned { "pinned" } else { "unpinned" })?;
        Ok(ExitCode::SUCCESS)
    }
}

/// `cfsctl etc`.
#[derive(Debug, Args)]
pub struct Etc {
    #[command(subcommand)]
    command: EtcCommand,
}

#[derive(Debug, Subcommand)]
enum EtcCommand {
    /// What the host changed in /etc against the image it booted.
    Diff(EtcDiff),
}

/// `cfsctl etc diff`.
#[derive(Debug, Args)]
pub struct EtcDiff {
    #[command(flatten)]
    host: HostArgs,
    /// The deployment (default: the booted one, or the default one on a target).
    #[arg(long, value_name = "ID")]
    deployment: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Etc {
    pub fn run(self) -> Result<ExitCode> {
        let EtcCommand::Diff(d) = self.command;
        let host = d.host.open()?;
        let state = host.read_state()?;
        let id = match &d.deployment {
            Some(w) => state.find(w)?.id,
            None => upgrade::current(&host, &state)?.id,
        };
        let repo = host.repo()?;
        let changes = stage::etc_diff(&host, &repo, &id)?;
        if d.json {
            print_json(&changes)?;
        } else {
            for c in &changes {
                outln!("{c}")?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `cfsctl health-check`: what cfsctl-health-check.service runs before boot-complete.target.
#[derive(Debug, Args)]
pub struct HealthCheck {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl HealthCheck {
    pub fn run(self) -> Result<ExitCode> {
        let conf = crate::deploy::setup_conf::SetupConf::load(std::path::Path::new(
            crate::deploy::setup_conf::DEFAULT_PATH,
        ))?;
        let checks = health::run(&conf);
        let ok = checks.iter().all(|c| c.ok);
        if self.json {
            print_json(&checks)?;
        } else {
            for c in &checks {
                outln!(
                    "{} {}: {}",
                    if c.ok { "ok    " } else { "FAILED" },
                    c.name,
                    c.detail
                )?;
            }
        }
        if !ok {
            bail!("health check failed: this boot will not be marked good");
        }
        Ok(ExitCode::SUCCESS)
    }
}
