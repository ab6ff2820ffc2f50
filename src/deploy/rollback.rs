//! `rollback`: the deployment after the default in boot order becomes the default, by
//! rewriting its entry with a priority above all others (same file name, so its boot counter
//! is kept; temporary file + fsync + rename over it). Running it again swaps them back. A
//! staged deployment is withdrawn first (kept as download-only).

use anyhow::{Context, Result};
use rustix::fs::RenameFlags;
use serde::Serialize;

use super::host::Host;
use super::layout::ENTRIES_DIR;
use crate::fsverity::Digest;

/// What `rollback` did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolledBack {
    /// The deployment that is now the next boot.
    #[serde(serialize_with = "super::hex")]
    pub id: Digest,
    /// The one that was.
    #[serde(serialize_with = "super::hex")]
    pub previous: Digest,
    /// A staged deployment withdrawn on the way.
    #[serde(serialize_with = "super::hex_opt")]
    pub unstaged: Option<Digest>,
}

/// Makes the rollback deployment the next boot. The caller holds the host lock.
pub fn rollback(host: &Host) -> Result<RolledBack> {
    let state = host.read_state()?;
    let unstaged = super::stage::unstage(host, &state)?;
    let state = if unstaged.is_some() {
        host.read_state()?
    } else {
        state
    };
    let default = state
        .default()
        .context("no cfsctl entry boots next (see `cfsctl status`)")?;
    let target = state.rollback().with_context(|| {
        format!(
            "no deployment to roll back to: {} is the only one that is not bad",
            default.id
        )
    })?;
    let entry = target
        .entry
        .as_ref()
        .context("rollback target without entry")?;
    let mut new = entry.entry.clone();
    new.version = Some((state.max_priority() + 1).to_string());
    let entries = host.entries_dir()?;
    crate::atomic::write_file(
        &entries,
        &entry.file_name,
        new.render().as_bytes(),
        0o644,
        RenameFlags::empty(),
    )
    .with_context(|| {
        format!(
            "rewriting {}",
            host.esp()
                .join(ENTRIES_DIR)
                .join(&entry.file_name)
                .display()
        )
    })?;
    rustix::fs::syncfs(&entries).context("syncing the ESP")?;
    Ok(RolledBack {
        id: target.id,
        previous: default.id,
        unstaged,
    })
}

/// Pins or unpins deployment `what` (an id or unique prefix); returns its id.
pub fn set_pinned(host: &Host, what: &str, pinned: bool) -> Result<Digest> {
    let state = host.read_state()?;
    let d = state.find(what)?;
    let mut rec = d.record.clone().with_context(|| {
        format!(
            "deployment {} has no record to pin{}",
            d.id,
            d.record_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    })?;
    if rec.pinned != pinned {
        rec.pinned = pinned;
        host.write_record(&rec)?;
    }
    Ok(d.id)
}
