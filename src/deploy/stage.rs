//! Staging a deployment: everything heavy happens here, while the host runs — the image is in
//! the repository (pulled by the caller), the `/etc` merge is checked for conflicts before
//! anything is written, the kernel and initramfs are copied to the ESP, the record is written,
//! and the boot entry is written under a name systemd-boot does not read
//! (`cfsctl-<short>.staged`). What is left for finalization (finalize.rs) is the `/etc` merge
//! itself and one rename of that entry.
//!
//! Every file is published with temporary name + fsync + rename, in an order where a crash at
//! any instant leaves the current boot order untouched: boot files before the record, the
//! record before the staged entry, the staged entry before `staged.json`.

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustix::fs::RenameFlags;
use sha2::Digest as _;

use super::etc::{self, ConflictPolicy};
use super::host::{Host, HostState, open_dir};
use super::layout::{
    self, ENTRIES_DIR, INITRD_FILE, KERNEL_FILE, LOADER_CONF, SORT_KEY, STAGED_FILE,
};
use super::record::{self, DeploymentRecord, RECORD_VERSION, StagedMarker};
use crate::boot::{BootEntry, BootableImage};
use crate::fsverity::Digest;
use crate::repo::Repository;

/// What the OCI side says about an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OciInfo {
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: Option<String>,
    /// `sha256:<hex>` of the config.
    pub config_digest: Option<String>,
    /// The `org.opencontainers.image.version` label.
    pub image_version: Option<String>,
}

/// A deployment to stage: an image already in the host's repository, and where it came from.
#[derive(Clone, Debug)]
pub struct NewDeployment {
    /// The image.
    pub image: Digest,
    /// The reference future upgrades pull.
    pub origin: Option<String>,
    /// What was pulled.
    pub source: String,
    /// Manifest, config, version.
    pub oci: OciInfo,
    /// The host's kernel arguments (not the image's).
    pub kargs: Vec<String>,
}

/// How to stage.
#[derive(Clone, Debug)]
pub struct StageOptions {
    /// Record it but do not make it the next boot.
    pub download_only: bool,
    /// What to do with `/etc` conflicts.
    pub policy: ConflictPolicy,
    /// The deployment whose `/etc` carries over (the booted one).
    pub merge_from: Option<Digest>,
    /// Tries the boot entry gets.
    pub boot_tries: u32,
}

/// The deployment record for `new` of the bootable `image`.
pub fn record_for(
    new: &NewDeployment,
    image: &BootableImage,
    boot_files: String,
) -> Result<DeploymentRecord> {
    let image_kargs =
        crate::boot::kargs::kargs_from_files(&image.kargs_files, crate::boot::kargs::host_arch())?;
    Ok(DeploymentRecord {
        version: RECORD_VERSION,
        id: new.image.to_hex(),
        origin: new.origin.clone(),
        source: new.source.clone(),
        manifest_digest: new.oci.manifest_digest.clone(),
        config_digest: new.oci.config_digest.clone(),
        image_version: new.oci.image_version.clone(),
        staged_at: record::now_rfc3339(),
        kargs: new.kargs.clone(),
        image_kargs,
        kernel_version: image.kver.clone(),
        boot_files,
        pinned: false,
        download_only: false,
    })
}

/// The boot entry of a deployment, at boot priority `priority`.
pub fn entry_for(rec: &DeploymentRecord, priority: u64) -> Result<BootEntry> {
    let id = rec.digest()?;
    let label = match &rec.image_version {
        Some(v) => format!("{v} ({})", layout::short(&id)),
        None => layout::short(&id),
    };
    let mut options = vec![format!("composefs={}", rec.id)];
    options.extend(rec.kargs.iter().cloned());
    options.extend(rec.image_kargs.iter().cloned());
    Ok(BootEntry {
        title: format!("cfsctl {label}, kernel {}", rec.kernel_version),
        sort_key: Some(SORT_KEY.to_string()),
        version: Some(priority.to_string()),
        machine_id: None,
        linux: format!("/{}/{KERNEL_FILE}", rec.boot_files),
        initrd: vec![format!("/{}/{INITRD_FILE}", rec.boot_files)],
        options,
    })
}

/// Copies the kernel and initramfs of `image` to `cfsctl/<boot-id>/` on the ESP, where
/// `<boot-id>` is a hash of both: deployments with the same kernel and initramfs share one
/// copy, and a directory of that name always holds exactly these bytes. Returns the
/// directory (relative to the ESP) and whether anything was written.
pub fn write_boot_files(esp: &Path, image: &BootableImage) -> Result<(String, bool)> {
    let mut h = sha2::Sha256::new();
    for part in [&image.vmlinuz, &image.initramfs] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let boot_id = hex::encode(&h.finalize()[..8]);
    let rel = layout::boot_files_rel(&boot_id);
    let dir = esp.join(&rel);
    let complete = [
        (KERNEL_FILE, image.vmlinuz.len()),
        (INITRD_FILE, image.initramfs.len()),
    ]
    .iter()
    .all(|(name, len)| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == *len as u64));
    if complete {
        return Ok((rel, false));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let fd = open_dir(&dir)?;
    for (name, bytes) in [
        (KERNEL_FILE, &image.vmlinuz),
        (INITRD_FILE, &image.initramfs),
    ] {
        crate::atomic::write_file(&fd, name, bytes, 0o644, RenameFlags::empty())
            .with_context(|| format!("writing {}/{name}", dir.display()))?;
    }
    rustix::fs::fsync(open_dir(dir.parent().context("boot files directory")?)?)
        .context("syncing the boot files directory")?;
    Ok((rel, true))
}

/// Removes a `default` line from `loader/loader.conf`: a pinned default entry defeats boot
/// counting's fallback (docs/lifecycle.md). Returns whether the file changed.
pub fn unpin_loader_default(esp: &Path) -> Result<bool> {
    let path = esp.join(LOADER_CONF);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| l.split_ascii_whitespace().next() != Some("default"))
        .collect();
    if kept.len() == text.lines().count() {
        return Ok(false);
    }
    let dir = open_dir(path.parent().context("loader.conf parent")?)?;
    let mut out = kept.join("\n");
    out.push('\n');
    crate::atomic::write_file(
        &dir,
        "loader.conf",
        out.as_bytes(),
        0o644,
        RenameFlags::empty(),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// Reads the `/etc` trees of `from` and `to`, plans the merge of `from`'s local changes (its
/// overlay upper directory) onto `to`'s `/etc`, and hands the plan and that directory to `f`.
pub fn with_etc_plan<T>(
    host: &Host,
    repo: &Repository,
    from: &Digest,
    to: &Digest,
    f: impl FnOnce(&etc::Plan, &Path) -> Result<T>,
) -> Result<T> {
    let (base_tree, _) = crate::boot::image::read_tree(repo, &from.to_hex())?;
    let (new_tree, _) = crate::boot::image::read_tree(repo, &to.to_hex())?;
    let base = etc::ImageEtc::new(&base_tree, repo)?;
    let new = etc::ImageEtc::new(&new_tree, repo)?;
    let upper = host.paths.deploy_dir(from).join(layout::ETC_UPPER);
    if !upper.exists() {
        // Never booted (a target), or /etc was not an overlay: no local changes. This is
        // what cfs-setup-root would create at boot.
        std::fs::create_dir_all(&upper).with_context(|| format!("creating {}", upper.display()))?;
    }
    let plan = etc::plan(&base, &upper, &new)
        .with_context(|| format!("comparing /etc of {from} with {}", upper.display()))?;
    f(&plan, &upper)
}

/// What deployment `id`'s host changed in `/etc` against its image (`cfsctl etc diff`).
pub fn etc_diff(host: &Host, repo: &Repository, id: &Digest) -> Result<Vec<etc::Change>> {
    let (tree, _) = crate::boot::image::read_tree(repo, &id.to_hex())?;
    let base = etc::ImageEtc::new(&tree, repo)?;
    let upper = host.paths.deploy_dir(id).join(layout::ETC_UPPER);
    if !upper.exists() {
        return Ok(Vec::new());
    }
    etc::diff(&base, &upper)
        .with_context(|| format!("comparing {} with /etc of {id}", upper.display()))
}

/// Stages `new` (see the module documentation). The caller holds the host lock.
pub fn stage(
    host: &Host,
    repo: &Repository,
    new: &NewDeployment,
    opts: &StageOptions,
) -> Result<DeploymentRecord> {
    let id = new.image;
    let image = BootableImage::load(repo, &id.to_hex())?;
    if !opts.download_only
        && let Some(from) = &opts.merge_from
        && host.setup_conf.etc == super::setup_conf::EtcMount::Overlay
    {
        with_etc_plan(host, repo, from, &id, |plan, _| {
            plan.resolve(opts.policy)
                .map(|_| ())
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!(
                        "staging {id}: /etc has conflicts; nothing was staged (pass \
                         --etc-conflict keep-local or take-new to resolve them)"
                    )
                })
        })?;
    }
    repo.link_image(&id)?;
    repo.set_ref(&layout::deploy_ref(&id), &id)?;
    tracing::info!("staging {id}: writing boot files");
    let (boot_files, written) = write_boot_files(host.esp(), &image)?;
    tracing::info!(
        "staging {id}: writing the record ({})",
        if written {
            "boot files written"
        } else {
            "boot files shared with another deployment"
        }
    );
    let mut rec = record_for(new, &image, boot_files)?;
    if let Some(old) = host.record(&id)? {
        rec.pinned = old.pinned;
    }
    rec.download_only = opts.download_only;
    host.write_record(&rec)?;
    // What was staged or downloaded before and never booted is superseded by this one.
    let state = host.read_state()?;
    for d in &state.deployments {
        let staged = state.staged.as_ref().is_some_and(|s| s.id == d.id.to_hex());
        if d.id != id && d.entry.is_none() && (d.download_only() || d.staged_entry || staged) {
            if staged {
                host.remove_staged_marker()?;
            }
            super::prune::remove(host, repo, d)?;
        }
    }
    if opts.download_only {
        return Ok(rec);
    }
    tracing::info!("staging {id}: writing the staged entry");
    let entries = host.entries_dir()?;
    let priority = state.max_priority() + 1;
    let text = entry_for(&rec, priority)?.render();
    crate::atomic::write_file(
        &entries,
        &layout::staged_entry_name(&id),
        text.as_bytes(),
        0o644,
        RenameFlags::empty(),
    )
    .with_context(|| {
        format!(
            "writing the staged entry in {}",
            host.esp().join(ENTRIES_DIR).display()
        )
    })?;
    let marker = StagedMarker {
        version: RECORD_VERSION,
        id: rec.id.clone(),
        merge_from: opts.merge_from.map(|d| d.to_hex()),
        etc_conflict: opts.policy.to_string(),
        boot_tries: opts.boot_tries,
    };
    record::write_json(host.state_dir(), STAGED_FILE, &marker, STAGED_FILE)?;
    unpin_loader_default(host.esp())?;
    Ok(rec)
}

/// Withdraws the staged deployment, if any: its staged entry and `staged.json` go; its
/// record stays, download-only, so `upgrade` can stage it again without a download.
pub fn unstage(host: &Host, state: &HostState) -> Result<Option<Digest>> {
    let Some(marker) = &state.staged else {
        return Ok(None);
    };
    let id = Digest::from_hex(&marker.id).context("staged.json id")?;
    host.remove_staged_marker()?;
    let entries = host.entries_dir()?;
    crate::atomic::remove_file(&entries, &layout::staged_entry_name(&id))
        .context("removing the staged entry")?;
    if let Some(mut rec) = host.record(&id)?
        && state.get(&id).is_none_or(|d| d.entry.is_none())
    {
        rec.download_only = true;
        host.write_record(&rec)?;
    }
    Ok(Some(id))
}

/// Checks a `--karg` value: one kernel argument, no `composefs=` (cfsctl writes that).
pub fn check_karg(k: &str) -> Result<()> {
    if k.is_empty() || k.chars().any(char::is_whitespace) {
        bail!("--karg '{k}' is not a single kernel argument");
    }
    if k.starts_with("composefs=") || k.starts_with("composefs.digest=") {
        bail!("--karg '{k}': cfsctl writes the composefs argument itself");
    }
    Ok(())
}

/// Makes sure the staged entry of `id` is a complete entry that sorts first when renamed in:
/// rewritten from the record when it is missing or unreadable (a power cut on FAT can leave
/// it empty), or when another command (rollback) raised priorities since staging.
pub fn ensure_staged_entry(host: &Host, state: &HostState, id: &Digest) -> Result<()> {
    let entries = host.entries_dir()?;
    let name = layout::staged_entry_name(id);
    let path = host.esp().join(ENTRIES_DIR).join(&name);
    let max = state.max_priority();
    let current = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| BootEntry::parse(&t));
    let entry = match current {
        Some(e) if e.version.as_deref().and_then(|v| v.parse::<u64>().ok()) > Some(max) => {
            return Ok(());
        }
        Some(mut e) => {
            e.version = Some((max + 1).to_string());
            e
        }
        None => {
            let rec = host.record(id)?.with_context(|| {
                format!(
                    "{}: unreadable, and deployment {id} has no record to rewrite it from",
                    path.display()
                )
            })?;
            tracing::warn!(
                "{}: missing or unreadable; rewritten from the record",
                path.display()
            );
            entry_for(&rec, max + 1)?
        }
    };
    crate::atomic::write_file(
        entries.as_fd(),
        &name,
        entry.render().as_bytes(),
        0o644,
        RenameFlags::empty(),
    )
    .with_context(|| format!("writing {}", path.display()))
}
