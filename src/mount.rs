//! composefs mounts: EROFS from a file plus overlayfs with the object store as data layer.
//!
//! The EROFS image holds the metadata; each regular file in it carries
//! `trusted.overlay.redirect=/XX/rest` and `trusted.overlay.metacopy` (with the fs-verity
//! digest), so overlayfs (`metacopy=on,redirect_dir=on`) serves its data from the object store
//! given as a data-only lower layer. With `verity=require` the kernel checks every object's
//! fs-verity digest against the one in the image when the file is opened.
//!
//! Everything uses the new mount API (`fsopen`/`fsconfig`/`fsmount`/`move_mount`, Linux 5.2+):
//! the mount is built detached and attached in one step, and the kernel's fs-context messages
//! are drained into the error on failure. Kernel support and fallbacks:
//! - file-backed EROFS (`source=/proc/self/fd/N` on a regular file) needs Linux 6.12; older
//!   kernels answer ENOTBLK and get a read-only, auto-clearing loop device instead.
//! - layers passed as file descriptors (`lowerdir+`/`datadir+` via `FSCONFIG_SET_FD`) need
//!   Linux 6.13 or so (detached mounts as layers: 6.15); otherwise the EROFS mount is attached to
//!   a private temporary directory and the layers given with the `lowerdir=L::D` string syntax
//!   (data-only layers: Linux 6.5), then the temporary mount is detached again (overlayfs keeps
//!   its own reference).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags, fsconfig_create,
    fsconfig_set_fd, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
};

use crate::fsverity::Digest;
use crate::repo::Repository;
use crate::sys::{loop_configure_read_only, loop_ctl_get_free};

/// Whether overlayfs must check each object's fs-verity digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VerityMode {
    /// `verity=require`: an object without fs-verity, or with the wrong digest, fails to open
    /// (EIO). Needs a kernel and an object store filesystem with fs-verity.
    #[default]
    Require,
    /// No verity checks: only for filesystems without fs-verity (loudly insecure).
    Off,
}

/// Options for [`mount_composefs`].
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Object digest checking.
    pub verity: VerityMode,
    /// The `source` shown in `/proc/self/mountinfo` for the overlay.
    pub source: String,
    /// Let setuid/setgid bits and device nodes in the image take effect. Off by default:
    /// the overlay is mounted `nosuid,nodev`, so inspecting an image made by someone else
    /// (`cfsctl mount`, `oci mount`) cannot hand a local user root through a setuid binary
    /// or a device node in it. The booted root (`cfs-setup-root`) turns it on.
    pub allow_setuid_devices: bool,
}

impl MountOptions {
    /// The options for mounting images of `repo`: `verity=require` when its filesystem has
    /// fs-verity, otherwise verity off with a warning (contents are then not verified).
    pub fn for_repository(repo: &Repository) -> MountOptions {
        let verity = if repo.verity_supported() {
            VerityMode::Require
        } else {
            tracing::warn!(
                "{} has no fs-verity: mounting with verity off, file contents are NOT verified",
                repo.path().display()
            );
            VerityMode::Off
        };
        MountOptions {
            verity,
            ..MountOptions::default()
        }
    }
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            verity: VerityMode::Require,
            source: "composefs".to_string(),
            allow_setuid_devices: false,
        }
    }
}

/// A failed mount-API call, with what the kernel logged into the fs context.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {errno}{}", kernel_suffix(.kernel))]
pub struct FsError {
    /// The operation (`fsopen overlay`, `erofs: fsconfig source=...`).
    pub what: String,
    /// The error number.
    pub errno: Errno,
    /// Messages read back from the fs context (`e erofs: ...`).
    pub kernel: Vec<String>,
}

fn kernel_suffix(kernel: &[String]) -> String {
    if kernel.is_empty() {
        String::new()
    } else {
        format!(" (kernel: {})", kernel.join("; "))
    }
}

/// An fs context from `fsopen`, remembering its type for messages.
struct FsContext {
    fd: OwnedFd,
    fstype: &'static str,
}

impl FsContext {
    fn open(fstype: &'static str) -> Result<Self, FsError> {
        let fd = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(|errno| FsError {
            what: format!("fsopen {fstype}"),
            errno,
            kernel: Vec::new(),
        })?;
        Ok(FsContext { fd, fstype })
    }

    /// Reads the messages the kernel queued on the context (one per `read`, until ENODATA).
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        // The queue holds at most 8 messages (fs/fs_context.c); bound the loop anyway.
        for _ in 0..32 {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(n) if n > 0 => out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
                _ => break,
            }
        }
        out
    }

    fn fail(&self, what: String, errno: Errno) -> FsError {
        FsError {
            what: format!("{}: {what}", self.fstype),
            errno,
            kernel: self.messages(),
        }
    }

    fn set_string(&self, key: &str, value: &str) -> Result<(), FsError> {
        fsconfig_set_string(&self.fd, key, value)
            .map_err(|e| self.fail(format!("fsconfig {key}={value}"), e))
    }

    fn set_flag(&self, key: &str) -> Result<(), FsError> {
        fsconfig_set_flag(&self.fd, key).map_err(|e| self.fail(format!("fsconfig {key}"), e))
    }

    fn set_fd(&self, key: &str, fd: BorrowedFd<'_>) -> Result<(), FsError> {
        fsconfig_set_fd(&self.fd, key, fd)
            .map_err(|e| self.fail(format!("fsconfig {key}=fd {}", fd.as_raw_fd()), e))
    }

    /// Creates the superblock and returns a detached, read-only mount of it (with `extra`
    /// mount attributes besides `MOUNT_ATTR_RDONLY`).
    fn mount_read_only_with(&self, extra: MountAttrFlags) -> Result<OwnedFd, FsError> {
        fsconfig_create(&self.fd).map_err(|e| self.fail("fsconfig create".into(), e))?;
        fsmount(
            &self.fd,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::MOUNT_ATTR_RDONLY | extra,
        )
        .map_err(|e| self.fail("fsmount".into(), e))
    }

    fn mount_read_only(&self) -> Result<OwnedFd, FsError> {
        self.mount_read_only_with(MountAttrFlags::empty())
    }
}

fn proc_fd(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// A detached read-only mount of the EROFS image `image` (a regular file): file-backed where
/// the kernel supports it (6.12+), otherwise through a loop device.
pub fn fsmount_erofs(image: impl AsFd) -> Result<OwnedFd> {
    match fsmount_erofs_file(image.as_fd()) {
        Ok(m) => Ok(m),
        // Kernels before 6.12 look the source up as a block device.
        Err(e) if e.errno == Errno::NOTBLK => {
            tracing::debug!("file-backed EROFS refused ({e}); using a loop device");
            fsmount_erofs_loop(image)
        }
        Err(e) => Err(e.into()),
    }
}

/// File-backed EROFS: `source=/proc/self/fd/N`.
fn fsmount_erofs_file(image: BorrowedFd<'_>) -> Result<OwnedFd, FsError> {
    let ctx = FsContext::open("erofs")?;
    ctx.set_flag("ro")?;
    ctx.set_string("source", &proc_fd(image))?;
    ctx.mount_read_only()
}

/// EROFS through a read-only, auto-clearing loop device (`LOOP_CONFIGURE`, Linux 5.8+; the
/// older `LOOP_SET_FD` + `LOOP_SET_STATUS64` pair is not implemented). The device detaches
/// itself once the mount is gone.
pub fn fsmount_erofs_loop(image: impl AsFd) -> Result<OwnedFd> {
    let control = rustix::fs::open(
        "/dev/loop-control",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context("opening /dev/loop-control")?;
    // Another process may configure the device between GET_FREE and CONFIGURE (EBUSY).
    for _ in 0..16 {
        let n = loop_ctl_get_free(&control).context("LOOP_CTL_GET_FREE")?;
        let path = format!("/dev/loop{n}");
        let device = rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("opening {path}"))?;
        match loop_configure_read_only(&device, image.as_fd()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) => continue,
            Err(e) => return Err(e).with_context(|| format!("LOOP_CONFIGURE {path}")),
        }
        let ctx = FsContext::open("erofs")?;
        ctx.set_flag("ro")?;
        ctx.set_string("source", &path)?;
        return Ok(ctx.mount_read_only()?);
    }
    anyhow::bail!("no free loop device after 16 attempts")
}

/// A detached, read-only composefs mount: the EROFS `image` as the metadata layer and
/// `objects_dir` (an `objects/XX/rest` store) as the data-only layer.
pub fn fsmount_composefs(
    image: impl AsFd,
    objects_dir: Option<BorrowedFd<'_>>,
    options: &MountOptions,
) -> Result<OwnedFd> {
    let erofs = fsmount_erofs(image).context("mounting the EROFS image")?;
    match overlay_layers_by_fd(&erofs, objects_dir, options) {
        Ok(m) => Ok(m),
        // On a layer key, EINVAL (key unknown: before 6.8) or EBADF (key known but
        // FSCONFIG_SET_FD not accepted for it: 6.8 to 6.12, seen on Debian's 6.12) mean an
        // older kernel. Any other error is real.
        Err(e) if matches!(e.errno, Errno::INVAL | Errno::BADF) && e.what.contains("dir+=fd") => {
            tracing::debug!("overlay layers by fd refused ({e}); using lowerdir=L::D");
            overlay_layers_by_path(&erofs, objects_dir, options)
        }
        Err(e) => Err(e).context("mounting overlayfs"),
    }
}

/// An overlay fs context with the composefs options; `layers` adds the layers.
fn overlay(
    options: &MountOptions,
    layers: impl FnOnce(&FsContext) -> Result<(), FsError>,
) -> Result<OwnedFd, FsError> {
    let ctx = FsContext::open("overlay")?;
    ctx.set_string("source", &options.source)?;
    ctx.set_string("metacopy", "on")?;
    ctx.set_string("redirect_dir", "on")?;
    layers(&ctx)?;
    if options.verity == VerityMode::Require {
        ctx.set_string("verity", "require")?;
    }
    // The overlay is the mount files are reached through, so its flags are the ones the
    // kernel honours for exec (setuid) and device opens; the EROFS layer below is never
    // attached where a user can reach it.
    let attrs = if options.allow_setuid_devices {
        MountAttrFlags::empty()
    } else {
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV
    };
    ctx.mount_read_only_with(attrs)
}

/// Layers as file descriptors: `lowerdir+` = the detached EROFS mount, `datadir+` = objects.
fn overlay_layers_by_fd(
    erofs: &OwnedFd,
    objects_dir: Option<BorrowedFd<'_>>,
    options: &MountOptions,
) -> Result<OwnedFd, FsError> {
    overlay(options, |ctx| {
        ctx.set_fd("lowerdir+", erofs.as_fd())?;
        if let Some(objects) = objects_dir {
            ctx.set_fd("datadir+", objects)?;
        }
        Ok(())
    })
}

/// Layers by path for older kernels: the EROFS mount attached to a temporary directory,
/// `lowerdir=<tmp>::/proc/self/fd/<objects>`.
fn overlay_layers_by_path(
    erofs: &OwnedFd,
    objects_dir: Option<BorrowedFd<'_>>,
    options: &MountOptions,
) -> Result<OwnedFd> {
    let attached = TempAttach::new(erofs).context("attaching the EROFS mount")?;
    let lowerdir = match objects_dir {
        Some(objects) => format!("{}::{}", attached.path.display(), proc_fd(objects)),
        None => attached.path.display().to_string(),
    };
    overlay(options, |ctx| ctx.set_string("lowerdir", &lowerdir)).context("mounting overlayfs")
}

/// Refuses what is not a composefs image before the kernel sees it: a regular file starting
/// with the composefs header (magic, header version) and an EROFS superblock (magic, 4096-byte
/// blocks). A plain EROFS image, or anything else, would otherwise mount without a word.
pub fn check_composefs_header(image: impl AsFd) -> Result<()> {
    use crate::erofs::format::{
        BLOCK_BITS, COMPOSEFS_HEADER_VERSION, COMPOSEFS_MAGIC, ComposefsHeader, SUPER_MAGIC_V1,
        SUPER_OFFSET, Superblock,
    };
    let image = image.as_fd();
    let st = rustix::fs::fstat(image).context("inspecting the image")?;
    if !rustix::fs::FileType::from_raw_mode(st.st_mode).is_file() {
        anyhow::bail!("not a regular file");
    }
    let mut head = vec![0u8; SUPER_OFFSET as usize + Superblock::SIZE];
    let mut n = 0;
    while n < head.len() {
        match rustix::io::pread(image, &mut head[n..], n as u64) {
            Ok(0) => anyhow::bail!("{n} bytes: too short for a composefs image"),
            Ok(k) => n += k,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("reading the image header"),
        }
    }
    let header =
        ComposefsHeader::from_bytes(head[..ComposefsHeader::SIZE].try_into().expect("32 bytes"));
    if header.magic != COMPOSEFS_MAGIC {
        anyhow::bail!(
            "not a composefs image (header magic {:#010x}, expected {COMPOSEFS_MAGIC:#010x})",
            header.magic
        );
    }
    if header.version != COMPOSEFS_HEADER_VERSION {
        anyhow::bail!(
            "composefs header version {} is not supported (expected {COMPOSEFS_HEADER_VERSION})",
            header.version
        );
    }
    let sb = &head[SUPER_OFFSET as usize..];
    let sb = Superblock::from_bytes(sb.try_into().expect("superblock size"));
    if sb.magic != SUPER_MAGIC_V1 || sb.blkszbits != BLOCK_BITS {
        anyhow::bail!(
            "no EROFS superblock with 4096-byte blocks after the composefs header (magic {:#010x}, block bits {})",
            sb.magic,
            sb.blkszbits
        );
    }
    Ok(())
}

/// The fs-verity digest of an image file: the kernel's measurement when it has fs-verity,
/// computed in userspace otherwise.
pub fn image_file_digest(
    image: &std::fs::File,
    algorithm: crate::fsverity::Algorithm,
) -> Result<Digest> {
    use crate::fsverity::ioctl::{MeasureError, compute_digest_at, measure_verity};
    match measure_verity(image) {
        Ok(d) if d.algorithm() == algorithm => Ok(d),
        Ok(_) | Err(MeasureError::NoVerity | MeasureError::NotSupported) => {
            Ok(compute_digest_at(image, algorithm)?)
        }
        Err(MeasureError::Io(e)) => Err(e.into()),
    }
}

/// Mounts a composefs image read-only on `mountpoint`, after checking its header
/// ([`check_composefs_header`]).
pub fn mount_composefs(
    image: impl AsFd,
    objects_dir: Option<BorrowedFd<'_>>,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<()> {
    check_composefs_header(&image)?;
    let mnt = fsmount_composefs(image, objects_dir, options)?;
    move_mount(
        &mnt,
        "",
        CWD,
        mountpoint,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .with_context(|| format!("attaching the composefs mount to {}", mountpoint.display()))
}

/// Opens image `name` (hex digest or ref) in `repo`, checking its digest, and mounts it on
/// `mountpoint` with the repository's objects as data layer. Returns the image digest.
pub fn mount_image(
    repo: &Repository,
    name: &str,
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<Digest> {
    let (image, digest) = repo.open_image(name)?;
    mount_composefs(&image, Some(repo.objects_dir()), mountpoint, options)
        .with_context(|| format!("mounting image {digest} on {}", mountpoint.display()))?;
    Ok(digest)
}

/// Unmounts `path` (not lazily: fails with EBUSY while the mount is in use).
///
/// EBUSY is retried for up to a second: a process that forks (any `Command::spawn`) holds a
/// copy of every open descriptor until it execs, so a file just read through the mount can
/// keep it busy for a moment.
pub fn unmount(path: &Path) -> Result<()> {
    let mut attempts = 0;
    loop {
        match rustix::mount::unmount(path, UnmountFlags::empty()) {
            Err(rustix::io::Errno::BUSY) if attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r.with_context(|| format!("unmounting {}", path.display())),
        }
    }
}

/// A detached mount attached to a fresh private directory for as long as needed to name it by
/// path; detached (lazily) and removed again on drop.
struct TempAttach {
    path: PathBuf,
}

impl TempAttach {
    fn new(mnt: &OwnedFd) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            ".cfsctl-erofs-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        rustix::fs::mkdir(&path, rustix::fs::Mode::from_raw_mode(0o700))
            .with_context(|| format!("creating {}", path.display()))?;
        let this = TempAttach { path };
        move_mount(
            mnt,
            "",
            CWD,
            &this.path,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .with_context(|| format!("attaching to {}", this.path.display()))?;
        Ok(this)
    }
}

impl Drop for TempAttach {
    fn drop(&mut self) {
        // EINVAL: never got attached (move_mount failed).
        match rustix::mount::unmount(&self.path, UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => tracing::warn!("detaching {}: {e}", self.path.display()),
        }
        if let Err(e) = std::fs::remove_dir(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_error_names_kernel_messages() {
        let e = FsError {
            what: "erofs: fsmount".into(),
            errno: Errno::INVAL,
            kernel: vec!["e erofs: bad superblock".into()],
        };
        let s = e.to_string();
        assert!(s.starts_with("erofs: fsmount: "), "{s}");
        assert!(s.ends_with("(kernel: e erofs: bad superblock)"), "{s}");
    }

    /// Prints why a test cannot run here, or fails it when CI requires every prerequisite
    /// (`CFS_REQUIRE_TOOLS=1`, as `tests/common` does for the integration tests).
    fn skip(why: &str) {
        if std::env::var("CFS_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
            panic!("CFS_REQUIRE_TOOLS=1 but {why}");
        }
        eprintln!("SKIP: {why}");
    }

    #[test]
    fn erofs_rejects_garbage() {
        if !rustix::process::geteuid().is_root() {
            return skip("not root: the erofs mount test needs CAP_SYS_ADMIN");
        }
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &[0u8; 8192]).unwrap();
        match fsmount_erofs_file(f.as_fd()) {
            Ok(_) => panic!("garbage mounted as EROFS"),
            Err(e) if e.errno == Errno::PERM => skip(&format!("mounting not permitted: {e}")),
            // EROFS logs a bad superblock to dmesg, not to the fs context: only the errno.
            Err(e) => assert_eq!(e.errno, Errno::INVAL, "{e}"),
        }
    }

    /// The `lowerdir=L::D` fallback, forced (this kernel would take the fd path).
    #[test]
    fn legacy_lowerdir_string_mount() {
        use crate::fsverity::Algorithm;
        if !rustix::process::geteuid().is_root() {
            return skip("not root: the legacy overlay mount test needs CAP_SYS_ADMIN");
        }
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path().join("repo"), Algorithm::Sha256).unwrap();
        let digest = repo.write_object(b"data layer\n").unwrap();
        let tree = td.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let file = tree.join("f");
        std::fs::File::create(&file).unwrap().set_len(11).unwrap();
        let redirect = format!("/{}", digest.object_path());
        let flags = rustix::fs::XattrFlags::empty();
        rustix::fs::setxattr(
            &file,
            "trusted.overlay.redirect",
            redirect.as_bytes(),
            flags,
        )
        .unwrap();
        rustix::fs::setxattr(&file, "trusted.overlay.metacopy", b"", flags).unwrap();
        let img = td.path().join("img");
        match std::process::Command::new("mkfs.erofs")
            .args(["--quiet", "--all-root", "-T0"])
            .arg(&img)
            .arg(&tree)
            .status()
        {
            Ok(s) => assert!(s.success()),
            Err(e) => return skip(&format!("mkfs.erofs cannot run: {e}")),
        }
        let image = std::fs::File::open(&img).unwrap();
        let erofs = match fsmount_erofs_file(image.as_fd()) {
            Ok(m) => m,
            Err(e) if e.errno == Errno::PERM => {
                return skip(&format!("mounting not permitted: {e}"));
            }
            Err(e) => panic!("{e}"),
        };
        let options = MountOptions {
            verity: VerityMode::Off,
            ..MountOptions::default()
        };
        let ovl = overlay_layers_by_path(&erofs, Some(repo.objects_dir()), &options).unwrap();
        let mnt = td.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        move_mount(&ovl, "", CWD, &mnt, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH).unwrap();
        // Our descriptors pin the mounts (EBUSY on unmount) until closed.
        drop((ovl, erofs));
        let read = std::fs::read(mnt.join("f"));
        unmount(&mnt).unwrap();
        assert_eq!(read.unwrap(), b"data layer\n");
        let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&format!(".cfsctl-erofs-{}-", std::process::id()))
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn erofs_via_loop_device() {
        if !rustix::process::geteuid().is_root() {
            return skip("not root: the loop device test needs CAP_SYS_ADMIN");
        }
        let td = tempfile::tempdir().unwrap();
        let tree = td.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("hello"), b"via loop\n").unwrap();
        let img = td.path().join("img");
        match std::process::Command::new("mkfs.erofs")
            .args(["--quiet", "--all-root", "-T0"])
            .arg(&img)
            .arg(&tree)
            .status()
        {
            Ok(s) => assert!(s.success()),
            Err(e) => return skip(&format!("mkfs.erofs cannot run: {e}")),
        }
        let image = std::fs::File::open(&img).unwrap();
        let erofs = match fsmount_erofs_loop(&image) {
            Ok(m) => m,
            Err(e) => return skip(&format!("no loop devices here: {e:#}")),
        };
        let mnt = td.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        move_mount(
            &erofs,
            "",
            CWD,
            &mnt,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .unwrap();
        drop(erofs);
        let read = std::fs::read(mnt.join("hello"));
        unmount(&mnt).unwrap();
        assert_eq!(read.unwrap(), b"via loop\n");
    }
}
