//! Errors of the dump parser: which line, which rule.

use super::MAX_LINE_LEN;
use crate::erofs::limits::{
    INLINE_CONTENT_MAX, MAX_DEPTH, NAME_MAX, PAYLOAD_MAX, XATTRS_INPUT_MAX,
};

/// A dump that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// A line broke a rule.
    #[error("line {line}: {error}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The rule broken.
        error: LineError,
    },
    /// The input has no `/` line.
    #[error("no root directory ('/' line) in dump")]
    NoRoot,
    /// Reading the input failed.
    #[error("reading dump: {0}")]
    Io(#[from] std::io::Error),
}

impl DumpError {
    /// The line number and rule, for a [`DumpError::Line`].
    pub fn line_error(&self) -> Option<(usize, &LineError)> {
        match self {
            DumpError::Line { line, error } => Some((*line, error)),
            _ => None,
        }
    }
}

/// The rule a line broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A raw NUL byte in the line.
    #[error("embedded NUL character at position {0}")]
    EmbeddedNul(usize),
    /// A `\` escape that is not one of `\\ \n \r \t \xNN`.
    #[error("bad escape: {0}")]
    BadEscape(&'static str),
    /// Empty path field.
    #[error("empty path")]
    EmptyPath,
    /// A numeric field that is not a number.
    #[error("invalid {field} '{value}'")]
    InvalidNumber {
        /// Field name.
        field: &'static str,
        /// The text found.
        value: String,
    },
    /// A mode without a valid file type.
    #[error("invalid mode {0:o}: no valid file type")]
    InvalidMode(u32),
    /// `/` is not a directory.
    #[error("root must be a directory")]
    RootNotDirectory,
    /// A second `/` line.
    #[error("multiple root lines")]
    MultipleRoots,
    /// A file before the `/` line.
    #[error("root directory must come first")]
    RootNotFirst,
    /// The parent directory was not listed before this line.
    #[error("parent directory of {0} missing (parents must come before children)")]
    ParentMissing(String),
    /// The parent is not a directory.
    #[error("parent of {0} is not a directory")]
    ParentNotDirectory(String),
    /// The name is `.` or `..`.
    #[error("invalid name '.' or '..' in {0}")]
    DotName(String),
    /// The name is empty (`//`, trailing `/`).
    #[error("empty file name in {0}")]
    EmptyName(String),
    /// The name is over 255 bytes.
    #[error("file name of {len} bytes exceeds {NAME_MAX}")]
    NameTooLong {
        /// Length found.
        len: usize,
    },
    /// The path was listed before.
    #[error("path {0} already exists")]
    AlreadyExists(String),
    /// A hard-link line with a directory mode.
    #[error("directories can't be hardlinked")]
    DirectoryHardlink,
    /// A hard link whose target is a directory.
    #[error("hardlink to a directory ({0})")]
    HardlinkToDirectory(String),
    /// A hard link without a target path.
    #[error("no target path for the hardlink")]
    HardlinkNoTarget,
    /// The hard-link target does not exist.
    #[error("no target at {0} for hardlink")]
    HardlinkTargetMissing(String),
    /// A hard link to itself.
    #[error("self-referential hardlink {0}")]
    SelfHardlink(String),
    /// Hard links forming a loop.
    #[error("hardlink cycle through {0}")]
    HardlinkCycle(String),
    /// CONTENT length differs from SIZE.
    #[error("invalid content size {content}, must match size {size}")]
    ContentSizeMismatch {
        /// Content bytes.
        content: usize,
        /// SIZE field.
        size: u64,
    },
    /// Inline content over the limit.
    #[error("inline content size {0} exceeds maximum {INLINE_CONTENT_MAX}")]
    InlineTooLarge(usize),
    /// Strict: RDEV set on a non-device.
    #[error("non-zero devnum on non-device")]
    RdevOnNonDevice,
    /// A symlink without target.
    #[error("symlink with empty target")]
    EmptySymlink,
    /// A symlink target or backing path of `PATH_MAX` bytes or more.
    #[error("payload of {0} bytes is too long (max {PAYLOAD_MAX})")]
    PayloadTooLong(usize),
    /// Strict: SIZE of a symlink differs from its target length.
    #[error("invalid symlink size {size}, must match target length {target}")]
    SymlinkSizeMismatch {
        /// SIZE field.
        size: u64,
        /// Target length.
        target: usize,
    },
    /// Strict: CONTENT on a symlink.
    #[error("symlink cannot have content")]
    SymlinkContent,
    /// DIGEST is not 64 or 128 hex digits.
    #[error("invalid digest '{0}'")]
    InvalidDigest(String),
    /// An external file needing more than 1024 chunks.
    #[error("file size {0} is too big for a composefs external file")]
    FileTooBig(u64),
    /// The xattr part of the line is over 65535 bytes.
    #[error("too many xattrs")]
    TooManyXattrs,
    /// An xattr without `=`.
    #[error("missing = in xattr")]
    XattrMissingEquals,
    /// An xattr name that is empty or over 255 bytes.
    #[error("invalid xattr name length {0}")]
    XattrNameLength(usize),
    /// An xattr value over 65535 bytes.
    #[error("xattr value of {0} bytes is too large")]
    XattrValueTooLarge(usize),
    /// The inode's xattrs exceed the per-inode budget.
    #[error("xattrs exceed the {XATTRS_INPUT_MAX}-byte per-inode limit")]
    XattrsTooLarge,
    /// A path of more than [`MAX_DEPTH`] components: an image cannot hold it.
    #[error("{0}: more than {MAX_DEPTH} path components, the most a composefs image holds")]
    TooDeep(String),
    /// A line longer than any valid one can be (no newline within [`MAX_LINE_LEN`] bytes).
    #[error("line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    /// Strict: the last line has no newline.
    #[error("missing trailing newline")]
    MissingTrailingNewline,
}
