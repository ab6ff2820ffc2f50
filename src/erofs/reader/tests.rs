//! Reader tests on small hand-built images: the conventions it undoes, and the ways a
//! hostile image can be malformed (cycles, depth, bad ranges). The comparison with the C
//! tools on real images is in `tests/reader.rs`.

use super::*;
use crate::erofs::format::{
    ComposefsHeader, Dirent, INODE_CHUNK_BASED, INODE_FLAT_INLINE, INODE_FLAT_PLAIN,
    INODE_LAYOUT_COMPACT, InodeCompact, XATTR_INDEX_TRUSTED, XATTR_INDEX_USER, XattrEntry,
    XattrHeader, inode_format,
};
use crate::tree::{FileType, ROOT, mode};

/// One inode of a test image; children name other nodes by index (0 is the root).
#[derive(Clone, Default)]
struct Node {
    mode: u32,
    /// Directory entries (without `.` and `..`).
    children: Vec<(&'static [u8], usize)>,
    /// Inline data (file content, symlink target); for chunk-based files only the size.
    data: Vec<u8>,
    chunked_size: Option<u32>,
    /// Data in whole blocks elsewhere in the image: (first block, size).
    plain: Option<(u32, u32)>,
    rdev: u32,
    xattrs: Vec<(u8, &'static [u8], Vec<u8>)>,
}

fn dir(children: Vec<(&'static [u8], usize)>) -> Node {
    Node {
        mode: mode::S_IFDIR | 0o755,
        children,
        ..Default::default()
    }
}

fn file(data: &[u8]) -> Node {
    Node {
        mode: mode::S_IFREG | 0o644,
        data: data.to_vec(),
        ..Default::default()
    }
}

impl Node {
    fn xattr(mut self, index: u8, suffix: &'static [u8], value: &[u8]) -> Self {
        self.xattrs.push((index, suffix, value.to_vec()));
        self
    }

    fn xattr_area(&self) -> Vec<u8> {
        if self.xattrs.is_empty() {
            return Vec::new();
        }
        let mut area = XattrHeader::default().to_bytes().to_vec();
        for (index, suffix, value) in &self.xattrs {
            let e = XattrEntry {
                name_len: suffix.len() as u8,
                name_index: *index,
                value_size: value.len() as u16,
            };
            area.extend_from_slice(&e.to_bytes());
            area.extend_from_slice(suffix);
            area.extend_from_slice(value);
            area.resize(area.len().next_multiple_of(4), 0);
        }
        area
    }

    fn dir_data(&self, nids: &[u64], self_nid: u64, parent_nid: u64) -> Vec<u8> {
        let mut entries: Vec<(&[u8], u64)> = vec![(b".", self_nid), (b"..", parent_nid)];
        entries.extend(self.children.iter().map(|&(n, i)| (n, nids[i])));
        entries.sort();
        let mut nameoff = entries.len() * Dirent::SIZE;
        let mut data = Vec::new();
        for (name, nid) in &entries {
            let d = Dirent {
                nid: *nid,
                nameoff: nameoff as u16,
                file_type: 0,
            };
            data.extend_from_slice(&d.to_bytes());
            nameoff += name.len();
        }
        for (name, _) in &entries {
            data.extend_from_slice(name);
        }
        data
    }

    /// Size of the inode with its xattrs and inline data, in 32-byte slots.
    fn slots(&self) -> u64 {
        let data_len = if self.mode & mode::S_IFMT == mode::S_IFDIR {
            let names: usize = self.children.iter().map(|c| c.0.len()).sum();
            (self.children.len() + 2) * Dirent::SIZE + names + 3
        } else {
            self.data.len()
        };
        ((32 + self.xattr_area().len() + data_len) as u64).div_ceil(32)
    }
}

/// A composefs image holding `nodes` as compact inodes with tail-packed data, the metadata
/// area in block 1, build time 1000.5. Parents of directories are found from the children.
fn image(nodes: &[Node]) -> Vec<u8> {
    let mut nids = Vec::new();
    let mut next = 0;
    for n in nodes {
        nids.push(next);
        next += n.slots();
    }
    let mut parent = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for &(_, c) in &n.children {
            parent[c] = i;
        }
    }
    let mut bytes = vec![0u8; 4096];
    let header = ComposefsHeader {
        magic: COMPOSEFS_MAGIC,
        version: COMPOSEFS_HEADER_VERSION,
        flags: 0,
        composefs_version: 1,
    };
    bytes[..ComposefsHeader::SIZE].copy_from_slice(&header.to_bytes());
    let sb = Superblock {
        magic: SUPER_MAGIC_V1,
        blkszbits: BLOCK_BITS,
        root_nid: 0,
        build_time: 1000,
        build_time_nsec: 5,
        meta_blkaddr: 1,
        xattr_blkaddr: 0,
        ..Default::default()
    };
    bytes[1024..1024 + Superblock::SIZE].copy_from_slice(&sb.to_bytes());
    for (i, n) in nodes.iter().enumerate() {
        let is_dir = n.mode & mode::S_IFMT == mode::S_IFDIR;
        let data = if is_dir {
            n.dir_data(&nids, nids[i], nids[parent[i]])
        } else {
            n.data.clone()
        };
        let xattrs = n.xattr_area();
        let (layout, size, u) = match (n.chunked_size, n.plain) {
            (Some(size), _) => (INODE_CHUNK_BASED, size, 0),
            (_, Some((block, size))) => (INODE_FLAT_PLAIN, size, block),
            _ => (INODE_FLAT_INLINE, data.len() as u32, n.rdev),
        };
        let inode = InodeCompact {
            format: inode_format(INODE_LAYOUT_COMPACT, layout),
            xattr_icount: if xattrs.is_empty() {
                0
            } else {
                (xattrs.len() as u16 - 12) / 4 + 1
            },
            mode: n.mode as u16,
            nlink: if is_dir { 2 } else { 1 },
            size,
            u,
            ..Default::default()
        };
        let start = 4096 + nids[i] as usize * 32;
        bytes.resize(start, 0);
        bytes.extend_from_slice(&inode.to_bytes());
        bytes.extend_from_slice(&xattrs);
        if n.chunked_size.is_none() && n.plain.is_none() {
            bytes.extend_from_slice(&data);
        }
    }
    bytes.resize(bytes.len().next_multiple_of(4096), 0);
    bytes
}

#[test]
fn reads_files_symlinks_devices_and_times() {
    let mut link = file(b"target");
    link.mode = mode::S_IFLNK | 0o777;
    let mut dev = file(b"");
    dev.mode = mode::S_IFBLK | 0o600;
    dev.rdev = 0x0801;
    let tree = read_image(&image(&[
        dir(vec![(b"a", 1), (b"l", 2), (b"sda", 3)]),
        file(b"hello"),
        link,
        dev,
    ]))
    .unwrap();
    let a = &tree.inodes[tree.lookup(b"/a").unwrap()];
    assert_eq!(a.inline.as_deref(), Some(&b"hello"[..]));
    assert_eq!(a.size, 5);
    assert_eq!(a.mtime, Timestamp { sec: 1000, nsec: 5 });
    let l = &tree.inodes[tree.lookup(b"/l").unwrap()];
    assert_eq!(l.payload.as_deref(), Some(&b"target"[..]));
    assert_eq!(l.file_type(), Some(FileType::Symlink));
    assert_eq!(tree.inodes[tree.lookup(b"/sda").unwrap()].rdev, 0x0801);
    assert_eq!(tree.root().nlink, 2);
}

#[test]
fn undoes_overlay_conventions() {
    let digest = [7u8; 32];
    let mut metacopy = vec![0, 36, 0, 1];
    metacopy.extend_from_slice(&digest);
    let mut external = file(b"");
    external.chunked_size = Some(100_000);
    let external = external
        .xattr(XATTR_INDEX_TRUSTED, b"overlay.metacopy", &metacopy)
        .xattr(XATTR_INDEX_TRUSTED, b"overlay.redirect", b"/07/0707")
        .xattr(XATTR_INDEX_TRUSTED, b"overlay.overlay.custom", b"v")
        .xattr(XATTR_INDEX_USER, b"keep", b"1");
    let whiteout = file(b"")
        .xattr(XATTR_INDEX_TRUSTED, b"overlay.overlay.whiteout", b"")
        .xattr(XATTR_INDEX_USER, b"overlay.whiteout", b"");
    let mut stub = file(b"");
    stub.mode = mode::S_IFCHR | 0o644;
    let root = dir(vec![(b"00", 3), (b"ext", 1), (b"wh", 2)])
        .xattr(XATTR_INDEX_TRUSTED, b"overlay.opaque", b"y")
        .xattr(XATTR_INDEX_TRUSTED, b"overlay.overlay.whiteouts", b"");
    let tree = read_image(&image(&[root, external, whiteout, stub])).unwrap();

    assert!(tree.root().xattrs.is_empty(), "{:?}", tree.root().xattrs);
    assert!(tree.lookup(b"/00").is_none(), "whiteout stubs are dropped");
    let ext = &tree.inodes[tree.lookup(b"/ext").unwrap()];
    assert_eq!(ext.payload.as_deref(), Some(&b"07/0707"[..]));
    assert_eq!(ext.digest.unwrap().as_bytes(), &digest);
    assert_eq!(ext.size, 100_000);
    let names: Vec<&[u8]> = ext.xattrs.iter().map(|x| &*x.name).collect();
    assert_eq!(names, [&b"trusted.overlay.custom"[..], b"user.keep"]);
    let wh = &tree.inodes[tree.lookup(b"/wh").unwrap()];
    assert_eq!(
        (wh.mode, wh.rdev, wh.xattrs.len()),
        (mode::S_IFCHR | 0o644, 0, 0)
    );
}

#[test]
fn second_name_of_an_inode_is_a_hardlink() {
    let tree = read_image(&image(&[dir(vec![(b"a", 1), (b"b", 1)]), file(b"x")])).unwrap();
    assert_eq!(tree.inodes.len(), 2);
    let root = &tree.root().entries;
    assert!(!root[&b"a"[..]].hardlink);
    assert!(root[&b"b"[..]].hardlink);
    assert_eq!(root[&b"a"[..]].inode, root[&b"b"[..]].inode);
}

#[test]
fn directory_cycles_and_linked_directories_are_refused() {
    let cycle = image(&[dir(vec![(b"d", 1)]), dir(vec![(b"up", 0)])]);
    assert_eq!(
        read_image(&cycle),
        Err(ReadError::DirectoryLinkedTwice { nid: 0 })
    );
    let twice = image(&[dir(vec![(b"d1", 1), (b"d2", 1)]), dir(vec![])]);
    assert!(matches!(
        read_image(&twice),
        Err(ReadError::DirectoryLinkedTwice { .. })
    ));
}

#[test]
fn depth_is_limited() {
    let mut nodes: Vec<Node> = (1..=MAX_DEPTH + 1).map(|i| dir(vec![(b"d", i)])).collect();
    nodes.push(dir(vec![]));
    assert!(matches!(
        read_image(&image(&nodes)),
        Err(ReadError::TooDeep { .. })
    ));
    // One level less is fine: a directory at MAX_DEPTH components, empty.
    let mut nodes: Vec<Node> = (1..=MAX_DEPTH).map(|i| dir(vec![(b"d", i)])).collect();
    nodes.push(dir(vec![]));
    let tree = read_image(&image(&nodes)).unwrap();
    assert_eq!(tree.inodes.len(), MAX_DEPTH + 1);
    // A file at MAX_DEPTH components is fine too, one below it is not.
    let mut nodes: Vec<Node> = (1..MAX_DEPTH).map(|i| dir(vec![(b"d", i)])).collect();
    nodes.push(dir(vec![(b"f", MAX_DEPTH)]));
    nodes.push(file(b"x"));
    read_image(&image(&nodes)).unwrap();
    let mut nodes: Vec<Node> = (1..=MAX_DEPTH).map(|i| dir(vec![(b"d", i)])).collect();
    nodes.push(dir(vec![(b"f", MAX_DEPTH + 1)]));
    nodes.push(file(b"x"));
    assert!(matches!(
        read_image(&image(&nodes)),
        Err(ReadError::TooDeep { .. })
    ));
}

#[test]
fn malformed_images_give_typed_errors() {
    assert_eq!(read_image(&[0; 100]), Err(ReadError::TooShort { len: 100 }));
    let good = image(&[dir(vec![(b"a", 1)]), file(b"x")]);
    let mut bad = good.clone();
    bad[0] ^= 1;
    assert!(matches!(
        read_image(&bad),
        Err(ReadError::BadComposefsMagic { .. })
    ));
    let mut bad = good.clone();
    bad[1024] ^= 1;
    assert!(matches!(
        read_image(&bad),
        Err(ReadError::BadErofsMagic { .. })
    ));
    // Point the entry "a" at a nid far outside the image.
    let mut bad = good.clone();
    let dirent_a = 4096 + 32 + 2 * Dirent::SIZE;
    bad[dirent_a..dirent_a + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(
        matches!(read_image(&bad), Err(ReadError::OutOfBounds { .. })),
        "{:?}",
        read_image(&bad)
    );
    // Duplicate names.
    let dup = image(&[dir(vec![(b"a", 1), (b"a", 2)]), file(b"x"), file(b"y")]);
    assert!(matches!(
        read_image(&dup),
        Err(ReadError::BadDirectory { .. })
    ));
    // A name with a slash.
    let slash = image(&[dir(vec![(b"a/b", 1)]), file(b"x")]);
    assert!(matches!(
        read_image(&slash),
        Err(ReadError::BadDirectory { .. })
    ));
}

#[test]
fn referenced_objects_are_distinct_and_sorted() {
    let obj = |path: &'static [u8]| {
        let mut f = file(b"");
        f.chunked_size = Some(10);
        f.xattr(XATTR_INDEX_TRUSTED, b"overlay.redirect", path)
    };
    let bytes = image(&[
        dir(vec![(b"a", 1), (b"b", 2), (b"c", 3)]),
        obj(b"/bb/1"),
        obj(b"/aa/2"),
        obj(b"/bb/1"),
    ]);
    let objects = referenced_objects(&bytes).unwrap();
    let paths: Vec<&[u8]> = objects.iter().map(|o| o.path.as_deref().unwrap()).collect();
    assert_eq!(paths, [&b"aa/2"[..], b"bb/1"]);
    assert_eq!(read_image(&bytes).unwrap().inodes[ROOT].entries.len(), 3);
}

#[test]
fn inodes_sharing_data_are_refused() {
    // Twenty files whose 4000-byte content is the same first block of the image.
    let mut nodes = vec![dir((0..20).map(|i| (NAMES[i], i + 1)).collect())];
    for _ in 0..20 {
        let mut f = file(b"");
        f.plain = Some((0, 4000));
        nodes.push(f);
    }
    let bytes = image(&nodes);
    assert!(
        matches!(read_image(&bytes), Err(ReadError::SharedData { .. })),
        "{:?}",
        read_image(&bytes).map(|_| ())
    );
    // Two of them are fine (the image is larger than their data).
    let mut nodes = vec![dir(vec![(b"a", 1), (b"b", 2)])];
    for _ in 0..2 {
        let mut f = file(b"");
        f.plain = Some((0, 4000));
        nodes.push(f);
    }
    let tree = read_image(&image(&nodes)).unwrap();
    assert_eq!(tree.inodes[1].inline.as_ref().unwrap().len(), 4000);
}

const NAMES: [&[u8]; 20] = [
    b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j", b"k", b"l", b"m", b"n", b"o", b"p",
    b"q", b"r", b"s", b"t",
];
