//! Reading metadata files whole, within a limit: images, manifests, indexes, configs and
//! records are read into memory, so each read is bounded (`docs/limits.md`), and a path that
//! should name a file is refused when it names a FIFO, a device or a directory (a FIFO would
//! block the reader forever, `/dev/zero` would fill memory).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Largest composefs image read into memory (`dump`, layer images): images hold metadata
/// only, about 200 bytes per file, so this is room for millions of files.
pub const MAX_IMAGE: u64 = 1 << 30;

/// Opens `path` for reading and checks that it is a regular file (symlinks are followed).
/// The open does not block on a FIFO (`O_NONBLOCK`, which has no effect on regular files).
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading metadata of {}", path.display()))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        bail!("{} is {kind}, expected a regular file", path.display());
    }
    Ok((file, meta.len()))
}

/// Reads the regular file `path` whole, refusing one over `max` bytes before reading it.
pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > max {
        bail!(
            "{}: {len} bytes is more than the {max} bytes read for such a file",
            path.display()
        );
    }
    read_to_end(file, max).with_context(|| format!("reading {}", path.display()))
}

/// Reads `reader` to its end, failing once it gives more than `max` bytes.
pub fn read_to_end(reader: impl Read, max: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        bail!("more than {max} bytes");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_regular_file_or_too_large() {
        let td = tempfile::tempdir().unwrap();
        let fifo = td.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Opening a FIFO without a writer would block; this returns at once.
        let e = read_file(&fifo, 10).unwrap_err();
        assert!(format!("{e:#}").contains("is a FIFO"), "{e:#}");
        let e = read_file(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(format!("{e:#}").contains("character device"), "{e:#}");
        let e = read_file(td.path(), 10).unwrap_err();
        assert!(format!("{e:#}").contains("a directory"), "{e:#}");
        let file = td.path().join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_file(&file, 10).unwrap(), b"0123456789");
        let e = read_file(&file, 9).unwrap_err();
        assert!(
            format!("{e:#}").contains("10 bytes is more than the 9"),
            "{e:#}"
        );
        assert!(read_to_end(&b"0123456789"[..], 9).is_err());
        assert_eq!(read_to_end(&b"01"[..], 2).unwrap(), b"01");
    }
}
