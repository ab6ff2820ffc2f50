//! A host opened for a lifecycle command: where its parts are (the booted one, or a target
//! given with `--sysroot`/`--esp`), its lock, and the deployments read from its state and its
//! boot entries.
//!
//! The boot entries decide what boots; the records say what each deployment is. Reading them
//! never fails on something a person or another tool left there: an entry cfsctl did not write
//! is listed as foreign, an unreadable record is reported as a problem of that deployment.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::config::{self, HostConfig};
use super::esp::Esp;
use super::layout::{
    self, DEPLOY_DIR, ENTRIES_DIR, ENTRY_PREFIX, FAILURE_FILE, HostPaths, LOCK_FILE, RECORD_FILE,
    STAGED_ENTRY_SUFFIX, STAGED_FILE, SetupConf,
};
use super::record::{self, DeploymentRecord, Failure, MAX_RECORD_BYTES, StagedMarker};
use crate::boot::cmdline::{self, ImageArg};
use crate::boot::{BootEntry, BootState, EntryName, bls};
use crate::fsverity::Digest;
use crate::repo::Repository;

/// Which host, and how to read its settings.
#[derive(Clone, Debug, Default)]
pub struct HostOptions {
    /// A mounted target's physical root; `None`: the booted host (`/sysroot`).
    pub sysroot: Option<PathBuf>,
    /// The ESP; `None`: found (booted host) or required (target).
    pub esp: Option<PathBuf>,
    /// The settings file; `None`: `/etc/cfsctl/config.toml` on a booted host, defaults on a
    /// target.
    pub config: Option<PathBuf>,
    /// `cfs-setup-root`'s configuration (repository and state paths); `None`: the booted
    /// image's `/usr/lib/composefs/setup-root.conf` on a booted host, defaults on a target.
    pub setup_conf: Option<PathBuf>,
}

/// One `*.conf` file in `loader/entries`.
#[derive(Clone, Debug)]
pub struct EntryFile {
    /// The file name (with its boot counter).
    pub file_name: String,
    /// The name split into id and counter.
    pub name: EntryName,
    /// The parsed content.
    pub entry: BootEntry,
    /// The composefs image its options name, when they name one.
    pub image: Option<Digest>,
    /// Written by cfsctl (`cfsctl-` prefix, sort key and image).
    pub ours: bool,
}

impl EntryFile {
    /// The boot priority cfsctl wrote in `version` (0 when unreadable).
    pub fn priority(&self) -> u64 {
        self.entry
            .version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A deployment as the host has it: its record and its entries, either of which may be
/// missing (an orphan record, or an entry whose record was lost).
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The image digest.
    pub id: Digest,
    /// The record, when readable.
    pub record: Option<DeploymentRecord>,
    /// Why the record could not be read, when it could not.
    pub record_error: Option<String>,
    /// Its boot entry (the first in boot order when there are several).
    pub entry: Option<EntryFile>,
    /// Its place in the boot order (0 = the default), when it has an entry.
    pub position: Option<usize>,
    /// A staged entry (`.staged`) exists for it.
    pub staged_entry: bool,
}

impl Deployment {
    /// What boot counting says; a deployment without an entry has not been booted.
    pub fn boot_state(&self) -> BootState {
        self.entry
            .as_ref()
            .map_or(BootState::Indeterminate, |e| e.name.state())
    }

    /// Pinned in its record.
    pub fn pinned(&self) -> bool {
        self.record.as_ref().is_some_and(|r| r.pinned)
    }

    /// Download-only in its record.
    pub fn download_only(&self) -> bool {
        self.record.as_ref().is_some_and(|r| r.download_only)
    }
}

/// Everything read from a host's state and ESP at one moment.
#[derive(Clone, Debug)]
pub struct HostState {
    /// Every `*.conf` entry, in systemd-boot's order (the first boots).
    pub boot_order: Vec<EntryFile>,
    /// Deployments: in boot order, then those without an entry.
    pub deployments: Vec<Deployment>,
    /// The staged marker.
    pub staged: Option<StagedMarker>,
    /// The last failure.
    pub failure: Option<Failure>,
    /// Staged entry files (`cfsctl-<short>.staged`) found.
    pub staged_entries: Vec<String>,
    /// `cfsctl-*.conf` files that are not boot entries (empty after a power cut on FAT):
    /// systemd-boot skips them; finalize and gc remove them.
    pub broken_entries: Vec<String>,
}

impl HostState {
    /// The deployment with this id.
    pub fn get(&self, id: &Digest) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.id == *id)
    }

    /// The deployment that boots next (the first entry, when it is ours).
    pub fn default(&self) -> Option<&Deployment> {
        let first = self.boot_order.first()?;
        first.ours.then(|| first.image.and_then(|i| self.get(&i)))?
    }

    /// The deployment `rollback` would make the default: the next entry after the default
    /// that is ours and not bad.
    pub fn rollback(&self) -> Option<&Deployment> {
        let default = self.default()?.id;
        self.boot_order
            .iter()
            .filter(|e| e.ours && e.name.state() != BootState::Bad)
            .filter_map(|e| e.image)
            .find(|i| *i != default)
            .and_then(|i| self.get(&i))
    }

    /// The highest boot priority of any cfsctl entry.
    pub fn max_priority(&self) -> u64 {
        self.boot_order
            .iter()
            .filter(|e| e.ours)
            .map(EntryFile::priority)
            .max()
            .unwrap_or(0)
    }

    /// Finds a deployment by full hex digest or unique prefix (at least 6 digits).
    pub fn find(&self, what: &str) -> Result<&Deployment> {
        let what = what.to_ascii_lowercase();
        if what.len() < 6 || !what.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "'{what}': give a deployment id (its image digest, or at least 6 hex digits of it)"
            );
        }
        let found: Vec<&Deployment> = self
            .deployments
            .iter()
            .filter(|d| d.id.to_hex().starts_with(&what))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => bail!("no deployment {what} (see `cfsctl status`)"),
            _ => bail!(
                "'{what}' names {} deployments; give more digits",
                found.len()
            ),
        }
    }
}

/// An opened host.
#[derive(Debug)]
pub struct Host {
    /// Where its parts are.
    pub paths: HostPaths,
    /// The image the running system booted (booted host only).
    pub booted: Option<ImageArg>,
    /// Settings.
    pub config: HostConfig,
    /// `/etc` overlay and `/var` settings shared with cfs-setup-root.
    pub setup_conf: SetupConf,
    esp: Esp,
    state: OwnedFd,
    lock: Option<File>,
}

impl Host {
    /// Opens the host `opts` names (creating its state directory when missing).
    pub fn open(opts: &HostOptions) -> Result<Host> {
        let booted_mode = opts.sysroot.is_none();
        let (sysroot, booted) = match &opts.sysroot {
            Some(s) => (s.clone(), None),
            None => {
                let line =
                    std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
                let image = cmdline::parse(&line)?.with_context(|| {
                    "this system was not booted from a composefs image (no composefs= on the \
                     kernel command line); give --sysroot DIR --esp DIR to work on a target"
                })?;
                (PathBuf::from(layout::BOOTED_SYSROOT), Some(image))
            }
        };
        let esp = match (&opts.esp, booted_mode) {
            (Some(e), _) => Esp::at(e)?,
            (None, true) => Esp::find()?,
            (None, false) => bail!("--sysroot needs --esp DIR (the target's ESP)"),
        };
        let setup_conf = match &opts.setup_conf {
            Some(p) => SetupConf::load(p)?,
            None if booted_mode => SetupConf::load(Path::new(super::setup_conf::DEFAULT_PATH))?,
            None => SetupConf::default(),
        };
        let config = match &opts.config {
            Some(p) => HostConfig::load(p)?,
            None if booted_mode => HostConfig::load(Path::new(config::DEFAULT_PATH))?,
            None => HostConfig::default(),
        };
        let paths = HostPaths::new(&sysroot, &esp.path, &setup_conf);
        std::fs::create_dir_all(paths.state.join(DEPLOY_DIR))
            .with_context(|| format!("creating {}/{DEPLOY_DIR}", paths.state.display()))?;
        let state = open_dir(&paths.state)?;
        Ok(Host {
            paths,
            booted,
            config,
            setup_conf,
            esp,
            state,
            lock: None,
        })
    }

    /// True when working on the running system (not a `--sysroot` target).
    pub fn is_booted(&self) -> bool {
        self.booted.is_some()
    }

    /// Takes the host's deployment lock for this process's life; fails at once, naming the
    /// holder, when another process has it. Every command that changes deployments takes it,
    /// once: it is a different lock from the repository's, so an upgrade cannot deadlock on it
    /// (bootc#2364).
    pub fn lock(&mut self) -> Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        let path = self.paths.state.join(LOCK_FILE);
        let fd = rustix::fs::openat(
            &self.state,
            LOCK_FILE,
            OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )
        .with_context(|| format!("opening {}", path.display()))?;
        let mut file = File::from(fd);
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = (&file).take(256).read_to_string(&mut holder);
                bail!(
                    "another cfsctl is changing the deployments of {} ({}); try again when it \
                     is done",
                    self.paths.sysroot.display(),
                    match holder.trim() {
                        "" => format!("lock {}", path.display()),
                        h => h.to_string(),
                    }
                );
            }
            Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        let me = format!(
            "pid {}: {}",
            std::process::id(),
            std::env::args().collect::<Vec<_>>().join(" ")
        );
        file.set_len(0)?;
        file.write_all(me.as_bytes())?;
        self.lock = Some(file);
        Ok(())
    }

    /// Opens the host's repository.
    pub fn repo(&self) -> Result<Repository> {
        Repository::open(&self.paths.repo)
    }

    /// The state directory, opened.
    pub fn state_dir(&self) -> &OwnedFd {
        &self.state
    }

    /// `loader/entries` on the ESP, created when missing.
    pub fn entries_dir(&self) -> Result<OwnedFd> {
        let p = self.paths.esp.join(ENTRIES_DIR);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        open_dir(&p)
    }

    /// The ESP path.
    pub fn esp(&self) -> &Path {
        &self.esp.path
    }

    /// Reads the record of `id` (`Ok(None)` when there is none).
    pub fn record(&self, id: &Digest) -> Result<Option<DeploymentRecord>> {
        let dir = match open_dir_at(&self.state, &layout::deploy_rel(id)) {
            Ok(d) => d,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("opening {}", self.paths.deploy_dir(id).display()));
            }
        };
        let what = format!("{}/{RECORD_FILE}", self.paths.deploy_dir(id).display());
        let rec: Option<DeploymentRecord> = record::read_json(&dir, RECORD_FILE, &what)?;
        if let Some(r) = &rec
            && r.id != id.to_hex()
        {
            bail!("{what} names deployment {} instead of {id}", r.id);
        }
        Ok(rec)
    }

    /// Writes the record (creating its directory).
    pub fn write_record(&self, rec: &DeploymentRecord) -> Result<()> {
        let id = rec.digest()?;
        let dir = self.paths.deploy_dir(&id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let fd = open_dir(&dir)?;
        record::write_json(
            &fd,
            RECORD_FILE,
            rec,
            &format!("{}/{RECORD_FILE}", dir.display()),
        )?;
        // The new directory entry in deploy/ must survive too.
        rustix::fs::fsync(open_dir_at(&self.state, DEPLOY_DIR)?)
            .with_context(|| format!("syncing {}/{DEPLOY_DIR}", self.paths.state.display()))
    }

    /// Reads everything (see [`HostState`]).
    pub fn read_state(&self) -> Result<HostState> {
        let entries_path = self.paths.esp.join(ENTRIES_DIR);
        let mut boot_order = Vec::new();
        let mut staged_entries = Vec::new();
        let mut broken_entries = Vec::new();
        match std::fs::read_dir(&entries_path) {
            Ok(rd) => {
                for e in rd {
                    let e = e.with_context(|| format!("listing {}", entries_path.display()))?;
                    let Some(name) = e.file_name().to_str().map(String::from) else {
                        continue;
                    };
                    if name.starts_with(ENTRY_PREFIX) && name.ends_with(STAGED_ENTRY_SUFFIX) {
                        staged_entries.push(name);
                    } else if let Some(entry) = read_entry(&entries_path, &name)? {
                        boot_order.push(entry);
                    } else if name.starts_with(ENTRY_PREFIX) && name.ends_with(".conf") {
                        broken_entries.push(name);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("listing {}", entries_path.display()));
            }
        }
        boot_order.sort_by(|a, b| bls::compare((&a.name, &a.entry), (&b.name, &b.entry)));
        staged_entries.sort();

        let mut found: BTreeMap<Digest, Deployment> = BTreeMap::new();
        let mut order: Vec<Digest> = Vec::new();
        for (pos, e) in boot_order.iter().enumerate() {
            let Some(id) = e.image.filter(|_| e.ours) else {
                continue;
            };
            if found.contains_key(&id) {
                continue;
            }
            order.push(id);
            found.insert(id, self.deployment(id, Some(e.clone()), Some(pos)));
        }
        for id in self.record_ids()? {
            if let std::collections::btree_map::Entry::Vacant(v) = found.entry(id) {
                order.push(id);
                v.insert(self.deployment(id, None, None));
            }
        }
        let staged: Option<StagedMarker> = record::read_json(
            &self.state,
            STAGED_FILE,
            &format!("{}/{STAGED_FILE}", self.paths.state.display()),
        )?;
        let failure = record::read_json(
            &self.state,
            FAILURE_FILE,
            &format!("{}/{FAILURE_FILE}", self.paths.state.display()),
        )
        .unwrap_or_else(|e| {
            tracing::warn!("{e:#}");
            None
        });
        let mut deployments: Vec<Deployment> = order
            .into_iter()
            .filter_map(|id| found.remove(&id))
            .collect();
        for d in &mut deployments {
            d.staged_entry = staged_entries.contains(&layout::staged_entry_name(&d.id));
        }
        Ok(HostState {
            boot_order,
            deployments,
            staged,
            failure,
            staged_entries,
            broken_entries,
        })
    }

    fn deployment(
        &self,
        id: Digest,
        entry: Option<EntryFile>,
        position: Option<usize>,
    ) -> Deployment {
        let (record, record_error) = match self.record(&id) {
            Ok(r) => (r, None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        Deployment {
            id,
            record,
            record_error,
            entry,
            position,
            staged_entry: false,
        }
    }

    /// Ids of every `state/deploy/<hex>` directory.
    fn record_ids(&self) -> Result<Vec<Digest>> {
        let dir = self.paths.state.join(DEPLOY_DIR);
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let e = e?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Records a failure for `status` (best effort: the failure itself is what matters).
    pub fn record_failure(&self, step: &str, id: Option<&Digest>, error: &anyhow::Error) {
        let f = Failure {
            version: record::RECORD_VERSION,
            step: step.to_string(),
            id: id.map(Digest::to_hex),
            at: record::now_rfc3339(),
            error: format!("{error:#}"),
        };
        if let Err(e) = record::write_json(&self.state, FAILURE_FILE, &f, FAILURE_FILE) {
            tracing::warn!("recording the failure: {e:#}");
        }
    }

    /// Removes `staged.json`.
    pub fn remove_staged_marker(&self) -> Result<()> {
        crate::atomic::remove_file(&self.state, STAGED_FILE)
            .with_context(|| format!("removing {}/{STAGED_FILE}", self.paths.state.display()))
    }

    /// Forgets the last failure (after a success of the same step).
    pub fn clear_failure(&self) -> Result<()> {
        crate::atomic::remove_file(&self.state, FAILURE_FILE)
            .with_context(|| format!("removing {}/{FAILURE_FILE}", self.paths.state.display()))
    }
}

/// Reads one entry file; `None` for names that are not `*.conf` or not regular files.
fn read_entry(dir: &Path, file_name: &str) -> Result<Option<EntryFile>> {
    let Some(name) = EntryName::parse(file_name) else {
        return Ok(None);
    };
    let path = dir.join(file_name);
    let meta = std::fs::symlink_metadata(&path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_file() || meta.len() > MAX_RECORD_BYTES {
        tracing::warn!(
            "{}: not a regular file of a sane size; ignored",
            path.display()
        );
        return Ok(None);
    }
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let Some(entry) = BootEntry::parse(&String::from_utf8_lossy(&text)) else {
        return Ok(None);
    };
    let image = cmdline::parse(&entry.options.join(" "))
        .ok()
        .flatten()
        .map(|a| a.digest);
    let ours = name.id.starts_with(ENTRY_PREFIX)
        && entry.sort_key.as_deref() == Some(layout::SORT_KEY)
        && image.is_some();
    Ok(Some(EntryFile {
        file_name: file_name.to_string(),
        name,
        entry,
        image,
        ours,
    }))
}

pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening directory {}", path.display()))
}

pub(crate) fn open_dir_at(at: impl AsFd, rel: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        at,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
}
