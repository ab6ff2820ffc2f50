//! The configuration file of `cfs-setup-root`, read from the initramfs (and by cfsctl on the
//! booted host, from the image, so both agree on where the repository and state are).
//!
//! Format: one `key = value` per line, `#` starts a comment, blank lines ignored; unknown keys
//! are an error (a typo must not silently change how a machine boots). Paths are relative to the
//! physical root (`/sysroot`). Default location [`DEFAULT_PATH`]; a missing file means defaults.
//!
//! ```text
//! repo = composefs            # the repository
//! state = state               # deploy/<hex>/etc/{upper,work}, var/
//! etc = overlay               # overlay | none
//! var = bind                  # bind | none
//! ```

use std::path::PathBuf;

/// Where the dracut module installs the configuration.
pub const DEFAULT_PATH: &str = "/usr/lib/composefs/setup-root.conf";

/// How `/etc` is provided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtcMount {
    /// Overlay: the image's `/etc` below, `state/deploy/<hex>/etc/upper` above.
    Overlay,
    /// The image's `/etc`, read-only.
    None,
}

/// How `/var` is provided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarMount {
    /// Bind of `state/var`, shared by all deployments.
    Bind,
    /// The image's `/var`, read-only.
    None,
}

/// Settings of `cfs-setup-root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupConf {
    /// Repository, relative to the physical root.
    pub repo: PathBuf,
    /// State directory, relative to the physical root.
    pub state: PathBuf,
    /// `/etc` handling.
    pub etc: EtcMount,
    /// `/var` handling.
    pub var: VarMount,
}

impl Default for SetupConf {
    fn default() -> Self {
        SetupConf {
            repo: "composefs".into(),
            state: "state".into(),
            etc: EtcMount::Overlay,
            var: VarMount::Bind,
        }
    }
}

/// A line of the configuration file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct ConfigError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl SetupConf {
    /// Reads `path`; a missing file means defaults.
    pub fn load(path: &std::path::Path) -> anyhow::Result<SetupConf> {
        use anyhow::Context;
        match std::fs::read_to_string(path) {
            Ok(text) => SetupConf::parse(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SetupConf::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<SetupConf, ConfigError> {
        let mut config = SetupConf::default();
        for (i, raw) in text.lines().enumerate() {
            let err = |reason: String| ConfigError {
                line: i + 1,
                reason,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err(format!("expected key = value, got '{line}'")))?;
            let (key, value) = (key.trim(), value.trim());
            let relative = |value: &str| -> Result<PathBuf, ConfigError> {
                let p = PathBuf::from(value.trim_start_matches('/'));
                if value.is_empty() || p.components().any(|c| c.as_os_str() == "..") {
                    return Err(err(format!("{key}: bad path '{value}'")));
                }
                Ok(p)
            };
            match key {
                "repo" => config.repo = relative(value)?,
                "state" => config.state = relative(value)?,
                "etc" => {
                    config.etc = match value {
                        "overlay" => EtcMount::Overlay,
                        "none" => EtcMount::None,
                        _ => {
                            return Err(err(format!(
                                "etc: expected overlay or none, got '{value}'"
                            )));
                        }
                    }
                }
                "var" => {
                    config.var = match value {
                        "bind" => VarMount::Bind,
                        "none" => VarMount::None,
                        _ => return Err(err(format!("var: expected bind or none, got '{value}'"))),
                    }
                }
                _ => return Err(err(format!("unknown key '{key}'"))),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(SetupConf::parse("").unwrap(), SetupConf::default());
        let c =
            SetupConf::parse("# c\nrepo = /cfs/repo  # abs ok\n\netc=none\nvar = none\n").unwrap();
        assert_eq!(c.repo, PathBuf::from("cfs/repo"));
        assert_eq!(c.etc, EtcMount::None);
        assert_eq!(c.var, VarMount::None);
        assert_eq!(c.state, PathBuf::from("state"));
    }

    #[test]
    fn refuses_unknown_and_bad() {
        assert_eq!(SetupConf::parse("x\n").unwrap_err().line, 1);
        assert_eq!(SetupConf::parse("\nrepos = a\n").unwrap_err().line, 2);
        assert!(SetupConf::parse("etc = bind").is_err());
        assert!(SetupConf::parse("state = ../x").is_err());
        assert!(SetupConf::parse("repo =").is_err());
    }
}
