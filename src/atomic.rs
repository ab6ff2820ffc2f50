//! Publishing small files durably and atomically in a directory opened once: write a temporary
//! name, fsync, rename over the final name, fsync the directory. Used for the repository's
//! metadata and for every record, entry and marker of a host (state directory, ESP), so a
//! crash at any instant leaves either the old file or the new one, never a torn one.
//!
//! On the ESP (FAT, no journal) the rename is the commit point: the temporary name is never a
//! `*.conf` name, so systemd-boot ignores it, and the final directory entry is written only
//! after the content is on disk (docs/lifecycle.md, "Power loss").

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};

/// Prefix of every temporary name this program creates; never a valid object, image, ref,
/// record or boot entry name.
pub const TMP_PREFIX: &str = ".tmp-";

/// A name no other thread or process will pick: `.tmp-<what>-<pid>-<counter>-<nanos>`.
pub fn temp_name(what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{TMP_PREFIX}{what}-{}-{n}-{nanos}", std::process::id())
}

/// Writes `name` in `dir` through a temporary file (mode `mode`), fsync and rename with
/// `flags`, then fsyncs the directory: once this returns, the file survives a crash.
pub fn write_file(
    dir: impl AsFd,
    name: &str,
    data: &[u8],
    mode: u32,
    flags: RenameFlags,
) -> io::Result<()> {
    let dir = dir.as_fd();
    let tmp = temp_name("file");
    let fd = rustix::fs::openat(
        dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(mode),
    )?;
    let result = (|| {
        let mut f = File::from(fd);
        f.write_all(data)?;
        f.sync_all()?;
        rustix::fs::renameat_with(dir, &tmp, dir, name, flags)?;
        // vfat: the rename writes the new directory entry with no size and no first cluster;
        // only writing the inode back fills them in (vfat_sync_ipos without dirsync). Until
        // then a power cut leaves an empty file under the new name, so the inode is written
        // now, while the directory is synced below. Nothing to do on journalled filesystems.
        f.sync_all()?;
        rustix::fs::fsync(dir)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
    }
    result
}

/// Renames file `from` to `to` inside `dir`, then fsyncs the file (on vfat that is what
/// writes its size and first cluster into the new directory entry, see [`write_file`]) and
/// the directory.
pub fn rename(dir: impl AsFd, from: &str, to: &str) -> io::Result<()> {
    let dir = dir.as_fd();
    let file = rustix::fs::openat(
        dir,
        from,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    rustix::fs::renameat(dir, from, dir, to)?;
    rustix::fs::fsync(&file)?;
    rustix::fs::fsync(dir)?;
    Ok(())
}

/// Removes file `name` from `dir` (absent is fine) and fsyncs the directory.
pub fn remove_file(dir: impl AsFd, name: &str) -> io::Result<()> {
    let dir = dir.as_fd();
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    rustix::fs::fsync(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_leaves_no_temporary() {
        let td = tempfile::tempdir().unwrap();
        let dir = File::open(td.path()).unwrap();
        write_file(&dir, "a", b"one", 0o644, RenameFlags::empty()).unwrap();
        write_file(&dir, "a", b"two", 0o600, RenameFlags::empty()).unwrap();
        assert_eq!(std::fs::read(td.path().join("a")).unwrap(), b"two");
        let err = write_file(&dir, "a", b"x", 0o644, RenameFlags::NOREPLACE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        rename(&dir, "a", "b").unwrap();
        remove_file(&dir, "b").unwrap();
        remove_file(&dir, "b").unwrap();
        assert_eq!(std::fs::read_dir(td.path()).unwrap().count(), 0);
        assert!(temp_name("x").starts_with(".tmp-x-"));
    }
}
