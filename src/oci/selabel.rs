//! SELinux labels of a boot variant from the image's own policy, as composefs-rs
//! (`composefs-boot`, `selabel`) computes them, so that the `merged.bootable` digest is the
//! one bootc mounts (`docs/oci-conventions.md` section 8).
//!
//! The policy is `/etc/selinux/config`'s `SELINUXTYPE`; its specifications are
//! `/etc/selinux/<type>/contexts/files/file_contexts` (required), then `.local` and
//! `.homedirs`; path aliases come from `file_contexts.subs` then `.subs_dist` (a later alias
//! of the same path wins). A line is `REGEX [-T] CONTEXT` (selabel_file(5)): it matches a
//! path when `^(REGEX)T$` matches the path followed by one byte for the file type
//! (`-` regular, `d`, `l`, `b`, `c`, `p`, `s`; without `-T`, any type). The **last**
//! matching line wins; `<<none>>` means no label. Every inode, directories included, gets
//! the `security.selinux` of its path or loses the one it had. Walking depth-first in name
//! order, the alias of a directory's path becomes the prefix of everything below it. A hard
//! link whose path gets another label than the path labelled first is split into an inode
//! of its own.
//!
//! Regular expressions are the `regex` crate's, without Unicode and matching bytes
//! (composefs-rs: `regex-automata` with the same settings, PCRE2 for what that refuses). A
//! pattern the `regex` crate refuses (look-around, back-references) is an error naming it:
//! the boot variant is then not made rather than made with another digest than bootc's.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::tree::{DirEntry, FileType, InodeId, Tree, Xattr};

/// The xattr.
pub const SELINUX_XATTR: &[u8] = b"security.selinux";

/// A compiled `file_contexts`.
#[derive(Debug)]
pub struct Policy {
    set: RegexSet,
    /// Per specification, in file order: the context (`None` for `<<none>>`).
    contexts: Vec<Option<Box<[u8]>>>,
    aliases: HashMap<Vec<u8>, Vec<u8>>,
}

fn lines<'a>(name: &'a str, text: &'a [u8]) -> Result<impl Iterator<Item = (usize, Vec<&'a str>)>> {
    let text = std::str::from_utf8(text).with_context(|| format!("{name}: not UTF-8 text"))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.split_whitespace().collect::<Vec<_>>()))
        .filter(|(_, w)| w.first().is_some_and(|f| !f.starts_with('#'))))
}

impl Policy {
    /// Builds the policy from the files `read` returns by name (`file_contexts`,
    /// `file_contexts.local`, ...; `None` when absent).
    pub fn build(read: impl Fn(&str) -> Result<Option<Vec<u8>>>) -> Result<Policy> {
        let mut patterns = Vec::new();
        let mut contexts = Vec::new();
        for suffix in ["", ".local", ".homedirs"] {
            let name = format!("file_contexts{suffix}");
            let Some(text) = read(&name)? else {
                if suffix.is_empty() {
                    bail!("the SELinux policy has no file_contexts");
                }
                continue;
            };
            for (n, words) in lines(&name, &text)? {
                let (regex, kind, context) = match words.as_slice() {
                    [regex, kind, context] if kind.starts_with('-') => {
                        let k = &kind[1..];
                        if !["b", "c", "d", "p", "l", "s", "-"].contains(&k) {
                            bail!("{name}:{n}: invalid file type {kind}");
                        }
                        (*regex, k, *context)
                    }
                    [regex, context] => (*regex, ".", *context),
                    _ => bail!("{name}:{n}: not 'REGEX [-TYPE] CONTEXT'"),
                };
                patterns.push(format!("^({regex}){kind}$"));
                contexts.push((context != "<<none>>").then(|| context.as_bytes().into()));
            }
        }
        let mut aliases = HashMap::new();
        for suffix in [".subs", ".subs_dist"] {
            let name = format!("file_contexts{suffix}");
            let Some(text) = read(&name)? else { continue };
            for (n, words) in lines(&name, &text)? {
                let [alias, original] = words.as_slice() else {
                    bail!("{name}:{n}: not 'ALIAS ORIGINAL'");
                };
                aliases.insert(alias.as_bytes().to_vec(), original.as_bytes().to_vec());
            }
        }
        let set = RegexSetBuilder::new(&patterns)
            .unicode(false)
            .size_limit(1 << 30)
            .dfa_size_limit(1 << 30)
            .build()
            .map_err(|e| {
                // Name the pattern at fault.
                let bad = patterns.iter().find(|p| {
                    regex::bytes::RegexBuilder::new(p)
                        .unicode(false)
                        .build()
                        .is_err()
                });
                anyhow::anyhow!(
                    "file_contexts: cannot compile {}: {e}",
                    bad.map_or("the patterns", |p| p.as_str())
                )
            })?;
        Ok(Policy {
            set,
            contexts,
            aliases,
        })
    }

    /// The label of `path` of type `kind` (`None`: no label).
    pub fn lookup(&self, path: &[u8], kind: u8) -> Option<&[u8]> {
        let mut key = Vec::with_capacity(path.len() + 1);
        key.extend_from_slice(path);
        key.push(kind);
        let last = self.set.matches(&key).iter().max()?;
        self.contexts[last].as_deref()
    }
}

fn kind_of(ft: Option<FileType>) -> u8 {
    match ft {
        Some(FileType::Directory) => b'd',
        Some(FileType::Symlink) => b'l',
        Some(FileType::BlockDevice) => b'b',
        Some(FileType::CharDevice) => b'c',
        Some(FileType::Fifo) => b'p',
        Some(FileType::Socket) => b's',
        _ => b'-',
    }
}

fn set_label(xattrs: &mut Vec<Xattr>, label: Option<&[u8]>) {
    xattrs.retain(|x| &*x.name != SELINUX_XATTR);
    if let Some(l) = label {
        xattrs.push(Xattr {
            name: SELINUX_XATTR.into(),
            value: l.into(),
        });
    }
}

/// Labels every inode of `tree` from `policy` (see the module documentation). Link counts
/// are the caller's to recompute (hard links may have been split).
pub fn label(tree: &mut Tree, policy: &Policy) {
    let mut labeled: HashMap<InodeId, Option<Box<[u8]>>> = HashMap::new();
    let mut path = b"/".to_vec();
    label_dir(tree, crate::tree::ROOT, &mut path, policy, &mut labeled);
}

fn label_dir(
    tree: &mut Tree,
    dir: InodeId,
    path: &mut Vec<u8>,
    policy: &Policy,
    labeled: &mut HashMap<InodeId, Option<Box<[u8]>>>,
) {
    let label = policy.lookup(path, b'd').map(Box::from);
    set_label(&mut tree.inodes[dir].xattrs, label.as_deref());
    let children: Vec<(Box<[u8]>, DirEntry)> = tree.inodes[dir]
        .entries
        .iter()
        .map(|(n, e)| (n.clone(), *e))
        .collect();
    for (name, entry) in children {
        let len = path.len();
        if !path.ends_with(b"/") {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        let effective = policy.aliases.get(path.as_slice()).cloned();
        let effective = effective.unwrap_or_else(|| path.clone());
        let inode = &tree.inodes[entry.inode];
        if inode.is_dir() {
            let mut sub = effective;
            label_dir(tree, entry.inode, &mut sub, policy, labeled);
        } else {
            let new: Option<Box<[u8]>> = policy
                .lookup(&effective, kind_of(inode.file_type()))
                .map(Box::from);
            let id = match labeled.get(&entry.inode) {
                Some(prev) if *prev != new => {
                    // A hard link labelled otherwise than its first path: its own inode.
                    let clone = tree.inodes[entry.inode].clone();
                    let id = tree.add_inode(clone);
                    let e = tree.inodes[dir].entries.get_mut(&name).expect("listed");
                    *e = DirEntry {
                        inode: id,
                        hardlink: false,
                    };
                    id
                }
                _ => entry.inode,
            };
            set_label(&mut tree.inodes[id].xattrs, new.as_deref());
            labeled.entry(id).or_insert(new);
        }
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(fc: &str, subs: &str) -> Policy {
        Policy::build(|name| {
            Ok(match name {
                "file_contexts" => Some(fc.as_bytes().to_vec()),
                "file_contexts.subs_dist" => Some(subs.as_bytes().to_vec()),
                _ => None,
            })
        })
        .unwrap()
    }

    #[test]
    fn the_last_match_wins_types_and_none() {
        let p = policy(
            "# comment\n/.*\tsystem_u:object_r:default_t:s0\n\
             /usr(/.*)?  system_u:object_r:usr_t:s0\n\
             /usr/bin(/.*)? -- system_u:object_r:bin_t:s0\n\
             /usr/bin -d system_u:object_r:bin_dir_t:s0\n\
             /tmp/.* <<none>>\n",
            "/usr/local /usr\n",
        );
        let l = |p: &Policy, path: &str, k: u8| {
            p.lookup(path.as_bytes(), k)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
        };
        assert_eq!(
            l(&p, "/etc", b'd').unwrap(),
            "system_u:object_r:default_t:s0"
        );
        assert_eq!(
            l(&p, "/usr/bin/ls", b'-').unwrap(),
            "system_u:object_r:bin_t:s0"
        );
        assert_eq!(
            l(&p, "/usr/bin/sh", b'l').unwrap(),
            "system_u:object_r:usr_t:s0"
        );
        assert_eq!(
            l(&p, "/usr/bin", b'd').unwrap(),
            "system_u:object_r:bin_dir_t:s0"
        );
        assert_eq!(l(&p, "/tmp/x", b'-'), None);
        assert_eq!(p.aliases[&b"/usr/local".to_vec()], b"/usr");
    }

    #[test]
    fn malformed_policies_are_refused_by_line() {
        for (fc, want) in [
            ("/a -x t\n", "invalid file type"),
            ("/a\n", "file_contexts:1"),
            ("/a b c d\n", "file_contexts:1"),
            ("(?=x) t\n", "cannot compile"),
        ] {
            let e = Policy::build(|n| Ok((n == "file_contexts").then(|| fc.as_bytes().to_vec())))
                .unwrap_err();
            assert!(format!("{e:#}").contains(want), "{fc}: {e:#}");
        }
        let e = Policy::build(|_| Ok(None)).unwrap_err();
        assert!(format!("{e:#}").contains("no file_contexts"), "{e:#}");
    }
}
