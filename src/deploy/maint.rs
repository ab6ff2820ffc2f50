//! Host-level `gc` and `fsck`: the deployments, entries and boot files of a host, next to
//! the repository's own checks (which the caller runs too).

use anyhow::{Context, Result};
use serde::Serialize;

use super::host::{Host, open_dir};
use super::layout::{self, ENTRIES_DIR};
use crate::atomic::TMP_PREFIX;
use crate::repo::Repository;

/// What host `gc` removed.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostGc {
    /// Orphaned deployments (a record or state without an entry, not staged, not
    /// download-only).
    pub orphans_removed: Vec<String>,
    /// Staged entries no `staged.json` names, and `cfsctl-*.conf` files that are not
    /// entries.
    pub stale_staged_entries: usize,
    /// `cfsctl/<boot-id>` directories no entry names.
    pub boot_files_removed: usize,
    /// Temporary files left by interrupted writes.
    pub temporary_files: usize,
}

/// Removes what no deployment needs. The caller holds the host lock (so no write is in
/// flight) and runs the repository's `gc` afterwards, which frees the images and objects of
/// the deployments removed here.
pub fn gc(host: &Host, repo: &Repository) -> Result<HostGc> {
    let mut report = HostGc::default();
    let state = host.read_state()?;
    let staged = state.staged.as_ref().map(|s| s.id.clone());
    for d in &state.deployments {
        let is_staged = staged.as_deref() == Some(&d.id.to_hex());
        if d.entry.is_none() && !is_staged && !d.download_only() {
            super::prune::remove(host, repo, d)
                .with_context(|| format!("removing orphaned deployment {}", d.id))?;
            report.orphans_removed.push(d.id.to_hex());
        }
    }
    let entries = host.entries_dir()?;
    for name in &state.staged_entries {
        let wanted = staged
            .as_deref()
            .and_then(|s| crate::fsverity::Digest::from_hex(s).ok())
            .map(|d| layout::staged_entry_name(&d));
        if wanted.as_deref() != Some(name.as_str()) {
            crate::atomic::remove_file(&entries, name)?;
            report.stale_staged_entries += 1;
        }
    }
    for name in &state.broken_entries {
        crate::atomic::remove_file(&entries, name)?;
        report.stale_staged_entries += 1;
    }
    for dir in [host.esp().join(ENTRIES_DIR), host.paths.state.clone()] {
        for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) && e.file_type()?.is_file() {
                std::fs::remove_file(e.path())
                    .with_context(|| format!("removing {}", e.path().display()))?;
                report.temporary_files += 1;
            }
        }
        rustix::fs::fsync(open_dir(&dir)?)?;
    }
    report.boot_files_removed = super::prune::remove_unused_boot_files(host)?;
    Ok(report)
}

/// A problem of a host's deployments.
#[derive(Clone, Debug, Serialize)]
pub struct HostProblem {
    /// The deployment (hex), when the problem is one's.
    pub deployment: Option<String>,
    /// What is wrong.
    pub detail: String,
}

/// Checks that every entry's image, record, ref and boot files exist, and that the staged
/// marker names a staged deployment. Orphaned records are garbage, not damage: `status`
/// lists them and `gc` removes them.
pub fn fsck(host: &Host, repo: &Repository) -> Result<Vec<HostProblem>> {
    let state = host.read_state()?;
    let mut problems = Vec::new();
    let mut add = |id: Option<String>, detail: String| {
        problems.push(HostProblem {
            deployment: id,
            detail,
        })
    };
    for d in &state.deployments {
        let hex = Some(d.id.to_hex());
        let Some(e) = &d.entry else { continue };
        if !repo.has_image(&d.id) {
            add(
                hex.clone(),
                format!(
                    "entry {} boots an image missing from {}",
                    e.file_name,
                    repo.path().display()
                ),
            );
        }
        if repo.resolve_ref(&layout::deploy_ref(&d.id)).is_err() {
            add(
                hex.clone(),
                format!("no ref {} keeps its image", layout::deploy_ref(&d.id)),
            );
        }
        if let Some(err) = &d.record_error {
            add(hex.clone(), format!("record unreadable: {err}"));
        } else if d.record.is_none() {
            add(
                hex.clone(),
                format!("entry {} has no deployment record", e.file_name),
            );
        }
        for f in std::iter::once(&e.entry.linux).chain(&e.entry.initrd) {
            if !host.esp().join(f.trim_start_matches('/')).is_file() {
                add(
                    hex.clone(),
                    format!("entry {} names {f}, missing on the ESP", e.file_name),
                );
            }
        }
    }
    if let Some(s) = &state.staged {
        let known = state.deployments.iter().find(|d| d.id.to_hex() == s.id);
        match known {
            None => add(
                Some(s.id.clone()),
                "staged.json names a deployment that does not exist".into(),
            ),
            Some(d) if !d.staged_entry && d.entry.is_none() => add(
                Some(s.id.clone()),
                "staged.json names a deployment with neither a staged entry nor an entry".into(),
            ),
            _ => {}
        }
    }
    Ok(problems)
}
