//! Decoding one inode: its header (compact or extended), its data (directory entries,
//! symlink target, inline content) and its xattrs, with the composefs overlay xattrs turned
//! back into tree fields (`lcfs_build_node_from_image` and `lcfs_build_node_erofs_xattr` in
//! composefs 1.0.8 `libcomposefs/lcfs-writer-erofs.c`).

use std::collections::HashMap;

use crate::erofs::format::{
    BLOCK_SIZE, Dirent, I_DATALAYOUT_BIT, I_DATALAYOUT_MASK, I_VERSION_BIT, I_VERSION_MASK,
    INODE_CHUNK_BASED, INODE_FLAT_INLINE, INODE_FLAT_PLAIN, INODE_LAYOUT_COMPACT, InodeCompact,
    InodeExtended, SLOT_BITS, XATTR_PREFIXES, XattrEntry, XattrHeader, xattr_ibody_size,
};
use crate::fsverity::Digest;
use crate::tree::{FileType, Inode, Timestamp, Xattr};

use super::{Image, ReadError};

use crate::erofs::limits::{
    INLINE_CONTENT_MAX, NAME_MAX, PAYLOAD_MAX, XATTR_NAME_MAX, XATTRS_READ_MAX,
};

use crate::erofs::format::overlay_xattr::{
    ESCAPE_PREFIX as OVERLAY_ESCAPE_PREFIX, ESCAPED_WHITEOUT, ESCAPED_WHITEOUTS,
    METACOPY as OVERLAY_METACOPY, PREFIX as OVERLAY_PREFIX, REDIRECT as OVERLAY_REDIRECT,
    USER_WHITEOUT as USERXATTR_WHITEOUT, USER_WHITEOUTS as USERXATTR_WHITEOUTS,
};
/// Bytes before the digest in `trusted.overlay.metacopy`: version, length, flags, algorithm
/// (`struct ovl_metacopy` in the kernel's `fs/overlayfs/overlayfs.h`).
const METACOPY_HEADER_LEN: usize = 4;

/// A name in a directory, not yet resolved.
pub(super) struct Entry {
    pub name: Box<[u8]>,
    pub nid: u64,
    /// Offset of the directory block holding the entry, for error messages.
    pub block_offset: u64,
}

/// An inode as read, with the entries to visit if it is a directory.
pub(super) struct LoadedInode {
    pub inode: Inode,
    pub entries: Vec<Entry>,
    /// Bytes copied out of the image, charged against the reader's budget.
    pub bytes: u64,
    /// Bytes of the inode's own data (directory blocks, symlink target, inline content,
    /// inline xattrs) parsed.
    pub data_len: u64,
}

/// The fields of an on-disk inode that the rest of the reading needs.
struct RawInode {
    nid: u64,
    offset: u64,
    /// Header size: 32 (compact) or 64 (extended).
    header_len: u64,
    datalayout: u16,
    xattr_icount: u16,
    /// `i_u`: first data block, device number or chunk info depending on the type.
    union: u32,
}

impl RawInode {
    fn xattr_offset(&self) -> u64 {
        self.offset + self.header_len
    }

    /// Where a tail-packed inode's last partial block is stored: right after its xattrs.
    fn tail_offset(&self) -> u64 {
        self.xattr_offset() + xattr_ibody_size(self.xattr_icount)
    }

    fn is_flat(&self) -> bool {
        self.datalayout == INODE_FLAT_PLAIN || self.datalayout == INODE_FLAT_INLINE
    }
}

fn bad_inode(nid: u64, reason: impl Into<String>) -> ReadError {
    ReadError::BadInode {
        nid,
        reason: reason.into(),
    }
}

impl Image<'_> {
    /// Reads the inode `nid` with its data and xattrs; `None` for a 0/0 character device,
    /// which is one of the writer's whiteout stubs and not part of the tree.
    pub(super) fn load(&self, nid: u64) -> Result<Option<LoadedInode>, ReadError> {
        let (raw, mut inode) = self.inode_header(nid)?;
        let Some(file_type) = inode.file_type() else {
            return Err(bad_inode(
                nid,
                format!("mode {:o} has no file type", inode.mode),
            ));
        };
        // The writer's whiteout stubs; a user's whiteout is stored escaped as a regular file.
        if file_type == FileType::CharDevice && inode.rdev == 0 {
            return Ok(None);
        }
        let mut entries = Vec::new();
        let mut bytes = 0;
        // What this inode parses of its own: its data and its inline xattr area. In a sane
        // image no two inodes share any of it.
        let data_len = xattr_ibody_size(raw.xattr_icount)
            + match file_type {
                FileType::Directory | FileType::Symlink => inode.size,
                FileType::Regular if raw.is_flat() => inode.size,
                _ => 0,
            };
        match file_type {
            FileType::Directory => {
                self.require_flat(&raw, "directory")?;
                for (offset, block) in self.data_ranges(&raw, inode.size)? {
                    read_dir_block(nid, offset, block, &mut entries)?;
                }
                // Each name is kept, in a map node about the size of an `Entry`.
                let per_entry = size_of::<Entry>() as u64;
                bytes += entries
                    .iter()
                    .map(|e| e.name.len() as u64 + per_entry)
                    .sum::<u64>();
            }
            FileType::Symlink => {
                self.require_flat(&raw, "symlink")?;
                if inode.size > PAYLOAD_MAX as u64 {
                    return Err(bad_inode(
                        nid,
                        format!("symlink target of {} bytes", inode.size),
                    ));
                }
                let mut target = self.data(&raw, inode.size)?;
                // The C reader keeps the target as a C string: it ends at the first NUL.
                if let Some(nul) = target.iter().position(|&b| b == 0) {
                    target.truncate(nul);
                }
                if target.is_empty() {
                    return Err(bad_inode(nid, "empty symlink target"));
                }
                inode.size = target.len() as u64;
                bytes += inode.size;
                inode.payload = Some(target.into());
            }
            FileType::Regular if inode.size != 0 && raw.is_flat() => {
                if inode.size > INLINE_CONTENT_MAX as u64 {
                    return Err(bad_inode(
                        nid,
                        format!(
                            "inline content of {} bytes (at most {INLINE_CONTENT_MAX})",
                            inode.size
                        ),
                    ));
                }
                let content = self.data(&raw, inode.size)?;
                bytes += content.len() as u64;
                inode.inline = Some(content.into());
            }
            // Content in the object store: the chunk indexes only say "no data here"
            // (EROFS_NULL_ADDR), so they are not read.
            FileType::Regular if inode.size != 0 && raw.datalayout != INODE_CHUNK_BASED => {
                return Err(bad_inode(
                    nid,
                    format!("unsupported data layout {}", raw.datalayout),
                ));
            }
            _ => {}
        }
        bytes += self.read_xattrs(&raw, &mut inode)?;
        Ok(Some(LoadedInode {
            inode,
            entries,
            bytes,
            data_len,
        }))
    }

    fn require_flat(&self, raw: &RawInode, what: &str) -> Result<(), ReadError> {
        if raw.is_flat() {
            Ok(())
        } else {
            Err(bad_inode(
                raw.nid,
                format!("{what} with data layout {}", raw.datalayout),
            ))
        }
    }

    /// Decodes the compact or extended inode header of `nid`.
    fn inode_header(&self, nid: u64) -> Result<(RawInode, Inode), ReadError> {
        let offset = nid
            .checked_mul(1 << SLOT_BITS)
            .and_then(|o| o.checked_add(self.meta_start))
            .unwrap_or(u64::MAX);
        let format = self.range(nid, "inode", offset, 2)?;
        let format = u16::from_le_bytes([format[0], format[1]]);
        let layout = (format >> I_VERSION_BIT) & I_VERSION_MASK;
        let datalayout = (format >> I_DATALAYOUT_BIT) & I_DATALAYOUT_MASK;
        let mut inode = Inode::new(0);
        let (header_len, xattr_icount, union);
        if layout == INODE_LAYOUT_COMPACT {
            let c = InodeCompact::from_bytes(self.array(nid, "compact inode", offset)?);
            inode.mode = c.mode.into();
            inode.nlink = c.nlink.into();
            inode.size = c.size.into();
            inode.uid = c.uid.into();
            inode.gid = c.gid.into();
            // Compact inodes have no mtime of their own: all share the superblock's.
            inode.mtime = self.build_time;
            (header_len, xattr_icount, union) = (InodeCompact::SIZE, c.xattr_icount, c.u);
        } else {
            let e = InodeExtended::from_bytes(self.array(nid, "extended inode", offset)?);
            inode.mode = e.mode.into();
            inode.nlink = e.nlink;
            inode.size = e.size;
            inode.uid = e.uid;
            inode.gid = e.gid;
            inode.mtime = Timestamp {
                sec: e.mtime as i64,
                nsec: e.mtime_nsec,
            };
            (header_len, xattr_icount, union) = (InodeExtended::SIZE, e.xattr_icount, e.u);
        }
        if matches!(
            inode.file_type(),
            Some(FileType::CharDevice | FileType::BlockDevice)
        ) {
            inode.rdev = union.into();
        }
        let raw = RawInode {
            nid,
            offset,
            header_len: header_len as u64,
            datalayout,
            xattr_icount,
            union,
        };
        Ok((raw, inode))
    }

    /// The data of a flat inode as (offset, bytes) pieces: whole blocks from `i_u` on, and
    /// for a tail-packed inode the last partial block stored after the inode. Directory
    /// blocks are parsed piece by piece; contents are the pieces joined.
    fn data_ranges(&self, raw: &RawInode, size: u64) -> Result<Vec<(u64, &[u8])>, ReadError> {
        let nid = raw.nid;
        if size == 0 {
            return Ok(Vec::new());
        }
        if size > self.bytes.len() as u64 {
            return Err(bad_inode(
                nid,
                format!("data size {size} exceeds the image"),
            ));
        }
        let tailpacked = raw.datalayout == INODE_FLAT_INLINE;
        let tail_len = if tailpacked { size % BLOCK_SIZE } else { 0 };
        if tailpacked && tail_len == 0 {
            // The C reader would read a zero-length tail and lose the last block; the kernel
            // would expect a whole block after the inode. Neither writer produces this.
            return Err(bad_inode(
                nid,
                "tail-packed data of a whole number of blocks",
            ));
        }
        let block_bytes = size - tail_len;
        let start = u64::from(raw.union) * BLOCK_SIZE;
        let blocks = self.range(nid, "data blocks", start, block_bytes)?;
        let mut pieces: Vec<(u64, &[u8])> = blocks
            .chunks(BLOCK_SIZE as usize)
            .enumerate()
            .map(|(i, b)| (start + i as u64 * BLOCK_SIZE, b))
            .collect();
        if tailpacked {
            let offset = raw.tail_offset();
            pieces.push((offset, self.range(nid, "inline tail", offset, tail_len)?));
        }
        Ok(pieces)
    }

    fn data(&self, raw: &RawInode, size: u64) -> Result<Vec<u8>, ReadError> {
        Ok(self
            .data_ranges(raw, size)?
            .into_iter()
            .flat_map(|(_, b)| b)
            .copied()
            .collect())
    }

    /// The `N` bytes at `offset`, for the fixed-size on-disk structures.
    fn array<const N: usize>(
        &self,
        nid: u64,
        what: &'static str,
        offset: u64,
    ) -> Result<&[u8; N], ReadError> {
        self.range(nid, what, offset, N as u64)?
            .first_chunk()
            .ok_or(ReadError::OutOfBounds {
                nid,
                what,
                offset,
                len: N as u64,
            })
    }

    /// Reads the inline and then the shared xattrs (the C reader's order) into `inode`,
    /// applying the composefs overlay conventions. Returns the bytes copied.
    fn read_xattrs(&self, raw: &RawInode, inode: &mut Inode) -> Result<u64, ReadError> {
        if raw.xattr_icount == 0 {
            return Ok(0);
        }
        let nid = raw.nid;
        let start = raw.xattr_offset();
        let area_len = xattr_ibody_size(raw.xattr_icount);
        let area = self.range(nid, "xattr area", start, area_len)?;
        let header = XattrHeader::from_bytes(self.array(nid, "xattr header", start)?);
        let shared_len = 4 * usize::from(header.shared_count);
        let inline_start = XattrHeader::SIZE + shared_len;
        if inline_start > area.len() {
            return Err(ReadError::BadXattr {
                nid,
                offset: start,
                reason: format!(
                    "{} shared xattrs do not fit the xattr area",
                    header.shared_count
                ),
            });
        }
        let mut set = XattrSet::default();
        let mut pos = inline_start;
        // Same loop bound as the C reader: an entry header needs more than 4 bytes left.
        while pos + XattrEntry::SIZE < area.len() {
            let offset = start + pos as u64;
            let (entry, name, value) = parse_xattr_entry(nid, offset, &area[pos..])?;
            set.apply(nid, offset, inode, entry.name_index, name, value)?;
            pos += entry.padded_size() as usize;
        }
        let (shared_ids, _) = area[XattrHeader::SIZE..inline_start].as_chunks::<4>();
        for id in shared_ids {
            let id = u32::from_le_bytes(*id);
            let offset = self.xattr_start + u64::from(id) * 4;
            let e = XattrEntry::from_bytes(self.array(nid, "shared xattr", offset)?);
            let len = XattrEntry::SIZE as u64 + u64::from(e.name_len) + u64::from(e.value_size);
            let bytes = self.range(nid, "shared xattr", offset, len)?;
            let (entry, name, value) = parse_xattr_entry(nid, offset, bytes)?;
            set.apply(nid, offset, inode, entry.name_index, name, value)?;
        }
        inode.xattrs = set.xattrs;
        Ok(set.copied)
    }
}

/// Splits an xattr entry at the start of `bytes` into header, name suffix and value.
fn parse_xattr_entry(
    nid: u64,
    offset: u64,
    bytes: &[u8],
) -> Result<(XattrEntry, &[u8], &[u8]), ReadError> {
    let bad = |reason: &str| ReadError::BadXattr {
        nid,
        offset,
        reason: reason.into(),
    };
    let head = bytes
        .first_chunk::<{ XattrEntry::SIZE }>()
        .ok_or_else(|| bad("truncated entry header"))?;
    let entry = XattrEntry::from_bytes(head);
    let name_end = XattrEntry::SIZE + usize::from(entry.name_len);
    let value_end = name_end + usize::from(entry.value_size);
    let name = bytes
        .get(XattrEntry::SIZE..name_end)
        .ok_or_else(|| bad("name runs past the xattr area"))?;
    let value = bytes
        .get(name_end..value_end)
        .ok_or_else(|| bad("value runs past the xattr area"))?;
    Ok((entry, name, value))
}

/// An inode's xattrs as the C reader collects them: setting a name again replaces the
/// value by removing the old entry (the last entry moves into its place) and appending.
#[derive(Default)]
struct XattrSet {
    xattrs: Vec<Xattr>,
    /// Positions by name, built once an inode has many xattrs: a hostile image can give
    /// thousands, and a linear search per xattr would make reading quadratic.
    index: Option<HashMap<Box<[u8]>, usize>>,
    /// `lcfs_node_set_xattr_internal`'s accounting of the stored size.
    accounted: usize,
    copied: u64,
}

impl XattrSet {
    /// Applies one stored xattr to the inode (`lcfs_build_node_erofs_xattr`).
    fn apply(
        &mut self,
        nid: u64,
        offset: u64,
        inode: &mut Inode,
        index: u8,
        suffix: &[u8],
        value: &[u8],
    ) -> Result<(), ReadError> {
        let bad = |reason: String| ReadError::BadXattr {
            nid,
            offset,
            reason,
        };
        let prefix = XATTR_PREFIXES
            .get(usize::from(index))
            .ok_or_else(|| bad(format!("unknown name index {index}")))?;
        if suffix.contains(&0) {
            return Err(bad("name contains a NUL byte".into()));
        }
        let name = [*prefix, suffix].concat();
        let regular = inode.file_type() == Some(FileType::Regular);
        if name == OVERLAY_REDIRECT {
            if regular {
                // The payload is the object path relative to the store; the C reader also
                // stops at a NUL (it keeps a C string). It also reads up to two bytes past
                // the value (`value_size++` where `--` was meant), which the zero padding
                // after the value normally stops; we take exactly the value.
                let path = match value {
                    [b'/', rest @ ..] if !rest.is_empty() => rest,
                    _ => value,
                };
                let path = path.split(|&b| b == 0).next().unwrap_or_default();
                self.copied += path.len() as u64;
                inode.payload = Some(path.into());
            }
            return Ok(());
        }
        if name == OVERLAY_METACOPY {
            // The C reader knows only SHA-256 digests; a 64-byte one is SHA-512, which our
            // writer may store (a divergence only for images C cannot write).
            if regular
                && let Some(d) = value
                    .get(METACOPY_HEADER_LEN..)
                    .and_then(Digest::from_bytes)
            {
                inode.digest = Some(d);
            }
            return Ok(());
        }
        if name == ESCAPED_WHITEOUT && regular {
            inode.mode =
                FileType::CharDevice.mode_bits() | (inode.mode & !crate::tree::mode::S_IFMT);
            inode.rdev = 0;
            inode.size = 0;
            return Ok(());
        }
        if name == ESCAPED_WHITEOUTS || name == USERXATTR_WHITEOUT || name == USERXATTR_WHITEOUTS {
            return Ok(());
        }
        let name = if let Some(rest) = name.strip_prefix(OVERLAY_ESCAPE_PREFIX) {
            [OVERLAY_PREFIX, rest].concat()
        } else if name.starts_with(OVERLAY_PREFIX) {
            // The writer's own overlay xattrs (opaque root, whiteout markers).
            return Ok(());
        } else {
            name
        };
        self.set(name, value).map_err(bad)
    }

    fn set(&mut self, name: Vec<u8>, value: &[u8]) -> Result<(), String> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(format!("name of {} bytes", name.len()));
        }
        // Per entry: twice the entry header less one (worst-case alignment) plus name and
        // value, and the xattr header once.
        let cost =
            |name_len: usize, value_len: usize| 2 * XattrEntry::SIZE - 1 + name_len + value_len;
        if let Some(i) = self.position(&name) {
            let old = self.xattrs.swap_remove(i);
            if let Some(index) = &mut self.index {
                index.remove(&old.name);
                if let Some(moved) = self.xattrs.get(i) {
                    index.insert(moved.name.clone(), i);
                }
            }
            self.accounted = if self.xattrs.is_empty() {
                0
            } else {
                self.accounted - cost(old.name.len(), old.value.len())
            };
        }
        let mut entry = cost(name.len(), value.len());
        if self.xattrs.is_empty() {
            entry += XattrHeader::SIZE;
        }
        if self.accounted + entry > XATTRS_READ_MAX {
            return Err("the inode's xattrs exceed 64 KiB".into());
        }
        self.accounted += entry;
        self.copied += (name.len() + value.len()) as u64;
        let name: Box<[u8]> = name.into();
        if let Some(index) = &mut self.index {
            index.insert(name.clone(), self.xattrs.len());
        }
        self.xattrs.push(Xattr {
            name,
            value: value.into(),
        });
        if self.index.is_none() && self.xattrs.len() > INDEX_FROM {
            let index = self.xattrs.iter().enumerate();
            self.index = Some(index.map(|(i, x)| (x.name.clone(), i)).collect());
        }
        Ok(())
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.xattrs.iter().position(|x| *x.name == *name),
        }
    }
}

/// Xattr count from which [`XattrSet`] looks names up in a hash map (real inodes have a few).
const INDEX_FROM: usize = 16;

/// Parses one directory block (at most 4096 bytes): `n` dirents, then their names, the
/// first dirent's `nameoff` telling `n`. Each name ends where the next begins; the last one
/// at a NUL or the block end. `.` and `..` are left out.
fn read_dir_block(
    nid: u64,
    offset: u64,
    block: &[u8],
    out: &mut Vec<Entry>,
) -> Result<(), ReadError> {
    let bad = |reason: String| ReadError::BadDirectory {
        nid,
        offset,
        reason,
    };
    let dirent = |i: usize| -> Option<Dirent> {
        let b = block.get(i * Dirent::SIZE..(i + 1) * Dirent::SIZE)?;
        Some(Dirent::from_bytes(b.try_into().ok()?))
    };
    let first =
        dirent(0).ok_or_else(|| bad(format!("{} bytes, too short for a dirent", block.len())))?;
    let names_start = usize::from(first.nameoff);
    if names_start == 0 || names_start % Dirent::SIZE != 0 || names_start > block.len() {
        return Err(bad(format!(
            "first name offset {names_start} is not a dirent boundary"
        )));
    }
    let count = names_start / Dirent::SIZE;
    let mut cur = first;
    for i in 0..count {
        let start = usize::from(cur.nameoff);
        let next = if i + 1 < count { dirent(i + 1) } else { None };
        let end = match &next {
            Some(n) => usize::from(n.nameoff),
            None => {
                let rest = block.get(start..).unwrap_or_default();
                start + rest.iter().position(|&b| b == 0).unwrap_or(rest.len())
            }
        };
        if start < names_start || end < start || end > block.len() {
            return Err(bad(format!("name {i} spans bytes {start}..{end}")));
        }
        let name = &block[start..end];
        if name.is_empty() || name.len() > NAME_MAX || name.contains(&0) || name.contains(&b'/') {
            return Err(bad(format!(
                "invalid name {:?}",
                String::from_utf8_lossy(name)
            )));
        }
        if name != b"." && name != b".." {
            out.push(Entry {
                name: name.into(),
                nid: cur.nid,
                block_offset: offset,
            });
        }
        if let Some(n) = next {
            cur = n;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replacing values keeps the C reader's order (swap-remove, append) whether names are
    /// looked up linearly or through the index.
    #[test]
    fn xattr_replacement_order_matches_the_c_reader() {
        let mut set = XattrSet::default();
        let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut state = 12345u32;
        for step in 0..600u32 {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // Few names first (linear lookups), then many (the index).
            let pool = if step < 100 { 8 } else { 40 };
            let name = format!("user.n{}", (state >> 16) % pool).into_bytes();
            let value = step.to_le_bytes().to_vec();
            if let Some(i) = model.iter().position(|(n, _)| *n == name) {
                model.swap_remove(i);
            }
            model.push((name.clone(), value.clone()));
            set.set(name, &value).unwrap();
            let got: Vec<(Vec<u8>, Vec<u8>)> = set
                .xattrs
                .iter()
                .map(|x| (x.name.to_vec(), x.value.to_vec()))
                .collect();
            assert_eq!(got, model, "step {step}");
        }
        assert!(set.index.is_some());
    }
}
