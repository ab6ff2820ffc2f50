//! The writable state next to the repository: per-deployment `/etc` upper layers, the shared
//! `/var`, and enabling fs-verity on a repository written where verity was unavailable.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::config::{EtcMount, SetupConf as Config};
use super::open_dir;
use crate::deploy::layout::{ETC_UPPER, ETC_WORK, VAR_DIR, deploy_rel};
use crate::fsverity::ioctl::{EnableError, enable_verity};
use crate::fsverity::{Algorithm, Digest};

/// The `/etc` layers of one deployment, opened.
pub struct EtcLayers {
    pub upper: OwnedFd,
    pub work: OwnedFd,
}

/// The state of the deployment being booted.
pub struct Deploy {
    pub etc: Option<EtcLayers>,
    pub var_seeded: bool,
}

fn mkdir_p(at: impl AsFd, path: &str, mode: u32) -> Result<()> {
    let mut cur = String::new();
    for part in path.split('/') {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(part);
        match rustix::fs::mkdirat(at.as_fd(), cur.as_str(), Mode::from(mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("creating {cur}")),
        }
    }
    Ok(())
}

/// Creates (if needed) and opens `deploy/<hex>/etc/{upper,work}`.
pub fn prepare_deploy(
    state: &OwnedFd,
    state_path: &Path,
    digest: &Digest,
    config: &Config,
) -> Result<Deploy> {
    let etc = match config.etc {
        EtcMount::None => None,
        EtcMount::Overlay => {
            let base = deploy_rel(digest);
            let (upper, work) = (format!("{base}/{ETC_UPPER}"), format!("{base}/{ETC_WORK}"));
            let ctx = || format!("in {}", state_path.display());
            // upper is the root of the merged /etc: 0755, not the umask default (composefs-rs#287).
            mkdir_p(state, &upper, 0o755).with_context(ctx)?;
            mkdir_p(state, &work, 0o700).with_context(ctx)?;
            Some(EtcLayers {
                upper: open_dir(state, upper)?,
                work: open_dir(state, work)?,
            })
        }
    };
    Ok(Deploy {
        etc,
        var_seeded: !exists(state, VAR_DIR),
    })
}

fn exists(at: &OwnedFd, name: &str) -> bool {
    rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// Enables fs-verity on every object in `objects/XX/`, skipping those that have it. Returns
/// how many were enabled. The digests are not trusted because of this: the image digest is
/// measured afterwards and every object is checked against the image by overlayfs.
pub fn enable_verity_all(repo: &OwnedFd, algorithm: Algorithm) -> Result<usize> {
    let objects = open_dir(repo, "objects")?;
    // The fan-out directories are shared out between threads: the kernel builds each Merkle
    // tree in the calling thread, so this uses every CPU (the first boot of a VM is mostly this).
    let mut fans = Vec::new();
    for fan in fs::read_dir(format!("/proc/self/fd/{}", raw(&objects)))? {
        let name = fan?.file_name();
        if let Some(n) = name.to_str().filter(|n| n.len() == 2) {
            fans.push(n.to_string());
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<usize> {
                    let mut enabled = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(fan_name) = fans.get(i) else {
                            return Ok(enabled);
                        };
                        enabled += enable_verity_fan(&objects, fan_name, algorithm)?;
                    }
                })
            })
            .collect();
        let mut total = 0;
        for w in workers {
            total += w.join().expect("verity worker panicked")?;
        }
        Ok(total)
    })
}

fn enable_verity_fan(objects: &OwnedFd, fan_name: &str, algorithm: Algorithm) -> Result<usize> {
    let mut enabled = 0;
    let dir = open_dir(objects, fan_name)?;
    for entry in fs::read_dir(format!("/proc/self/fd/{}", raw(&dir)))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let fd = rustix::fs::openat(
            &dir,
            entry.file_name().as_os_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .with_context(|| format!("opening object {fan_name}/{:?}", entry.file_name()))?;
        match enable_verity(&fd, algorithm) {
            Ok(()) => enabled += 1,
            Err(EnableError::AlreadyEnabled) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "enabling fs-verity on object {fan_name}/{:?}",
                        entry.file_name()
                    )
                });
            }
        }
    }
    Ok(enabled)
}

fn raw(fd: &OwnedFd) -> i32 {
    rustix::fd::AsRawFd::as_raw_fd(fd)
}

/// Creates `state/var` as a copy of the image's `/var` (at `image_var`) when it does not exist
/// yet: copied into `var.tmp` and renamed, so an interrupted first boot starts over.
pub fn seed_var_if_missing(state: &OwnedFd, image_var: &Path) -> Result<()> {
    if exists(state, VAR_DIR) {
        return Ok(());
    }
    let state_dir = format!("/proc/self/fd/{}", raw(state));
    let tmp_name = format!("{VAR_DIR}.tmp");
    let tmp = Path::new(&state_dir).join(&tmp_name);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).context("removing a stale state/var.tmp")?;
    }
    fs::create_dir(&tmp).context("creating state/var.tmp")?;
    if image_var.is_dir() {
        copy_tree(image_var, &tmp)
            .with_context(|| format!("seeding state/var from {}", image_var.display()))?;
    }
    rustix::fs::renameat(state, &tmp_name, state, VAR_DIR).context("renaming state/var.tmp")?;
    Ok(())
}

/// Copies a directory tree with owners, modes and symlinks (content of `src` into `dst`).
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(src)?;
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
            continue;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        } else {
            // Devices, fifos, sockets have no place in a seeded /var.
            tracing::debug!("not copying special file {}", from.display());
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
    }
    Ok(())
}
