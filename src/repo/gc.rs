//! Garbage collection (mark & sweep) and the liveness rule it shares with fsck.
//!
//! Liveness (also in `docs/repository.md`, "What keeps an object alive"):
//! - the roots are the refs (`refs/**`); `images/` links are *not* roots (as in composefs-rs),
//!   so an image nobody names is collected: `create-image --repo --ref NAME` names one;
//! - an object a ref names is live, and is *expanded* by its content:
//!   - a composefs image (composefs header magic at offset 0): every object it references
//!     (`trusted.overlay.redirect` / `metacopy` digest) is live; those are not expanded;
//!   - an object list (first line [`OBJECT_LIST_MAGIC`]): every listed object is live and is
//!     expanded in turn (so a list may name images and other lists);
//!   - anything else (file content, OCI JSON): live itself, nothing more.
//! - an `images/<hex>` link stays exactly when its object is live.
//!
//! Sweep order makes an interrupted run harmless: `images/` links to dead objects are removed
//! and the directory fsynced *before* any object is unlinked, so a crash leaves at worst
//! unreferenced objects (removed by the next run), never a link or ref naming a missing object
//! that was not already missing.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use super::layers::LAYERS;
use super::{
    ExclusiveLock, IMAGES, OBJECTS, REFS, RepoError, Repository, TMP_PREFIX, object_path_digest,
};
use crate::erofs::format::COMPOSEFS_MAGIC;
use crate::erofs::reader::referenced_objects;
use crate::fsverity::Digest;

/// First line of an object list: an object naming other objects to keep alive, one
/// lower-case hex digest per line after it, each line ending in `\n`.
pub const OBJECT_LIST_MAGIC: &str = "cfsctl-object-list 1\n";

/// A `.tmp-*` file is stale when it was last modified this long before the exclusive lock was
/// taken. No other process can hold the repository then, but threads of this process can;
/// the margin also covers the coarse clock behind file timestamps.
const TMP_MIN_AGE: Duration = Duration::from_secs(2);

/// Errors of [`Repository::gc`] a caller may act on.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Another process holds the repository open and waiting was not allowed.
    #[error("{0}: the repository is in use by another process (a pull or mount is running)")]
    Busy(PathBuf),
    /// An object a root reaches cannot be read, so what it keeps alive is unknown: nothing is
    /// removed.
    #[error("ref {root}: {path}: {reason}; refusing to collect (run `cfsctl fsck`)")]
    UnreadableRoot {
        /// The ref through which the object was reached.
        root: String,
        /// The object (`objects/XX/rest`).
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What [`Repository::gc`] should do.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Count what would be removed, remove nothing.
    pub dry_run: bool,
    /// Wait for other processes to close the repository instead of failing with
    /// [`GcError::Busy`].
    pub wait: bool,
}

/// A ref naming an object that is not stored (kept, reported).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DanglingRef {
    /// The ref name under `refs/`.
    pub name: String,
    /// The digest it names.
    pub digest: String,
}

/// What a garbage collection did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Nothing was removed.
    pub dry_run: bool,
    /// Refs (roots) walked.
    pub roots: u64,
    /// Stored objects kept because a root reaches them.
    pub objects_live: u64,
    /// Objects removed.
    pub objects_removed: u64,
    /// Bytes of removed objects (file sizes).
    pub object_bytes_freed: u64,
    /// `images/` links removed (their object was unreachable or missing).
    pub images_pruned: u64,
    /// `layers/` index entries removed (their layer image was unreachable or missing).
    pub layers_pruned: u64,
    /// Stale `.tmp-*` files removed.
    pub tmp_removed: u64,
    /// Bytes of those.
    pub tmp_bytes_freed: u64,
    /// Refs whose object is missing: left in place for the user to repair or remove.
    pub dangling_refs: Vec<DanglingRef>,
}

/// What an object keeps alive, by its content.
#[derive(Debug)]
pub(super) enum Links {
    /// Plain content: nothing else.
    Leaf,
    /// A composefs image: these object paths (`XX/rest`, as the image names them).
    Image(Vec<String>),
    /// An object list: these objects, each expanded in turn.
    List(Vec<Digest>),
}

/// Why an object's links could not be read.
#[derive(Debug)]
pub(super) enum LinkError {
    Missing,
    BrokenImage(String),
    BrokenList(String),
    Io(io::Error),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Missing => f.write_str("object is missing"),
            LinkError::BrokenImage(e) => write!(f, "unreadable composefs image: {e}"),
            LinkError::BrokenList(e) => write!(f, "malformed object list: {e}"),
            LinkError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Parses an object list. `None` when `bytes` is not one (no magic line).
pub fn parse_object_list(bytes: &[u8]) -> Option<Result<Vec<Digest>, String>> {
    let body = bytes.strip_prefix(OBJECT_LIST_MAGIC.as_bytes())?;
    let parse = || {
        let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
        let Some(text) = text.strip_suffix('\n').or(text.is_empty().then_some("")) else {
            return Err("last line does not end in a newline".to_string());
        };
        let mut out = Vec::new();
        for (i, line) in text.split('\n').enumerate().filter(|_| !text.is_empty()) {
            let d = Digest::from_hex(line).map_err(|e| format!("line {}: {e}", i + 2))?;
            if d.to_hex() != line {
                return Err(format!("line {}: digest not in lower-case hex", i + 2));
            }
            out.push(d);
        }
        Ok(out)
    };
    Some(parse())
}

/// The bytes of an object list naming `members` (sorted, without duplicates, so equal sets
/// give equal digests).
pub fn format_object_list(members: &[Digest]) -> Vec<u8> {
    let mut sorted = members.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut out = OBJECT_LIST_MAGIC.as_bytes().to_vec();
    for d in sorted {
        out.extend_from_slice(d.to_hex().as_bytes());
        out.push(b'\n');
    }
    out
}

impl Repository {
    /// Stores an object list naming `members` (each must already be stored) and returns its
    /// digest. Point a ref at it ([`set_ref`](Self::set_ref)) to keep every member, and
    /// everything each member keeps, alive: e.g. an OCI tag naming its manifest, config and
    /// layer images.
    pub fn write_object_list(&self, members: &[Digest]) -> Result<Digest> {
        for d in members {
            self.check_algorithm(d)?;
            if !self.has_object(d) {
                return Err(RepoError::MissingObject(*d).into());
            }
        }
        self.write_object(&format_object_list(members))
    }

    /// The members of the object list `digest`.
    pub fn read_object_list(&self, digest: &Digest) -> Result<Vec<Digest>> {
        let mut bytes = Vec::new();
        self.open_object(digest)?
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", self.object_path(digest).display()))?;
        match parse_object_list(&bytes) {
            Some(Ok(list)) => Ok(list),
            Some(Err(e)) => anyhow::bail!(
                "{}: malformed object list: {e}",
                self.object_path(digest).display()
            ),
            None => anyhow::bail!("{}: not an object list", self.object_path(digest).display()),
        }
    }

    /// What object `digest` keeps alive (see the module documentation).
    pub(super) fn object_links(&self, digest: &Digest) -> Result<Links, LinkError> {
        let opened =
            super::trust::open_nofollow(&self.objects, &digest.object_path(), OFlags::RDONLY);
        let mut file = match opened {
            Ok(fd) => std::fs::File::from(fd),
            Err(Errno::NOENT) => return Err(LinkError::Missing),
            Err(e) => return Err(LinkError::Io(e.into())),
        };
        let mut head = [0u8; OBJECT_LIST_MAGIC.len()];
        let mut n = 0;
        while n < head.len() {
            match file.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LinkError::Io(e)),
            }
        }
        let is_image = n >= 4 && head[..4] == COMPOSEFS_MAGIC.to_le_bytes();
        let is_list = head[..n] == *OBJECT_LIST_MAGIC.as_bytes();
        if !is_image && !is_list {
            return Ok(Links::Leaf);
        }
        let mut bytes = head[..n].to_vec();
        file.read_to_end(&mut bytes).map_err(LinkError::Io)?;
        if is_list {
            return match parse_object_list(&bytes) {
                Some(Ok(list)) => Ok(Links::List(list)),
                Some(Err(e)) => Err(LinkError::BrokenList(e)),
                None => unreachable!("magic checked"),
            };
        }
        let refs = referenced_objects(&bytes).map_err(|e| LinkError::BrokenImage(e.to_string()))?;
        let mut paths = Vec::with_capacity(refs.len());
        for r in refs {
            if let Some(p) = &r.path {
                paths.push(
                    String::from_utf8_lossy(p)
                        .trim_start_matches('/')
                        .to_string(),
                );
            }
            if let Some(d) = &r.digest {
                let p = d.object_path();
                if paths.last() != Some(&p) {
                    paths.push(p);
                }
            }
        }
        Ok(Links::Image(paths))
    }

    /// Removes every object no ref reaches, `images/` links to such objects, and stale
    /// `.tmp-*` files, under the exclusive lock (see the module documentation for the rule).
    ///
    /// The lock waits for, or with `wait: false` fails on ([`GcError::Busy`]), any other
    /// process holding the repository open: a pull in progress has stored objects that no ref
    /// names yet, and must finish (or die) before they can be judged.
    pub fn gc(&self, opts: GcOptions) -> Result<GcReport> {
        let _lock = self.lock_for_gc(opts.wait)?;
        let lock_time = SystemTime::now();
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let live = self.mark(&mut report)?;
        let mut sweep = Sweep {
            repo: self,
            dry_run: opts.dry_run,
            stale_before: lock_time.checked_sub(TMP_MIN_AGE).unwrap_or(lock_time),
            report,
        };
        sweep.images(&live)?;
        sweep.layers(&live)?;
        sweep.objects(&live)?;
        sweep.tmp_tree(&self.refs, REFS)?;
        sweep.tmp_in(&self.dir, ".")?;
        Ok(sweep.report)
    }

    fn lock_for_gc(&self, wait: bool) -> Result<ExclusiveLock<'_>> {
        if wait {
            return self.lock_exclusive();
        }
        match rustix::fs::flock(&self.dir, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(ExclusiveLock { repo: self }),
            Err(Errno::WOULDBLOCK) => {
                // A failed conversion may have dropped our shared lock (flock(2)): take it back.
                rustix::fs::flock(&self.dir, FlockOperation::LockShared)
                    .with_context(|| format!("relocking {}", self.path.display()))?;
                Err(GcError::Busy(self.path.clone()).into())
            }
            Err(e) => Err(e)
                .with_context(|| format!("locking repository {} exclusively", self.path.display())),
        }
    }

    /// The set of live object paths (`XX/rest`).
    fn mark(&self, report: &mut GcReport) -> Result<HashSet<String>> {
        let mut live = HashSet::new();
        let mut expanded = HashSet::new();
        for (name, root) in self.list_refs()? {
            report.roots += 1;
            let mut stack = vec![root];
            while let Some(d) = stack.pop() {
                if !expanded.insert(d) {
                    continue;
                }
                let path = d.object_path();
                match self.object_links(&d) {
                    Ok(Links::Leaf) => {}
                    Ok(Links::Image(paths)) => live.extend(paths),
                    Ok(Links::List(members)) => stack.extend(members),
                    Err(LinkError::Missing) => {
                        if d == root {
                            report.dangling_refs.push(DanglingRef {
                                name: name.clone(),
                                digest: d.to_hex(),
                            });
                        }
                        continue;
                    }
                    Err(e) => {
                        return Err(GcError::UnreadableRoot {
                            root: name,
                            path: format!("{OBJECTS}/{path}"),
                            reason: e.to_string(),
                        }
                        .into());
                    }
                }
                live.insert(path);
            }
        }
        Ok(live)
    }
}

/// The sweep phase's state.
struct Sweep<'r> {
    repo: &'r Repository,
    dry_run: bool,
    stale_before: SystemTime,
    report: GcReport,
}

impl Sweep<'_> {
    fn remove(&self, dir: &OwnedFd, name: &str, what: &str) -> Result<()> {
        if self.dry_run {
            return Ok(());
        }
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e)
                .with_context(|| format!("removing {}/{what}/{name}", self.repo.path.display())),
        }
    }

    /// Removes a `.tmp-*` regular file or symlink if it is stale.
    fn tmp(&mut self, dir: &OwnedFd, rel: &str, name: &str) -> Result<()> {
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("inspecting {}/{rel}/{name}", self.repo.path.display())
                });
            }
        };
        let ty = FileType::from_raw_mode(st.st_mode);
        if !(ty.is_file() || ty.is_symlink()) {
            return Ok(());
        }
        let mtime = SystemTime::UNIX_EPOCH
            + Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
        if mtime >= self.stale_before {
            return Ok(());
        }
        self.remove(dir, name, rel)?;
        self.report.tmp_removed += 1;
        if ty.is_file() {
            self.report.tmp_bytes_freed += st.st_size as u64;
        }
        Ok(())
    }

    fn tmp_in(&mut self, dir: &OwnedFd, rel: &str) -> Result<()> {
        for (name, _) in read_dir_names(dir, self.repo, rel)? {
            if name.starts_with(TMP_PREFIX) {
                self.tmp(dir, rel, &name)?;
            }
        }
        Ok(())
    }

    /// `.tmp-*` files anywhere under `refs/` (ref writers create them next to the ref).
    fn tmp_tree(&mut self, dir: &OwnedFd, rel: &str) -> Result<()> {
        for (name, ty) in read_dir_names(dir, self.repo, rel)? {
            if name.starts_with(TMP_PREFIX) {
                self.tmp(dir, rel, &name)?;
            } else if ty == FileType::Directory {
                let sub = open_subdir(dir, &name).with_context(|| {
                    format!("opening {}/{rel}/{name}", self.repo.path.display())
                })?;
                self.tmp_tree(&sub, &format!("{rel}/{name}"))?;
            }
        }
        Ok(())
    }

    /// Drops links to dead or missing objects, then makes that durable before objects go.
    fn images(&mut self, live: &HashSet<String>) -> Result<()> {
        let images = &self.repo.images;
        for (name, _) in read_dir_names(images, self.repo, IMAGES)? {
            if name.starts_with(TMP_PREFIX) {
                self.tmp(images, IMAGES, &name)?;
                continue;
            }
            let Ok(d) = Digest::from_hex(&name) else {
                continue; // not ours: fsck reports it
            };
            if live.contains(&d.object_path()) && self.repo.has_object(&d) {
                continue;
            }
            self.remove(images, &name, IMAGES)?;
            self.report.images_pruned += 1;
        }
        if !self.dry_run {
            rustix::fs::fsync(images)
                .with_context(|| format!("syncing {}/{IMAGES}", self.repo.path.display()))?;
        }
        Ok(())
    }

    /// Drops layer index entries whose layer image no ref reaches (or that is gone), and
    /// stale temporary links, durably, before objects go.
    fn layers(&mut self, live: &HashSet<String>) -> Result<()> {
        let Some(dir) = self.repo.layers_dir()? else {
            return Ok(());
        };
        for (name, _) in read_dir_names(&dir, self.repo, LAYERS)? {
            if name.starts_with(TMP_PREFIX) {
                self.tmp(&dir, LAYERS, &name)?;
                continue;
            }
            let target = super::layers::entry_target(self.repo, &dir, &name);
            if target.is_some_and(|d| live.contains(&d.object_path()) && self.repo.has_object(&d)) {
                continue;
            }
            self.remove(&dir, &name, LAYERS)?;
            self.report.layers_pruned += 1;
        }
        if !self.dry_run {
            rustix::fs::fsync(&dir)
                .with_context(|| format!("syncing {}/{LAYERS}", self.repo.path.display()))?;
        }
        Ok(())
    }

    fn objects(&mut self, live: &HashSet<String>) -> Result<()> {
        let objects = &self.repo.objects;
        for (xx, ty) in read_dir_names(objects, self.repo, OBJECTS)? {
            if xx.starts_with(TMP_PREFIX) {
                self.tmp(objects, OBJECTS, &xx)?;
                continue;
            }
            if ty != FileType::Directory || xx.len() != 2 {
                continue;
            }
            let rel = format!("{OBJECTS}/{xx}");
            let dir = open_subdir(objects, &xx)
                .with_context(|| format!("opening {}/{rel}", self.repo.path.display()))?;
            for (rest, _) in read_dir_names(&dir, self.repo, &rel)? {
                if rest.starts_with(TMP_PREFIX) {
                    self.tmp(&dir, &rel, &rest)?;
                    continue;
                }
                let path = format!("{xx}/{rest}");
                if object_path_digest(self.repo, &path).is_none() {
                    continue;
                }
                if live.contains(&path) {
                    self.report.objects_live += 1;
                    continue;
                }
                let size = match rustix::fs::statat(&dir, rest.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                {
                    Ok(st) if FileType::from_raw_mode(st.st_mode).is_file() => st.st_size as u64,
                    _ => continue,
                };
                self.remove(&dir, &rest, &rel)?;
                self.report.objects_removed += 1;
                self.report.object_bytes_freed += size;
            }
        }
        Ok(())
    }
}

pub(super) fn open_subdir(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Names and types in `dir` (`rel` inside the repository, for messages), without `.`/`..`;
/// a type `d_type` leaves unknown is looked up.
pub(super) fn read_dir_names(
    dir: &OwnedFd,
    repo: &Repository,
    rel: &str,
) -> Result<Vec<(String, FileType)>> {
    let mut out = Vec::new();
    let mut listing = || -> io::Result<()> {
        for entry in rustix::fs::Dir::read_from(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let mut ty = entry.file_type();
            // Some filesystems leave d_type unknown; a missed directory would hide refs.
            if ty == FileType::Unknown {
                ty = FileType::from_raw_mode(
                    rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                );
            }
            out.push((name, ty));
        }
        Ok(())
    };
    listing().with_context(|| format!("listing {}/{rel}", repo.path.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::{Algorithm, digest_bytes};

    #[test]
    fn object_list_round_trip() {
        let a = digest_bytes(Algorithm::Sha256, b"a");
        let b = digest_bytes(Algorithm::Sha256, b"b");
        let bytes = format_object_list(&[b, a, b]);
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(parse_object_list(&bytes).unwrap().unwrap(), want);
        assert_eq!(
            parse_object_list(OBJECT_LIST_MAGIC.as_bytes()).unwrap(),
            Ok(vec![])
        );
        assert!(parse_object_list(b"{\"json\": 1}").is_none());
        let bad = format!("{OBJECT_LIST_MAGIC}xyz\n");
        assert!(parse_object_list(bad.as_bytes()).unwrap().is_err());
        let no_nl = format!("{OBJECT_LIST_MAGIC}{}", a.to_hex());
        assert!(parse_object_list(no_nl.as_bytes()).unwrap().is_err());
    }

    #[test]
    fn lists_keep_members_and_unreached_objects_go() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let json = repo.write_object(b"{\"manifest\": true}").unwrap();
        let config = repo.write_object(b"{\"config\": true}").unwrap();
        let garbage = repo.write_object(b"garbage").unwrap();
        let inner = repo.write_object_list(&[config]).unwrap();
        let outer = repo.write_object_list(&[json, inner]).unwrap();
        repo.set_ref("oci/x", &outer).unwrap();
        let opts = GcOptions {
            dry_run: true,
            wait: false,
        };
        let dry = repo.gc(opts).unwrap();
        assert_eq!((dry.objects_removed, dry.objects_live), (1, 4));
        assert!(repo.has_object(&garbage));
        let done = repo
            .gc(GcOptions {
                dry_run: false,
                ..opts
            })
            .unwrap();
        assert_eq!(done.objects_removed, 1);
        assert_eq!(done.object_bytes_freed, 7);
        assert!(!repo.has_object(&garbage));
        for d in [json, config, inner, outer] {
            assert!(repo.has_object(&d));
        }
        assert_eq!(repo.read_object_list(&outer).unwrap().len(), 2);
    }
}
