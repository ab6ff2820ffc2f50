//! What keeps the repository's paths and permissions trustworthy.
//!
//! Every path inside the repository is resolved beneath it without following a symlink:
//! a planted `refs/oci -> /etc` or `objects/ab -> /tmp/x` must not make `oci rm` unlink, or
//! an import write, anywhere else. The only symlinks the repository holds are its own leaves
//! (`images/<hex>`, `refs/<name>`), which are read with `readlinkat` and never followed
//! except by [`open_beneath`](super::images::open_beneath), which keeps their targets inside.
//!
//! The repository is trusted only if no one but its owner (this user or root) can write its
//! top directories: `open` refuses one that others can write (it may already hold their
//! content, so silently repairing it would hide that), `init` repairs a directory of its own
//! to 0700 and refuses one owned by another user, and `fsck` reports it
//! (`docs/repository.md`, "Trust").

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Opens `rel` (several components allowed) below `dir`, refusing every symlink, `..` that
/// leaves `dir`, and magic link on the way (`openat2` `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`);
/// a symlink anywhere, the last component included, is ELOOP. Kernels without `openat2`
/// (before 5.6) get the same rule from a walk one component at a time with `O_NOFOLLOW`.
pub(crate) fn open_nofollow(
    dir: impl AsFd,
    rel: &str,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(&dir, rel, flags, Mode::empty(), resolve) {
            // A rename or mount raced with the lookup (openat2(2)): retry.
            Err(Errno::AGAIN) if tries < 100 => tries += 1,
            Err(Errno::NOSYS) => return open_walk(dir, rel, flags),
            r => return r,
        }
    }
}

fn open_walk(dir: impl AsFd, rel: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let (parents, leaf) = match rel.rsplit_once('/') {
        Some((p, l)) => (Some(p), l),
        None => (None, rel),
    };
    let mut at: Option<OwnedFd> = None;
    for comp in parents.into_iter().flat_map(|p| p.split('/')) {
        if comp == ".." || comp.is_empty() {
            return Err(Errno::XDEV);
        }
        let next = {
            let base = at.as_ref().map_or(dir.as_fd(), |d| d.as_fd());
            open_child_dir(base, comp)?
        };
        at = Some(next);
    }
    if leaf == ".." {
        return Err(Errno::XDEV);
    }
    let base = at.as_ref().map_or(dir.as_fd(), |d| d.as_fd());
    rustix::fs::openat(base, leaf, flags, Mode::empty())
}

/// Opens the directory `name` (one component) in `dir`; a symlink there is ELOOP (or
/// ENOTDIR), never followed.
pub(crate) fn open_child_dir(dir: impl AsFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Why a repository directory cannot be trusted, or `None`: it must be owned by this user
/// or by root, and no one else may write it (no group or other write bit).
pub(crate) fn untrusted_reason(dir: impl AsFd) -> rustix::io::Result<Option<String>> {
    let st = rustix::fs::fstat(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me && st.st_uid != 0 {
        return Ok(Some(format!(
            "owned by uid {}, not by this user (uid {me}) or root",
            st.st_uid
        )));
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Ok(Some(format!(
            "mode {mode:04o} lets other users write it (expected no group/other write, 0700 at init)"
        )));
    }
    Ok(None)
}

/// `init` on an existing directory: refuses one owned by another user (they could change
/// it back at any time), and sets the mode of one of ours to 0700 as the docs promise.
pub(crate) fn repair_new_root(dir: impl AsFd) -> Result<(), String> {
    let dir = dir.as_fd();
    let st = rustix::fs::fstat(dir).map_err(|e| e.to_string())?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me {
        return Err(format!(
            "owned by uid {}, not by this user (uid {me}); refusing to make a repository that user could change",
            st.st_uid
        ));
    }
    if st.st_mode & 0o7777 != 0o700 {
        rustix::fs::fchmod(dir, Mode::from_raw_mode(0o700)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::CWD;

    #[test]
    fn nofollow_refuses_links_at_any_depth() {
        let td = tempfile::tempdir().unwrap();
        let root = td.path().join("root");
        let outside = td.path().join("outside");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("a/b/f"), b"in").unwrap();
        std::fs::write(outside.join("f"), b"out").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/link")).unwrap();
        std::os::unix::fs::symlink("b/f", root.join("a/leaf")).unwrap();
        let dir = open_child_dir(CWD, root.to_str().unwrap()).unwrap();
        for via_walk in [false, true] {
            let open = |rel: &str| {
                if via_walk {
                    open_walk(&dir, rel, OFlags::RDONLY | OFlags::NOFOLLOW)
                } else {
                    open_nofollow(&dir, rel, OFlags::RDONLY)
                }
            };
            open("a/b/f").unwrap();
            for bad in ["a/link/f", "a/leaf", "../outside/f", "a/../../outside/f"] {
                assert!(open(bad).is_err(), "{bad} (walk: {via_walk})");
            }
        }
    }
}
