//! EROFS on-disk format as composefs uses it: the composefs header, the EROFS superblock,
//! compact and extended inodes, xattr headers and entries, directory entries and chunk
//! indexes.
//!
//! Field names follow the kernel's `fs/erofs/erofs_fs.h` (as vendored by composefs 1.0.8 in
//! `libcomposefs/erofs_fs.h`) and composefs's `libcomposefs/lcfs-erofs.h`. Every structure is
//! serialized with explicit little-endian writes (`to_bytes`) and parsed back the same way
//! (`from_bytes`), so no layout depends on the host or on `unsafe` casts.

/// Xattr names of the composefs/overlayfs conventions (`libcomposefs/lcfs-internal.h`, the
/// kernel's `Documentation/filesystems/overlayfs.rst`), shared by the writer and the reader.
pub mod overlay_xattr {
    /// `trusted.overlay.` (`OVERLAY_XATTR_PREFIX`): names overlayfs interprets.
    pub const PREFIX: &[u8] = b"trusted.overlay.";
    /// `trusted.overlay.overlay.` (`OVERLAY_XATTR_ESCAPE_PREFIX`): an input's own overlay xattr,
    /// escaped; overlayfs (>= 6.7) shows it unescaped.
    pub const ESCAPE_PREFIX: &[u8] = b"trusted.overlay.overlay.";
    /// `struct ovl_metacopy` with the content object's fs-verity digest.
    pub const METACOPY: &[u8] = b"trusted.overlay.metacopy";
    /// Path of the content object relative to the data-only layer (`/XX/rest`).
    pub const REDIRECT: &[u8] = b"trusted.overlay.redirect";
    /// Opaque directory marker.
    pub const OPAQUE: &[u8] = b"trusted.overlay.opaque";
    /// An escaped whiteout (a regular file standing for a char 0/0 device).
    pub const ESCAPED_WHITEOUT: &[u8] = b"trusted.overlay.overlay.whiteout";
    /// Marks a directory holding escaped whiteouts.
    pub const ESCAPED_WHITEOUTS: &[u8] = b"trusted.overlay.overlay.whiteouts";
    /// Escaped opaque marker (format version 1 xwhiteout marking).
    pub const ESCAPED_OPAQUE: &[u8] = b"trusted.overlay.overlay.opaque";
    /// `userxattr` mount variant of [`ESCAPED_WHITEOUT`].
    pub const USER_WHITEOUT: &[u8] = b"user.overlay.whiteout";
    /// `userxattr` mount variant of [`ESCAPED_WHITEOUTS`].
    pub const USER_WHITEOUTS: &[u8] = b"user.overlay.whiteouts";
    /// `userxattr` mount variant of [`ESCAPED_OPAQUE`].
    pub const USER_OPAQUE: &[u8] = b"user.overlay.opaque";
}

/// EROFS block size used by composefs, fixed at 4096 on every architecture
/// (`EROFS_BLKSIZ` in composefs's `erofs_fs_wrapper.h`).
pub const BLOCK_SIZE: u64 = 4096;
/// log2 of [`BLOCK_SIZE`] (`EROFS_BLKSIZ_BITS`), stored in `erofs_super_block.blkszbits`.
pub const BLOCK_BITS: u8 = 12;
/// Inodes are addressed in 32-byte slots: `nid = offset / 32` (`EROFS_ISLOTBITS` = 5).
pub const SLOT_BITS: u32 = 5;
/// Size of one inode slot (`EROFS_SLOTSIZE`).
pub const SLOT_SIZE: u64 = 1 << SLOT_BITS;

/// Byte offset of the EROFS superblock in the image (`EROFS_SUPER_OFFSET`).
pub const SUPER_OFFSET: u64 = 1024;
/// EROFS superblock magic (`EROFS_SUPER_MAGIC_V1`).
pub const SUPER_MAGIC_V1: u32 = 0xE0F5_E1E2;

/// `feature_compat` bit: superblock carries a crc32c checksum (`EROFS_FEATURE_COMPAT_SB_CHKSUM`).
pub const FEATURE_COMPAT_SB_CHKSUM: u32 = 0x0000_0001;
/// `feature_compat` bit: extended inodes carry their own mtime (`EROFS_FEATURE_COMPAT_MTIME`).
pub const FEATURE_COMPAT_MTIME: u32 = 0x0000_0002;
/// `feature_compat` bit: inline xattr headers carry a name bloom filter
/// (`EROFS_FEATURE_COMPAT_XATTR_FILTER`).
pub const FEATURE_COMPAT_XATTR_FILTER: u32 = 0x0000_0004;
/// `feature_incompat` bit: chunk-based files (`EROFS_FEATURE_INCOMPAT_CHUNKED_FILE`).
pub const FEATURE_INCOMPAT_CHUNKED_FILE: u32 = 0x0000_0004;

/// composefs header magic at offset 0 (`LCFS_EROFS_MAGIC`, `lcfs-erofs.h`).
pub const COMPOSEFS_MAGIC: u32 = 0xd078_629a;
/// Version of the composefs header layout (`LCFS_EROFS_VERSION`).
pub const COMPOSEFS_HEADER_VERSION: u32 = 1;
/// composefs header flag: some inode has a POSIX ACL (`LCFS_EROFS_FLAGS_HAS_ACL`).
pub const COMPOSEFS_FLAGS_HAS_ACL: u32 = 1 << 0;
/// Highest composefs format version mkcomposefs 1.0.8 writes (`LCFS_VERSION_MAX`).
pub const COMPOSEFS_VERSION_MAX: u32 = 1;

/// Datalayout: plain data blocks, no tail packing (`EROFS_INODE_FLAT_PLAIN`).
pub const INODE_FLAT_PLAIN: u16 = 0;
/// Datalayout: data blocks plus a tail packed right after the inode (`EROFS_INODE_FLAT_INLINE`).
pub const INODE_FLAT_INLINE: u16 = 2;
/// Datalayout: chunk-based file (`EROFS_INODE_CHUNK_BASED`).
pub const INODE_CHUNK_BASED: u16 = 4;
/// `i_format` bit of the inode layout version: 0 compact, 1 extended (`EROFS_I_VERSION_BIT`).
pub const I_VERSION_BIT: u16 = 0;
/// Mask of the layout version in `i_format` (`EROFS_I_VERSION_MASK`).
pub const I_VERSION_MASK: u16 = 0x01;
/// `i_format` bit where the datalayout starts (`EROFS_I_DATALAYOUT_BIT`).
pub const I_DATALAYOUT_BIT: u16 = 1;
/// Mask of the datalayout in `i_format` (`EROFS_I_DATALAYOUT_MASK`).
pub const I_DATALAYOUT_MASK: u16 = 0x07;
/// Inode layout version of a 32-byte compact inode (`EROFS_INODE_LAYOUT_COMPACT`).
pub const INODE_LAYOUT_COMPACT: u16 = 0;
/// Inode layout version of a 64-byte extended inode (`EROFS_INODE_LAYOUT_EXTENDED`).
pub const INODE_LAYOUT_EXTENDED: u16 = 1;

/// Chunk format: mask of `chunk bits - block bits` (`EROFS_CHUNK_FORMAT_BLKBITS_MASK`).
pub const CHUNK_FORMAT_BLKBITS_MASK: u16 = 0x001F;
/// Chunk format: 8-byte chunk indexes instead of 4-byte block addresses
/// (`EROFS_CHUNK_FORMAT_INDEXES`).
pub const CHUNK_FORMAT_INDEXES: u16 = 0x0020;
/// Block address of a hole (`EROFS_NULL_ADDR`, -1 as `__le32`).
pub const NULL_ADDR: u32 = u32::MAX;
/// Size of one entry of a chunk block-address array (`EROFS_BLOCK_MAP_ENTRY_SIZE`).
pub const BLOCK_MAP_ENTRY_SIZE: u64 = 4;

/// Xattr name index: no prefix, the full name is stored.
pub const XATTR_INDEX_NONE: u8 = 0;
/// Xattr name index for `user.` (`EROFS_XATTR_INDEX_USER`).
pub const XATTR_INDEX_USER: u8 = 1;
/// Xattr name index for `system.posix_acl_access` (`EROFS_XATTR_INDEX_POSIX_ACL_ACCESS`).
pub const XATTR_INDEX_POSIX_ACL_ACCESS: u8 = 2;
/// Xattr name index for `system.posix_acl_default` (`EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT`).
pub const XATTR_INDEX_POSIX_ACL_DEFAULT: u8 = 3;
/// Xattr name index for `trusted.` (`EROFS_XATTR_INDEX_TRUSTED`).
pub const XATTR_INDEX_TRUSTED: u8 = 4;
/// Xattr name index for `lustre.` (`EROFS_XATTR_INDEX_LUSTRE`; never written by composefs).
pub const XATTR_INDEX_LUSTRE: u8 = 5;
/// Xattr name index for `security.` (`EROFS_XATTR_INDEX_SECURITY`).
pub const XATTR_INDEX_SECURITY: u8 = 6;
/// Prefixes of the short xattr name indexes, by index (`erofs_xattr_prefixes[]` in
/// `lcfs-erofs-internal.h`); index 0 is "no prefix".
pub const XATTR_PREFIXES: [&[u8]; 7] = [
    b"",
    b"user.",
    b"system.posix_acl_access",
    b"system.posix_acl_default",
    b"trusted.",
    b"lustre.",
    b"security.",
];
/// Bit 7 of `e_name_index` marks a long prefix (`EROFS_XATTR_LONG_PREFIX`); also the maximum
/// number of shared xattrs composefs lets one inode reference.
pub const XATTR_LONG_PREFIX: u8 = 0x80;
/// Number of bits of the xattr name bloom filter (`EROFS_XATTR_FILTER_BITS`).
pub const XATTR_FILTER_BITS: u32 = 32;
/// Filter value meaning "no names present" (`EROFS_XATTR_FILTER_DEFAULT`).
pub const XATTR_FILTER_DEFAULT: u32 = u32::MAX;
/// xxh32 seed of the xattr name filter, plus the name index (`EROFS_XATTR_FILTER_SEED`).
pub const XATTR_FILTER_SEED: u32 = 0x25BB_E08F;

// The name length and depth limits are in `super::limits`, with every other limit.

/// Directory entry file types (`EROFS_FT_*`, same values as the kernel's `FT_*`).
pub mod file_type {
    /// `EROFS_FT_UNKNOWN`.
    pub const UNKNOWN: u8 = 0;
    /// `EROFS_FT_REG_FILE`.
    pub const REG_FILE: u8 = 1;
    /// `EROFS_FT_DIR`.
    pub const DIR: u8 = 2;
    /// `EROFS_FT_CHRDEV`.
    pub const CHRDEV: u8 = 3;
    /// `EROFS_FT_BLKDEV`.
    pub const BLKDEV: u8 = 4;
    /// `EROFS_FT_FIFO`.
    pub const FIFO: u8 = 5;
    /// `EROFS_FT_SOCK`.
    pub const SOCK: u8 = 6;
    /// `EROFS_FT_SYMLINK`.
    pub const SYMLINK: u8 = 7;
}

/// Little-endian field readers over a fixed buffer, used by every `from_bytes`.
fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// The 32-byte composefs header at offset 0 (`struct lcfs_erofs_header_s`); the EROFS
/// superblock follows at [`SUPER_OFFSET`], the bytes between are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComposefsHeader {
    /// [`COMPOSEFS_MAGIC`].
    pub magic: u32,
    /// [`COMPOSEFS_HEADER_VERSION`].
    pub version: u32,
    /// `COMPOSEFS_FLAGS_*`.
    pub flags: u32,
    /// Format version the image was written with (0 or 1).
    pub composefs_version: u32,
}

impl ComposefsHeader {
    /// On-disk size.
    pub const SIZE: usize = 32;

    /// Serializes the header (the four `unused` words are zero).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put32(&mut b, 0, self.magic);
        put32(&mut b, 4, self.version);
        put32(&mut b, 8, self.flags);
        put32(&mut b, 12, self.composefs_version);
        b
    }

    /// Parses a header (no validation).
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        ComposefsHeader {
            magic: le32(b, 0),
            version: le32(b, 4),
            flags: le32(b, 8),
            composefs_version: le32(b, 12),
        }
    }
}

/// The 128-byte EROFS superblock (`struct erofs_super_block`). Fields composefs never sets
/// (uuid, volume name, compression, devices, long prefixes, packed inode) are kept so a
/// reader can check them, and serialized at their offsets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Superblock {
    /// [`SUPER_MAGIC_V1`].
    pub magic: u32,
    /// crc32c of the superblock when `FEATURE_COMPAT_SB_CHKSUM` is set (composefs: 0).
    pub checksum: u32,
    /// `FEATURE_COMPAT_*` bits.
    pub feature_compat: u32,
    /// log2 of the block size.
    pub blkszbits: u8,
    /// Extra 16-byte superblock slots.
    pub sb_extslots: u8,
    /// nid of the root directory.
    pub root_nid: u16,
    /// Number of inodes.
    pub inos: u64,
    /// Seconds of the mtime every compact inode has.
    pub build_time: u64,
    /// Nanoseconds of that mtime.
    pub build_time_nsec: u32,
    /// Total blocks of the image.
    pub blocks: u32,
    /// Block where the inode (metadata) area starts; nids count from there.
    pub meta_blkaddr: u32,
    /// Block where the shared xattr area starts; shared xattr ids count from there in 4-byte
    /// units.
    pub xattr_blkaddr: u32,
    /// Volume uuid.
    pub uuid: [u8; 16],
    /// Volume name.
    pub volume_name: [u8; 16],
    /// `FEATURE_INCOMPAT_*` bits.
    pub feature_incompat: u32,
    /// `available_compr_algs` / `lz4_max_distance` union.
    pub u1: u16,
    /// Devices besides the primary one.
    pub extra_devices: u16,
    /// Device table slot offset.
    pub devt_slotoff: u16,
    /// log2 of the directory block size minus block bits.
    pub dirblkbits: u8,
    /// Number of long xattr name prefixes.
    pub xattr_prefix_count: u8,
    /// Start of the long xattr prefixes.
    pub xattr_prefix_start: u32,
    /// nid of the packed inode.
    pub packed_nid: u64,
    /// Reserved for the xattr filter.
    pub xattr_filter_reserved: u8,
}

impl Superblock {
    /// On-disk size.
    pub const SIZE: usize = 128;

    /// Serializes the superblock; reserved bytes are zero.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put32(&mut b, 0, self.magic);
        put32(&mut b, 4, self.checksum);
        put32(&mut b, 8, self.feature_compat);
        b[12] = self.blkszbits;
        b[13] = self.sb_extslots;
        put16(&mut b, 14, self.root_nid);
        put64(&mut b, 16, self.inos);
        put64(&mut b, 24, self.build_time);
        put32(&mut b, 32, self.build_time_nsec);
        put32(&mut b, 36, self.blocks);
        put32(&mut b, 40, self.meta_blkaddr);
        put32(&mut b, 44, self.xattr_blkaddr);
        b[48..64].copy_from_slice(&self.uuid);
        b[64..80].copy_from_slice(&self.volume_name);
        put32(&mut b, 80, self.feature_incompat);
        put16(&mut b, 84, self.u1);
        put16(&mut b, 86, self.extra_devices);
        put16(&mut b, 88, self.devt_slotoff);
        b[90] = self.dirblkbits;
        b[91] = self.xattr_prefix_count;
        put32(&mut b, 92, self.xattr_prefix_start);
        put64(&mut b, 96, self.packed_nid);
        b[104] = self.xattr_filter_reserved;
        b
    }

    /// Parses a superblock (no validation).
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        Superblock {
            magic: le32(b, 0),
            checksum: le32(b, 4),
            feature_compat: le32(b, 8),
            blkszbits: b[12],
            sb_extslots: b[13],
            root_nid: le16(b, 14),
            inos: le64(b, 16),
            build_time: le64(b, 24),
            build_time_nsec: le32(b, 32),
            blocks: le32(b, 36),
            meta_blkaddr: le32(b, 40),
            xattr_blkaddr: le32(b, 44),
            uuid: b[48..64].try_into().expect("16 bytes"),
            volume_name: b[64..80].try_into().expect("16 bytes"),
            feature_incompat: le32(b, 80),
            u1: le16(b, 84),
            extra_devices: le16(b, 86),
            devt_slotoff: le16(b, 88),
            dirblkbits: b[90],
            xattr_prefix_count: b[91],
            xattr_prefix_start: le32(b, 92),
            packed_nid: le64(b, 96),
            xattr_filter_reserved: b[104],
        }
    }
}

/// Builds an `i_format` value from layout version and datalayout.
pub const fn inode_format(layout: u16, datalayout: u16) -> u16 {
    (datalayout << I_DATALAYOUT_BIT) | (layout << I_VERSION_BIT)
}

/// The 32-byte compact inode (`struct erofs_inode_compact`); its mtime is the superblock's
/// build time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeCompact {
    /// Layout version and datalayout, see [`inode_format`].
    pub format: u16,
    /// Inline xattr size in 4-byte units past the 12-byte header, plus one; 0 for none.
    pub xattr_icount: u16,
    /// `st_mode` (low 16 bits).
    pub mode: u16,
    /// Link count.
    pub nlink: u16,
    /// Size.
    pub size: u32,
    /// The `i_u` union: raw block address, rdev, or chunk info (format in the low 16 bits).
    pub u: u32,
    /// Inode number for 32-bit stat.
    pub ino: u32,
    /// Owner.
    pub uid: u16,
    /// Group.
    pub gid: u16,
}

impl InodeCompact {
    /// On-disk size.
    pub const SIZE: usize = 32;

    /// Serializes the inode; reserved fields are zero.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put16(&mut b, 0, self.format);
        put16(&mut b, 2, self.xattr_icount);
        put16(&mut b, 4, self.mode);
        put16(&mut b, 6, self.nlink);
        put32(&mut b, 8, self.size);
        put32(&mut b, 16, self.u);
        put32(&mut b, 20, self.ino);
        put16(&mut b, 24, self.uid);
        put16(&mut b, 26, self.gid);
        b
    }

    /// Parses a compact inode.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        InodeCompact {
            format: le16(b, 0),
            xattr_icount: le16(b, 2),
            mode: le16(b, 4),
            nlink: le16(b, 6),
            size: le32(b, 8),
            u: le32(b, 16),
            ino: le32(b, 20),
            uid: le16(b, 24),
            gid: le16(b, 26),
        }
    }
}

/// The 64-byte extended inode (`struct erofs_inode_extended`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeExtended {
    /// Layout version and datalayout, see [`inode_format`].
    pub format: u16,
    /// As in [`InodeCompact::xattr_icount`].
    pub xattr_icount: u16,
    /// `st_mode` (low 16 bits).
    pub mode: u16,
    /// Size.
    pub size: u64,
    /// The `i_u` union, as in [`InodeCompact::u`].
    pub u: u32,
    /// Inode number for 32-bit stat.
    pub ino: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds.
    pub mtime: u64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Link count.
    pub nlink: u32,
}

impl InodeExtended {
    /// On-disk size.
    pub const SIZE: usize = 64;

    /// Serializes the inode; reserved fields are zero.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put16(&mut b, 0, self.format);
        put16(&mut b, 2, self.xattr_icount);
        put16(&mut b, 4, self.mode);
        put64(&mut b, 8, self.size);
        put32(&mut b, 16, self.u);
        put32(&mut b, 20, self.ino);
        put32(&mut b, 24, self.uid);
        put32(&mut b, 28, self.gid);
        put64(&mut b, 32, self.mtime);
        put32(&mut b, 40, self.mtime_nsec);
        put32(&mut b, 44, self.nlink);
        b
    }

    /// Parses an extended inode.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        InodeExtended {
            format: le16(b, 0),
            xattr_icount: le16(b, 2),
            mode: le16(b, 4),
            size: le64(b, 8),
            u: le32(b, 16),
            ino: le32(b, 20),
            uid: le32(b, 24),
            gid: le32(b, 28),
            mtime: le64(b, 32),
            mtime_nsec: le32(b, 40),
            nlink: le32(b, 44),
        }
    }
}

/// The 12-byte header of an inode's inline xattr area (`struct erofs_xattr_ibody_header`),
/// followed by `shared_count` 4-byte shared xattr ids and then the inline entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XattrHeader {
    /// Bloom filter of the names present; a set bit means "not present".
    pub name_filter: u32,
    /// Number of shared xattr ids that follow.
    pub shared_count: u8,
}

impl XattrHeader {
    /// On-disk size.
    pub const SIZE: usize = 12;

    /// Serializes the header.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put32(&mut b, 0, self.name_filter);
        b[4] = self.shared_count;
        b
    }

    /// Parses a header.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        XattrHeader {
            name_filter: le32(b, 0),
            shared_count: b[4],
        }
    }
}

/// The 4-byte head of an xattr entry (`struct erofs_xattr_entry`), followed by the name
/// suffix and the value, padded to 4 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XattrEntry {
    /// Length of the name suffix.
    pub name_len: u8,
    /// Name prefix index (`XATTR_INDEX_*`).
    pub name_index: u8,
    /// Length of the value.
    pub value_size: u16,
}

impl XattrEntry {
    /// On-disk size of the head.
    pub const SIZE: usize = 4;

    /// Serializes the head.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0] = self.name_len;
        b[1] = self.name_index;
        put16(&mut b, 2, self.value_size);
        b
    }

    /// Parses the head.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        XattrEntry {
            name_len: b[0],
            name_index: b[1],
            value_size: le16(b, 2),
        }
    }

    /// Size of the whole entry, padded to 4 bytes (`erofs_xattr_entry_size`).
    pub fn padded_size(&self) -> u64 {
        (Self::SIZE as u64 + self.name_len as u64 + self.value_size as u64).next_multiple_of(4)
    }
}

/// A 12-byte directory entry (`struct erofs_dirent`); a directory block holds all dirents,
/// then all names, each name ending where the next begins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dirent {
    /// nid of the target inode.
    pub nid: u64,
    /// Offset of the name within the block.
    pub nameoff: u16,
    /// `file_type::*`.
    pub file_type: u8,
}

impl Dirent {
    /// On-disk size.
    pub const SIZE: usize = 12;

    /// Serializes the dirent.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put64(&mut b, 0, self.nid);
        put16(&mut b, 8, self.nameoff);
        b[10] = self.file_type;
        b
    }

    /// Parses a dirent.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        Dirent {
            nid: le64(b, 0),
            nameoff: le16(b, 8),
            file_type: b[10],
        }
    }
}

/// An 8-byte chunk index (`struct erofs_inode_chunk_index`), used when the chunk format has
/// [`CHUNK_FORMAT_INDEXES`]; composefs writes the 4-byte block-address form instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkIndex {
    /// Always 0.
    pub advise: u16,
    /// Back-end device id.
    pub device_id: u16,
    /// Start block of the chunk, [`NULL_ADDR`] for a hole.
    pub blkaddr: u32,
}

impl ChunkIndex {
    /// On-disk size.
    pub const SIZE: usize = 8;

    /// Serializes the index.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put16(&mut b, 0, self.advise);
        put16(&mut b, 2, self.device_id);
        put32(&mut b, 4, self.blkaddr);
        b
    }

    /// Parses an index.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        ChunkIndex {
            advise: le16(b, 0),
            device_id: le16(b, 2),
            blkaddr: le32(b, 4),
        }
    }
}

/// Size of the inline xattr area for `xattr_icount` (`erofs_xattr_ibody_size`).
pub fn xattr_ibody_size(xattr_icount: u16) -> u64 {
    if xattr_icount == 0 {
        0
    } else {
        XattrHeader::SIZE as u64 + 4 * (xattr_icount as u64 - 1)
    }
}

/// Splits an xattr name into its short prefix index and the stored suffix, the way
/// composefs does when writing (`xattr_erofs_entry_index` in `lcfs-writer-erofs.c`: `user.`,
/// the two POSIX ACL names, `trusted.`, `security.`; `lustre.` is never used).
pub fn xattr_name_split(name: &[u8]) -> (u8, &[u8]) {
    for index in [
        XATTR_INDEX_USER,
        XATTR_INDEX_POSIX_ACL_ACCESS,
        XATTR_INDEX_POSIX_ACL_DEFAULT,
        XATTR_INDEX_TRUSTED,
        XATTR_INDEX_SECURITY,
    ] {
        let prefix = XATTR_PREFIXES[index as usize];
        if let Some(rest) = name.strip_prefix(prefix) {
            return (index, rest);
        }
    }
    (XATTR_INDEX_NONE, name)
}

/// xxh32 (Yann Collet's xxHash, 32-bit), as the kernel's `lib/xxhash.c` computes it; EROFS
/// uses it for the xattr name filter.
pub fn xxh32(input: &[u8], seed: u32) -> u32 {
    const P1: u32 = 2_654_435_761;
    const P2: u32 = 2_246_822_519;
    const P3: u32 = 3_266_489_917;
    const P4: u32 = 668_265_263;
    const P5: u32 = 374_761_393;
    let round = |acc: u32, lane: u32| {
        acc.wrapping_add(lane.wrapping_mul(P2))
            .rotate_left(13)
            .wrapping_mul(P1)
    };
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut p = input;
    let mut h = if input.len() >= 16 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while p.len() >= 16 {
            for (i, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, word(&p[4 * i..]));
            }
            p = &p[16..];
        }
        v[0].rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(input.len() as u32);
    while p.len() >= 4 {
        h = h
            .wrapping_add(word(p).wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
        p = &p[4..];
    }
    for &byte in p {
        h = h
            .wrapping_add((byte as u32).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^= h >> 16;
    h
}

/// The name filter bit an xattr sets in [`XattrHeader::name_filter`]
/// (`compute_erofs_xattr_filter`: xxh32 of the suffix, seeded with the filter seed plus the
/// prefix index, modulo 32).
pub fn xattr_filter_bit(index: u8, suffix: &[u8]) -> u32 {
    xxh32(suffix, XATTR_FILTER_SEED.wrapping_add(index as u32)) & (XATTR_FILTER_BITS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh32_reference_values() {
        // Reference values of the xxHash test suite.
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"a", 0), 0x550D_7456);
        assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
        assert_eq!(
            xxh32(b"Nobody inspects the spammish repetition", 0),
            0xE229_3B2F
        );
    }

    #[test]
    fn roundtrips() {
        let sb = Superblock {
            magic: SUPER_MAGIC_V1,
            root_nid: 36,
            inos: 5,
            blocks: 3,
            ..Default::default()
        };
        assert_eq!(Superblock::from_bytes(&sb.to_bytes()), sb);
        let i = InodeExtended {
            format: inode_format(INODE_LAYOUT_EXTENDED, INODE_FLAT_INLINE),
            size: 1 << 40,
            mtime: 7,
            nlink: 3,
            ..Default::default()
        };
        assert_eq!(InodeExtended::from_bytes(&i.to_bytes()), i);
        assert_eq!(
            xattr_name_split(b"trusted.overlay.x"),
            (4, &b"overlay.x"[..])
        );
        assert_eq!(xattr_name_split(b"system.posix_acl_access"), (2, &b""[..]));
        assert_eq!(xattr_name_split(b"foo.bar"), (0, &b"foo.bar"[..]));
    }
}
