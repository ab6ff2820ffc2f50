//! The in-memory filesystem tree every part of cfsctl exchanges: dump files and directories
//! are read into it, the EROFS writer writes it, the EROFS reader produces it.
//!
//! The model follows what a composefs image can hold, field for field, so that an image
//! written from a tree is byte-identical to the C `mkcomposefs` output for the same input:
//! non-directory link counts are kept as given (mkcomposefs keeps the dump's value), and each
//! hardlinked inode has one *primary* directory entry, the one the writer numbers it at.

use std::collections::BTreeMap;

use crate::fsverity::Digest;

pub mod transform;

/// Index of an inode in [`Tree::inodes`].
pub type InodeId = usize;

/// File type bits of `st_mode` (`S_IFMT` and friends; values from `<sys/stat.h>`).
pub mod mode {
    /// Mask of the file type bits.
    pub const S_IFMT: u32 = 0o170000;
    /// Socket.
    pub const S_IFSOCK: u32 = 0o140000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Block device.
    pub const S_IFBLK: u32 = 0o060000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Character device.
    pub const S_IFCHR: u32 = 0o020000;
    /// FIFO.
    pub const S_IFIFO: u32 = 0o010000;
}

/// The kind of an inode, from the type bits of its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// A directory.
    Directory,
    /// A regular file.
    Regular,
    /// A symbolic link.
    Symlink,
    /// A character device (a whiteout when its rdev is 0).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

impl FileType {
    /// The type of a full `st_mode`, `None` for type bits no file can have.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & mode::S_IFMT {
            mode::S_IFDIR => FileType::Directory,
            mode::S_IFREG => FileType::Regular,
            mode::S_IFLNK => FileType::Symlink,
            mode::S_IFCHR => FileType::CharDevice,
            mode::S_IFBLK => FileType::BlockDevice,
            mode::S_IFIFO => FileType::Fifo,
            mode::S_IFSOCK => FileType::Socket,
            _ => return None,
        })
    }

    /// The `S_IF*` bits of this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Directory => mode::S_IFDIR,
            FileType::Regular => mode::S_IFREG,
            FileType::Symlink => mode::S_IFLNK,
            FileType::CharDevice => mode::S_IFCHR,
            FileType::BlockDevice => mode::S_IFBLK,
            FileType::Fifo => mode::S_IFIFO,
            FileType::Socket => mode::S_IFSOCK,
        }
    }
}

/// A modification time with nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, below 1e9.
    pub nsec: u32,
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Xattr {
    /// Full name, e.g. `security.capability`.
    pub name: Box<[u8]>,
    /// Value bytes.
    pub value: Box<[u8]>,
}

/// A name in a directory and what it points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The inode this name refers to.
    pub inode: InodeId,
    /// True when this name is an additional hard link: the inode's primary entry is elsewhere.
    pub hardlink: bool,
}

/// One inode. Which fields are meaningful depends on the type in `mode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Full `st_mode`: type bits and permission bits.
    pub mode: u32,
    /// Link count of a non-directory, as given by the source (directories get 2 + subdirs
    /// when written).
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a character or block device (`makedev` encoding).
    pub rdev: u64,
    /// File size (regular files; symlinks: target length).
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Extended attributes, in source order (the writer sorts them).
    pub xattrs: Vec<Xattr>,
    /// Symlink target, or for a regular file the path of its content object relative to the
    /// object store (`XX/rest-of-hex`), stored as `trusted.overlay.redirect`.
    pub payload: Option<Box<[u8]>>,
    /// Content stored inside the image (small regular files).
    pub inline: Option<Box<[u8]>>,
    /// fs-verity digest of the content object (`trusted.overlay.metacopy`).
    pub digest: Option<Digest>,
    /// Directory entries, sorted bytewise by name (directories only).
    pub entries: BTreeMap<Box<[u8]>, DirEntry>,
}

impl Inode {
    /// A fresh inode of the given full mode, nlink 1, everything else empty.
    pub fn new(mode: u32) -> Self {
        Inode {
            mode,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            size: 0,
            mtime: Timestamp::default(),
            xattrs: Vec::new(),
            payload: None,
            inline: None,
            digest: None,
            entries: BTreeMap::new(),
        }
    }

    /// The file type, if the mode carries a valid one.
    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(self.mode)
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.mode & mode::S_IFMT == mode::S_IFDIR
    }

    /// The value of the xattr `name`, if set.
    pub fn xattr(&self, name: &[u8]) -> Option<&[u8]> {
        self.xattrs
            .iter()
            .find(|x| &*x.name == name)
            .map(|x| &*x.value)
    }
}

/// A whole filesystem tree; inode 0 is the root directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    /// All inodes; directory entries refer to them by index.
    pub inodes: Vec<Inode>,
}

/// The root directory's inode id.
pub const ROOT: InodeId = 0;

impl Tree {
    /// A tree holding only a root directory with the given permission bits.
    pub fn new(root_mode: u32) -> Self {
        Tree {
            inodes: vec![Inode::new(mode::S_IFDIR | (root_mode & !mode::S_IFMT))],
        }
    }

    /// The root inode.
    pub fn root(&self) -> &Inode {
        &self.inodes[ROOT]
    }

    /// Adds an inode (not yet linked anywhere) and returns its id.
    pub fn add_inode(&mut self, inode: Inode) -> InodeId {
        self.inodes.push(inode);
        self.inodes.len() - 1
    }

    /// Looks up a `/`-separated path from the root (leading `/` optional), without
    /// following symlinks.
    pub fn lookup(&self, path: &[u8]) -> Option<InodeId> {
        let mut cur = ROOT;
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            let inode = &self.inodes[cur];
            if !inode.is_dir() {
                return None;
            }
            cur = inode.entries.get(comp)?.inode;
        }
        Some(cur)
    }

    /// Visits every directory entry depth-first in name order, calling `f(path, entry)`;
    /// `path` is absolute (`/a/b`). The root itself is not passed.
    pub fn walk(&self, mut f: impl FnMut(&[u8], DirEntry)) {
        let mut path = Vec::new();
        self.walk_dir(ROOT, &mut path, &mut f);
    }

    fn walk_dir(&self, dir: InodeId, path: &mut Vec<u8>, f: &mut impl FnMut(&[u8], DirEntry)) {
        for (name, entry) in &self.inodes[dir].entries {
            let len = path.len();
            path.push(b'/');
            path.extend_from_slice(name);
            f(path, *entry);
            if !entry.hardlink && self.inodes[entry.inode].is_dir() {
                self.walk_dir(entry.inode, path, f);
            }
            path.truncate(len);
        }
    }
}

/// What identifies an unchanged file without reading it, as git's index does: where it is
/// (`st_dev`, `st_ino`), its size, and its modification and change times with nanoseconds.
/// A write changes the mtime and the ctime; `touch -d` can set the mtime back but never
/// the ctime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_size`.
    pub size: u64,
    /// `st_mtime`, `st_mtime_nsec`.
    pub mtime: Timestamp,
    /// `st_ctime`, `st_ctime_nsec`.
    pub ctime: Timestamp,
}

impl FileKey {
    /// The key of a file from its `stat`.
    pub fn from_stat(st: &rustix::fs::Stat) -> Self {
        FileKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: Timestamp {
                sec: st.st_mtime,
                nsec: st.st_mtime_nsec as u32,
            },
            ctime: Timestamp {
                sec: st.st_ctime,
                nsec: st.st_ctime_nsec as u32,
            },
        }
    }
}
