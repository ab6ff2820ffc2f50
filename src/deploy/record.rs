//! Deployment records: what a host remembers about each deployment, in
//! `state/deploy/<hex>/deployment.json` (layout.rs), and the host-wide markers next to them
//! (`staged.json`, `last-failure.json`). Versioned JSON (camelCase keys), written atomically
//! (temporary file, fsync, rename, directory fsync); a record of a newer version is refused
//! by name, never guessed at.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;

use anyhow::{Context, Result, bail};
use rustix::fs::{Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::fsverity::Digest;

/// The record format this program writes, and the newest it reads.
pub const RECORD_VERSION: u32 = 1;
/// Records, markers and entries are small; anything larger is not ours.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

/// One deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// The composefs image digest (hex): the deployment's identity.
    pub id: String,
    /// The image reference `upgrade` pulls for this deployment (`docker://host/os:stable`,
    /// `oci:/path:tag`); `None` when installed from a repository image without one.
    pub origin: Option<String>,
    /// What was actually pulled or taken (differs from `origin` with `--target-imgref`).
    pub source: String,
    /// `sha256:<hex>` of the OCI manifest, when the image came from one.
    pub manifest_digest: Option<String>,
    /// `sha256:<hex>` of the OCI config.
    pub config_digest: Option<String>,
    /// The image's `org.opencontainers.image.version` label.
    pub image_version: Option<String>,
    /// When the deployment was staged or installed (RFC 3339, UTC).
    pub staged_at: String,
    /// Kernel arguments of the host (`root=`, `rw`, `--karg`), kept across upgrades.
    pub kargs: Vec<String>,
    /// Kernel arguments from the image's `kargs.d`.
    pub image_kargs: Vec<String>,
    /// The kernel version (`/usr/lib/modules/<kver>`).
    pub kernel_version: String,
    /// The kernel and initramfs directory on the ESP (`cfsctl/<boot-id>`).
    pub boot_files: String,
    /// Kept by pruning and `gc` whatever its age.
    pub pinned: bool,
    /// Pulled and recorded, but not to boot until `upgrade` (or `upgrade --apply`) runs again.
    pub download_only: bool,
}

impl DeploymentRecord {
    /// The image digest.
    pub fn digest(&self) -> Result<Digest> {
        Digest::from_hex(&self.id).with_context(|| format!("deployment record id '{}'", self.id))
    }
}

/// The deployment waiting for finalization (`state/staged.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedMarker {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// The staged deployment (hex).
    pub id: String,
    /// The deployment whose `/etc` is merged into it at finalization (the booted one).
    pub merge_from: Option<String>,
    /// The `/etc` conflict policy asked for at staging.
    pub etc_conflict: String,
    /// Tries the entry gets when it becomes a boot entry.
    pub boot_tries: u32,
}

/// The last staging or finalization failure (`state/last-failure.json`), for `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// `staging` or `finalize`.
    pub step: String,
    /// The deployment concerned (hex), when known.
    pub id: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
    /// The error, as the user would have read it.
    pub error: String,
}

/// Reads a small JSON file `name` under `dir`; `Ok(None)` when it does not exist.
pub fn read_json<T: for<'de> Deserialize<'de> + Versioned>(
    dir: impl AsFd,
    name: &str,
    what: &str,
) -> Result<Option<T>> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {what}")),
    };
    let file = File::from(fd);
    let meta = file.metadata().with_context(|| format!("reading {what}"))?;
    if !meta.is_file() {
        bail!("{what} is not a regular file");
    }
    let mut bytes = Vec::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what}"))?;
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        bail!("{what} is larger than {MAX_RECORD_BYTES} bytes: not a cfsctl record");
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{what} is not valid JSON"))?;
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version == 0 || version > u64::from(RECORD_VERSION) {
        bail!(
            "{what} has format version {version}; this cfsctl reads versions 1 to {RECORD_VERSION}"
        );
    }
    let parsed: T = serde_json::from_value(value)
        .with_context(|| format!("{what} is not a valid {}", T::KIND))?;
    Ok(Some(parsed))
}

/// Writes `value` as JSON to `name` under `dir`, atomically and durably.
pub fn write_json<T: Serialize>(dir: impl AsFd, name: &str, value: &T, what: &str) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).context("serializing")?;
    bytes.push(b'\n');
    crate::atomic::write_file(dir, name, &bytes, 0o644, RenameFlags::empty())
        .with_context(|| format!("writing {what}"))
}

/// The kind of a JSON record, for messages.
pub trait Versioned {
    /// What it is called in messages.
    const KIND: &'static str;
}

impl Versioned for DeploymentRecord {
    const KIND: &'static str = "deployment record";
}
impl Versioned for StagedMarker {
    const KIND: &'static str = "staged marker";
}
impl Versioned for Failure {
    const KIND: &'static str = "failure record";
}

/// Now, as RFC 3339 in UTC with second precision (`2026-12-02T05:34:30Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 UTC (the civil-from-days algorithm of H. Hinnant's
/// "chrono-Compatible Low-Level Date Algorithms").
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DeploymentRecord {
        DeploymentRecord {
            version: RECORD_VERSION,
            id: "ab".repeat(32),
            origin: Some("docker://r/os:stable".into()),
            source: "docker://r/os:stable".into(),
            manifest_digest: Some(format!("sha256:{}", "01".repeat(32))),
            config_digest: None,
            image_version: Some("2".into()),
            staged_at: rfc3339(0),
            kargs: vec!["rw".into()],
            image_kargs: vec![],
            kernel_version: "6.12".into(),
            boot_files: "cfsctl/x".into(),
            pinned: false,
            download_only: false,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let td = tempfile::tempdir().unwrap();
        let dir = File::open(td.path()).unwrap();
        assert!(
            read_json::<DeploymentRecord>(&dir, "r.json", "r")
                .unwrap()
                .is_none()
        );
        write_json(&dir, "r.json", &record(), "r").unwrap();
        let text = std::fs::read_to_string(td.path().join("r.json")).unwrap();
        assert!(text.contains("\"downloadOnly\": false"), "{text}");
        assert!(text.contains("\"manifestDigest\""), "{text}");
        let back: DeploymentRecord = read_json(&dir, "r.json", "r").unwrap().unwrap();
        assert_eq!(back, record());

        std::fs::write(td.path().join("new.json"), r#"{"version": 2, "id": "x"}"#).unwrap();
        let e = read_json::<DeploymentRecord>(&dir, "new.json", "state/deploy/x/deployment.json")
            .unwrap_err();
        assert!(format!("{e:#}").contains("format version 2"), "{e:#}");
        std::fs::write(td.path().join("bad.json"), b"{").unwrap();
        let e = read_json::<DeploymentRecord>(&dir, "bad.json", "bad.json").unwrap_err();
        assert!(
            format!("{e:#}").contains("bad.json is not valid JSON"),
            "{e:#}"
        );
        std::fs::create_dir(td.path().join("d.json")).unwrap();
        assert!(read_json::<DeploymentRecord>(&dir, "d.json", "d").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_189_670), "2026-12-02T05:34:30Z");
    }
}
