//! Tests of the `/etc` merge. They need root (owners, whiteouts, trusted xattrs, overlay
//! mounts) and a disk filesystem, so everything lives under `/var/tmp`.
//!
//! `merge.rs` and `conflicts.rs` build upper directories by hand, the way overlayfs
//! records changes; `overlay.rs` makes the changes through a real overlay mount. Results
//! are checked on the merged view: the new image's `/etc` mounted under the new upper.

mod conflicts;
mod fixture;
mod merge;
mod overlay;
mod policy;

use std::path::{Path, PathBuf};

use fixture::{Entry, Kind, Spec, join, put, set_xattr, whiteout};

use super::{Conflict, ConflictPolicy};

/// `(path, kind)` of each conflict, the kind as serialized (`bothChanged`, ...).
pub fn kinds(conflicts: &[Conflict]) -> Vec<(String, String)> {
    conflicts
        .iter()
        .map(|c| {
            let kind = serde_json::to_value(&c.kind).unwrap();
            (
                c.path.to_string(),
                kind["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A hand-made upper directory over `base`.
pub struct Upper<'b> {
    pub root: PathBuf,
    base: &'b Spec,
}

impl<'b> Upper<'b> {
    pub fn new(fx: &fixture::Fx, base: &'b Spec) -> Self {
        Upper {
            root: fx.upper("upper"),
            base,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        join(&self.root, rel.as_bytes())
    }

    /// Copies the base entry up, with its parents, as overlayfs does before a change.
    pub fn copy_up(&self, rel: &str) -> &Self {
        self.parents(rel);
        if std::fs::symlink_metadata(self.path(rel)).is_err() {
            put(&self.path(rel), &self.base.entries[rel.as_bytes()]);
            // Bookkeeping overlayfs adds on copy-up: never compared, never copied.
            set_xattr(&self.path(rel), "trusted.overlay.origin", b"\x00\xfbjunk");
        }
        self
    }

    fn parents(&self, rel: &str) {
        if let Some((parent, _)) = rel.rsplit_once('/') {
            if self.base.entries.contains_key(parent.as_bytes()) {
                self.copy_up(parent);
            } else if std::fs::symlink_metadata(self.path(parent)).is_err() {
                self.parents(parent);
                put(&self.path(parent), &Entry::new(Kind::Dir));
            }
        }
    }

    /// Puts `entry` at `rel` (replacing a copied-up file).
    pub fn put(&self, rel: &str, entry: Entry) -> &Self {
        self.parents(rel);
        let p = self.path(rel);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&p).unwrap();
        }
        put(&p, &entry);
        self
    }

    pub fn file(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        self.put(rel, Entry::new(Kind::File(content.as_ref().to_vec())))
    }

    /// Copies up and changes the metadata of an entry.
    pub fn chmod(&self, rel: &str, perms: u32) -> &Self {
        self.copy_up(rel);
        rustix::fs::chmod(self.path(rel), rustix::fs::Mode::from_raw_mode(perms)).unwrap();
        self
    }

    pub fn whiteout(&self, rel: &str) -> &Self {
        self.parents(rel);
        whiteout(&self.path(rel));
        self
    }

    /// `rm -r` then `mkdir`: an opaque directory.
    pub fn opaque_dir(&self, rel: &str) -> &Self {
        self.parents(rel);
        put(&self.path(rel), &Entry::new(Kind::Dir));
        set_xattr(&self.path(rel), "trusted.overlay.opaque", b"y");
        self
    }
}

/// The base `/etc` most tests start from.
pub fn base() -> Spec {
    Spec::default()
        .file("hosts", "127.0.0.1 localhost\n")
        .file("big.conf", fixture::big("base"))
        .dir("ssh")
        .file("ssh/sshd_config", fixture::big("sshd"))
        .file("ssh/moduli", "moduli\n")
        .link("localtime", "../usr/share/zoneinfo/UTC")
        .dir("d")
        .file("d/a", "a\n")
        .file("d/b", fixture::big("b"))
        .dir("d/sub")
        .file("d/sub/c", "c\n")
}

/// Merges and checks what `/etc` shows afterwards; returns the new upper directory.
pub fn merge_and_view(
    fx: &fixture::Fx,
    base: &Spec,
    new: &Spec,
    upper: &Path,
    policy: ConflictPolicy,
    expected: &Spec,
) -> PathBuf {
    let dest = fx.path(&format!("dest-{policy}"));
    fx.merge(base, new, upper, policy, &dest).unwrap();
    let view = fx.merged_view(new, &dest);
    assert_eq!(view, *expected, "merged /etc under {policy}");
    dest
}

/// The names in a written upper directory, with whiteouts marked `(wh)` and opaque
/// directories `(opaque)`.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let spec = Spec::read_from(dir);
    for (rel, e) in &spec.entries {
        if rel.is_empty() {
            continue;
        }
        let mut s = String::from_utf8_lossy(rel).into_owned();
        if e.kind == Kind::Char(0) {
            s.push_str(" (wh)");
        }
        if fixture::xattrs(&join(dir, rel)).contains_key(&b"trusted.overlay.opaque"[..]) {
            s.push_str(" (opaque)");
        }
        out.push(s);
    }
    out
}
