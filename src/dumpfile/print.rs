//! Printing a [`Tree`] as composefs-dump(5) text, byte for byte what C `composefs-info dump`
//! (composefs 1.0.8, `tools/composefs-info.c`) prints for the same image.
//!
//! One line per directory entry, depth-first in name order, the root first as `/`:
//!
//! ```text
//! PATH SIZE MODE NLINK UID GID RDEV MTIME PAYLOAD CONTENT DIGEST [XATTR=VALUE...]
//! ```
//!
//! An additional hard link prints the full metadata of its inode, its mode prefixed with `@`
//! and the path of the inode's primary entry in the payload field (that is what
//! `composefs-info` does; the dump parser reads only the `@` and the target path).

use std::collections::HashMap;
use std::io::{self, Write};

use crate::tree::{DirEntry, Inode, InodeId, ROOT, Tree};

/// Which characters [`write_escaped`] hex-escapes besides the always-escaped ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Paths, payloads and contents: only printable non-space ASCII stays literal.
    Standard,
    /// Xattr names and values: `=` separates them, so it is escaped too.
    Equal,
    /// Optional fields (payload, content): a value of exactly `-` would read back as
    /// "absent", so it is written `\x2d`.
    LoneDash,
}

/// Writes `bytes` with composefs-dump escaping: `\\`, `\n`, `\r`, `\t` as C escapes, any
/// byte outside `0x21..=0x7e` (C locale `isgraph`) as `\xNN`.
pub fn write_escaped(out: &mut impl Write, bytes: &[u8], escape: Escape) -> io::Result<()> {
    if escape == Escape::LoneDash && bytes == b"-" {
        return out.write_all(b"\\x2d");
    }
    // Runs of literal bytes are written in one call: dumps of real images are megabytes.
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let special: Option<&[u8]> = match c {
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            b'=' if escape == Escape::Equal => None,
            b'=' => continue,
            0x21..=0x7e => continue,
            _ => None,
        };
        out.write_all(&bytes[start..i])?;
        start = i + 1;
        match special {
            Some(s) => out.write_all(s)?,
            None => write!(out, "\\x{c:02x}")?,
        }
    }
    out.write_all(&bytes[start..])
}

fn write_optional(out: &mut impl Write, value: Option<&[u8]>) -> io::Result<()> {
    match value {
        Some(v) => write_escaped(out, v, Escape::LoneDash),
        None => out.write_all(b"-"),
    }
}

/// Writes the dump line of one entry: `path` (absolute; `/` for the root) naming `inode`.
/// `hardlink_to` is the primary path of the inode when this entry is an additional link.
pub fn write_entry(
    out: &mut impl Write,
    path: &[u8],
    inode: &Inode,
    hardlink_to: Option<&[u8]>,
) -> io::Result<()> {
    write_escaped(out, path, Escape::Standard)?;
    write!(
        out,
        " {} {}{:o} {} {} {} {} {}.{} ",
        inode.size,
        if hardlink_to.is_some() { "@" } else { "" },
        inode.mode,
        inode.nlink,
        inode.uid,
        inode.gid,
        inode.rdev,
        inode.mtime.sec,
        inode.mtime.nsec,
    )?;
    write_optional(out, hardlink_to.or(inode.payload.as_deref()))?;
    out.write_all(b" ")?;
    write_optional(out, inode.inline.as_deref())?;
    match &inode.digest {
        Some(d) => write!(out, " {}", d.to_hex())?,
        None => out.write_all(b" -")?,
    }
    for x in &inode.xattrs {
        out.write_all(b" ")?;
        write_escaped(out, &x.name, Escape::Equal)?;
        out.write_all(b"=")?;
        write_escaped(out, &x.value, Escape::Equal)?;
    }
    out.write_all(b"\n")
}

/// Prints the whole tree as composefs-dump(5), in the order and form of
/// `composefs-info dump`. Writes are small and many: pass a buffered writer.
///
/// Fails with `InvalidData` when an additional hard link names an inode that has no primary
/// entry in the tree (a malformed tree; the reader and the dump parser never build one).
pub fn print(tree: &Tree, out: &mut impl Write) -> io::Result<()> {
    let primary_paths = primary_paths_of_hardlinked(tree);
    write_entry(out, b"/", tree.root(), None)?;

    // Iterative depth-first walk: trees from untrusted images may be deep, and this must
    // not depend on the stack size of the calling thread.
    let mut path: Vec<u8> = Vec::new();
    let mut stack = vec![(tree.root().entries.iter(), 0usize)];
    while let Some((iter, parent_len)) = stack.last_mut() {
        let parent_len = *parent_len;
        let Some((name, entry)) = iter.next() else {
            stack.pop();
            continue;
        };
        path.truncate(parent_len);
        path.push(b'/');
        path.extend_from_slice(name);
        let inode = inode_of(tree, *entry)?;
        if entry.hardlink {
            let target = primary_paths.get(&entry.inode).ok_or_else(|| {
                invalid(format!(
                    "hard link {} names inode {} which has no primary entry",
                    String::from_utf8_lossy(&path),
                    entry.inode
                ))
            })?;
            write_entry(out, &path, inode, Some(target))?;
        } else {
            write_entry(out, &path, inode, None)?;
            if inode.is_dir() {
                let len = path.len();
                stack.push((inode.entries.iter(), len));
            }
        }
    }
    Ok(())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn inode_of(tree: &Tree, entry: DirEntry) -> io::Result<&Inode> {
    tree.inodes.get(entry.inode).ok_or_else(|| {
        invalid(format!(
            "directory entry names missing inode {}",
            entry.inode
        ))
    })
}

/// Paths of the primary entries of all inodes that also have additional hard links.
fn primary_paths_of_hardlinked(tree: &Tree) -> HashMap<InodeId, Vec<u8>> {
    let mut wanted: HashMap<InodeId, Vec<u8>> = tree
        .inodes
        .iter()
        .flat_map(|i| i.entries.values())
        .filter(|e| e.hardlink)
        .map(|e| (e.inode, Vec::new()))
        .collect();
    if wanted.is_empty() {
        return wanted;
    }
    let mut path: Vec<u8> = Vec::new();
    let mut stack = vec![(tree.inodes[ROOT].entries.iter(), 0usize)];
    while let Some((iter, parent_len)) = stack.last_mut() {
        let parent_len = *parent_len;
        let Some((name, entry)) = iter.next() else {
            stack.pop();
            continue;
        };
        if entry.hardlink {
            continue;
        }
        path.truncate(parent_len);
        path.push(b'/');
        path.extend_from_slice(name);
        if let Some(p) = wanted.get_mut(&entry.inode) {
            *p = path.clone();
        }
        if let Some(inode) = tree.inodes.get(entry.inode).filter(|i| i.is_dir()) {
            stack.push((inode.entries.iter(), path.len()));
        }
    }
    wanted.retain(|_, p| !p.is_empty());
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::Digest;
    use crate::tree::{Timestamp, Xattr, mode};

    fn escaped(bytes: &[u8], e: Escape) -> String {
        let mut out = Vec::new();
        write_escaped(&mut out, bytes, e).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping_follows_composefs_info() {
        assert_eq!(escaped(b"a b", Escape::Standard), "a\\x20b");
        assert_eq!(escaped(b"a=b", Escape::Standard), "a=b");
        assert_eq!(escaped(b"a=b", Escape::Equal), "a\\x3db");
        assert_eq!(escaped(b"\\\n\r\t", Escape::Standard), "\\\\\\n\\r\\t");
        assert_eq!(
            escaped(b"\x00\x7f\xff", Escape::Standard),
            "\\x00\\x7f\\xff"
        );
        assert_eq!(escaped(b"-", Escape::LoneDash), "\\x2d");
        assert_eq!(escaped(b"-", Escape::Standard), "-");
        assert_eq!(escaped(b"--", Escape::LoneDash), "--");
        assert_eq!(escaped(b"", Escape::LoneDash), "");
    }

    #[test]
    fn prints_entries_and_hardlinks() {
        let mut tree = Tree::new(0o755);
        tree.inodes[ROOT].nlink = 2;
        let mut file = Inode::new(mode::S_IFREG | 0o644);
        file.size = 5;
        file.nlink = 2;
        file.mtime = Timestamp { sec: 7, nsec: 5 };
        file.inline = Some(b"hi\nyo"[..].into());
        file.xattrs.push(Xattr {
            name: b"user.a=b"[..].into(),
            value: b"v v"[..].into(),
        });
        let f = tree.add_inode(file);
        let mut ext = Inode::new(mode::S_IFREG | 0o600);
        ext.size = 10000;
        let d = Digest::from_bytes(&[0xab; 32]).unwrap();
        ext.payload = Some(d.object_path().into_bytes().into());
        ext.digest = Some(d);
        let e = tree.add_inode(ext);
        let root = &mut tree.inodes[ROOT].entries;
        root.insert(
            b"a"[..].into(),
            DirEntry {
                inode: f,
                hardlink: false,
            },
        );
        root.insert(
            b"b"[..].into(),
            DirEntry {
                inode: f,
                hardlink: true,
            },
        );
        root.insert(
            b"c"[..].into(),
            DirEntry {
                inode: e,
                hardlink: false,
            },
        );
        let mut out = Vec::new();
        print(&tree, &mut out).unwrap();
        let hex = "ab".repeat(32);
        let expected = format!(
            "/ 0 40755 2 0 0 0 0.0 - - -\n\
             /a 5 100644 2 0 0 0 7.5 - hi\\nyo - user.a\\x3db=v\\x20v\n\
             /b 5 @100644 2 0 0 0 7.5 /a hi\\nyo - user.a\\x3db=v\\x20v\n\
             /c 10000 100600 1 0 0 0 0.0 ab/{} - {hex}\n",
            &hex[2..]
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
