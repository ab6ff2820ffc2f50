//! Removing deployments: those beyond the `keep` setting after a finalization, and the
//! orphans `gc` finds. A deployment is removed entry first (so it can no longer boot), then
//! its record and `/etc` state, then the repository ref that kept its image; boot files no
//! entry names any more go last. A crash in between leaves an orphan record or unreferenced
//! files, which the next `gc` removes; never an entry naming something missing.

use std::collections::HashSet;

use anyhow::{Context, Result};

use super::host::{Deployment, Host, HostState, open_dir};
use super::layout::{self, BOOT_FILES_DIR, DEPLOY_DIR, ENTRIES_DIR};
use crate::boot::BootEntry;
use crate::fsverity::Digest;
use crate::repo::{RepoError, Repository};

/// Removes the deployments beyond `keep` unpinned ones in boot order; the booted, pinned,
/// staged and download-only ones always stay. Returns the removed ids.
pub fn prune(host: &Host, repo: &Repository, state: &HostState) -> Result<Vec<Digest>> {
    let staged = state.staged.as_ref().map(|s| s.id.clone());
    let booted = host.booted.as_ref().map(|b| b.digest);
    let with_entry = || state.deployments.iter().filter(|d| d.entry.is_some());
    // The booted deployment counts toward `keep` ("the booted one and one rollback").
    let mut budget = host.config.keep;
    if with_entry().any(|d| Some(d.id) == booted && !d.pinned()) {
        budget = budget.saturating_sub(1);
    }
    let mut doomed = Vec::new();
    for d in with_entry() {
        let protected =
            d.pinned() || Some(d.id) == booted || staged.as_deref() == Some(&d.id.to_hex());
        if protected {
            continue;
        }
        if budget > 0 {
            budget -= 1;
            continue;
        }
        doomed.push(d);
    }
    let mut removed = Vec::new();
    for d in doomed {
        remove(host, repo, d)?;
        removed.push(d.id);
    }
    if !removed.is_empty() {
        remove_unused_boot_files(host)?;
    }
    Ok(removed)
}

/// Removes one deployment (entry, staged entry, record and state, ref).
pub fn remove(host: &Host, repo: &Repository, d: &Deployment) -> Result<()> {
    let entries = host.entries_dir()?;
    if let Some(e) = &d.entry {
        crate::atomic::remove_file(&entries, &e.file_name)
            .with_context(|| format!("removing entry {}", e.file_name))?;
    }
    if d.staged_entry {
        crate::atomic::remove_file(&entries, &layout::staged_entry_name(&d.id))?;
    }
    let dir = host.paths.deploy_dir(&d.id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => rustix::fs::fsync(open_dir(&host.paths.state.join(DEPLOY_DIR))?)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
    }
    match repo.remove_ref(&layout::deploy_ref(&d.id)) {
        Err(e) if !matches!(e.downcast_ref(), Some(RepoError::MissingRef(_))) => Err(e),
        _ => Ok(()),
    }
}

/// Removes `cfsctl/<boot-id>` directories no entry (staged ones included) refers to.
/// Returns how many went.
pub fn remove_unused_boot_files(host: &Host) -> Result<usize> {
    let esp = host.esp();
    let entries_dir = esp.join(ENTRIES_DIR);
    let mut used = HashSet::new();
    if let Ok(rd) = std::fs::read_dir(&entries_dir) {
        for e in rd.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            if let Some(entry) = BootEntry::parse(&text) {
                for p in std::iter::once(&entry.linux).chain(&entry.initrd) {
                    if let Some(dir) = p.trim_start_matches('/').rsplit_once('/') {
                        used.insert(dir.0.to_string());
                    }
                }
            }
        }
    }
    let root = esp.join(BOOT_FILES_DIR);
    let mut removed = 0;
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(0);
    };
    for e in rd {
        let e = e?;
        let rel = format!("{BOOT_FILES_DIR}/{}", e.file_name().to_string_lossy());
        if !used.contains(&rel) && e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
            removed += 1;
        }
    }
    if removed > 0 {
        rustix::fs::fsync(open_dir(&root)?)?;
    }
    Ok(removed)
}
