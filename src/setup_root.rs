//! The initramfs step that turns the physical root into the booted composefs image.
//!
//! Runs after the real root filesystem is mounted on `/sysroot` (systemd's `sysroot.mount`) and
//! before the switch-root. It reads the image digest from the kernel command line, opens
//! `images/<hex>` in the repository on the physical root, measures its fs-verity digest with the
//! kernel and refuses to continue on any mismatch or missing verity (unless the argument said
//! `?`), mounts EROFS + overlayfs (`metacopy=on,redirect_dir=on,verity=require`) on top of
//! `/sysroot`, then adds:
//! - `/sysroot/sysroot`: the physical root (a clone of the old `/sysroot` mount);
//! - `/etc`: an overlay with the image's `/etc` below and `state/deploy/<hex>/etc/upper` above;
//! - `/var`: a bind of `state/var`, seeded from the image's `/var` on first boot.
//!
//! The new root is attached directly on top of `/sysroot` and the sub-mounts are added in place,
//! because Linux before 6.15 cannot mount onto a detached tree, and moving a mount that sits
//! under a shared parent (the initramfs root is shared) is refused.
//!
//! Policy lives here; the binary `cfs-setup-root` only parses its arguments. See docs/boot.md.

mod state;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MoveMountFlags, OpenTreeFlags, move_mount, open_tree};

pub use crate::boot::cmdline::{self, ImageArg};
pub use crate::deploy::layout::ENABLE_VERITY_MARKER;
pub use crate::deploy::setup_conf::{self as config, SetupConf as Config};
use crate::fsverity::Digest;
use crate::mount::{FsError, MountOptions, VerityMode, fsmount_composefs};
use crate::repo::images::{OpenError, open_beneath, open_verified};

/// Why the boot was refused. These are the cases a person at the console must understand.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The image on disk is not the one the kernel command line names.
    #[error(
        "composefs image {expected} does not match the kernel command line:\n  expected digest: {expected}\n  measured digest: {measured}"
    )]
    DigestMismatch {
        /// Digest from the command line.
        expected: Digest,
        /// Digest the kernel (or userspace, in `?` mode) measured.
        measured: Digest,
    },
    /// The image file has no fs-verity, so its content cannot be trusted.
    #[error(
        "composefs image {expected} has no fs-verity digest ({reason}); refusing to boot it.\n  expected digest: {expected}\n  measured digest: none\n  (composefs=?<hex> boots without integrity checks)"
    )]
    MissingVerity {
        /// Digest from the command line.
        expected: Digest,
        /// What the kernel answered.
        reason: String,
    },
    /// Reading the image failed the kernel's fs-verity check: its bytes were altered.
    #[error(
        "composefs image {expected} is corrupted: reading it failed ({error}); its bytes no longer match their fs-verity digest"
    )]
    CorruptImage {
        /// Digest from the command line.
        expected: Digest,
        /// The read error (EIO).
        error: std::io::Error,
    },
    /// The image named on the command line is not in the repository.
    #[error("composefs image {0} is not in the repository {1}")]
    MissingImage(Digest, PathBuf),
    /// overlayfs here cannot enforce fs-verity.
    #[error(
        "this kernel's overlayfs does not support verity=require ({0}); refusing to boot without integrity checks (composefs=?<hex> to allow)"
    )]
    UnsupportedKernel(String),
}

/// Where to work; the defaults are the real boot, the rest is for tests.
#[derive(Clone, Debug)]
pub struct Options {
    /// The physical root filesystem, already mounted.
    pub sysroot: PathBuf,
    /// Where the new root goes; the default is on top of `sysroot`.
    pub target: Option<PathBuf>,
    /// Enable fs-verity on all objects first (also done when the state marker exists).
    pub enable_verity: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sysroot: "/sysroot".into(),
            target: None,
            enable_verity: false,
        }
    }
}

/// What was mounted, for the console and for tests.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The image that is now the root.
    pub digest: Digest,
    /// Its measured digest (equal to `digest`, or computed in userspace in `?` mode).
    pub measured: Digest,
    /// Whether fs-verity was enforced.
    pub verity: VerityMode,
    /// Objects on which fs-verity was enabled during this boot.
    pub verity_enabled: usize,
    /// `/var` was seeded from the image during this boot.
    pub var_seeded: bool,
    /// Where the new root is.
    pub target: PathBuf,
}

/// Sets up the root named by `image` (from [`cmdline::parse`]).
pub fn setup_root(image: &ImageArg, config: &Config, options: &Options) -> Result<Outcome> {
    let sysroot = &options.sysroot;
    let target = options.target.clone().unwrap_or_else(|| sysroot.clone());
    let sysroot_fd = open_dir(CWD, sysroot)?;
    let repo_path = sysroot.join(&config.repo);
    let repo = open_dir(&sysroot_fd, &config.repo)?;
    let state_path = sysroot.join(&config.state);
    rustix::fs::mkdirat(&sysroot_fd, &config.state, Mode::from(0o755))
        .or_else(|e| if e == Errno::EXIST { Ok(()) } else { Err(e) })
        .with_context(|| format!("creating {}", state_path.display()))?;
    let state = open_dir(&sysroot_fd, &config.state)?;

    let marker = rustix::fs::statat(&state, ENABLE_VERITY_MARKER, rustix::fs::AtFlags::empty());
    let verity_enabled = if options.enable_verity || marker.is_ok() {
        let n = state::enable_verity_all(&repo, image.digest.algorithm())
            .with_context(|| format!("enabling fs-verity on {}/objects", repo_path.display()))?;
        eprintln!("cfs-setup-root: enabled fs-verity on {n} objects");
        n
    } else {
        0
    };

    let (image_file, measured) = open_and_measure(&repo, &repo_path, image)?;
    let verity = if image.insecure {
        VerityMode::Off
    } else {
        VerityMode::Require
    };
    let objects = open_dir(&repo, "objects")?;
    let mount_options = MountOptions {
        verity,
        source: format!("composefs:{}", image.digest),
        // The booted root: setuid binaries (sudo, su) and device nodes must work.
        allow_setuid_devices: true,
    };
    let root = fsmount_composefs(&image_file, Some(objects.as_fd()), &mount_options)
        .map_err(|e| classify_mount_error(e, image))?;

    // Everything below uses descriptors opened before `target` may cover `sysroot`.
    let deploy = state::prepare_deploy(&state, &state_path, &image.digest, config)?;
    let sysroot_clone = open_tree(
        &sysroot_fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .with_context(|| format!("cloning the mount of {}", sysroot.display()))?;

    attach(&root, &target)?;
    let result = finish_tree(&target, &sysroot_clone, &deploy, &state, config);
    if let Err(e) = result {
        // Never leave a half-built root behind: systemd would switch into it.
        let _ = rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH);
        return Err(e);
    }
    if marker.is_ok() {
        let _ = rustix::fs::unlinkat(&state, ENABLE_VERITY_MARKER, rustix::fs::AtFlags::empty());
    }
    if options.target.is_none() && Path::new("/etc/initrd-release").exists() {
        announce_root_device(&sysroot_fd);
    }
    Ok(Outcome {
        digest: image.digest,
        measured,
        verity,
        verity_enabled,
        var_seeded: deploy.var_seeded,
        target,
    })
}

fn finish_tree(
    target: &Path,
    sysroot_clone: &OwnedFd,
    deploy: &state::Deploy,
    state: &OwnedFd,
    config: &Config,
) -> Result<()> {
    let physical = target.join("sysroot");
    if physical.is_dir() {
        attach(sysroot_clone, &physical)?;
    } else {
        eprintln!(
            "cfs-setup-root: warning: the image has no /sysroot; the physical root stays hidden"
        );
    }
    if let Some(etc) = &deploy.etc {
        let lower = target.join("etc");
        // redirect_dir, metacopy and index off, whatever the kernel's defaults: the upper
        // directory must hold whole files and plain whiteouts, which is what the /etc merge
        // of the next upgrade reads (deploy::etc refuses anything else).
        let data = format!(
            "lowerdir={},upperdir=/proc/self/fd/{},workdir=/proc/self/fd/{},redirect_dir=off,metacopy=off,index=off",
            lower.display(),
            rustix::fd::AsRawFd::as_raw_fd(&etc.upper),
            rustix::fd::AsRawFd::as_raw_fd(&etc.work),
        );
        let cdata = std::ffi::CString::new(data.clone()).context("overlay options")?;
        rustix::mount::mount(
            "overlay",
            &lower,
            "overlay",
            MountFlags::empty(),
            cdata.as_c_str(),
        )
        .with_context(|| format!("mounting the /etc overlay on {} ({data})", lower.display()))?;
    }
    if config.var == config::VarMount::Bind {
        state::seed_var_if_missing(state, &target.join("var"))?;
        let var = open_tree(
            state,
            crate::deploy::layout::VAR_DIR,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .context("cloning state/var")?;
        attach(&var, &target.join("var"))?;
    }
    Ok(())
}

/// Tells systemd which block device holds the physical root, now that `/` is an overlay: the
/// symlink `/run/systemd/volatile-root` (what systemd-volatile-root writes for its overlay
/// roots) lets systemd-gpt-auto-generator find the disk, and so mount the ESP next to it at
/// `/efi` or `/boot`, where systemd-bless-boot and bootctl look for it. Best effort: without
/// it only that automount is missing (cfsctl finds the ESP on its own).
fn announce_root_device(sysroot: &OwnedFd) {
    const LINK: &str = "/run/systemd/volatile-root";
    let Ok(st) = rustix::fs::fstat(sysroot) else {
        return;
    };
    let (major, minor) = (rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev));
    if major == 0 {
        return; // not a block device (tmpfs, overlay): nothing to announce
    }
    let target = format!("/dev/block/{major}:{minor}");
    let _ = std::fs::create_dir_all("/run/systemd");
    if let Err(e) = std::os::unix::fs::symlink(&target, LINK)
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        eprintln!("cfs-setup-root: warning: {LINK} -> {target}: {e}");
    }
}

fn attach(mount: &OwnedFd, at: &Path) -> Result<()> {
    move_mount(mount, "", CWD, at, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .with_context(|| format!("attaching a mount on {}", at.display()))
}

pub(crate) fn open_dir(at: impl AsFd, path: impl AsRef<Path>) -> Result<OwnedFd> {
    let path = path.as_ref();
    rustix::fs::openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening directory {}", path.display()))
}

/// Opens `images/<hex>` and checks it is the image the command line names.
fn open_and_measure(repo: &OwnedFd, repo_path: &Path, image: &ImageArg) -> Result<(File, Digest)> {
    let expected = &image.digest;
    let rel = format!("images/{}", expected.to_hex());
    // RESOLVE_BENEATH: the image link must not lead out of the repository.
    let open = || open_beneath(repo, &rel);
    let file = open_verified(open, expected, expected.algorithm(), |e| {
        if !image.insecure {
            return Err(Refusal::MissingVerity {
                expected: *expected,
                reason: e.to_string(),
            }
            .into());
        }
        eprintln!(
            "cfs-setup-root: WARNING: image {expected} has no fs-verity ({e}); composefs=? given, booting WITHOUT integrity checks"
        );
        Ok(())
    })
    .map_err(|e| match e {
        OpenError::Missing => Refusal::MissingImage(*expected, repo_path.to_owned()).into(),
        OpenError::Mismatch { measured } => Refusal::DigestMismatch {
            expected: *expected,
            measured,
        }
        .into(),
        // A refusal is the whole message already (and what the caller matches on).
        OpenError::Other(e) if e.is::<Refusal>() => e,
        OpenError::Other(e) => e.context(format!("{}/{rel}", repo_path.display())),
    })?;
    // The measurement comes from the Merkle tree root; a flipped data byte shows only when the
    // kernel reads it. Reading the (small) image now turns that into a clear refusal instead
    // of an EROFS mount error.
    let mut buf = vec![0u8; 1 << 16];
    let mut reader = &file;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                return Err(Refusal::CorruptImage {
                    expected: *expected,
                    error,
                }
                .into());
            }
        }
    }
    Ok((file, *expected))
}

/// Turns "overlayfs does not know verity=" into [`Refusal::UnsupportedKernel`].
fn classify_mount_error(e: anyhow::Error, image: &ImageArg) -> anyhow::Error {
    let unsupported = e.chain().any(|c| {
        c.downcast_ref::<FsError>()
            .is_some_and(|f| f.errno == Errno::INVAL && f.what.contains("verity=require"))
    });
    if unsupported {
        let msg = format!("{e:#}");
        return Refusal::UnsupportedKernel(msg).into();
    }
    e.context(format!("mounting composefs image {}", image.digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageArg {
        ImageArg {
            digest: Digest::from_hex(&"ab".repeat(32)).unwrap(),
            insecure: false,
        }
    }

    #[test]
    fn overlay_without_verity_option_is_an_unsupported_kernel() {
        let e = anyhow::Error::new(FsError {
            what: "overlay: fsconfig verity=require".into(),
            errno: Errno::INVAL,
            kernel: vec!["e overlay: Unknown parameter 'verity'".into()],
        })
        .context("mounting overlayfs");
        let e = classify_mount_error(e, &image());
        assert!(
            matches!(e.downcast_ref(), Some(Refusal::UnsupportedKernel(_))),
            "{e:#}"
        );
        assert!(format!("{e}").contains("does not support verity=require"));
    }

    #[test]
    fn other_mount_errors_stay_mount_errors() {
        let e = anyhow::Error::new(FsError {
            what: "erofs: fsconfig source=/proc/self/fd/3".into(),
            errno: Errno::INVAL,
            kernel: vec![],
        });
        let e = classify_mount_error(e, &image());
        assert!(e.downcast_ref::<Refusal>().is_none());
        assert!(format!("{e:#}").contains("mounting composefs image abab"));
    }
}
