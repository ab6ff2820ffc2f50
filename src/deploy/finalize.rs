//! Finalization: what is left of an update for shutdown (`cfsctl-finalize.service` runs
//! `cfsctl finalize` as its stop command), done in this order:
//! 1. the `/etc` merge: the booted deployment's local changes as they are now, onto the new
//!    image's `/etc`, written as the new deployment's upper directory (temporary name, then
//!    rename). A conflict that appeared since staging, under the `refuse` policy, stops here:
//!    the failure is recorded for `status`, the old deployment stays the next boot, the staged
//!    one stays staged, and the shutdown goes on (bootc#1924, composefs-rs#335);
//! 2. the commit point: one rename of `cfsctl-<short>.staged` to `cfsctl-<short>+<tries>.conf`
//!    on the ESP, then a directory fsync and a syncfs of the ESP;
//! 3. `staged.json` removed, then pruning (pruning only removes things).
//!
//! A crash before 2 leaves the old boot order; after it, the new one; `finalize` run again
//! completes whatever step was interrupted.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::etc::{self, ConflictPolicy};
use super::host::{Host, HostState, open_dir};
use super::layout::{self, ENTRIES_DIR, ETC_UPPER};
use crate::boot::EntryName;
use crate::fsverity::Digest;
use crate::repo::Repository;

/// What `finalize` did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finalized {
    /// The deployment that is now the next boot.
    #[serde(serialize_with = "super::hex")]
    pub id: Digest,
    /// Its entry file.
    pub entry: String,
    /// `/etc` paths carried over from the booted deployment.
    pub etc_carried: usize,
    /// Conflicting `/etc` paths resolved by the policy (keep-local / take-new).
    pub etc_conflicts_resolved: usize,
    /// Deployments removed because more than `keep` unpinned ones were left.
    #[serde(serialize_with = "super::hex_list")]
    pub pruned: Vec<Digest>,
}

/// Finalizes the staged deployment; `Ok(None)` when nothing is staged. The caller holds the
/// host lock.
pub fn finalize(host: &Host) -> Result<Option<Finalized>> {
    let state = host.read_state()?;
    let Some(marker) = state.staged.clone() else {
        return Ok(None);
    };
    let id = Digest::from_hex(&marker.id).context("staged.json names no valid deployment")?;
    let result = finalize_staged(
        host,
        &state,
        &id,
        &marker.merge_from,
        &marker.etc_conflict,
        marker.boot_tries,
    );
    match &result {
        Ok(_) => host.clear_failure()?,
        Err(e) => host.record_failure("finalize", Some(&id), e),
    }
    result.map(Some)
}

fn finalize_staged(
    host: &Host,
    state: &HostState,
    id: &Digest,
    merge_from: &Option<String>,
    policy: &str,
    tries: u32,
) -> Result<Finalized> {
    let staged_name = layout::staged_entry_name(id);
    let entries_path = host.esp().join(ENTRIES_DIR);
    let existing = state.get(id).and_then(|d| d.entry.clone());
    if !state.staged_entries.contains(&staged_name)
        && let Some(entry) = existing.clone()
    {
        // Interrupted after the commit point: the entry is in place, only the marker is left.
        host.remove_staged_marker()?;
        return Ok(Finalized {
            id: *id,
            entry: entry.file_name,
            etc_carried: 0,
            etc_conflicts_resolved: 0,
            pruned: Vec::new(),
        });
    }
    let repo = host.repo()?;
    let policy: ConflictPolicy = policy.parse().map_err(anyhow::Error::msg)?;
    let (etc_carried, etc_conflicts_resolved) = match merge_from {
        Some(from) if host.setup_conf.etc == super::setup_conf::EtcMount::Overlay => {
            let from = Digest::from_hex(from).context("staged.json mergeFrom")?;
            merge_etc(host, &repo, &from, id, policy)?
        }
        _ => (0, 0),
    };

    super::stage::ensure_staged_entry(host, state, id)?;
    let name = EntryName {
        id: layout::entry_id(id),
        tries_left: Some(tries),
        tries_done: Some(0),
    }
    .file_name();
    let entries = open_dir(&entries_path)?;
    // Empty entry files of this deployment (a cut during an earlier rename on FAT) go first.
    for broken in state
        .broken_entries
        .iter()
        .filter(|b| b.starts_with(&layout::entry_id(id)))
    {
        crate::atomic::remove_file(&entries, broken)
            .with_context(|| format!("removing the unreadable entry {broken}"))?;
    }
    crate::atomic::rename(&entries, &staged_name, &name).with_context(|| {
        format!(
            "renaming {staged_name} to {name} in {}",
            entries_path.display()
        )
    })?;
    rustix::fs::syncfs(&entries).context("syncing the ESP")?;
    // An entry the same deployment had before (it was deployed, then replaced and staged
    // again) goes now that the new one is in place.
    if let Some(old) = existing.filter(|e| e.file_name != name) {
        crate::atomic::remove_file(&entries, &old.file_name)
            .with_context(|| format!("removing the old entry {}", old.file_name))?;
    }
    host.remove_staged_marker()?;
    let pruned = super::prune::prune(host, &repo, &host.read_state()?)?;
    Ok(Finalized {
        id: *id,
        entry: name,
        etc_carried,
        etc_conflicts_resolved,
        pruned,
    })
}

/// Writes `to`'s `/etc` upper directory from `from`'s local changes. Returns (entries
/// carried, conflicts resolved by the policy).
fn merge_etc(
    host: &Host,
    repo: &Repository,
    from: &Digest,
    to: &Digest,
    policy: ConflictPolicy,
) -> Result<(usize, usize)> {
    let dest = host.paths.deploy_dir(to).join(ETC_UPPER);
    super::stage::with_etc_plan(host, repo, from, to, |plan, upper_src| {
        plan.resolve(policy)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "finalizing {to}: /etc changed since staging and now conflicts; the booted \
                 deployment stays the next boot"
                )
            })?;
        replace_dir(&dest)?;
        let report = etc::apply(plan, policy, upper_src, &dest)
            .with_context(|| format!("writing the merged /etc into {}", dest.display()))?;
        Ok((report.copied + report.whiteouts, report.resolved.len()))
    })
}

/// Moves an existing directory out of the way (a deployment staged again, or a merge
/// interrupted after its rename) so the merge can write a fresh one.
fn replace_dir(dest: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dest).is_err() {
        let parent = dest.parent().context("upper directory without parent")?;
        return std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()));
    }
    let old = dest.with_file_name(format!("upper.old-{}", std::process::id()));
    std::fs::rename(dest, &old).with_context(|| format!("moving {} aside", dest.display()))?;
    std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))
}
