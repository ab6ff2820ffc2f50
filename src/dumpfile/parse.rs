//! composefs-dump(5) parser, accepting exactly what C `mkcomposefs --from-file` 1.0.8 accepts
//! (`tools/mkcomposefs.c`, `tree_from_dump_line`), with the same resulting tree.
//!
//! One line per file: `PATH SIZE MODE NLINK UID GID RDEV MTIME PAYLOAD CONTENT DIGEST
//! [XATTR...]`, fields separated by single spaces, `-` for an absent optional field, C-like
//! escapes (`\\`, `\n`, `\r`, `\t`, `\xNN`). A mode prefixed with `@` makes the line a hard
//! link whose payload is the target path; links are resolved after the whole input is read.
//!
//! [`ParseMode::Strict`] adds the checks mkcomposefs makes under `CFS_PARSE_STRICT=1`.
//! Where the C parser would accept input only by reading uninitialised memory (a malformed
//! digest on an external file) or would loop forever (a hard-link cycle not through the
//! start), this parser refuses it instead, and it refuses hard links to directories
//! (mkcomposefs writes them, giving a broken image). A 128-hex-digit digest is read as
//! SHA-512, where mkcomposefs would keep its first 32 bytes.

use std::collections::btree_map::Entry;
use std::io::{BufRead, Read};

mod error;

pub use self::error::{DumpError, LineError};
use crate::erofs::limits::{
    INLINE_CONTENT_MAX, MAX_CHUNKS, MAX_DEPTH, NAME_MAX, PAYLOAD_MAX, XATTR_NAME_MAX,
    XATTR_VALUE_MAX, XATTRS_INPUT_MAX, chunk_count,
};
use crate::fsverity::Digest;
use crate::tree::{DirEntry, FileType, Inode, InodeId, ROOT, Timestamp, Tree, Xattr};

/// How strictly to read a dump.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ParseMode {
    /// What `mkcomposefs --from-file` accepts by default.
    #[default]
    Lenient,
    /// What it accepts with `CFS_PARSE_STRICT=1`: also refuses a missing final newline, an
    /// rdev on a non-device, a symlink whose size field differs from its target length, and
    /// content on a symlink.
    Strict,
}

// Every format limit (name, payload, inline, xattr, chunk, depth) is in `erofs::limits`.
/// The xattr part of a line is capped to keep the C parser linear (`Too many xattrs`).
pub const MAX_XATTR_SECTION_LEN: usize = u16::MAX as usize;

/// Longest line read. The longest valid line is about 118 KiB (a 4095-byte path and payload
/// written as `\xNN`, 5000 bytes of escaped content, 64 KiB of xattrs); the C parser's
/// `getline` has no bound, but reading a line without one would let a file without newlines
/// (`/dev/zero`) take all memory.
pub const MAX_LINE_LEN: usize = 1 << 20;

/// Parses a whole dump held in memory.
pub fn parse(input: &[u8], mode: ParseMode) -> Result<Tree, DumpError> {
    parse_reader(input, mode)
}

/// Parses a dump line by line from a reader; only one line is held at a time.
pub fn parse_reader(mut input: impl BufRead, mode: ParseMode) -> Result<Tree, DumpError> {
    let mut builder = Builder::new(mode);
    let mut line = Vec::new();
    let mut lineno = 0;
    loop {
        line.clear();
        if (&mut input)
            .take(MAX_LINE_LEN as u64 + 1)
            .read_until(b'\n', &mut line)?
            == 0
        {
            break;
        }
        lineno += 1;
        let terminated = line.last() == Some(&b'\n');
        if line.len() > MAX_LINE_LEN + usize::from(terminated) {
            return Err(DumpError::Line {
                line: lineno,
                error: LineError::LineTooLong,
            });
        }
        if terminated {
            line.pop();
        } else if mode == ParseMode::Strict {
            return Err(DumpError::Line {
                line: lineno,
                error: LineError::MissingTrailingNewline,
            });
        }
        builder
            .line(&line, lineno)
            .map_err(|error| DumpError::Line {
                line: lineno,
                error,
            })?;
    }
    builder.finish()
}

/// A hard link waiting for the whole tree: its entry points at a placeholder id.
struct Fixup {
    line: usize,
    parent: InodeId,
    name: Box<[u8]>,
    target: Option<Vec<u8>>,
}

/// Placeholder ids count down from the top of `usize`, never valid arena indexes.
fn placeholder(k: usize) -> InodeId {
    usize::MAX - k
}

struct Builder {
    mode: ParseMode,
    tree: Tree,
    root_seen: bool,
    fixups: Vec<Fixup>,
    /// mkcomposefs's running xattr size of the inode being parsed.
    xattr_budget: usize,
}

/// The fixed fields, in order.
const FIELDS: usize = 11;
const F_PATH: usize = 0;
const F_SIZE: usize = 1;
const F_MODE: usize = 2;
const F_NLINK: usize = 3;
const F_UID: usize = 4;
const F_GID: usize = 5;
const F_RDEV: usize = 6;
const F_MTIME: usize = 7;
const F_PAYLOAD: usize = 8;
const F_CONTENT: usize = 9;
const F_DIGEST: usize = 10;

/// Splits at the first `sep` like mkcomposefs's `split_at`: a missing separator gives the
/// whole rest and leaves nothing.
fn split_at<'a>(rest: &mut &'a [u8], sep: u8) -> (&'a [u8], bool) {
    match rest.iter().position(|&b| b == sep) {
        Some(i) => {
            let part = &rest[..i];
            *rest = &rest[i + 1..];
            (part, true)
        }
        None => {
            let part = *rest;
            *rest = &rest[rest.len()..];
            (part, false)
        }
    }
}

/// Undoes the dump escapes.
pub fn unescape(s: &[u8]) -> Result<Vec<u8>, LineError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err(LineError::BadEscape("no character after escape"));
        };
        i += 1;
        match e {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'x' => {
                if s.len() < i + 2 {
                    return Err(LineError::BadEscape("no hex characters after hex escape"));
                }
                let hi = hex_digit(s[i]);
                let lo = hex_digit(s[i + 1]);
                i += 2;
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(LineError::BadEscape(
                            "invalid hex characters after hex escape",
                        ));
                    }
                }
            }
            _ => return Err(LineError::BadEscape("unsupported escape type")),
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// `-` alone means absent.
fn unescape_optional(s: &[u8]) -> Result<Option<Vec<u8>>, LineError> {
    if s == b"-" {
        Ok(None)
    } else {
        unescape(s).map(Some)
    }
}

/// Strings the C tool handles as NUL-terminated stop at an escaped `\x00`.
fn c_str(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(i) = v.iter().position(|&b| b == 0) {
        v.truncate(i);
    }
    v
}

/// Parses an unsigned integer the way `strtoull` does (leading spaces, optional sign, a
/// negative value wraps, overflow saturates); the whole field must be consumed.
fn parse_number(field: &'static str, s: &[u8], radix: u32) -> Result<u64, LineError> {
    let invalid = || LineError::InvalidNumber {
        field,
        value: String::from_utf8_lossy(s).into_owned(),
    };
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let digits = &s[i..];
    if digits.is_empty() {
        return Err(invalid());
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for &c in digits {
        let d = (c as char).to_digit(radix).ok_or_else(invalid)?;
        match value
            .checked_mul(radix as u64)
            .and_then(|v| v.checked_add(d as u64))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    Ok(if overflow {
        u64::MAX
    } else if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// The DIGEST field: 64 hex digits (sha256), or 128 (sha512, an extension: mkcomposefs
/// 1.0.8 knows only sha256 and would keep the first 32 bytes). Like mkcomposefs, longer
/// input whose first 64 characters are hex gives those 32 bytes. `Err` for anything else,
/// which the caller refuses only where it matters.
fn parse_digest(d: &[u8]) -> Result<Option<Digest>, LineError> {
    let text = String::from_utf8_lossy(d).into_owned();
    if let Ok(digest) = Digest::from_hex(&text) {
        return Ok(Some(digest));
    }
    if d.len() > 64
        && let Ok(digest) = std::str::from_utf8(&d[..64])
            .map_err(|_| ())
            .and_then(|t| Digest::from_hex(t).map_err(|_| ()))
    {
        return Ok(Some(digest));
    }
    Err(LineError::InvalidDigest(text))
}

impl Builder {
    fn new(mode: ParseMode) -> Self {
        Builder {
            mode,
            tree: Tree::new(0),
            root_seen: false,
            fixups: Vec::new(),
            xattr_budget: 0,
        }
    }

    fn line(&mut self, line: &[u8], lineno: usize) -> Result<(), LineError> {
        if let Some(pos) = line.iter().position(|&b| b == 0) {
            return Err(LineError::EmbeddedNul(pos));
        }
        let mut rest = line;
        let mut f: [&[u8]; FIELDS] = [&[]; FIELDS];
        for field in f.iter_mut() {
            *field = split_at(&mut rest, b' ').0;
        }

        let path = c_str(unescape(f[F_PATH])?);
        if path.is_empty() {
            return Err(LineError::EmptyPath);
        }
        let (is_hardlink, mode_text) = match f[F_MODE].strip_prefix(b"@") {
            Some(m) => (true, m),
            None => (false, f[F_MODE]),
        };
        // mkcomposefs stores the mode in 32 bits; only the type bits are checked.
        let st_mode = parse_number("mode", mode_text, 8)? as u32;
        let ftype = FileType::from_mode(st_mode).ok_or(LineError::InvalidMode(st_mode))?;

        if is_hardlink {
            if ftype == FileType::Directory {
                return Err(LineError::DirectoryHardlink);
            }
            let target = unescape_optional(f[F_PAYLOAD])?.map(c_str);
            let k = self.fixups.len();
            let (parent, name) = self.add_entry(&path, placeholder(k), true)?;
            self.fixups.push(Fixup {
                line: lineno,
                parent,
                name,
                target,
            });
            return Ok(());
        }

        let size = parse_number("size", f[F_SIZE], 10)?;
        let nlink = parse_number("nlink", f[F_NLINK], 10)?;
        let uid = parse_number("uid", f[F_UID], 10)?;
        // mkcomposefs 1.0.8 checks the GID and RDEV fields' errors only when UID parsed as 0
        // (it tests `uid == 0 && err`); otherwise a malformed value silently becomes 0.
        let gid = match parse_number("gid", f[F_GID], 10) {
            Ok(v) => v,
            Err(e) if uid == 0 => return Err(e),
            Err(_) => 0,
        };
        let rdev = match parse_number("rdev", f[F_RDEV], 10) {
            Ok(v) => v,
            Err(e) if uid == 0 => return Err(e),
            Err(_) => 0,
        };
        let mtime = {
            let mut m = f[F_MTIME];
            let (sec, _) = split_at(&mut m, b'.');
            let sec = parse_number("mtime", sec, 10)?;
            let nsec = parse_number("mtime", m, 10)?;
            // time_t and the 32-bit nanoseconds field of the C inode.
            Timestamp {
                sec: sec as i64,
                nsec: nsec as u32,
            }
        };
        let payload = unescape_optional(f[F_PAYLOAD])?.map(c_str);
        let content = unescape_optional(f[F_CONTENT])?;
        if let Some(c) = &content
            && c.len() as u64 != size
        {
            return Err(LineError::ContentSizeMismatch {
                content: c.len(),
                size,
            });
        }
        let digest = match unescape_optional(f[F_DIGEST])? {
            None => Ok(None),
            Some(d) => parse_digest(&d),
        };

        let mut inode = Inode::new(st_mode);
        inode.nlink = nlink as u32;
        inode.uid = uid as u32;
        inode.gid = gid as u32;
        inode.mtime = mtime;
        match ftype {
            // mkcomposefs keeps a 32-bit rdev.
            FileType::CharDevice | FileType::BlockDevice => inode.rdev = rdev as u32 as u64,
            _ if self.mode == ParseMode::Strict && rdev != 0 => {
                return Err(LineError::RdevOnNonDevice);
            }
            _ => {}
        }
        if ftype == FileType::Symlink {
            let target = payload.unwrap_or_default();
            if target.is_empty() {
                return Err(LineError::EmptySymlink);
            }
            if target.len() > PAYLOAD_MAX {
                return Err(LineError::PayloadTooLong(target.len()));
            }
            if self.mode == ParseMode::Strict {
                if size != target.len() as u64 {
                    return Err(LineError::SymlinkSizeMismatch {
                        size,
                        target: target.len(),
                    });
                }
                if content.as_ref().is_some_and(|c| !c.is_empty()) {
                    return Err(LineError::SymlinkContent);
                }
            }
            // The target length is the canonical size (`lcfs_node_set_symlink_payload`).
            inode.size = target.len() as u64;
            inode.payload = Some(target.into());
        } else {
            if let Some(p) = &payload
                && p.len() > PAYLOAD_MAX
            {
                return Err(LineError::PayloadTooLong(p.len()));
            }
            inode.size = size;
            if let Some(c) = content {
                if c.len() > INLINE_CONTENT_MAX {
                    return Err(LineError::InlineTooLarge(c.len()));
                }
                // Empty content is no content (`lcfs_node_set_content`).
                if ftype == FileType::Regular && !c.is_empty() {
                    inode.inline = Some(c.into());
                }
            }
            if ftype == FileType::Regular {
                inode.payload = payload.map(Into::into);
                // mkcomposefs refuses these when writing (`lcfs_node_validate`, EFBIG).
                if inode.inline.is_none() && size > 0 && chunk_count(size) > MAX_CHUNKS {
                    return Err(LineError::FileTooBig(size));
                }
            }
        }

        // mkcomposefs ignores digest_to_raw's failure, and the digest is only written for
        // external files: elsewhere a malformed digest has no effect, there it would put
        // uninitialised bytes in the image, so it is refused.
        let digest = match digest {
            Ok(d) => d,
            Err(_) if inode.inline.is_some() || size == 0 || ftype != FileType::Regular => None,
            Err(e) => return Err(e),
        };
        inode.digest = digest;

        if rest.len() > MAX_XATTR_SECTION_LEN {
            return Err(LineError::TooManyXattrs);
        }
        self.xattr_budget = 0;
        while !rest.is_empty() {
            let (xattr, _) = split_at(&mut rest, b' ');
            let mut x = xattr;
            let (name, found) = split_at(&mut x, b'=');
            if !found {
                return Err(LineError::XattrMissingEquals);
            }
            let name = c_str(unescape(name)?);
            let value = unescape(x)?;
            self.set_xattr(&mut inode, name, value)?;
        }

        if path == b"/" {
            if ftype != FileType::Directory {
                return Err(LineError::RootNotDirectory);
            }
            if self.root_seen {
                return Err(LineError::MultipleRoots);
            }
            self.root_seen = true;
            self.tree.inodes[ROOT] = inode;
        } else {
            let id = self.tree.inodes.len();
            self.add_entry(&path, id, false)?;
            self.tree.inodes.push(inode);
        }
        Ok(())
    }

    /// Sets an xattr with mkcomposefs's limits and size accounting
    /// (`lcfs_node_set_xattr_internal`): a repeated name replaces the earlier value.
    fn set_xattr(
        &mut self,
        inode: &mut Inode,
        name: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), LineError> {
        if name.is_empty() || name.len() > XATTR_NAME_MAX {
            return Err(LineError::XattrNameLength(name.len()));
        }
        if value.len() > XATTR_VALUE_MAX {
            return Err(LineError::XattrValueTooLarge(value.len()));
        }
        let meta = 2 * 4 - 1;
        if let Some(pos) = inode.xattrs.iter().position(|x| *x.name == *name) {
            let old = inode.xattrs.remove(pos);
            if inode.xattrs.is_empty() {
                self.xattr_budget = 0;
            } else {
                self.xattr_budget -= meta + old.name.len() + old.value.len();
            }
        }
        let mut entry = meta + name.len() + value.len();
        if inode.xattrs.is_empty() {
            entry += 12;
        }
        if self.xattr_budget + entry > XATTRS_INPUT_MAX {
            return Err(LineError::XattrsTooLarge);
        }
        self.xattr_budget += entry;
        inode.xattrs.push(Xattr {
            name: name.into(),
            value: value.into(),
        });
        Ok(())
    }

    /// Links `id` at `path` (mkcomposefs's `tree_add_node`); returns parent and name.
    fn add_entry(
        &mut self,
        path: &[u8],
        id: InodeId,
        hardlink: bool,
    ) -> Result<(InodeId, Box<[u8]>), LineError> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        if path == b"/" {
            // A hard-link line for "/" (a directory hard link is refused earlier, so this is
            // a non-directory root).
            return Err(LineError::RootNotDirectory);
        }
        if !self.root_seen {
            return Err(LineError::RootNotFirst);
        }
        // Leading and repeated slashes are skipped; the last component is the name, even
        // when empty (a trailing slash).
        let trimmed = &path[path.iter().take_while(|&&b| b == b'/').count()..];
        let (dir_part, name) = match trimmed.iter().rposition(|&b| b == b'/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => (&trimmed[..0], trimmed),
        };
        let parents = dir_part.split(|&b| b == b'/').filter(|c| !c.is_empty());
        if parents.clone().count() >= MAX_DEPTH {
            return Err(LineError::TooDeep(shown()));
        }
        let mut parent = ROOT;
        for comp in parents {
            parent = match self.child(parent, comp) {
                Some(c) => c,
                None => return Err(LineError::ParentMissing(shown())),
            };
        }
        if !self.is_real(parent) || !self.tree.inodes[parent].is_dir() {
            return Err(LineError::ParentNotDirectory(shown()));
        }
        if name == b"." || name == b".." {
            return Err(LineError::DotName(shown()));
        }
        if name.is_empty() {
            return Err(LineError::EmptyName(shown()));
        }
        if name.len() > NAME_MAX {
            return Err(LineError::NameTooLong { len: name.len() });
        }
        match self.tree.inodes[parent].entries.entry(name.into()) {
            Entry::Occupied(_) => Err(LineError::AlreadyExists(shown())),
            Entry::Vacant(v) => {
                v.insert(DirEntry {
                    inode: id,
                    hardlink,
                });
                Ok((parent, name.into()))
            }
        }
    }

    fn is_real(&self, id: InodeId) -> bool {
        id < self.tree.inodes.len()
    }

    /// The child `name` of directory `dir`; non-directories and links have no children.
    fn child(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        if !self.is_real(dir) {
            return None;
        }
        self.tree.inodes[dir].entries.get(name).map(|e| e.inode)
    }

    /// mkcomposefs's `lookup_path`: slashes anywhere are skipped, `/` is the root.
    fn lookup(&self, path: &[u8]) -> Option<InodeId> {
        let mut cur = ROOT;
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            cur = self.child(cur, comp)?;
        }
        Some(cur)
    }

    fn finish(mut self) -> Result<Tree, DumpError> {
        if !self.root_seen {
            return Err(DumpError::NoRoot);
        }
        let fixups = std::mem::take(&mut self.fixups);
        // First resolve each link to the node it names (maybe another link) ...
        let mut direct = Vec::with_capacity(fixups.len());
        for (k, fixup) in fixups.iter().enumerate() {
            let err = |error| DumpError::Line {
                line: fixup.line,
                error,
            };
            let target = fixup
                .target
                .as_deref()
                .ok_or_else(|| err(LineError::HardlinkNoTarget))?;
            let shown = String::from_utf8_lossy(target).into_owned();
            let id = self
                .lookup(target)
                .ok_or_else(|| err(LineError::HardlinkTargetMissing(shown.clone())))?;
            if id == placeholder(k) {
                return Err(err(LineError::SelfHardlink(shown)));
            }
            direct.push(id);
        }
        // ... then follow chains of links to a real inode.
        for (k, fixup) in fixups.iter().enumerate() {
            let err = |error| DumpError::Line {
                line: fixup.line,
                error,
            };
            let shown = || {
                String::from_utf8_lossy(fixup.target.as_deref().unwrap_or_default()).into_owned()
            };
            let mut id = direct[k];
            let mut steps = 0;
            while !self.is_real(id) {
                steps += 1;
                if steps > fixups.len() {
                    return Err(err(LineError::HardlinkCycle(shown())));
                }
                id = direct[usize::MAX - id];
            }
            if self.tree.inodes[id].is_dir() {
                return Err(err(LineError::HardlinkToDirectory(shown())));
            }
            let entry = self.tree.inodes[fixup.parent]
                .entries
                .get_mut(&fixup.name)
                .expect("fixup entry exists");
            entry.inode = id;
        }
        Ok(self.tree)
    }
}

#[cfg(test)]
mod tests;
