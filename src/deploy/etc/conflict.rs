//! Conflicts between the host's changes to `/etc` and the new image's, and what to do
//! about them.

use std::fmt;
use std::str::FromStr;

use super::diff::Change;
use super::path::EtcPath;
use crate::tree::FileType;

/// What to do at a path both the host and the new image changed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// Write nothing and report every conflict (the default).
    #[default]
    Refuse,
    /// The host's version wins at each conflicting path.
    KeepLocal,
    /// The new image's version wins: the host's change at the path (and beneath) is
    /// dropped.
    TakeNew,
}

impl ConflictPolicy {
    /// The name as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Refuse => "refuse",
            ConflictPolicy::KeepLocal => "keep-local",
            ConflictPolicy::TakeNew => "take-new",
        }
    }
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A conflict policy name that is not one of `refuse`, `keep-local`, `take-new`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown /etc conflict policy '{0}' (expected refuse, keep-local or take-new)")]
pub struct UnknownPolicy(pub String);

impl FromStr for ConflictPolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "refuse" => Ok(ConflictPolicy::Refuse),
            "keep-local" => Ok(ConflictPolicy::KeepLocal),
            "take-new" => Ok(ConflictPolicy::TakeNew),
            _ => Err(UnknownPolicy(s.to_string())),
        }
    }
}

/// The type of an entry, as conflicts name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryType {
    /// Regular file.
    File,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character or block device.
    Device,
    /// Named pipe.
    Fifo,
    /// Socket.
    Socket,
}

impl From<FileType> for EntryType {
    fn from(t: FileType) -> Self {
        match t {
            FileType::Regular => EntryType::File,
            FileType::Directory => EntryType::Directory,
            FileType::Symlink => EntryType::Symlink,
            FileType::CharDevice | FileType::BlockDevice => EntryType::Device,
            FileType::Fifo => EntryType::Fifo,
            FileType::Socket => EntryType::Socket,
        }
    }
}

impl fmt::Display for EntryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryType::File => "file",
            EntryType::Directory => "directory",
            EntryType::Symlink => "symlink",
            EntryType::Device => "device",
            EntryType::Fifo => "fifo",
            EntryType::Socket => "socket",
        })
    }
}

/// A path where the host's change and the new image's change cannot both be kept.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// The path.
    pub path: EtcPath,
    /// What happened on each side.
    pub kind: ConflictKind,
}

/// The kinds of conflict. Serialized with `"type": "bothChanged"` and so on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ConflictKind {
    /// Both changed the path (or both added it), with different results.
    BothChanged,
    /// The host changed the path; the new image deleted it.
    ChangedLocallyDeletedInNew,
    /// The host deleted the path (or a directory holding it); the new image changed it.
    DeletedLocallyChangedInNew,
    /// The file types disagree: one side changed the type and the other changed or
    /// deleted the path or something beneath it, or both sides changed it to different
    /// types. `None` is "absent".
    #[serde(rename_all = "camelCase")]
    TypeChanged {
        /// In the booted image.
        base: Option<EntryType>,
        /// On the host.
        local: Option<EntryType>,
        /// In the new image.
        new: Option<EntryType>,
    },
    /// The new image deleted this directory, or replaced it with a non-directory, while
    /// the host changed things beneath it.
    #[serde(rename_all = "camelCase")]
    DirectoryRemoved {
        /// What the new image has here instead, `None` when it deleted it.
        replaced_by: Option<EntryType>,
        /// The host's changes at and beneath the directory.
        local_changes: Vec<Change>,
    },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        let name = |t: &Option<EntryType>| t.map_or("absent".to_string(), |t| t.to_string());
        match &self.kind {
            ConflictKind::BothChanged => f.write_str("changed locally and in the new image"),
            ConflictKind::ChangedLocallyDeletedInNew => {
                f.write_str("changed locally, deleted in the new image")
            }
            ConflictKind::DeletedLocallyChangedInNew => {
                f.write_str("deleted locally, changed in the new image")
            }
            ConflictKind::TypeChanged { base, local, new } => write!(
                f,
                "file type conflict (booted image: {}, local: {}, new image: {})",
                name(base),
                name(local),
                name(new)
            ),
            ConflictKind::DirectoryRemoved {
                replaced_by,
                local_changes,
            } => {
                match replaced_by {
                    None => f.write_str("directory deleted in the new image")?,
                    Some(t) => write!(f, "directory replaced by a {t} in the new image")?,
                }
                f.write_str(" but changed locally beneath it: ")?;
                for (i, c) in local_changes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// The merge found conflicts and the policy was [`ConflictPolicy::Refuse`]: nothing was
/// written. Shows one conflict per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConflictError {
    /// Every conflict, sorted by path.
    pub conflicts: Vec<Conflict>,
}

impl fmt::Display for ConflictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.conflicts.len();
        write!(
            f,
            "{n} conflicting change{} in /etc (resolve them, or merge with the keep-local or take-new policy):",
            if n == 1 { "" } else { "s" }
        )?;
        for c in &self.conflicts {
            write!(f, "\n{c}")?;
        }
        Ok(())
    }
}

/// The kind of a conflict at one path, from the file types on the three sides (`None`:
/// absent).
pub(crate) fn classify(
    base: Option<FileType>,
    local: Option<FileType>,
    new: Option<FileType>,
) -> ConflictKind {
    let type_changed = match (local, new) {
        (Some(l), Some(n)) => l != n,
        (None, Some(other)) | (Some(other), None) => base.is_some_and(|b| b != other),
        (None, None) => false,
    };
    if type_changed {
        return ConflictKind::TypeChanged {
            base: base.map(EntryType::from),
            local: local.map(EntryType::from),
            new: new.map(EntryType::from),
        };
    }
    match (local, new) {
        (None, _) => ConflictKind::DeletedLocallyChangedInNew,
        (_, None) => ConflictKind::ChangedLocallyDeletedInNew,
        _ => ConflictKind::BothChanged,
    }
}
