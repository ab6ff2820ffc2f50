//! Paths below `/etc` as the merge names them: raw bytes (names on disk need not be UTF-8),
//! shown escaped so that a hostile name cannot forge a line of a report.

use std::cmp::Ordering;
use std::fmt;

/// A path relative to `/etc`: raw name bytes joined by `/`, empty for `/etc` itself.
///
/// Shown (and serialized) as an absolute path, `/etc/ssh/sshd_config`, with backslashes,
/// control characters and bytes that are not UTF-8 escaped (`\\`, `\x0a`, `\xff`).
/// Ordered component by component, so a directory sorts right before its contents.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct EtcPath(Vec<u8>);

impl EtcPath {
    /// `/etc` itself.
    pub fn root() -> Self {
        EtcPath(Vec::new())
    }

    /// A path from `/`-separated bytes relative to `/etc` (a leading `/etc` is not
    /// stripped); empty components are dropped.
    pub fn from_relative(path: &[u8]) -> Self {
        let mut out = EtcPath::root();
        for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            out = out.join(comp);
        }
        out
    }

    /// This path with one more name (which must not contain `/`).
    pub fn join(&self, name: &[u8]) -> Self {
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        if !v.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        EtcPath(v)
    }

    /// The raw bytes, relative to `/etc` (empty for `/etc`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for `/etc` itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The names from `/etc` down.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// The last name, `None` for `/etc`.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.components().last()
    }

    /// The containing directory, `None` for `/etc`.
    pub fn parent(&self) -> Option<EtcPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => EtcPath(self.0[..i].to_vec()),
            None => EtcPath::root(),
        })
    }

    /// Every proper ancestor, from `/etc` down to the parent.
    pub fn ancestors(&self) -> impl Iterator<Item = EtcPath> + '_ {
        let ends = self.0.iter().enumerate().filter(|(_, b)| **b == b'/');
        std::iter::once(EtcPath::root())
            .chain(ends.map(|(i, _)| EtcPath(self.0[..i].to_vec())))
            .take(if self.is_root() { 0 } else { usize::MAX })
    }
}

impl Ord for EtcPath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for EtcPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for EtcPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/etc")?;
        for comp in self.components() {
            f.write_str("/")?;
            write_escaped(f, comp)?;
        }
        Ok(())
    }
}

impl fmt::Debug for EtcPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl serde::Serialize for EtcPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Writes a name with `\\`, control characters and invalid UTF-8 escaped.
fn write_escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                f.write_str("\\\\")?;
            } else if c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(f, "\\x{b:02x}")?;
                }
            } else {
                write!(f, "{c}")?;
            }
        }
        for b in chunk.invalid() {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_escapes_hostile_names() {
        let p = EtcPath::from_relative(b"a/new\nline/\xff\\x/caf\xc3\xa9");
        assert_eq!(p.to_string(), "/etc/a/new\\x0aline/\\xff\\\\x/café");
        assert_eq!(EtcPath::root().to_string(), "/etc");
    }

    #[test]
    fn order_parent_parent_ancestors() {
        let mut v = [
            EtcPath::from_relative(b"a-b"),
            EtcPath::from_relative(b"a/b"),
            EtcPath::from_relative(b"a"),
        ];
        v.sort();
        assert_eq!(v.map(|p| p.to_string()), ["/etc/a", "/etc/a/b", "/etc/a-b"]);
        let p = EtcPath::from_relative(b"x/y/z");
        assert_eq!(p.parent(), Some(EtcPath::from_relative(b"x/y")));
        let anc: Vec<String> = p.ancestors().map(|a| a.to_string()).collect();
        assert_eq!(anc, ["/etc", "/etc/x", "/etc/x/y"]);
        assert_eq!(EtcPath::root().ancestors().count(), 0);
        assert_eq!(p.file_name(), Some(&b"z"[..]));
    }
}
