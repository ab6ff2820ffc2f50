//! The configuration file of `cfs-setup-root`, read from the initramfs.
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
pub struct Config {
    /// Repository, relative to the physical root.
    pub repo: PathBuf,
    /// State directory, relative to the physical root.
    pub state: PathBuf,
    /// `/etc` handling.
    pub etc: EtcMount,
    /// `/var` handling.
    pub var: VarMount,
}

impl Default for Config {
    fn default() -> Self {
        Config {
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

impl Config {
    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
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
        assert_eq!(Config::parse("").unwrap(), Config::default());
        let c = Config::parse("# c\nrepo = /cfs/repo  # abs ok\n\netc=none\nvar = none\n").unwrap();
        assert_eq!(c.repo, PathBuf::from("cfs/repo"));
        assert_eq!(c.etc, EtcMount::None);
        assert_eq!(c.var, VarMount::None);
        assert_eq!(c.state, PathBuf::from("state"));
    }

    #[test]
    fn refuses_unknown_and_bad() {
        assert_eq!(Config::parse("x\n").unwrap_err().line, 1);
        assert_eq!(Config::parse("\nrepos = a\n").unwrap_err().line, 2);
        assert!(Config::parse("etc = bind").is_err());
        assert!(Config::parse("state = ../x").is_err());
        assert!(Config::parse("repo =").is_err());
    }
}
