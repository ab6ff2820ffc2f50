//! Kernel arguments from a bootable image's `/usr/lib/bootc/kargs.d/*.toml` (bootc's format):
//!
//! ```toml
//! kargs = ["console=ttyS0", "quiet"]
//! match-architectures = ["x86_64"]   # optional; the file applies only on these
//! ```
//!
//! Files apply in name order. Unknown keys are refused, as bootc does.

use serde::Deserialize;

/// One `kargs.d` file.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct KargsFile {
    #[serde(default)]
    kargs: Vec<String>,
    #[serde(rename = "match-architectures")]
    match_architectures: Option<Vec<String>>,
}

/// A `kargs.d` file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("kargs.d/{name}: {reason}")]
pub struct KargsError {
    /// The file name.
    pub name: String,
    /// The parse error.
    pub reason: String,
}

/// The architecture name bootc matches against (Rust's `std::env::consts::ARCH` spelling).
pub fn host_arch() -> &'static str {
    std::env::consts::ARCH
}

/// The kernel arguments of `files` (name, content), in name order, for architecture `arch`.
pub fn kargs_from_files(
    files: &[(String, Vec<u8>)],
    arch: &str,
) -> Result<Vec<String>, KargsError> {
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (name, bytes) in sorted {
        let err = |reason: String| KargsError {
            name: name.clone(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| err(e.to_string()))?;
        let file: KargsFile = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if let Some(archs) = &file.match_architectures
            && !archs.iter().any(|a| a == arch)
        {
            continue;
        }
        for karg in file.kargs {
            if karg.is_empty() || karg.chars().any(char::is_whitespace) {
                return Err(err(format!("'{karg}' is not a single kernel argument")));
            }
            out.push(karg);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, text: &str) -> (String, Vec<u8>) {
        (name.to_string(), text.as_bytes().to_vec())
    }

    #[test]
    fn merges_in_name_order_and_filters_architectures() {
        let files = [
            f("20-b.toml", "kargs = [\"b1\", \"b2\"]\n"),
            f(
                "10-a.toml",
                "kargs = [\"a\"]\nmatch-architectures = [\"x86_64\", \"aarch64\"]\n",
            ),
            f(
                "30-s390.toml",
                "kargs = [\"s\"]\nmatch-architectures = [\"s390x\"]\n",
            ),
        ];
        assert_eq!(
            kargs_from_files(&files, "x86_64").unwrap(),
            ["a", "b1", "b2"]
        );
        assert_eq!(
            kargs_from_files(&files, "s390x").unwrap(),
            ["b1", "b2", "s"]
        );
    }

    #[test]
    fn refuses_bad_files() {
        assert!(kargs_from_files(&[f("x.toml", "kargs = \"a\"")], "x86_64").is_err());
        assert!(kargs_from_files(&[f("x.toml", "karg = [\"a\"]")], "x86_64").is_err());
        assert!(kargs_from_files(&[f("x.toml", "kargs = [\"a b\"]")], "x86_64").is_err());
    }
}
