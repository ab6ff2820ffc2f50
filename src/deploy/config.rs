//! The host's lifecycle settings, `/etc/cfsctl/config.toml` (TOML, every key optional,
//! unknown keys refused so a typo never silently changes how a host updates):
//!
//! ```toml
//! keep = 2                  # unpinned deployments kept (the booted one and one rollback)
//! boot-tries = 3            # boot counting: tries a new entry gets before it is bad
//! etc-conflict = "refuse"   # refuse | keep-local | take-new
//! auto-update = "stage"     # what cfsctl-upgrade.service does: none | check | stage | apply
//! tls-verify = true         # verify registry certificates when pulling
//! require-sealed = false    # refuse updates without a composefs seal (inline or artifact)
//! verity-cert = []          # certificates the seal's fs-verity signatures must be made with
//! kernel-signature = false  # enable verity on the new image with its signature (.fs-verity)
//! ```
//! Command-line flags override the file. With `--sysroot`, the file is read only when
//! `--config` names it (a mounted target's `/etc` is in its image and state, not here).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::etc::ConflictPolicy;

/// Where a booted host keeps the file.
pub const DEFAULT_PATH: &str = "/etc/cfsctl/config.toml";

/// What `cfsctl-upgrade.service` (`cfsctl upgrade --auto`) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AutoUpdate {
    /// Nothing.
    None,
    /// Look for an update (`upgrade --check`) and report it.
    Check,
    /// Download and stage it; it applies at the next reboot.
    Stage,
    /// Stage it and reboot into it.
    Apply,
}

/// Lifecycle settings (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct HostConfig {
    /// Unpinned deployments kept after a new one is finalized.
    pub keep: usize,
    /// Tries a new boot entry gets.
    pub boot_tries: u32,
    /// The /etc conflict policy.
    #[serde(deserialize_with = "policy")]
    pub etc_conflict: ConflictPolicy,
    /// The timer's policy.
    pub auto_update: AutoUpdate,
    /// Verify registry TLS certificates.
    pub tls_verify: bool,
    /// Refuse unsealed images (`oci pull --require-sealed`).
    pub require_sealed: bool,
    /// Certificates whose keys must have signed the seal (`oci pull --verity-cert`).
    pub verity_cert: Vec<std::path::PathBuf>,
    /// Apply the image's signature in the kernel (`oci pull --kernel-signature`).
    pub kernel_signature: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            keep: 2,
            boot_tries: 3,
            etc_conflict: ConflictPolicy::Refuse,
            auto_update: AutoUpdate::Stage,
            tls_verify: true,
            require_sealed: false,
            verity_cert: Vec::new(),
            kernel_signature: false,
        }
    }
}

fn policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ConflictPolicy, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl HostConfig {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<HostConfig> {
        let c: HostConfig = toml::from_str(text)?;
        if c.keep < 1 {
            bail!("keep = {}: at least 1 (the booted deployment)", c.keep);
        }
        if !(1..=64).contains(&c.boot_tries) {
            bail!("boot-tries = {}: between 1 and 64", c.boot_tries);
        }
        if c.kernel_signature && c.verity_cert.is_empty() {
            bail!("kernel-signature = true needs verity-cert (the signature is checked first)");
        }
        Ok(c)
    }

    /// Reads `path`; a missing file means defaults.
    pub fn load(path: &Path) -> Result<HostConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => HostConfig::parse(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HostConfig::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!(HostConfig::parse("").unwrap(), HostConfig::default());
        let c = HostConfig::parse(
            "keep = 3\nboot-tries = 1\netc-conflict = \"keep-local\"\nauto-update = \"check\"\n",
        )
        .unwrap();
        assert_eq!(c.keep, 3);
        assert_eq!(c.boot_tries, 1);
        assert_eq!(c.etc_conflict, ConflictPolicy::KeepLocal);
        assert_eq!(c.auto_update, AutoUpdate::Check);
        let c = HostConfig::parse(
            "require-sealed = true\nverity-cert = [\"/etc/cfsctl/a.pem\"]\nkernel-signature = true\n",
        )
        .unwrap();
        assert!(c.require_sealed && c.kernel_signature);
        assert_eq!(
            c.verity_cert,
            [std::path::PathBuf::from("/etc/cfsctl/a.pem")]
        );
        for bad in [
            "kep = 2",
            "keep = 0",
            "boot-tries = 0",
            "etc-conflict = \"merge\"",
            "auto-update = \"sometimes\"",
            "kernel-signature = true",
            "verity-cert = \"/one/path\"",
        ] {
            assert!(HostConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
