//! Writing a planned upper directory: into `<dest>.tmp-<pid>` next to the destination,
//! every file and directory fsynced, then renamed into place (`RENAME_NOREPLACE`), so a
//! crash leaves either no destination or a complete one.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rustix::fs::{AtFlags, CWD, Mode, OFlags, RenameFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::compare::Meta;
use super::conflict::{Conflict, ConflictPolicy};
use super::image::Content;
use super::path::EtcPath;
use super::plan::{Action, Plan};
use super::upper::{open_path, read_meta, reopen_regular};
use crate::erofs::format::overlay_xattr;
use crate::tree::{FileType, Timestamp};

/// What [`apply`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The policy conflicts were resolved with.
    pub policy: ConflictPolicy,
    /// Directories created, the top one included.
    pub directories: usize,
    /// The host's files, symlinks and special files copied from the old upper directory.
    pub copied: usize,
    /// Entries of the booted image written (inside local directories kept whole).
    pub from_image: usize,
    /// Whiteouts created (the host's deletions kept).
    pub whiteouts: usize,
    /// The conflicts the policy resolved.
    pub resolved: Vec<Conflict>,
}

/// Writes the new upper directory `dest_dir` (which must not exist) from `plan`, resolving
/// conflicts with `policy`, copying the host's entries from `upper_dir` (the upper
/// directory the plan was made from). Under [`ConflictPolicy::Refuse`] a plan with
/// conflicts writes nothing and fails with [`super::ConflictError`].
///
/// Needs root: entries get their owners, whiteouts are device nodes, and
/// `trusted.overlay.opaque` is a trusted xattr.
pub fn apply(
    plan: &Plan,
    policy: ConflictPolicy,
    upper_dir: &Path,
    dest_dir: &Path,
) -> Result<Report> {
    let ops = plan.resolve(policy)?;
    let upper = open_dir(CWD, upper_dir.as_os_str().as_bytes())
        .with_context(|| format!("opening the /etc upper directory {}", upper_dir.display()))?;
    let (parent_path, name) = split_dest(dest_dir)?;
    let parent = open_dir(CWD, parent_path.as_os_str().as_bytes())
        .with_context(|| format!("opening {}", parent_path.display()))?;
    match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => bail!("{} exists already", dest_dir.display()),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", dest_dir.display())),
    }
    remove_stale(&parent, parent_path, name)?;
    let mut tmp = name.as_bytes().to_vec();
    tmp.extend_from_slice(format!(".tmp-{}", std::process::id()).as_bytes());
    let tmp = &tmp[..];
    let tmp_path = parent_path.join(OsStr::from_bytes(tmp));
    rustix::fs::mkdirat(&parent, tmp, Mode::from_raw_mode(0o700))
        .with_context(|| format!("creating {}", tmp_path.display()))?;
    let mut writer = Writer {
        plan,
        upper,
        upper_cache: None,
        stack: Vec::new(),
        report: Report {
            policy,
            resolved: match policy {
                ConflictPolicy::Refuse => Vec::new(),
                _ => plan.conflicts().to_vec(),
            },
            ..Report::default()
        },
    };
    let written = writer.write_all(&ops, &parent, tmp).with_context(|| {
        format!(
            "writing the new /etc upper directory {}",
            tmp_path.display()
        )
    });
    let renamed = written.and_then(|()| {
        rustix::fs::renameat_with(&parent, tmp, &parent, name, RenameFlags::NOREPLACE)
            .with_context(|| format!("renaming {} to {}", tmp_path.display(), dest_dir.display()))
    });
    if let Err(e) = renamed {
        let _ = std::fs::remove_dir_all(&tmp_path);
        return Err(e);
    }
    rustix::fs::fsync(&parent).with_context(|| format!("syncing {}", parent_path.display()))?;
    Ok(writer.report)
}

/// The parent directory and the last name of `dest`.
fn split_dest(dest: &Path) -> Result<(&Path, &OsStr)> {
    let name = dest
        .file_name()
        .with_context(|| format!("{}: not a directory name", dest.display()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

/// Removes `<name>.tmp-<pid>` left next to the destination by an interrupted run: ours,
/// or one whose process is gone.
fn remove_stale(parent: &OwnedFd, parent_path: &Path, name: &OsStr) -> Result<()> {
    let mut prefix = name.as_bytes().to_vec();
    prefix.extend_from_slice(b".tmp-");
    let mut dir = rustix::fs::Dir::read_from(parent)
        .with_context(|| format!("reading {}", parent_path.display()))?;
    let mut stale = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.with_context(|| format!("reading {}", parent_path.display()))?;
        let entry_name = entry.file_name().to_bytes();
        let Some(pid) = entry_name
            .strip_prefix(&prefix[..])
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let ours = pid == std::process::id() as i32;
        let alive = rustix::process::Pid::from_raw(pid)
            .is_some_and(|p| rustix::process::test_kill_process(p) != Err(Errno::SRCH));
        if ours || !alive {
            stale.push(parent_path.join(OsStr::from_bytes(entry_name)));
        }
    }
    for path in stale {
        std::fs::remove_dir_all(&path)
            .or_else(|_| std::fs::remove_file(&path))
            .with_context(|| format!("removing the stale {}", path.display()))?;
    }
    Ok(())
}

fn open_dir(at: impl AsFd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

struct Writer<'p, 'a> {
    plan: &'p Plan<'a>,
    upper: OwnedFd,
    /// The upper directory last opened for copying, by path.
    upper_cache: Option<(EtcPath, OwnedFd)>,
    /// The directories being written, from the top: each is synced when left.
    stack: Vec<(EtcPath, OwnedFd)>,
    report: Report,
}

impl Writer<'_, '_> {
    fn write_all(&mut self, ops: &[&super::plan::Op], parent: &OwnedFd, tmp: &[u8]) -> Result<()> {
        let Some((top, rest)) = ops.split_first() else {
            bail!("the plan has no operation for /etc itself");
        };
        let Action::Directory { meta, .. } = &top.action else {
            bail!("the plan does not start with /etc itself");
        };
        if !top.path.is_root() || rest.first().is_some_and(|op| op.path.is_root()) {
            bail!("the plan does not have exactly one /etc directory");
        }
        set_meta(parent.as_fd(), tmp, meta, FileType::Directory, None).context("/etc")?;
        let fd = open_dir(parent, tmp).context("opening it")?;
        self.report.directories += 1;
        self.stack.push((EtcPath::root(), fd));
        for op in rest {
            self.write(op).with_context(|| op.path.to_string())?;
        }
        while let Some((path, fd)) = self.stack.pop() {
            rustix::fs::fsync(&fd).with_context(|| format!("{path}: fsync"))?;
        }
        Ok(())
    }

    fn write(&mut self, op: &super::plan::Op) -> Result<()> {
        let parent_path = op.path.parent().context("a second /etc")?;
        while self.stack.last().is_some_and(|(p, _)| *p != parent_path) {
            let (path, fd) = self.stack.pop().expect("not empty");
            rustix::fs::fsync(&fd).with_context(|| format!("{path}: fsync"))?;
        }
        let Some((_, parent)) = self.stack.last() else {
            bail!("no directory was planned for {parent_path} (internal error)");
        };
        let parent = parent.try_clone().context("dup")?;
        let name = op.path.file_name().expect("not the root");
        match &op.action {
            Action::Directory { meta, opaque, .. } => {
                rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)).context("mkdir")?;
                set_meta(parent.as_fd(), name, meta, FileType::Directory, None)?;
                let fd = open_dir(&parent, name).context("opening the new directory")?;
                if *opaque {
                    rustix::fs::fsetxattr(&fd, overlay_xattr::OPAQUE, b"y", XattrFlags::empty())
                        .context("setting trusted.overlay.opaque (needs root)")?;
                }
                self.report.directories += 1;
                self.stack.push((op.path.clone(), fd));
            }
            Action::Whiteout => {
                rustix::fs::mknodat(
                    &parent,
                    name,
                    rustix_type(FileType::CharDevice),
                    Mode::empty(),
                    0,
                )
                .context("creating a whiteout (a 0:0 character device: needs root)")?;
                self.report.whiteouts += 1;
            }
            Action::CopyLocal => {
                self.copy_local(&op.path, parent.as_fd(), name)?;
                self.report.copied += 1;
            }
            Action::CopyBase(id) => {
                self.copy_base(&op.path, *id, parent.as_fd(), name)?;
                self.report.from_image += 1;
            }
        }
        Ok(())
    }

    /// The upper directory at `dir`, opened without following any symlink.
    fn upper_dir(&mut self, dir: &EtcPath) -> Result<BorrowedFd<'_>> {
        if self.upper_cache.as_ref().is_none_or(|(p, _)| p != dir) {
            let mut fd = self.upper.try_clone().context("dup")?;
            for comp in dir.components() {
                fd = open_dir(&fd, comp).with_context(|| {
                    format!("opening {dir} in the upper directory (changed since planning?)")
                })?;
            }
            self.upper_cache = Some((dir.clone(), fd));
        }
        Ok(self.upper_cache.as_ref().expect("just set").1.as_fd())
    }

    /// Copies the host's entry as it is now. Hard links inside the upper directory are
    /// copied as separate files: the merged `/etc` shows the same content, only the link
    /// between the names is lost.
    fn copy_local(&mut self, path: &EtcPath, dest: BorrowedFd, name: &[u8]) -> Result<()> {
        let dir = path.parent().expect("not the root");
        let src_dir = self.upper_dir(&dir)?;
        let src = open_path(src_dir, name).context("opening it in the upper directory")?;
        let st = rustix::fs::fstat(&src).context("stat")?;
        let ftype = FileType::from_mode(st.st_mode).context("unknown file type")?;
        if ftype == FileType::Directory || (ftype == FileType::CharDevice && st.st_rdev == 0) {
            bail!("became a directory or a whiteout in the upper directory since planning");
        }
        let (meta, _) = read_meta(src.as_fd(), &st, path)?;
        let mtime = Timestamp {
            sec: st.st_mtime,
            nsec: st.st_mtime_nsec as u32,
        };
        match ftype {
            FileType::Regular => {
                let mut from = reopen_regular(&src).context("opening it for reading")?;
                write_file(dest, name, |to| std::io::copy(&mut from, to).map(|_| ()))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&src, "", Vec::new()).context("readlink")?;
                rustix::fs::symlinkat(target.as_bytes(), dest, name).context("symlink")?;
            }
            _ => {
                rustix::fs::mknodat(dest, name, rustix_type(ftype), Mode::empty(), st.st_rdev)
                    .with_context(|| format!("creating the {ftype:?} (needs root)"))?;
            }
        }
        set_meta(dest, name, &meta, ftype, Some(mtime))?;
        sync_file(dest, name, ftype)
    }

    /// Writes the booted image's entry.
    fn copy_base(
        &mut self,
        path: &EtcPath,
        id: crate::tree::InodeId,
        dest: BorrowedFd,
        name: &[u8],
    ) -> Result<()> {
        let base = self.plan.base();
        let inode = base.inode(id);
        let ftype = inode
            .file_type()
            .context("unknown file type in the image")?;
        match ftype {
            FileType::Regular => match base.content(inode, path)? {
                Content::Inline(data) => {
                    write_file(dest, name, |to| std::io::Write::write_all(to, data))?
                }
                Content::Object(mut from) => {
                    write_file(dest, name, |to| std::io::copy(&mut from, to).map(|_| ()))?
                }
            },
            FileType::Symlink => {
                let target = inode
                    .payload
                    .as_deref()
                    .context("symlink without a target")?;
                rustix::fs::symlinkat(target, dest, name).context("symlink")?;
            }
            FileType::Directory => bail!("a directory where a file was planned (internal error)"),
            _ => {
                rustix::fs::mknodat(dest, name, rustix_type(ftype), Mode::empty(), inode.rdev)
                    .with_context(|| format!("creating the {ftype:?} (needs root)"))?;
            }
        }
        set_meta(dest, name, &Meta::of_inode(inode), ftype, Some(inode.mtime))?;
        sync_file(dest, name, ftype)
    }
}

/// Creates the regular file `name` in `dir` and fills it.
fn write_file(
    dir: BorrowedFd,
    name: &[u8],
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .context("create")?;
    let mut file = File::from(fd);
    fill(&mut file).context("writing")
}

/// fsyncs a regular file (after its metadata is set); other entries are covered by their
/// directory's fsync.
fn sync_file(dir: BorrowedFd, name: &[u8], ftype: FileType) -> Result<()> {
    if ftype == FileType::Regular {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("reopening to sync")?;
        rustix::fs::fsync(&fd).context("fsync")?;
    }
    Ok(())
}

/// Gives the new entry `name` in `dir` its owner, mode, xattrs and (for non-directories)
/// mtime. The owner comes first: `chown` clears set-id bits and `security.capability`.
fn set_meta(
    dir: BorrowedFd,
    name: &[u8],
    meta: &Meta,
    ftype: FileType,
    mtime: Option<Timestamp>,
) -> Result<()> {
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(meta.uid)),
        Some(rustix::fs::Gid::from_raw(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("chown {}:{} (needs root)", meta.uid, meta.gid))?;
    if ftype != FileType::Symlink {
        // Not a symlink, and created by us: following it is safe.
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.perms), AtFlags::empty())
            .with_context(|| format!("chmod {:o}", meta.perms))?;
    }
    if !meta.xattrs.is_empty() {
        // lsetxattr through the directory's descriptor: the name itself is not followed.
        let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
        path.extend_from_slice(name);
        for x in &meta.xattrs {
            rustix::fs::lsetxattr(&path[..], &x.name[..], &x.value, XattrFlags::empty())
                .with_context(|| format!("setting xattr {}", String::from_utf8_lossy(&x.name)))?;
        }
    }
    if let Some(t) = mtime {
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: t.sec,
                tv_nsec: t.nsec.into(),
            },
        };
        rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .context("setting the mtime")?;
    }
    Ok(())
}

/// rustix's file type for ours.
fn rustix_type(t: FileType) -> rustix::fs::FileType {
    rustix::fs::FileType::from_raw_mode(t.mode_bits())
}
