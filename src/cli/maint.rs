//! `gc`, `fsck`: repository maintenance.

use anyhow::{Result, bail};
use clap::Args;

use crate::repo::{FsckOptions, GcError, GcOptions, GcReport, Repository};

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
}

impl Gc {
    pub fn run(self) -> Result<()> {
        let repo = Repository::open(&self.repo.repo)?;
        let mut opts = GcOptions {
            dry_run: self.dry_run,
            wait: false,
        };
        let report = match repo.gc(opts) {
            Err(e) if !self.no_wait && matches!(e.downcast_ref(), Some(GcError::Busy(_))) => {
                eprintln!(
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
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_gc(&report);
        }
        Ok(())
    }
}

fn print_gc(r: &GcReport) {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} objects ({} bytes), {} image links, {} temporary files ({} bytes); \
         {} objects live from {} refs",
        r.objects_removed,
        r.object_bytes_freed,
        r.images_pruned,
        r.tmp_removed,
        r.tmp_bytes_freed,
        r.objects_live,
        r.roots
    );
}

/// `cfsctl fsck`: exit status 0 when clean, 1 when a problem was found.
#[derive(Debug, Args)]
pub struct Fsck {
    #[command(flatten)]
    repo: super::RepoArg,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Threads hashing objects (default: all cores).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// Do not read objects; check links, refs, images and object lists only.
    #[arg(long)]
    metadata_only: bool,
}

impl Fsck {
    pub fn run(self) -> Result<()> {
        let repo = Repository::open(&self.repo.repo)?;
        let report = repo.fsck(FsckOptions {
            threads: self.threads,
            metadata_only: self.metadata_only,
        })?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            for p in &report.problems {
                println!(
                    "{}: {}: {}",
                    p.kind,
                    repo.path().join(&p.path).display(),
                    p.detail
                );
            }
            println!(
                "checked {} objects ({} bytes), {} images, {} refs: {} problems",
                report.objects_checked,
                report.bytes_checked,
                report.images_checked,
                report.refs_checked,
                report.problems.len()
            );
        }
        if !report.is_clean() {
            bail!(
                "{}: {} problems found",
                repo.path().display(),
                report.problems.len()
            );
        }
        Ok(())
    }
}
