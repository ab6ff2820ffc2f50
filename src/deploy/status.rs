//! `status`: every deployment and what the host knows about booting it, as one value the CLI
//! prints as text or JSON (schema: docs/lifecycle.md, "status --json"). Read-only, no lock.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::esp::loader_var;
use super::health::RootMount;
use super::host::{Host, HostState};
use super::layout::LOADER_CONF;
use super::record::Failure;
use crate::boot::BootState;
use crate::fsverity::Digest;
use crate::fsverity::ioctl::{MeasureError, measure_verity};
use crate::repo::Repository;

/// The version of the JSON document.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// The whole status document.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// [`STATUS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Facts about the host and its boot loader.
    pub host: HostFacts,
    /// Every deployment: in boot order, then staged, download-only and orphaned ones.
    pub deployments: Vec<DeploymentStatus>,
}

/// Host-wide facts.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostFacts {
    /// The physical root.
    pub sysroot: String,
    /// The ESP used.
    pub esp: String,
    /// The image the kernel command line names (booted host only).
    pub booted_id: Option<String>,
    /// Its fs-verity digest as the kernel measures it now (or computed, without verity).
    pub measured_digest: Option<String>,
    /// `require` when `/` is the composefs overlay with `verity=require`, `off` when it is
    /// the overlay without it, `null` when not booted from composefs.
    pub verity: Option<String>,
    /// A deployment with a higher boot priority than the booted one ran out of tries, so the
    /// boot loader fell back to the booted one.
    pub fallback: bool,
    /// The entry systemd-boot booted (`LoaderEntrySelected`).
    pub loader_entry_selected: Option<String>,
    /// The staged deployment.
    pub staged: Option<String>,
    /// The last staging or finalization failure.
    pub last_failure: Option<Failure>,
    /// Boot entries cfsctl did not write, in boot order.
    pub foreign_entries: Vec<String>,
    /// Things that defeat or endanger the lifecycle (a pinned default entry...).
    pub warnings: Vec<String>,
}

/// One deployment.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    /// The composefs image digest (hex).
    pub id: String,
    /// The origin image reference (`null` when installed without one).
    pub image: Option<String>,
    /// The running system booted it.
    pub booted: bool,
    /// It boots next.
    pub default: bool,
    /// `rollback` would make it the next boot.
    pub rollback: bool,
    /// Staged: it becomes the next boot when the host shuts down (finalization).
    pub staged: bool,
    /// Downloaded, waiting for `cfsctl upgrade` to stage it.
    pub download_only: bool,
    /// Kept whatever `keep` says.
    pub pinned: bool,
    /// `good`, `indeterminate` or `bad`.
    pub boot_state: BootState,
    /// Boot counter: tries left (`null` without a counter).
    pub tries_left: Option<u32>,
    /// Boot counter: tries done.
    pub tries_done: Option<u32>,
    /// The boot entry file.
    pub entry: Option<String>,
    /// Its boot priority.
    pub priority: Option<u64>,
    /// The image's version label.
    pub version: Option<String>,
    /// OCI manifest digest.
    pub manifest_digest: Option<String>,
    /// OCI config digest.
    pub config_digest: Option<String>,
    /// When it was staged or installed.
    pub staged_at: Option<String>,
    /// Kernel version.
    pub kernel: Option<String>,
    /// The entry's kernel command line.
    pub kargs: Vec<String>,
    /// What is wrong with it (missing image, record or boot files; orphaned).
    pub problems: Vec<String>,
}

/// Reads the status of `host`.
pub fn status(host: &Host) -> Result<Status> {
    let state = host.read_state()?;
    let repo = host.repo().ok();
    let booted = host.booted.as_ref().map(|b| b.digest);
    let default = state.default().map(|d| d.id);
    let rollback = state.rollback().map(|d| d.id);
    let staged = state.staged.as_ref().map(|s| s.id.clone());
    let mut deployments = Vec::new();
    for d in &state.deployments {
        let entry = d.entry.as_ref();
        let rec = d.record.as_ref();
        let mut problems = Vec::new();
        if let Some(e) = &d.record_error {
            problems.push(format!("record unreadable: {e}"));
        } else if rec.is_none() {
            problems.push("no deployment record".into());
        }
        match &repo {
            Some(r) if !r.has_image(&d.id) => {
                problems.push("image missing from the repository".into());
            }
            None => problems.push("repository unreadable".into()),
            _ => {}
        }
        if let Some(e) = entry {
            let kernel = host.esp().join(e.entry.linux.trim_start_matches('/'));
            if !kernel.is_file() {
                problems.push(format!("kernel {} missing on the ESP", e.entry.linux));
            }
        }
        let is_staged = staged.as_deref() == Some(&d.id.to_hex());
        if entry.is_none() && !is_staged && !d.download_only() {
            problems.push("orphan: a record without a boot entry (`cfsctl gc` removes it)".into());
        }
        deployments.push(DeploymentStatus {
            id: d.id.to_hex(),
            image: rec.and_then(|r| r.origin.clone()),
            booted: Some(d.id) == booted,
            default: Some(d.id) == default,
            rollback: Some(d.id) == rollback,
            staged: is_staged,
            download_only: d.download_only(),
            pinned: d.pinned(),
            boot_state: d.boot_state(),
            tries_left: entry.and_then(|e| e.name.tries_left),
            tries_done: entry.and_then(|e| e.name.tries_done),
            entry: entry.map(|e| e.file_name.clone()),
            priority: entry.map(|e| e.priority()),
            version: rec.and_then(|r| r.image_version.clone()),
            manifest_digest: rec.and_then(|r| r.manifest_digest.clone()),
            config_digest: rec.and_then(|r| r.config_digest.clone()),
            staged_at: rec.map(|r| r.staged_at.clone()),
            kernel: rec.map(|r| r.kernel_version.clone()),
            kargs: entry.map(|e| e.entry.options.clone()).unwrap_or_default(),
            problems,
        });
    }
    Ok(Status {
        schema_version: STATUS_SCHEMA_VERSION,
        host: facts(host, &state, repo.as_ref(), booted),
        deployments,
    })
}

fn facts(
    host: &Host,
    state: &HostState,
    repo: Option<&Repository>,
    booted: Option<Digest>,
) -> HostFacts {
    let mut warnings = Vec::new();
    if let Some(v) = loader_var("LoaderEntryDefault") {
        warnings.push(format!(
            "the EFI variable LoaderEntryDefault pins entry {v}: boot counting cannot fall back \
             (`bootctl set-default ''` clears it)"
        ));
    }
    if let Some(v) = loader_var("LoaderEntryOneShot") {
        warnings.push(format!("the next boot is a one-shot boot of entry {v}"));
    }
    if loader_conf_pins_default(host.esp()) {
        warnings.push(format!(
            "{} names a default entry: boot counting cannot fall back (the next upgrade \
             removes that line)",
            host.esp().join(LOADER_CONF).display()
        ));
    }
    for b in &state.broken_entries {
        warnings.push(format!(
            "entry {b} is not a boot entry (empty after a power cut?): systemd-boot skips it; \
             `cfsctl gc` removes it"
        ));
    }
    if let Some(first) = state.boot_order.first()
        && !first.ours
    {
        warnings.push(format!(
            "entry {} (not cfsctl's) sorts first and boots next",
            first.file_name
        ));
    }
    let booted_priority = booted
        .and_then(|b| state.get(&b))
        .and_then(|d| d.entry.as_ref())
        .map(|e| e.priority());
    let fallback = booted_priority.is_some_and(|p| {
        state
            .boot_order
            .iter()
            .any(|e| e.ours && e.name.state() == BootState::Bad && e.priority() > p)
    });
    HostFacts {
        sysroot: host.paths.sysroot.display().to_string(),
        esp: host.esp().display().to_string(),
        booted_id: booted.map(|b| b.to_hex()),
        measured_digest: booted.and_then(|b| measure_image(repo, &b)),
        verity: booted.map(|_| root_verity()),
        fallback,
        loader_entry_selected: loader_var("LoaderEntrySelected"),
        staged: state.staged.as_ref().map(|s| s.id.clone()),
        last_failure: state.failure.clone(),
        foreign_entries: state
            .boot_order
            .iter()
            .filter(|e| !e.ours)
            .map(|e| e.file_name.clone())
            .collect(),
        warnings,
    }
}

fn loader_conf_pins_default(esp: &Path) -> bool {
    std::fs::read_to_string(esp.join(LOADER_CONF)).is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_ascii_whitespace().next() == Some("default"))
    })
}

/// The booted image's digest as the kernel measures it (computed when it has no verity).
fn measure_image(repo: Option<&Repository>, id: &Digest) -> Option<String> {
    let file = repo?.open_object(id).ok()?;
    match measure_verity(&file) {
        Ok(d) => Some(d.to_hex()),
        Err(MeasureError::NoVerity | MeasureError::NotSupported) => {
            crate::fsverity::ioctl::compute_digest_at(&file, id.algorithm())
                .ok()
                .map(|d| d.to_hex())
        }
        Err(MeasureError::Io(_)) => None,
    }
}

/// `require` / `off` for the composefs overlay on `/`, from /proc/self/mountinfo.
pub fn root_verity() -> String {
    match RootMount::current() {
        Some(r) if r.fstype == "overlay" && r.source.starts_with("composefs:") => {
            if r.verity { "require" } else { "off" }.into()
        }
        _ => "not a composefs overlay".into(),
    }
}
