//! EROFS image writer with the composefs conventions, byte-identical to C `mkcomposefs`
//! 1.0.8 for the same tree and format version (`libcomposefs/lcfs-writer-erofs.c`).
//!
//! Image layout: composefs header, zeros, superblock at 1024, inodes (each with its inline
//! xattrs and tail data) from 1152, shared xattrs, then block-aligned data blocks (directory
//! blocks, inline-file blocks, symlink blocks, chunk tables of external files). The writer
//! works in three passes over compact per-inode records (`prepare`, `layout`, emit) and
//! streams the bytes out, so the image is never held in memory: [`compute_digest`] feeds the
//! same stream into an fs-verity hasher.

mod layout;
mod prepare;

use std::io::{self, Write};

use self::layout::{InodeLayout, Layout, SharedXattrs, inode_size};
use self::prepare::{Child, Data, Node, NodeXattr, Prepared};
use crate::erofs::format::{
    BLOCK_BITS, BLOCK_SIZE, COMPOSEFS_FLAGS_HAS_ACL, COMPOSEFS_HEADER_VERSION, COMPOSEFS_MAGIC,
    COMPOSEFS_VERSION_MAX, ComposefsHeader, Dirent, FEATURE_COMPAT_MTIME,
    FEATURE_COMPAT_XATTR_FILTER, INODE_CHUNK_BASED, INODE_FLAT_INLINE, INODE_FLAT_PLAIN,
    INODE_LAYOUT_COMPACT, INODE_LAYOUT_EXTENDED, InodeCompact, InodeExtended, NULL_ADDR, SLOT_SIZE,
    SUPER_MAGIC_V1, SUPER_OFFSET, Superblock, XATTR_FILTER_DEFAULT, XattrEntry, XattrHeader,
    file_type, inode_format, xattr_filter_bit, xattr_name_split,
};
use crate::fsverity::{Algorithm, Digest, FsVerityHasher};
use crate::tree::{Tree, mode};

/// Options of [`write_image`], as mkcomposefs's `--min-version` / `--max-version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Lowest composefs format version to write (mkcomposefs default 0).
    pub min_version: u32,
    /// Highest version the writer may pick when the tree needs it, i.e. has whiteouts
    /// (default 1). Raised to `min_version` when lower.
    pub max_version: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        // LCFS_DEFAULT_VERSION_MIN / LCFS_DEFAULT_VERSION_MAX (lcfs-writer.h).
        WriteOptions {
            min_version: 0,
            max_version: 1,
        }
    }
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The requested format version is unknown.
    #[error("unsupported composefs format version {0} (max {COMPOSEFS_VERSION_MAX})")]
    UnsupportedVersion(u32),
    /// The tree breaks a rule of the format.
    #[error("{path}: {rule}")]
    Invalid {
        /// Where.
        path: String,
        /// The rule broken.
        rule: TreeRule,
    },
    /// The image does not fit the format's address fields.
    #[error("image too large: {0}")]
    TooLarge(&'static str),
    /// Writing the output failed.
    #[error("writing image: {0}")]
    Io(#[from] io::Error),
}

/// A rule of the composefs format (as mkcomposefs 1.0.8 enforces it) that a tree broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TreeRule {
    /// The mode has no valid file type.
    #[error("mode has no valid file type")]
    InvalidMode,
    /// A non-directory has directory entries.
    #[error("a non-directory has directory entries")]
    EntriesOnNonDirectory,
    /// An empty file name.
    #[error("empty file name")]
    EmptyName,
    /// A file named `.` or `..`.
    #[error("file name '.' or '..'")]
    DotName,
    /// A file name over 255 bytes (`LCFS_MAX_NAME_LENGTH`).
    #[error("file name longer than 255 bytes")]
    NameTooLong,
    /// A file name with `/` or NUL.
    #[error("file name contains '/' or NUL")]
    NameWithSlashOrNul,
    /// A path of more than [`MAX_DEPTH`](crate::erofs::limits::MAX_DEPTH) components.
    #[error(
        "more than {} path components, the most a composefs image holds",
        crate::erofs::limits::MAX_DEPTH
    )]
    TooDeep,
    /// A directory entry to an inode not in the tree.
    #[error("directory entry points to a missing inode")]
    DanglingEntry,
    /// A hard link to a directory.
    #[error("hardlink to a directory")]
    DirectoryHardlink,
    /// An inode with two primary entries, or a directory containing itself.
    #[error("an inode has two primary entries (or a directory loop)")]
    MultiplePrimaryEntries,
    /// A hard link to an inode that has no primary entry.
    #[error("hardlink to an inode that has no primary entry")]
    NoPrimaryEntry,
    /// An xattr name that is empty, over 255 bytes or contains NUL.
    #[error("xattr name empty, over 255 bytes or with NUL")]
    InvalidXattrName,
    /// An xattr value over 65535 bytes.
    #[error("xattr value over 65535 bytes")]
    XattrValueTooLarge,
    /// The same xattr name twice on one inode.
    #[error("duplicate xattr name")]
    DuplicateXattr,
    /// The inode's xattrs exceed the per-inode budget (`LCFS_INODE_EXTERNAL_XATTR_MAX`).
    #[error("xattrs exceed the per-inode limit")]
    XattrsTooLarge,
    /// The overlay xattrs the writer adds replace input xattrs in a way that makes
    /// mkcomposefs 1.0.8 fail (its size accounting underflows); refused the same way.
    #[error("xattrs added by the writer exceed the per-inode limit (as in mkcomposefs)")]
    WriterXattrsTooLarge,
    /// A symlink target that is empty, 4096 bytes or longer, or contains NUL.
    #[error("symlink target empty, too long or with NUL")]
    InvalidSymlinkTarget,
    /// Inline content whose length differs from the inode size.
    #[error("inline content length differs from size")]
    InlineSizeMismatch,
    /// Inline content over 5000 bytes (`LCFS_INLINE_CONTENT_MAX`).
    #[error("inline content over 5000 bytes")]
    InlineTooLarge,
    /// An external file needing more than 1024 chunks (`LCFS_MAX_NONINLINE_CHUNKS`).
    #[error("file too big for a composefs external file")]
    FileTooBig,
}

/// Writes the EROFS image of `tree` to `out`.
pub fn write_image(
    tree: &Tree,
    opts: &WriteOptions,
    out: &mut impl Write,
) -> Result<(), WriteError> {
    for v in [opts.min_version, opts.max_version] {
        if v > COMPOSEFS_VERSION_MAX {
            return Err(WriteError::UnsupportedVersion(v));
        }
    }
    let prepared = prepare::prepare(tree, opts.min_version, opts.max_version)?;
    let shared = SharedXattrs::compute(&prepared.nodes);
    let layout = Layout::compute(&prepared, &shared);
    let mut w = Out {
        inner: out,
        pos: 0,
        buf: Vec::with_capacity(64 * 1024),
    };
    emit(&prepared, &shared, &layout, &mut w)?;
    w.flush_buf()?;
    Ok(())
}

/// Writes the image into memory.
pub fn image_bytes(tree: &Tree, opts: &WriteOptions) -> Result<Vec<u8>, WriteError> {
    let mut v = Vec::new();
    write_image(tree, opts, &mut v)?;
    Ok(v)
}

/// The fs-verity digest of the image of `tree`, computed while streaming (no image copy).
pub fn compute_digest(
    tree: &Tree,
    opts: &WriteOptions,
    algorithm: Algorithm,
) -> Result<Digest, WriteError> {
    struct HashWrite(FsVerityHasher);
    impl Write for HashWrite {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.update(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut h = HashWrite(FsVerityHasher::new(algorithm));
    write_image(tree, opts, &mut h)?;
    Ok(h.0.finish())
}

/// Buffered output that tracks the offset, for padding and alignment.
struct Out<'w, W: Write> {
    inner: &'w mut W,
    pos: u64,
    buf: Vec<u8>,
}

impl<W: Write> Out<'_, W> {
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.pos += data.len() as u64;
        if self.buf.len() + data.len() > self.buf.capacity() {
            self.flush_buf()?;
            if data.len() >= self.buf.capacity() {
                return self.inner.write_all(data);
            }
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn pad(&mut self, mut n: u64) -> io::Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            self.put(&ZEROS[..k as usize])?;
            n -= k;
        }
        Ok(())
    }

    fn align(&mut self, a: u64) -> io::Result<()> {
        self.pad(self.pos.next_multiple_of(a) - self.pos)
    }
}

fn dirent_type(mode: u32) -> u8 {
    match mode & mode::S_IFMT {
        mode::S_IFREG => file_type::REG_FILE,
        mode::S_IFDIR => file_type::DIR,
        mode::S_IFCHR => file_type::CHRDEV,
        mode::S_IFBLK => file_type::BLKDEV,
        mode::S_IFIFO => file_type::FIFO,
        mode::S_IFSOCK => file_type::SOCK,
        mode::S_IFLNK => file_type::SYMLINK,
        _ => file_type::UNKNOWN,
    }
}

fn emit<W: Write>(
    p: &Prepared,
    shared: &SharedXattrs,
    l: &Layout,
    w: &mut Out<W>,
) -> Result<(), WriteError> {
    let blocks = l.data_start / BLOCK_SIZE + l.n_data_blocks;
    let root_nid = l.inodes[0].nid;
    if root_nid >= u16::MAX as u64 {
        return Err(WriteError::TooLarge("root nid does not fit 16 bits"));
    }
    if blocks > u32::MAX as u64 {
        return Err(WriteError::TooLarge("more than 2^32 blocks"));
    }
    let header = ComposefsHeader {
        magic: COMPOSEFS_MAGIC,
        version: COMPOSEFS_HEADER_VERSION,
        flags: if p.has_acl {
            COMPOSEFS_FLAGS_HAS_ACL
        } else {
            0
        },
        composefs_version: p.version,
    };
    w.put(&header.to_bytes())?;
    w.pad(SUPER_OFFSET - ComposefsHeader::SIZE as u64)?;
    let sb = Superblock {
        magic: SUPER_MAGIC_V1,
        feature_compat: FEATURE_COMPAT_MTIME | FEATURE_COMPAT_XATTR_FILTER,
        blkszbits: BLOCK_BITS,
        root_nid: root_nid as u16,
        inos: p.nodes.len() as u64,
        build_time: p.min_mtime.sec as u64,
        build_time_nsec: p.min_mtime.nsec,
        blocks: blocks as u32,
        meta_blkaddr: ((SUPER_OFFSET + Superblock::SIZE as u64) / BLOCK_SIZE) as u32,
        xattr_blkaddr: (l.inodes_end / BLOCK_SIZE) as u32,
        ..Default::default()
    };
    w.put(&sb.to_bytes())?;

    let mut next_block = l.data_start / BLOCK_SIZE;
    for (i, node) in p.nodes.iter().enumerate() {
        write_inode(p, shared, l, i, node, &mut next_block, w)?;
    }
    w.align(SLOT_SIZE)?;
    debug_assert_eq!(w.pos, l.inodes_end);

    for x in &shared.list {
        write_xattr(x, w)?;
    }
    w.align(BLOCK_SIZE)?;
    debug_assert_eq!(w.pos, l.data_start);

    for (i, node) in p.nodes.iter().enumerate() {
        let il = &l.inodes[i];
        if let Data::Dir { start, end } = node.data {
            write_dirents(p, l, &p.children[start..end], il, true, w)?;
        }
        if il.n_blocks > 0 {
            match node.data {
                // The single block holding the whole chunk table of holes.
                Data::External { .. } => {
                    let chunk = NULL_ADDR.to_le_bytes();
                    for _ in 0..BLOCK_SIZE / 4 {
                        w.put(&chunk)?;
                    }
                }
                Data::Inline(data) | Data::Symlink(data) => {
                    let full = il.n_blocks * BLOCK_SIZE;
                    let len = (data.len() as u64).min(full) as usize;
                    w.put(&data[..len])?;
                    w.align(BLOCK_SIZE)?;
                }
                _ => {}
            }
        }
    }
    debug_assert_eq!(w.pos, l.data_start + l.n_data_blocks * BLOCK_SIZE);
    Ok(())
}

fn write_xattr<W: Write>(x: &NodeXattr, w: &mut Out<W>) -> io::Result<()> {
    let (index, suffix) = xattr_name_split(&x.name);
    let e = XattrEntry {
        name_len: suffix.len() as u8,
        name_index: index,
        value_size: x.value.len() as u16,
    };
    w.put(&e.to_bytes())?;
    w.put(suffix)?;
    w.put(&x.value)?;
    w.align(4)
}

#[allow(clippy::too_many_arguments)]
fn write_inode<W: Write>(
    p: &Prepared,
    shared: &SharedXattrs,
    l: &Layout,
    i: usize,
    node: &Node,
    next_block: &mut u64,
    w: &mut Out<W>,
) -> Result<(), WriteError> {
    let il = &l.inodes[i];
    w.pad(il.ipad)?;
    let icount = if il.xattr_size == 0 {
        0
    } else {
        (il.xattr_size - XattrHeader::SIZE as u64) / 4 + 1
    };
    if icount > u16::MAX as u64 {
        return Err(WriteError::Invalid {
            path: prepare::node_path(&p.nodes, i as u32),
            rule: TreeRule::XattrsTooLarge,
        });
    }
    let mut datalayout = if il.tail > 0 {
        INODE_FLAT_INLINE
    } else {
        INODE_FLAT_PLAIN
    };
    let ftype = node.mode & mode::S_IFMT;
    let mut u = 0u32;
    if matches!(ftype, mode::S_IFDIR | mode::S_IFREG | mode::S_IFLNK) && il.n_blocks > 0 {
        u = *next_block as u32;
        *next_block += il.n_blocks;
    }
    if matches!(ftype, mode::S_IFCHR | mode::S_IFBLK) {
        u = node.rdev;
    }
    if let Data::External { chunk_bits, .. } = node.data {
        datalayout = INODE_CHUNK_BASED;
        // The chunk format shares the union with the block address: only its low 16 bits
        // are replaced (`i_u.c.format` over `i_u.raw_blkaddr`).
        u = (u & 0xFFFF_0000) | (chunk_bits - BLOCK_BITS as u32);
    }
    let size = inode_size(node, il);
    let ino = i as u32;
    if il.compact {
        let inode = InodeCompact {
            format: inode_format(INODE_LAYOUT_COMPACT, datalayout),
            xattr_icount: icount as u16,
            mode: node.mode as u16,
            nlink: node.nlink as u16,
            size: size as u32,
            u,
            ino,
            uid: node.uid as u16,
            gid: node.gid as u16,
        };
        w.put(&inode.to_bytes())?;
    } else {
        let inode = InodeExtended {
            format: inode_format(INODE_LAYOUT_EXTENDED, datalayout),
            xattr_icount: icount as u16,
            mode: node.mode as u16,
            size,
            u,
            ino,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime.sec as u64,
            mtime_nsec: node.mtime.nsec,
            nlink: node.nlink,
        };
        w.put(&inode.to_bytes())?;
    }

    if il.xattr_size > 0 {
        let mut filter = 0u32;
        for x in &node.xattrs {
            let (index, suffix) = xattr_name_split(&x.name);
            filter |= 1 << xattr_filter_bit(index, suffix);
        }
        let h = XattrHeader {
            name_filter: XATTR_FILTER_DEFAULT & !filter,
            shared_count: il.n_shared,
        };
        w.put(&h.to_bytes())?;
        // Shared ids count 4-byte units from the start of the block holding the shared
        // area (xattr_blkaddr).
        let base = l.inodes_end % BLOCK_SIZE;
        for off in shared.assign(&node.xattrs).flatten() {
            w.put(&(((base + off as u64) / 4) as u32).to_le_bytes())?;
        }
        for (x, s) in node.xattrs.iter().zip(shared.assign(&node.xattrs)) {
            if s.is_none() {
                write_xattr(x, w)?;
            }
        }
    }

    if il.tail > 0 {
        match node.data {
            Data::Dir { start, end } => write_dirents(p, l, &p.children[start..end], il, false, w)?,
            Data::Symlink(target) => w.put(target)?,
            Data::Inline(content) => w.put(&content[content.len() - il.tail as usize..])?,
            Data::External { chunks, .. } => {
                let chunk = NULL_ADDR.to_le_bytes();
                for _ in 0..chunks {
                    w.put(&chunk)?;
                }
            }
            Data::None => {}
        }
    }
    Ok(())
}

/// Writes a directory's full blocks (`blocks`) or its inline tail (`!blocks`), splitting
/// entries into blocks exactly as [`layout::dir_size`] counted them (`write_erofs_dentries`).
fn write_dirents<W: Write>(
    p: &Prepared,
    l: &Layout,
    children: &[Child],
    il: &InodeLayout,
    blocks: bool,
    w: &mut Out<W>,
) -> io::Result<()> {
    let mut used = 0u64;
    let mut written = 0u64;
    let mut first = 0;
    for (i, c) in children.iter().enumerate() {
        let len = Dirent::SIZE as u64 + c.name.len() as u64;
        if used + len > BLOCK_SIZE {
            if blocks {
                write_dirent_chunk(p, l, &children[first..i], BLOCK_SIZE, w)?;
            }
            written += 1;
            used = 0;
            first = i;
        }
        used += len;
    }
    if written < il.n_blocks {
        if blocks {
            write_dirent_chunk(p, l, &children[first..], BLOCK_SIZE, w)?;
        }
        used = 0;
        first = children.len();
    }
    if !blocks && used > 0 {
        write_dirent_chunk(p, l, &children[first..], 1, w)?;
    }
    Ok(())
}

fn write_dirent_chunk<W: Write>(
    p: &Prepared,
    l: &Layout,
    children: &[Child],
    align: u64,
    w: &mut Out<W>,
) -> io::Result<()> {
    let mut nameoff = (children.len() * Dirent::SIZE) as u64;
    for c in children {
        let target = &p.nodes[c.node as usize];
        let d = Dirent {
            nid: l.inodes[c.node as usize].nid,
            nameoff: nameoff as u16,
            file_type: dirent_type(target.mode),
        };
        w.put(&d.to_bytes())?;
        nameoff += c.name.len() as u64;
    }
    for c in children {
        w.put(c.name)?;
    }
    w.align(align)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dumpfile::{ParseMode, parse};

    #[test]
    fn minimal_image_shape() {
        let tree = parse(b"/ 4096 40755 2 0 0 0 1.0 - - -\n", ParseMode::Strict).unwrap();
        let img = image_bytes(&tree, &WriteOptions::default()).unwrap();
        assert_eq!(img.len() % BLOCK_SIZE as usize, 0);
        let h = ComposefsHeader::from_bytes(img[..32].try_into().unwrap());
        assert_eq!(h.magic, COMPOSEFS_MAGIC);
        let sb = Superblock::from_bytes(img[1024..1152].try_into().unwrap());
        assert_eq!(sb.magic, SUPER_MAGIC_V1);
        assert_eq!(sb.root_nid, 36);
        // Root and the 256 whiteout stubs.
        assert_eq!(sb.inos, 257);
    }

    #[test]
    fn streamed_digest_equals_digest_of_bytes() {
        let tree = parse(
            b"/ 4096 40755 2 0 0 0 1.0 - - -\n/f 3 100644 1 0 0 0 1.0 - abc -\n",
            ParseMode::Strict,
        )
        .unwrap();
        let opts = WriteOptions::default();
        let img = image_bytes(&tree, &opts).unwrap();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(
                compute_digest(&tree, &opts, alg).unwrap(),
                crate::fsverity::digest_bytes(alg, &img)
            );
        }
    }

    #[test]
    fn version_bump_only_with_whiteouts() {
        let plain = parse(b"/ 4096 40755 2 0 0 0 1.0 - - -\n", ParseMode::Strict).unwrap();
        let wh = parse(
            b"/ 4096 40755 2 0 0 0 1.0 - - -\n/w 0 20644 1 0 0 0 1.0 - - -\n",
            ParseMode::Strict,
        )
        .unwrap();
        let version = |t: &Tree, min, max| {
            let img = image_bytes(
                t,
                &WriteOptions {
                    min_version: min,
                    max_version: max,
                },
            )
            .unwrap();
            ComposefsHeader::from_bytes(img[..32].try_into().unwrap()).composefs_version
        };
        assert_eq!(version(&plain, 0, 1), 0);
        assert_eq!(version(&wh, 0, 1), 1);
        assert_eq!(version(&wh, 0, 0), 0);
        assert_eq!(version(&plain, 1, 0), 1);
        assert!(matches!(
            image_bytes(
                &plain,
                &WriteOptions {
                    min_version: 2,
                    max_version: 2
                }
            ),
            Err(WriteError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn invalid_trees_are_refused() {
        use crate::tree::{DirEntry, Inode};
        let mut t = Tree::new(0o755);
        let d = t.add_inode(Inode::new(mode::S_IFDIR | 0o755));
        t.inodes[0].entries.insert(
            b"d".as_slice().into(),
            DirEntry {
                inode: d,
                hardlink: false,
            },
        );
        t.inodes[0].entries.insert(
            b"h".as_slice().into(),
            DirEntry {
                inode: d,
                hardlink: true,
            },
        );
        let e = image_bytes(&t, &WriteOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                WriteError::Invalid {
                    rule: TreeRule::DirectoryHardlink,
                    ..
                }
            ),
            "{e}"
        );

        let mut t = Tree::new(0o755);
        let f = t.add_inode(Inode::new(mode::S_IFREG | 0o644));
        t.inodes[0].entries.insert(
            b"a/b".as_slice().into(),
            DirEntry {
                inode: f,
                hardlink: false,
            },
        );
        let e = image_bytes(&t, &WriteOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                WriteError::Invalid {
                    rule: TreeRule::NameWithSlashOrNul,
                    ..
                }
            ),
            "{e}"
        );

        let mut t = Tree::new(0o755);
        let f = t.add_inode(Inode::new(mode::S_IFREG | 0o644));
        t.inodes[0].entries.insert(
            b"x".as_slice().into(),
            DirEntry {
                inode: f,
                hardlink: true,
            },
        );
        let e = image_bytes(&t, &WriteOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                WriteError::Invalid {
                    rule: TreeRule::NoPrimaryEntry,
                    ..
                }
            ),
            "{e}"
        );

        let mut t = Tree::new(0o755);
        let mut big = Inode::new(mode::S_IFREG | 0o644);
        big.size = 1 << 60;
        let f = t.add_inode(big);
        t.inodes[0].entries.insert(
            b"big".as_slice().into(),
            DirEntry {
                inode: f,
                hardlink: false,
            },
        );
        let e = image_bytes(&t, &WriteOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                WriteError::Invalid {
                    rule: TreeRule::FileTooBig,
                    ..
                }
            ),
            "{e}"
        );
    }
}
