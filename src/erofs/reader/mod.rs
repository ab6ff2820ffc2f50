//! Reading a composefs EROFS image back into a [`Tree`], the way C `mkcomposefs` 1.0.8's
//! reader does (`lcfs_load_node_from_image` in `libcomposefs/lcfs-writer-erofs.c`), so that
//! printing the tree gives what `composefs-info dump` prints.
//!
//! What the writer added for overlayfs is taken off again: `trusted.overlay.redirect` becomes
//! the payload, `trusted.overlay.metacopy` the digest, escaped `trusted.overlay.overlay.*`
//! xattrs lose one `overlay.`, other `trusted.overlay.*` xattrs (the root's opaque flag, the
//! whiteout markers) are dropped, escaped whiteouts become 0/0 character devices again, and
//! the 0/0 character devices the writer adds as whiteout stubs (`00`..`ff` in the root) are
//! skipped.
//!
//! Images are untrusted input: every offset and length is checked against the image, a
//! directory reached twice (a cycle) is an error, the tree depth is limited, the data parsed
//! may not exceed the image (inodes sharing data are refused) and the bytes copied into the
//! tree are limited by a budget proportional to the image size. So time and memory stay
//! linear in the image size, and nothing here panics on any input.

mod inode;

use std::collections::{HashMap, HashSet, btree_map};

use crate::erofs::format::{
    BLOCK_BITS, BLOCK_SIZE, COMPOSEFS_HEADER_VERSION, COMPOSEFS_MAGIC, ComposefsHeader,
    SUPER_MAGIC_V1, SUPER_OFFSET, Superblock,
};
use crate::fsverity::Digest;
use crate::tree::{DirEntry, Inode, InodeId, ROOT, Timestamp, Tree};

use inode::{Entry, LoadedInode};

/// Why an image could not be read. Offsets are byte offsets in the image, `nid` the EROFS
/// inode number (the inode's offset in the metadata area divided by 32).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// Shorter than the composefs header and EROFS superblock.
    #[error("image is {len} bytes, too short for the composefs header and EROFS superblock")]
    TooShort {
        /// Image length.
        len: usize,
    },
    /// The composefs header at offset 0 has the wrong magic: not a composefs image.
    #[error("not a composefs image: header magic {found:#010x} at offset 0")]
    BadComposefsMagic {
        /// The magic found.
        found: u32,
    },
    /// The composefs header version is not the one we know.
    #[error("unsupported composefs header version {found}")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The EROFS superblock has the wrong magic.
    #[error("bad EROFS superblock magic {found:#010x} at offset 1024")]
    BadErofsMagic {
        /// The magic found.
        found: u32,
    },
    /// The block size is not the 4096 bytes composefs always uses.
    #[error("unsupported EROFS block size 2^{bits} (composefs uses 4096)")]
    UnsupportedBlockSize {
        /// `blkszbits` found.
        bits: u8,
    },
    /// A structure or data range lies (partly) outside the image.
    #[error("inode {nid}: {what} at offset {offset} (+{len} bytes) is outside the image")]
    OutOfBounds {
        /// The inode being read.
        nid: u64,
        /// What was being read.
        what: &'static str,
        /// Start of the range (saturated on overflow).
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// An inode's fields contradict each other or the composefs conventions.
    #[error("inode {nid}: {reason}")]
    BadInode {
        /// The inode.
        nid: u64,
        /// What is wrong.
        reason: String,
    },
    /// A directory block is malformed.
    #[error("directory inode {nid}: block at offset {offset}: {reason}")]
    BadDirectory {
        /// The directory inode.
        nid: u64,
        /// Offset of the block.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An extended attribute entry is malformed.
    #[error("inode {nid}: xattr at offset {offset}: {reason}")]
    BadXattr {
        /// The inode.
        nid: u64,
        /// Offset of the xattr entry.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A directory is reached by a second name: a cycle or a hard-linked directory.
    #[error("directory inode {nid} is reached twice (directory cycle or hard link)")]
    DirectoryLinkedTwice {
        /// The directory inode.
        nid: u64,
    },
    /// An entry lies deeper than [`MAX_DEPTH`] path components below the root.
    #[error("inode {nid} lies more than {max} directories below the root")]
    TooDeep {
        /// The entry's inode.
        nid: u64,
        /// The limit.
        max: usize,
    },
    /// Inodes share data: more directory, symlink, inline content and inline xattr bytes
    /// were parsed than the image holds. Writers give each inode its own data; sharing would let a small image make
    /// the reader parse the same blocks over and over.
    #[error("inode {nid}: data read exceeds the {image_len}-byte image (inodes share data)")]
    SharedData {
        /// The inode whose data crossed the limit.
        nid: u64,
        /// Image length.
        image_len: usize,
    },
    /// The tree would take more memory than an image of this size can legitimately describe.
    #[error("inode {nid}: tree read from a {image_len}-byte image exceeds {budget} bytes")]
    TooLarge {
        /// The inode being read when the budget ran out.
        nid: u64,
        /// Image length.
        image_len: usize,
        /// The budget in bytes.
        budget: u64,
    },
}

/// The most path components an entry may have; the writers enforce the same limit, so every
/// image cfsctl writes reads back.
pub use crate::erofs::limits::MAX_DEPTH;

/// Bytes the tree may take, beyond [`BUDGET_PER_IMAGE_BYTE`] per image byte. Shared xattrs
/// and hard links let a few image bytes stand for many tree bytes, so the bound is generous,
/// but it keeps a hostile image from making us allocate without limit.
const BUDGET_BASE: u64 = 256 << 20;
/// See [`BUDGET_BASE`].
const BUDGET_PER_IMAGE_BYTE: u64 = 64;

/// Reads a composefs EROFS image (format version 0 or 1, written by C `mkcomposefs` or by
/// us) into a [`Tree`], as the C reader sees it.
///
/// Hard links (one nid under several names) become one inode; the first name in read order,
/// which is the dump's depth-first name order, is the primary entry.
pub fn read_image(bytes: &[u8]) -> Result<Tree, ReadError> {
    let image = Image::parse(bytes)?;
    let root_nid = image.root_nid;
    let root = match image.load(root_nid)? {
        Some(inode) if inode.inode.is_dir() => inode,
        _ => {
            return Err(ReadError::BadInode {
                nid: root_nid,
                reason: "root is not a directory".into(),
            });
        }
    };
    let mut reader = TreeBuilder {
        image,
        tree: Tree { inodes: Vec::new() },
        by_nid: HashMap::from([(root_nid, ROOT)]),
        whiteouts: Default::default(),
        spent: 0,
        data_read: 0,
    };
    reader.account(root_nid, &root)?;
    reader.tree.inodes.push(root.inode);
    reader.read_dirs(root_nid, root.entries)?;
    Ok(reader.tree)
}

/// A content object an image refers to: a regular file stored outside the image.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The object path relative to the object store (`trusted.overlay.redirect` without its
    /// leading `/`), if the file has one.
    pub path: Option<Box<[u8]>>,
    /// The fs-verity digest the file must have (`trusted.overlay.metacopy`), if any.
    pub digest: Option<Digest>,
}

/// The distinct content objects an image refers to, sorted (by path, then digest): what a
/// garbage collector must keep and what fsck must find for this image.
pub fn referenced_objects(bytes: &[u8]) -> Result<Vec<ObjectRef>, ReadError> {
    let tree = read_image(bytes)?;
    let mut objects: Vec<ObjectRef> = tree
        .inodes
        .into_iter()
        .filter(|i| i.file_type() == Some(crate::tree::FileType::Regular))
        .filter(|i| i.payload.is_some() || i.digest.is_some())
        .map(|i| ObjectRef {
            path: i.payload,
            digest: i.digest,
        })
        .collect();
    objects.sort_unstable();
    objects.dedup();
    Ok(objects)
}

/// The parts of the image the reader needs, checked once.
struct Image<'a> {
    bytes: &'a [u8],
    /// Offset of inode slot 0 (`meta_blkaddr * 4096`).
    meta_start: u64,
    /// Offset of the shared xattr area (`xattr_blkaddr * 4096`).
    xattr_start: u64,
    /// mtime of every compact inode (`build_time`, `build_time_nsec`).
    build_time: Timestamp,
    root_nid: u64,
}

impl<'a> Image<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ReadError> {
        let too_short = || ReadError::TooShort { len: bytes.len() };
        if bytes.len() < SUPER_OFFSET as usize + Superblock::SIZE {
            return Err(too_short());
        }
        let header: &[u8; ComposefsHeader::SIZE] = bytes
            .get(..ComposefsHeader::SIZE)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(too_short)?;
        let header = ComposefsHeader::from_bytes(header);
        if header.magic != COMPOSEFS_MAGIC {
            return Err(ReadError::BadComposefsMagic {
                found: header.magic,
            });
        }
        if header.version != COMPOSEFS_HEADER_VERSION {
            return Err(ReadError::UnsupportedVersion {
                found: header.version,
            });
        }
        let sb_start = SUPER_OFFSET as usize;
        let sb: &[u8; Superblock::SIZE] = bytes
            .get(sb_start..sb_start + Superblock::SIZE)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(too_short)?;
        let sb = Superblock::from_bytes(sb);
        if sb.magic != SUPER_MAGIC_V1 {
            return Err(ReadError::BadErofsMagic { found: sb.magic });
        }
        if sb.blkszbits != BLOCK_BITS {
            return Err(ReadError::UnsupportedBlockSize { bits: sb.blkszbits });
        }
        Ok(Image {
            bytes,
            meta_start: u64::from(sb.meta_blkaddr) * BLOCK_SIZE,
            xattr_start: u64::from(sb.xattr_blkaddr) * BLOCK_SIZE,
            // The C reader stores the unsigned field in a signed time_t; so do we.
            build_time: Timestamp {
                sec: sb.build_time as i64,
                nsec: sb.build_time_nsec,
            },
            root_nid: u64::from(sb.root_nid),
        })
    }

    /// `len` bytes at `offset`, or the error naming `what` of inode `nid`.
    fn range(
        &self,
        nid: u64,
        what: &'static str,
        offset: u64,
        len: u64,
    ) -> Result<&'a [u8], ReadError> {
        let end = offset.checked_add(len);
        end.filter(|&e| e <= self.bytes.len() as u64)
            .map(|e| &self.bytes[offset as usize..e as usize])
            .ok_or(ReadError::OutOfBounds {
                nid,
                what,
                offset,
                len,
            })
    }
}

/// One directory being read: its inode and the entries still to visit.
struct Frame {
    dir: InodeId,
    nid: u64,
    entries: std::vec::IntoIter<Entry>,
}

struct TreeBuilder<'a> {
    image: Image<'a>,
    tree: Tree,
    by_nid: HashMap<u64, InodeId>,
    /// nids of the whiteout stubs seen, skipped wherever they appear.
    whiteouts: HashSet<u64>,
    /// Bytes copied into the tree so far.
    spent: u64,
    /// Bytes of inode data parsed so far.
    data_read: u64,
}

impl TreeBuilder<'_> {
    /// Counts what loading an inode cost against the limits. Loading one inode reads at
    /// most the image once, so checking afterwards keeps the total work linear.
    fn account(&mut self, nid: u64, loaded: &LoadedInode) -> Result<(), ReadError> {
        let image_len = self.image.bytes.len();
        self.data_read = self.data_read.saturating_add(loaded.data_len);
        if self.data_read > image_len as u64 {
            return Err(ReadError::SharedData { nid, image_len });
        }
        let budget = BUDGET_BASE + BUDGET_PER_IMAGE_BYTE * image_len as u64;
        let bytes = loaded.bytes + size_of::<Inode>() as u64;
        self.spent = self.spent.saturating_add(bytes);
        if self.spent > budget {
            return Err(ReadError::TooLarge {
                nid,
                image_len,
                budget,
            });
        }
        Ok(())
    }

    /// Visits the tree depth-first in directory order, without recursion (the depth is
    /// bounded by [`MAX_DEPTH`], the stack of the calling thread is not).
    fn read_dirs(&mut self, root_nid: u64, root_entries: Vec<Entry>) -> Result<(), ReadError> {
        let mut stack = vec![Frame {
            dir: ROOT,
            nid: root_nid,
            entries: root_entries.into_iter(),
        }];
        while let Some(frame) = stack.last_mut() {
            let (dir, dir_nid) = (frame.dir, frame.nid);
            let Some(entry) = frame.entries.next() else {
                stack.pop();
                continue;
            };
            if self.whiteouts.contains(&entry.nid) {
                continue;
            }
            // The entries of the directory on top of the stack have `stack.len()` components.
            if stack.len() > MAX_DEPTH {
                return Err(ReadError::TooDeep {
                    nid: entry.nid,
                    max: MAX_DEPTH,
                });
            }
            let dir_entry = if let Some(&existing) = self.by_nid.get(&entry.nid) {
                if self.tree.inodes[existing].is_dir() {
                    return Err(ReadError::DirectoryLinkedTwice { nid: entry.nid });
                }
                DirEntry {
                    inode: existing,
                    hardlink: true,
                }
            } else {
                let Some(loaded) = self.image.load(entry.nid)? else {
                    self.whiteouts.insert(entry.nid);
                    continue;
                };
                self.account(entry.nid, &loaded)?;
                let is_dir = loaded.inode.is_dir();
                let id = self.tree.add_inode(loaded.inode);
                self.by_nid.insert(entry.nid, id);
                if is_dir {
                    stack.push(Frame {
                        dir: id,
                        nid: entry.nid,
                        entries: loaded.entries.into_iter(),
                    });
                }
                DirEntry {
                    inode: id,
                    hardlink: false,
                }
            };
            match self.tree.inodes[dir].entries.entry(entry.name) {
                btree_map::Entry::Vacant(slot) => {
                    slot.insert(dir_entry);
                }
                btree_map::Entry::Occupied(taken) => {
                    // mkcomposefs refuses a second entry of the same name (EEXIST); so do we.
                    return Err(ReadError::BadDirectory {
                        nid: dir_nid,
                        offset: entry.block_offset,
                        reason: format!(
                            "duplicate name {:?}",
                            String::from_utf8_lossy(taken.key())
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
