//! The kernel command line: splitting it the way the kernel does, and finding the composefs
//! image argument in it.
//!
//! Accepted forms (ARCHITECTURE.md, "Kernel command line"; composefs-rs `composefs-boot`):
//! - `composefs=<hex>`: 64 hex digits = fs-verity sha256, 128 = sha512;
//! - `composefs.digest=v1-sha256-12:<hex>` (or `v1-sha512-12`), composefs-rs's form;
//! - either with `?` right after `=`: verity optional (insecure; filesystems without fs-verity).
//!
//! When the argument appears several times the last one wins, as with any kernel parameter.

use crate::fsverity::{Algorithm, Digest};

/// The image the kernel command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageArg {
    /// The image's fs-verity digest.
    pub digest: Digest,
    /// `?` was given: boot even without fs-verity (no integrity guarantee).
    pub insecure: bool,
}

/// A composefs argument that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// The value is not a digest this program understands.
    #[error("kernel argument {arg}: {reason}")]
    BadValue {
        /// The whole argument as written.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `composefs=` and `composefs.digest=` name different images.
    #[error("kernel arguments name two different images: {0} and {1}")]
    Conflict(String, String),
}

/// Splits a command line into arguments like the kernel's `next_arg` (lib/cmdline.c):
/// whitespace separates, double quotes group (and are removed), there are no escapes.
pub fn split(cmdline: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut quoted = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_arg = true;
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if in_arg {
                    args.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            c => {
                cur.push(c);
                in_arg = true;
            }
        }
    }
    if in_arg {
        args.push(cur);
    }
    args
}

/// Finds the composefs image in a command line. `Ok(None)`: no composefs argument at all.
pub fn parse(cmdline: &str) -> Result<Option<ImageArg>, CmdlineError> {
    let mut plain = None;
    let mut digest_form = None;
    for arg in split(cmdline) {
        if let Some(value) = arg.strip_prefix("composefs=") {
            plain = Some(parse_plain(&arg, value)?);
        } else if let Some(value) = arg.strip_prefix("composefs.digest=") {
            digest_form = Some(parse_digest_form(&arg, value)?);
        }
    }
    match (plain, digest_form) {
        (Some(a), Some(b)) if a.digest != b.digest => {
            Err(CmdlineError::Conflict(a.digest.to_hex(), b.digest.to_hex()))
        }
        // Same image twice: secure unless both say `?`.
        (Some(a), Some(b)) => Ok(Some(ImageArg {
            insecure: a.insecure && b.insecure,
            ..a
        })),
        (a, b) => Ok(a.or(b)),
    }
}

fn bad(arg: &str, reason: impl Into<String>) -> CmdlineError {
    CmdlineError::BadValue {
        arg: arg.to_string(),
        reason: reason.into(),
    }
}

fn split_insecure(value: &str) -> (bool, &str) {
    match value.strip_prefix('?') {
        Some(rest) => (true, rest),
        None => (false, value),
    }
}

fn parse_plain(arg: &str, value: &str) -> Result<ImageArg, CmdlineError> {
    let (insecure, hex) = split_insecure(value);
    let digest = Digest::from_hex(hex).map_err(|e| bad(arg, e.to_string()))?;
    Ok(ImageArg { digest, insecure })
}

/// `v1-<hash>-<log2 block size>:<hex>`; only 4096-byte blocks (12) exist in this project.
fn parse_digest_form(arg: &str, value: &str) -> Result<ImageArg, CmdlineError> {
    let (insecure, value) = split_insecure(value);
    let (kind, hex) = value
        .split_once(':')
        .ok_or_else(|| bad(arg, "expected v1-sha256-12:<hex>"))?;
    let algorithm = match kind {
        "v1-sha256-12" => Algorithm::Sha256,
        "v1-sha512-12" => Algorithm::Sha512,
        other => return Err(bad(arg, format!("unsupported digest kind '{other}'"))),
    };
    let digest = Digest::from_hex(hex).map_err(|e| bad(arg, e.to_string()))?;
    if digest.algorithm() != algorithm {
        return Err(bad(arg, format!("digest length does not match {kind}")));
    }
    Ok(ImageArg { digest, insecure })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(split("  a b\tc\n"), ["a", "b", "c"]);
        assert_eq!(split(r#"a="b c" "d e" f"#), ["a=b c", "d e", "f"]);
        assert_eq!(split(r#"x="" y"#), ["x=", "y"]);
        assert_eq!(split(""), Vec::<String>::new());
        // An unterminated quote runs to the end.
        assert_eq!(split(r#"a "b c"#), ["a", "b c"]);
    }

    #[test]
    fn finds_plain_and_insecure() {
        let a = parse(&format!("root=/dev/vda2 composefs={H} rw"))
            .unwrap()
            .unwrap();
        assert_eq!(a.digest.to_hex(), H);
        assert!(!a.insecure);
        let a = parse(&format!("composefs=?{H}")).unwrap().unwrap();
        assert!(a.insecure);
        assert_eq!(parse("root=/dev/vda quiet").unwrap(), None);
        // Other arguments sharing the prefix are not ours.
        assert_eq!(parse(&format!("composefsx={H}")).unwrap(), None);
    }

    #[test]
    fn finds_digest_form() {
        let a = parse(&format!("composefs.digest=v1-sha256-12:{H}"))
            .unwrap()
            .unwrap();
        assert_eq!(a.digest.to_hex(), H);
        assert!(!a.insecure);
        let a = parse(&format!("\"composefs.digest=?v1-sha256-12:{H}\""))
            .unwrap()
            .unwrap();
        assert!(a.insecure);
        let h512 = H.repeat(2);
        let a = parse(&format!("composefs.digest=v1-sha512-12:{h512}"))
            .unwrap()
            .unwrap();
        assert_eq!(a.digest.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn refuses_bad_values() {
        assert!(parse("composefs=xyz").is_err());
        assert!(parse("composefs=").is_err());
        assert!(parse(&format!("composefs.digest=v2-sha256-12:{H}")).is_err());
        assert!(parse(&format!("composefs.digest={H}")).is_err());
        assert!(parse(&format!("composefs.digest=v1-sha512-12:{H}")).is_err());
    }

    #[test]
    fn last_wins_and_conflicts_refused() {
        let other = H.replace('0', "f");
        let a = parse(&format!("composefs={other} composefs={H}"))
            .unwrap()
            .unwrap();
        assert_eq!(a.digest.to_hex(), H);
        let e = parse(&format!(
            "composefs={H} composefs.digest=v1-sha256-12:{other}"
        ));
        assert!(matches!(e, Err(CmdlineError::Conflict(..))));
        let a = parse(&format!("composefs=?{H} composefs.digest=v1-sha256-12:{H}"));
        assert!(!a.unwrap().unwrap().insecure);
    }
}
