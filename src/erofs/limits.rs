//! The composefs format limits and the chunk arithmetic, in one place: the EROFS writer and
//! reader, the dump parser, the directory scan and the OCI layer import all take them from
//! here, so an input that one of them accepts is one the writer can put in an image and the
//! reader can read back.
//!
//! Values are those of C composefs 1.0.8 (`libcomposefs/lcfs-internal.h`, `lcfs-writer.h`,
//! `lcfs-erofs-internal.h`) and of Linux (`include/uapi/linux/limits.h`); `MAX_DEPTH` is ours
//! (`docs/limits.md`).

use super::format::BLOCK_BITS;

/// Longest file name (`LCFS_MAX_NAME_LENGTH`, `EROFS_NAME_LEN`, `NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Longest symlink target or backing-file path: shorter than `PATH_MAX` (4096), as
/// `lcfs_node_set_payload` and the C reader check.
pub const PAYLOAD_MAX: usize = 4095;

/// Largest inline content an image may hold (`LCFS_INLINE_CONTENT_MAX`, `lcfs-writer.h`).
pub const INLINE_CONTENT_MAX: usize = 5000;

/// Largest regular file stored inside the image rather than as an external object when a
/// tree is made from files (`LCFS_RECOMMENDED_INLINE_CONTENT_MAX`, `lcfs-writer.h`): what
/// mkcomposefs does for a directory, and the composefs rule for OCI layers.
pub const INLINE_RECOMMENDED_MAX: u64 = 64;

/// Longest xattr name (`XATTR_NAME_MAX`, `<linux/limits.h>`).
pub const XATTR_NAME_MAX: usize = 255;

/// Largest xattr value (`XATTR_SIZE_MAX` less one; `value_len > UINT16_MAX` is refused by
/// `lcfs_node_set_xattr`).
pub const XATTR_VALUE_MAX: usize = u16::MAX as usize;

/// Budget for one inode's xattrs from external input (`LCFS_INODE_EXTERNAL_XATTR_MAX`),
/// counted as mkcomposefs counts it: 12 for the header, then `7 + name + value` per xattr
/// (`lcfs_node_set_xattr_internal`).
pub const XATTRS_INPUT_MAX: usize = u16::MAX as usize / 2;

/// The C reader keeps an inode's xattrs within 64 KiB, counted its way (see
/// `erofs::reader`'s `XattrSet`).
pub const XATTRS_READ_MAX: usize = u16::MAX as usize;

/// Largest number of chunks of an external file: the chunk table must fit one block
/// (`LCFS_MAX_NONINLINE_CHUNKS`, `lcfs-erofs-internal.h`).
pub const MAX_CHUNKS: u64 = 1024;

/// Most components a path in an image may have (`/a` has one, `/a/b` two): one limit for
/// every writer (dump parser, directory scan, layer import, image writer) and every reader.
/// A deeper tree has paths longer than `PATH_MAX` (4096: each component takes at least a
/// one-byte name and a `/`), which no tool can name in one call, and the limit bounds the
/// work of everything that walks a tree. EROFS itself sets no limit; mkcomposefs neither, so
/// this is ours (`docs/limits.md`).
pub const MAX_DEPTH: usize = 2048;

/// Chunk size bits for an external file: the smallest power of two covering the file, at
/// least one block, at most `block bits + 31` (`erofs_compute_chunk_bitsize`).
pub fn chunk_bits(size: u64) -> u32 {
    let bits = if size <= 1 {
        // ilog2(0) is 0 in the C macro, so sizes 0 and 1 give 1 bit, then the minimum applies.
        1
    } else {
        (size - 1).ilog2() + 1
    };
    bits.clamp(BLOCK_BITS as u32, BLOCK_BITS as u32 + 31)
}

/// Number of chunks an external file of `size` bytes needs (`erofs_compute_chunking`).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(1u64 << chunk_bits(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_matches_c() {
        assert_eq!(chunk_bits(0), 12);
        assert_eq!(chunk_bits(1), 12);
        assert_eq!(chunk_bits(4096), 12);
        assert_eq!(chunk_bits(4097), 13);
        assert_eq!(chunk_bits(u64::MAX), 43);
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1 << 43), 1);
        assert_eq!(chunk_count((1 << 43) + 1), 2);
    }
}
