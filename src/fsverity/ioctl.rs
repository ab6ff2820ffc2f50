//! fs-verity ioctls (`FS_IOC_ENABLE_VERITY`, `FS_IOC_MEASURE_VERITY`), and the two loop
//! device ioctls the mount fallback for kernels without file-backed EROFS needs.
//!
//! This is the only module of the crate allowed to use `unsafe`: these ioctls have no safe
//! wrapper in rustix, so they are declared here with rustix's typed ioctl helpers. Everything
//! else (`measure_or_compute`) is safe code on top of them.
//!
//! Structures and numbers follow `include/uapi/linux/fsverity.h` and
//! `include/uapi/linux/loop.h`.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use rustix::io::Errno;
use rustix::ioctl::{self, Ioctl, IoctlOutput, Opcode, Setter, Updater, opcode};

use super::{Algorithm, BLOCK_SIZE, Digest, FsVerityHasher};

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

/// `struct fsverity_enable_arg` (128 bytes).
#[repr(C)]
struct FsVerityEnableArg {
    version: u32,
    hash_algorithm: u32,
    block_size: u32,
    salt_size: u32,
    salt_ptr: u64,
    sig_size: u32,
    reserved1: u32,
    sig_ptr: u64,
    reserved2: [u64; 11],
}

/// `struct fsverity_digest` header; the kernel writes `digest_size` bytes after it.
#[repr(C)]
struct FsVerityDigestHeader {
    digest_algorithm: u16,
    digest_size: u16,
}

/// The header plus room for the largest digest (SHA-512).
#[repr(C)]
struct FsVerityDigestBuf {
    header: FsVerityDigestHeader,
    digest: [u8; 64],
}

/// `FS_IOC_ENABLE_VERITY = _IOW('f', 133, struct fsverity_enable_arg)`.
const FS_IOC_ENABLE_VERITY: Opcode = opcode::write::<FsVerityEnableArg>(b'f', 133);
/// `FS_IOC_MEASURE_VERITY = _IOWR('f', 134, struct fsverity_digest)`; the size in the opcode
/// is that of the 4-byte header only.
const FS_IOC_MEASURE_VERITY: Opcode = opcode::read_write::<FsVerityDigestHeader>(b'f', 134);

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
    let arg = FsVerityEnableArg {
        version: 1,
        hash_algorithm: algorithm.kernel_id().into(),
        block_size: BLOCK_SIZE as u32,
        salt_size: 0,
        salt_ptr: 0,
        sig_size: 0,
        reserved1: 0,
        sig_ptr: 0,
        reserved2: [0; 11],
    };
    // SAFETY: FS_IOC_ENABLE_VERITY reads exactly one `struct fsverity_enable_arg`, which
    // `FsVerityEnableArg` mirrors field for field (repr(C), same size encoded in the opcode).
    // The salt and signature pointers are null with zero sizes, so the kernel reads no other
    // memory, and it writes none.
    let result = unsafe {
        ioctl::ioctl(
            fd.as_fd(),
            Setter::<FS_IOC_ENABLE_VERITY, FsVerityEnableArg>::new(arg),
        )
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if is_not_supported(e) => Err(EnableError::NotSupported),
        Err(Errno::TXTBSY) => Err(EnableError::Busy),
        Err(Errno::EXIST) => Err(EnableError::AlreadyEnabled),
        Err(e) => Err(EnableError::Io(e.into())),
    }
}

/// Asks the kernel for the fs-verity digest of `fd`.
pub fn measure_verity(fd: impl AsFd) -> Result<Digest, MeasureError> {
    let mut buf = FsVerityDigestBuf {
        header: FsVerityDigestHeader {
            digest_algorithm: 0,
            // Input: room available after the header; output: the digest's length.
            digest_size: 64,
        },
        digest: [0; 64],
    };
    // SAFETY: FS_IOC_MEASURE_VERITY reads the 4-byte header, and writes the header plus
    // `digest_size` bytes after it. `FsVerityDigestBuf` is repr(C) with the header first and
    // 64 bytes of space right after it (no padding: the header is 4 bytes with 2-byte
    // alignment and the array has alignment 1), and we announce 64 in `digest_size`, so the
    // kernel never writes past the buffer (it returns EOVERFLOW instead).
    let result = unsafe {
        ioctl::ioctl(
            fd.as_fd(),
            Updater::<FS_IOC_MEASURE_VERITY, FsVerityDigestBuf>::new(&mut buf),
        )
    };
    match result {
        Ok(()) => {}
        Err(e) if is_not_supported(e) => return Err(MeasureError::NotSupported),
        Err(Errno::NODATA) => return Err(MeasureError::NoVerity),
        Err(e) => return Err(MeasureError::Io(e.into())),
    }
    let algorithm = Algorithm::from_kernel_id(buf.header.digest_algorithm.into());
    let len = usize::from(buf.header.digest_size);
    match algorithm {
        Some(a) if a.digest_len() == len => {
            Ok(Digest::from_bytes(&buf.digest[..len]).expect("length checked"))
        }
        _ => Err(MeasureError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "kernel reported fs-verity algorithm {} with a {len}-byte digest, \
                 which this program does not know",
                buf.header.digest_algorithm
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

/// `LOOP_CTL_GET_FREE` (on `/dev/loop-control`): returns the number of a free loop device.
const LOOP_CTL_GET_FREE: Opcode = 0x4C82;
/// `LOOP_CONFIGURE` (Linux 5.8): attach a backing file and set flags in one call.
const LOOP_CONFIGURE: Opcode = 0x4C0A;
/// `LO_FLAGS_READ_ONLY`.
const LO_FLAGS_READ_ONLY: u32 = 1;
/// `LO_FLAGS_AUTOCLEAR`: detach the backing file when the last user closes the device.
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` (232 bytes).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (304 bytes).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// `LOOP_CTL_GET_FREE`: no argument, the result is the ioctl's return value.
struct LoopCtlGetFree;

// SAFETY: LOOP_CTL_GET_FREE takes no argument (we pass a null pointer the kernel ignores)
// and reads or writes no user memory; its non-negative return value is the device number.
unsafe impl Ioctl for LoopCtlGetFree {
    type Output = u32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        LOOP_CTL_GET_FREE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<u32> {
        u32::try_from(out).map_err(|_| Errno::RANGE)
    }
}

/// Asks `/dev/loop-control` (opened as `control`) for a free loop device number.
pub fn loop_ctl_get_free(control: impl AsFd) -> io::Result<u32> {
    // SAFETY: see the `Ioctl` impl of `LoopCtlGetFree`.
    Ok(unsafe { ioctl::ioctl(control.as_fd(), LoopCtlGetFree) }?)
}

/// `LOOP_CONFIGURE`: backs the loop device `device` with `backing`, read-only, detaching
/// automatically once the last user (our descriptor, then the mount) is gone. EBUSY means
/// another process took the device first: ask for a free one again.
pub fn loop_configure_read_only(device: impl AsFd, backing: impl AsFd) -> io::Result<()> {
    let backing_fd = backing.as_fd().as_raw_fd();
    let config = LoopConfig {
        fd: u32::try_from(backing_fd).map_err(|_| io::Error::from(Errno::BADF))?,
        // 0: the kernel picks the backing file's logical block size.
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `LoopConfig` mirrors
    // (repr(C), size checked in the tests) and writes nothing back. `backing` stays borrowed,
    // hence open, for the duration of the call; the kernel takes its own reference.
    unsafe {
        ioctl::ioctl(
            device.as_fd(),
            Setter::<LOOP_CONFIGURE, LoopConfig>::new(config),
        )
    }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_uapi() {
        assert_eq!(std::mem::size_of::<FsVerityEnableArg>(), 128);
        assert_eq!(std::mem::size_of::<FsVerityDigestHeader>(), 4);
        assert_eq!(std::mem::size_of::<FsVerityDigestBuf>(), 68);
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
        // Values from <linux/fsverity.h> as compiled by gcc on x86_64.
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(FS_IOC_ENABLE_VERITY, 0x4080_6685);
            assert_eq!(FS_IOC_MEASURE_VERITY, 0xc004_6686);
        }
    }

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
