//! Second stage of writing: where everything goes. Shared xattrs (`compute_erofs_shared_xattrs`)
//! and inode placement (`compute_erofs_inodes`, `compute_erofs_inode_size`,
//! `compute_erofs_inode_padding_for_tail` in composefs 1.0.8 `lcfs-writer-erofs.c`).

use std::collections::HashMap;

use super::prepare::{Data, Node, NodeXattr, Prepared};
use crate::erofs::format::{
    BLOCK_SIZE, Dirent, InodeCompact, InodeExtended, SLOT_SIZE, SUPER_OFFSET, Superblock,
    XATTR_LONG_PREFIX, XattrHeader, xattr_name_split,
};
use crate::tree::mode;

/// Padded on-disk size of one xattr entry.
pub fn xattr_entry_size(x: &NodeXattr) -> u64 {
    let (_, suffix) = xattr_name_split(&x.name);
    (4 + suffix.len() as u64 + x.value.len() as u64).next_multiple_of(4)
}

/// An xattr identified by name and value.
type XattrKey<'p> = (&'p [u8], &'p [u8]);

/// The xattrs used by more than one inode, stored once after the inodes.
pub struct SharedXattrs<'p> {
    /// Byte offset of each shared (name, value) in the shared area.
    offsets: HashMap<XattrKey<'p>, u32>,
    /// In on-disk order.
    pub list: Vec<&'p NodeXattr<'p>>,
    /// Total bytes.
    pub size: u64,
}

impl<'p> SharedXattrs<'p> {
    /// Counts every (name, value) pair and shares those used more than once, ordered by
    /// name, then value length, then value, all descending (mkcomposefs's `xattrs_ht_sort`).
    pub fn compute(nodes: &'p [Node<'p>]) -> Self {
        // Every xattr in the final order, so equal pairs are adjacent and the shared ones
        // can be picked from the runs: a list of references takes a fraction of the memory
        // of a map counting them (each external file has two xattrs of its own).
        let mut all: Vec<&NodeXattr> =
            Vec::with_capacity(nodes.iter().map(|n| n.xattrs.len()).sum());
        all.extend(nodes.iter().flat_map(|n| &n.xattrs));
        all.sort_unstable_by(|a, b| {
            (&b.name, b.value.len(), &b.value).cmp(&(&a.name, a.value.len(), &a.value))
        });
        let list: Vec<&NodeXattr> = all
            .chunk_by(|a, b| a.name == b.name && a.value == b.value)
            .filter(|run| run.len() > 1)
            .map(|run| run[0])
            .collect();
        drop(all);
        let mut offsets = HashMap::with_capacity(list.len());
        let mut size = 0u64;
        for x in &list {
            offsets.insert((&*x.name, &*x.value), size as u32);
            size += xattr_entry_size(x);
        }
        SharedXattrs {
            offsets,
            list,
            size,
        }
    }

    /// For each xattr of a node in order: its shared-area offset, or `None` when stored
    /// inline. At most 128 are shared per inode (`n_shared < EROFS_XATTR_LONG_PREFIX`).
    pub fn assign<'a>(
        &'a self,
        xattrs: &'a [NodeXattr<'a>],
    ) -> impl Iterator<Item = Option<u32>> + 'a {
        let mut n_shared = 0usize;
        xattrs.iter().map(move |x| {
            let off = self.offsets.get(&(&*x.name, &*x.value)).copied();
            match off {
                Some(o) if n_shared < XATTR_LONG_PREFIX as usize => {
                    n_shared += 1;
                    Some(o)
                }
                _ => None,
            }
        })
    }
}

/// Placement of one inode.
#[derive(Clone, Copy, Debug, Default)]
pub struct InodeLayout {
    /// 32-byte compact inode (else 64-byte extended).
    pub compact: bool,
    /// Zero bytes before the inode.
    pub ipad: u64,
    /// Bytes of inline xattr area (header, shared ids, entries).
    pub xattr_size: u64,
    /// Number of shared xattr ids.
    pub n_shared: u8,
    /// Full data blocks (after the metadata area).
    pub n_blocks: u64,
    /// Bytes of tail data right after the xattrs.
    pub tail: u64,
    /// Inode number: offset / 32.
    pub nid: u64,
}

/// Placement of the whole image.
pub struct Layout {
    pub inodes: Vec<InodeLayout>,
    /// End of the inode area, 32-byte aligned; the shared xattrs start here.
    pub inodes_end: u64,
    /// First data block, byte offset.
    pub data_start: u64,
    /// Number of data blocks.
    pub n_data_blocks: u64,
}

/// Directory blocks: dirents and names are packed into 4096-byte blocks; the last partial
/// block is inlined as the tail unless over half a block (`compute_erofs_dir_size`).
pub fn dir_size(children: &[super::prepare::Child]) -> (u64, u64) {
    let mut blocks = 0;
    let mut used = 0u64;
    for c in children {
        let len = Dirent::SIZE as u64 + c.name.len() as u64;
        if used + len > BLOCK_SIZE {
            blocks += 1;
            used = 0;
        }
        used += len;
    }
    if used > BLOCK_SIZE / 2 {
        blocks += 1;
        used = 0;
    }
    (blocks, used)
}

/// The size recorded in the inode.
pub fn inode_size(node: &Node, l: &InodeLayout) -> u64 {
    match node.mode & mode::S_IFMT {
        mode::S_IFDIR => l.n_blocks * BLOCK_SIZE + l.tail,
        mode::S_IFREG | mode::S_IFLNK => node.size,
        _ => 0,
    }
}

impl Layout {
    /// Places every inode after the superblock, slot-aligned, keeping each tail inside one
    /// block.
    pub fn compute(p: &Prepared, shared: &SharedXattrs) -> Layout {
        let mut pos = SUPER_OFFSET + Superblock::SIZE as u64;
        // nids count from the start of the block holding the first inode (meta_blkaddr).
        let meta_start = pos / BLOCK_SIZE * BLOCK_SIZE;
        let mut n_data_blocks = 0;
        let mut inodes = Vec::with_capacity(p.nodes.len());
        for node in &p.nodes {
            let mut l = InodeLayout::default();
            (l.n_blocks, l.tail) = match node.data {
                Data::Dir { start, end } => dir_size(&p.children[start..end]),
                Data::Symlink(target) => (0, target.len() as u64),
                Data::Inline(content) => {
                    let len = content.len() as u64;
                    if len % BLOCK_SIZE > BLOCK_SIZE / 2 {
                        (len / BLOCK_SIZE + 1, 0)
                    } else {
                        (len / BLOCK_SIZE, len % BLOCK_SIZE)
                    }
                }
                Data::External { chunks, .. } => (0, chunks * 4),
                Data::None => (0, 0),
            };
            l.compact = node.mtime == p.min_mtime
                && node.nlink <= u16::MAX as u32
                && node.uid <= u16::MAX as u32
                && node.gid <= u16::MAX as u32
                && inode_size(node, &l) <= u32::MAX as u64;
            let isize = if l.compact {
                InodeCompact::SIZE
            } else {
                InodeExtended::SIZE
            } as u64;
            let mut unshared = 0u64;
            let mut n_shared = 0u64;
            for (x, s) in node.xattrs.iter().zip(shared.assign(&node.xattrs)) {
                match s {
                    Some(_) => n_shared += 1,
                    None => unshared += xattr_entry_size(x),
                }
            }
            l.n_shared = n_shared as u8;
            l.xattr_size = if node.xattrs.is_empty() {
                0
            } else {
                (XattrHeader::SIZE as u64 + 4 * n_shared + unshared).next_multiple_of(4)
            };

            let aligned = pos.next_multiple_of(SLOT_SIZE);
            l.ipad = aligned - pos;
            pos = aligned;
            let extra = tail_padding(node, &mut l, pos, isize);
            l.ipad += extra;
            pos += extra;
            n_data_blocks += l.n_blocks;
            l.nid = (pos - meta_start) / SLOT_SIZE;
            pos += isize + l.xattr_size + l.tail;
            inodes.push(l);
        }
        let inodes_end = pos.next_multiple_of(SLOT_SIZE);
        let data_start = (inodes_end + shared.size).next_multiple_of(BLOCK_SIZE);
        Layout {
            inodes,
            inodes_end,
            data_start,
            n_data_blocks,
        }
    }
}

/// Padding before an inode so its tail data does not cross a block boundary; may instead
/// move the tail to a data block (`compute_erofs_inode_padding_for_tail`).
fn tail_padding(node: &Node, l: &mut InodeLayout, pos: u64, isize: u64) -> u64 {
    let non_tail = isize + l.xattr_size;
    let total = non_tail + l.tail;
    if node.mode & mode::S_IFMT == mode::S_IFLNK {
        // A symlink wants inode and target in one block; if they cannot fit one block at
        // all, the target goes to a data block (the padding is still decided on the
        // original total size, as mkcomposefs does).
        if total / BLOCK_SIZE > 0 {
            l.n_blocks += 1;
            l.tail = 0;
        }
        if pos / BLOCK_SIZE != (pos + total - 1) / BLOCK_SIZE {
            return pos.next_multiple_of(BLOCK_SIZE) - pos;
        }
        return 0;
    }
    let remainder = BLOCK_SIZE - (pos + non_tail) % BLOCK_SIZE;
    if remainder < l.tail {
        let extra = remainder.next_multiple_of(SLOT_SIZE);
        let remainder = BLOCK_SIZE - (pos + non_tail + extra) % BLOCK_SIZE;
        if l.tail <= remainder {
            return extra;
        }
        l.n_blocks += 1;
        l.tail = 0;
        return pos.next_multiple_of(BLOCK_SIZE) - pos;
    }
    0
}
