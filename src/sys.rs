//! The raw kernel interfaces cfsctl needs that rustix has no safe wrapper for: the fs-verity
//! ioctls (`FS_IOC_ENABLE_VERITY`, `FS_IOC_MEASURE_VERITY`) and the two loop-device ioctls the
//! mount fallback for kernels without file-backed EROFS needs.
//!
//! This is the only module of the crate allowed to use `unsafe` (`unsafe_code` is denied in
//! Cargo.toml and allowed here alone): each call is declared with rustix's typed ioctl
//! helpers, next to the `repr(C)` mirror of the kernel structure it passes and a SAFETY note.
//! The functions take and return plain numbers and bytes; meaning (algorithms, digests, error
//! kinds) is given to them by safe code above (`fsverity::ioctl`, `mount`).
//!
//! Structures and numbers follow `include/uapi/linux/fsverity.h` and
//! `include/uapi/linux/loop.h`.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use rustix::io::Errno;
use rustix::ioctl::{self, Ioctl, IoctlOutput, Opcode, Setter, Updater, opcode};

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

/// `FS_IOC_ENABLE_VERITY` with `hash_algorithm` (`FS_VERITY_HASH_ALG_*`), `block_size`, no
/// salt, and `signature` (a PKCS#7 DER blob the kernel checks against its `.fs-verity`
/// keyring) when given. The errno is returned as is: its meaning depends on the caller.
pub fn fsverity_enable(
    fd: impl AsFd,
    hash_algorithm: u32,
    block_size: u32,
    signature: Option<&[u8]>,
) -> Result<(), Errno> {
    let (sig_ptr, sig_size) = match signature {
        Some(sig) => (
            sig.as_ptr() as u64,
            u32::try_from(sig.len()).map_err(|_| Errno::MSGSIZE)?,
        ),
        None => (0, 0),
    };
    let arg = FsVerityEnableArg {
        version: 1,
        hash_algorithm,
        block_size,
        salt_size: 0,
        salt_ptr: 0,
        sig_size,
        reserved1: 0,
        sig_ptr,
        reserved2: [0; 11],
    };
    // SAFETY: FS_IOC_ENABLE_VERITY reads exactly one `struct fsverity_enable_arg`, which
    // `FsVerityEnableArg` mirrors field for field (repr(C), same size encoded in the opcode).
    // The salt pointer is null with a zero size; the signature pointer is null with a zero
    // size, or points at `sig_size` bytes of `signature`, borrowed for the whole call, which
    // the kernel only reads. It writes no user memory.
    unsafe {
        ioctl::ioctl(
            fd.as_fd(),
            Setter::<FS_IOC_ENABLE_VERITY, FsVerityEnableArg>::new(arg),
        )
    }
}

/// `struct fsverity_read_metadata_arg` (40 bytes).
#[repr(C)]
struct FsVerityReadMetadataArg {
    metadata_type: u64,
    offset: u64,
    length: u64,
    buf_ptr: u64,
    reserved: u64,
}

/// `FS_IOC_READ_VERITY_METADATA = _IOWR('f', 135, struct fsverity_read_metadata_arg)`.
const FS_IOC_READ_VERITY_METADATA: Opcode =
    opcode::read_write::<FsVerityReadMetadataArg>(b'f', 135);
/// `FS_VERITY_METADATA_TYPE_SIGNATURE`.
const METADATA_TYPE_SIGNATURE: u64 = 3;

/// `FS_IOC_READ_VERITY_METADATA` for the signature: the result is the ioctl's return value.
struct ReadSignature {
    arg: FsVerityReadMetadataArg,
}

// SAFETY: FS_IOC_READ_VERITY_METADATA reads one `struct fsverity_read_metadata_arg`,
// mirrored by `FsVerityReadMetadataArg` (repr(C), size in the opcode), and writes at most
// `length` bytes at `buf_ptr`, which [`fsverity_read_signature`] points at a buffer it
// borrows mutably for the whole call. Its non-negative return value is the bytes written.
unsafe impl Ioctl for ReadSignature {
    type Output = usize;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        FS_IOC_READ_VERITY_METADATA
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        (&raw mut self.arg).cast()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<usize> {
        usize::try_from(out).map_err(|_| Errno::RANGE)
    }
}

/// Reads the built-in signature the file's fs-verity was enabled with into `buf`; returns
/// its length (ENODATA: none; the kernel returns at most `buf.len()` bytes).
pub fn fsverity_read_signature(fd: impl AsFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let op = ReadSignature {
        arg: FsVerityReadMetadataArg {
            metadata_type: METADATA_TYPE_SIGNATURE,
            offset: 0,
            length: buf.len() as u64,
            buf_ptr: buf.as_mut_ptr() as u64,
            reserved: 0,
        },
    };
    // SAFETY: see the `Ioctl` impl of `ReadSignature`; `buf` outlives the call.
    unsafe { ioctl::ioctl(fd.as_fd(), op) }
}

/// What `FS_IOC_MEASURE_VERITY` reported: the algorithm number (`FS_VERITY_HASH_ALG_*`) and
/// the digest bytes (`digest[..len]`).
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// `digest_algorithm`.
    pub algorithm: u16,
    /// `digest_size` as reported: check it against the algorithm before slicing `digest`.
    pub len: usize,
    /// The digest, in the first `len` bytes.
    pub digest: [u8; 64],
}

/// `FS_IOC_MEASURE_VERITY` on `fd`, with room for the largest digest (SHA-512).
pub fn fsverity_measure(fd: impl AsFd) -> Result<Measured, Errno> {
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
    unsafe {
        ioctl::ioctl(
            fd.as_fd(),
            Updater::<FS_IOC_MEASURE_VERITY, FsVerityDigestBuf>::new(&mut buf),
        )
    }?;
    Ok(Measured {
        algorithm: buf.header.digest_algorithm,
        len: usize::from(buf.header.digest_size),
        digest: buf.digest,
    })
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
}
