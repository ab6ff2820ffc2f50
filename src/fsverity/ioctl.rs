//! fs-verity through the kernel (`FS_IOC_ENABLE_VERITY`, `FS_IOC_MEASURE_VERITY`): errors
//! named by what they mean for a caller, digests as [`Digest`], and the userspace fallback
//! (`measure_or_compute`). The raw ioctls, the crate's only `unsafe` code, are in
//! [`crate::sys`].

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use rustix::io::Errno;

use super::{Algorithm, BLOCK_SIZE, Digest, FsVerityHasher};
use crate::sys;

/// Why `FS_IOC_ENABLE_VERITY` failed.
#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    /// The kernel or the filesystem has no fs-verity (EOPNOTSUPP, ENOTTY).
    #[error("fs-verity is not supported by this filesystem or kernel")]
    NotSupported,
    /// A writable file descriptor to the file is still open (ETXTBSY).
    #[error("cannot enable fs-verity: the file is open for writing")]
    Busy,
    /// fs-verity is already enabled on the file (EEXIST).
    #[error("fs-verity is already enabled on the file")]
    AlreadyEnabled,
    /// The kernel refused the built-in signature: no key of the `.fs-verity` keyring made it
    /// (ENOKEY), it does not verify (EKEYREJECTED), or it is not valid PKCS#7 (EBADMSG).
    #[error(
        "the kernel refused the fs-verity signature ({0}): is its certificate in the .fs-verity keyring?"
    )]
    SignatureRejected(io::Error),
    /// The kernel has no built-in fs-verity signatures (ENOPKG:
    /// `CONFIG_FS_VERITY_BUILTIN_SIGNATURES` is off).
    #[error("this kernel cannot check fs-verity signatures (CONFIG_FS_VERITY_BUILTIN_SIGNATURES)")]
    NoSignatureSupport,
    /// Any other error (EINVAL for a refused algorithm, EIO, ENOSPC...).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why `FS_IOC_MEASURE_VERITY` failed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The kernel or the filesystem has no fs-verity (EOPNOTSUPP, ENOTTY).
    #[error("fs-verity is not supported by this filesystem or kernel")]
    NotSupported,
    /// The file has no fs-verity enabled (ENODATA).
    #[error("the file has no fs-verity digest")]
    NoVerity,
    /// Any other error, including a digest algorithm this crate does not know.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn is_not_supported(e: Errno) -> bool {
    // EOPNOTSUPP: filesystem without verity support (or feature not set on ext4);
    // ENOTTY: kernel built without CONFIG_FS_VERITY or a filesystem with no such ioctl.
    e == Errno::OPNOTSUPP || e == Errno::NOTTY
}

/// Enables fs-verity on `fd` with 4096-byte blocks, no salt and no signature.
///
/// `fd` must be opened read-only and no writable descriptor to the file may be open anywhere
/// (the kernel returns ETXTBSY otherwise).
pub fn enable_verity(fd: impl AsFd, algorithm: Algorithm) -> Result<(), EnableError> {
    enable(fd, algorithm, None)
}

/// Enables fs-verity on `fd` as [`enable_verity`] does, with a built-in signature: a PKCS#7
/// DER blob over the file's `fsverity_formatted_digest`
/// ([`super::signature::formatted_digest`]), which the kernel checks against the keys of its
/// `.fs-verity` keyring before it enables anything (kernel
/// `Documentation/filesystems/fsverity.rst`, "Built-in signature verification").
pub fn enable_verity_signed(
    fd: impl AsFd,
    algorithm: Algorithm,
    signature: &[u8],
) -> Result<(), EnableError> {
    enable(fd, algorithm, Some(signature))
}

fn enable(fd: impl AsFd, algorithm: Algorithm, sig: Option<&[u8]>) -> Result<(), EnableError> {
    let result = sys::fsverity_enable(fd, algorithm.kernel_id().into(), BLOCK_SIZE as u32, sig);
    match result {
        Ok(()) => Ok(()),
        Err(e @ (Errno::KEYREJECTED | Errno::NOKEY | Errno::BADMSG)) if sig.is_some() => {
            Err(EnableError::SignatureRejected(e.into()))
        }
        Err(Errno::NOPKG) if sig.is_some() => Err(EnableError::NoSignatureSupport),
        Err(e) if is_not_supported(e) => Err(EnableError::NotSupported),
        Err(Errno::TXTBSY) => Err(EnableError::Busy),
        Err(Errno::EXIST) => Err(EnableError::AlreadyEnabled),
        Err(e) => Err(EnableError::Io(e.into())),
    }
}

/// The built-in signature `fd`'s fs-verity was enabled with (`FS_IOC_READ_VERITY_METADATA`),
/// `None` when it has none.
pub fn read_signature(fd: impl AsFd) -> Result<Option<Vec<u8>>, MeasureError> {
    let mut buf = vec![0u8; 64 << 10];
    match sys::fsverity_read_signature(fd, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::NODATA) => Ok(None),
        Err(e) if is_not_supported(e) => Err(MeasureError::NotSupported),
        Err(e) => Err(MeasureError::Io(e.into())),
    }
}

/// Asks the kernel for the fs-verity digest of `fd`.
pub fn measure_verity(fd: impl AsFd) -> Result<Digest, MeasureError> {
    let result = sys::fsverity_measure(fd);
    let m = match result {
        Ok(m) => m,
        Err(e) if is_not_supported(e) => return Err(MeasureError::NotSupported),
        Err(Errno::NODATA) => return Err(MeasureError::NoVerity),
        Err(e) => return Err(MeasureError::Io(e.into())),
    };
    let algorithm = Algorithm::from_kernel_id(m.algorithm.into());
    let len = m.len;
    match algorithm {
        Some(a) if a.digest_len() == len => {
            Ok(Digest::from_bytes(&m.digest[..len]).expect("length checked"))
        }
        _ => Err(MeasureError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "kernel reported fs-verity algorithm {} with a {len}-byte digest, \
                 which this program does not know",
                m.algorithm
            ),
        ))),
    }
}

/// The fs-verity digest of `file` with `algorithm`: measured by the kernel when verity is
/// enabled on it with that algorithm, computed in userspace otherwise (reading with `pread`,
/// so the file offset is not moved).
pub fn measure_or_compute(file: &File, algorithm: Algorithm) -> io::Result<Digest> {
    match measure_verity(file) {
        Ok(d) if d.algorithm() == algorithm => return Ok(d),
        Ok(_) | Err(MeasureError::NotSupported) | Err(MeasureError::NoVerity) => {}
        Err(MeasureError::Io(e)) => return Err(e),
    }
    compute_digest_at(file, algorithm)
}

/// Userspace fs-verity digest of the whole content of `file`, read with `pread` from offset 0.
pub fn compute_digest_at(file: &File, algorithm: Algorithm) -> io::Result<Digest> {
    let mut hasher = FsVerityHasher::new(algorithm);
    let mut buf = vec![0u8; 256 * 1024];
    let mut offset = 0u64;
    loop {
        match file.read_at(&mut buf, offset) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_or_compute_falls_back_to_userspace() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"hello world").unwrap();
        let d = measure_or_compute(&f, Algorithm::Sha256).unwrap();
        assert_eq!(
            d,
            super::super::digest_bytes(Algorithm::Sha256, b"hello world")
        );
    }
}
