//! `gc`, `fsck`: repository maintenance, and on a host (booted from composefs with the
//! default repository, or `--sysroot`) the deployments' too.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::output::{note, outln};
use crate::deploy::{Host, HostOptions, maint};
use crate::repo::{FsckOptions, GcError, GcOptions, GcReport, Repository};

/// Which host, if any: `--sysroot`/`--esp`, or the booted one when `--repo` is the default.
#[derive(Debug, Args)]
pub struct MaybeHost {
    /// Also the deployments of the mounted target whose physical root is DIR (its repository
    /// is used).
    #[arg(long, value_name = "DIR", requires = "esp")]
    sysroot: Option<PathBuf>,
    /// The target's ESP.
    #[arg(long, value_name = "DIR")]
    esp: Option<PathBuf>,
}

impl MaybeHost {
    fn open(&self, repo: &super::RepoArg) -> Result<Option<Host>> {
        let booted = std::fs::read_to_string("/proc/cmdline")
            .ok()
            .and_then(|l| crate::boot::cmdline::parse(&l).ok().flatten())
            .is_some();
        if self.sysroot.is_none()
            && !(booted && repo.repo == std::path::Path::new(super::DEFAULT_REPO))
        {
            return Ok(None);
        }
        Host::open(&HostOptions {
            sysroot: self.sysroot.clone(),
            esp: self.esp.clone(),
            ..HostOptions::default()
        })
        .map(Some)
    }
}

/// `cfsctl gc`.
#[derive(Debug, Args)]
pub struct Gc {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Report what would be removed; remove nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Fail at once if another process has the repository open, instead of waiting.
    #[arg(long)]
    no_wait: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    host: MaybeHost,
}

impl Gc {
    pub fn run(self) -> Result<()> {
        let mut host = self.host.open(&self.repo)?;
        let repo_path = host
            .as_ref()
            .map_or(self.repo.repo.clone(), |h| h.paths.repo.clone());
        let repo = Repository::open(&repo_path)?;
        let host_report = match &mut host {
            Some(h) if !self.dry_run => {
                h.lock()?;
                Some(maint::gc(h, &repo)?)
            }
            _ => None,
        };
        let mut opts = GcOptions {
            dry_run: self.dry_run,
            wait: false,
        };
        let report = match repo.gc(opts) {
            Err(e) if !self.no_wait && matches!(e.downcast_ref(), Some(GcError::Busy(_))) => {
                note!(
                    "cfsctl: waiting for other processes to close {}",
                    repo.path().display()
                );
                opts.wait = true;
                repo.gc(opts)?
            }
            r => r?,
        };
        for d in &report.dangling_refs {
            tracing::warn!(
                "ref {} names missing object {}: left in place",
                d.name,
                d.digest
            );
        }
        if self.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&with_host(&report, &host_report)?)?
            )?;
        } else {
            if let Some(h) = &host_report {
                outln!(
                    "host: removed {} orphaned deployments, {} stale staged entries, {} boot \
                     file directories, {} temporary files",
                    h.orphans_removed.len(),
                    h.stale_staged_entries,
                    h.boot_files_removed,
                    h.temporary_files
                )?;
            }
            print_gc(&report)?;
        }
        Ok(())
    }
}

/// The repository's report as JSON, with a `host` key holding the host's part when there is
/// one (the document keeps its shape for plain repositories).
fn with_host(
    report: &impl serde::Serialize,
    host: &Option<impl serde::Serialize>,
) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(report)?;
    if let (Some(h), Some(obj)) = (host, v.as_object_mut()) {
        obj.insert("host".into(), serde_json::to_value(h)?);
    }
    Ok(v)
}

fn print_gc(r: &GcReport) -> Result<()> {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    outln!(
        "{verb} {} objects ({} bytes), {} image links, {} layer index entries, {} temporary \
         files ({} bytes); {} objects live from {} refs",
        r.objects_removed,
        r.object_bytes_freed,
        r.images_pruned,
        r.layers_pruned,
        r.tmp_removed,
        r.tmp_bytes_freed,
        r.objects_live,
        r.roots
    )?;
    Ok(())
}

/// `cfsctl fsck`: exit status 0 when clean, 1 when a problem was found.
#[derive(Debug, Args)]
pub struct Fsck {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Threads hashing objects (0, the default: all cores; at most 1024).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = super::parse_threads)]
    threads: usize,
    /// Do not read objects; check links, refs, images and object lists only.
    #[arg(long)]
    metadata_only: bool,
    #[command(flatten)]
    host: MaybeHost,
}

impl Fsck {
    pub fn run(self) -> Result<()> {
        let host = self.host.open(&self.repo)?;
        let repo_path = host
            .as_ref()
            .map_or(self.repo.repo.clone(), |h| h.paths.repo.clone());
        // fsck opens a repository others can write, to report it (insecure-permissions).
        let repo = Repository::open_for_fsck(&repo_path)?;
        let host_problems = match &host {
            Some(h) => maint::fsck(h, &repo)?,
            None => Vec::new(),
        };
        let report = repo.fsck(FsckOptions {
            threads: self.threads,
            metadata_only: self.metadata_only,
        })?;
        if self.json {
            let host = host.as_ref().map(|_| &host_problems);
            outln!(
                "{}",
                serde_json::to_string_pretty(&with_host(&report, &host)?)?
            )?;
        } else {
            for p in &host_problems {
                outln!(
                    "deployment {}: {}",
                    p.deployment.as_deref().unwrap_or("-"),
                    p.detail
                )?;
            }
            for p in &report.problems {
                outln!(
                    "{}: {}: {}",
                    p.kind,
                    repo.path().join(&p.path).display(),
                    p.detail
                )?;
            }
            outln!(
                "checked {} objects ({} bytes), {} images, {} refs: {} problems",
                report.objects_checked,
                report.bytes_checked,
                report.images_checked,
                report.refs_checked,
                report.problems.len()
            )?;
        }
        if !report.is_clean() || !host_problems.is_empty() {
            bail!(
                "{}: {} problems found",
                repo.path().display(),
                report.problems.len() + host_problems.len()
            );
        }
        Ok(())
    }
}
