//! `upgrade` and `switch`: pull an origin (only changed layers move), and stage what it
//! gives unless it is what the host already runs.
//!
//! The base is the *current* deployment: the booted one on a running host, the default one on
//! a `--sysroot` target. No update is staged over a current deployment whose boot is still
//! indeterminate (its entry has tries left): the rollback target must be one that booted.

use std::io::Read;

use anyhow::{Context, Result, bail};
use oci_spec::image::ImageConfiguration;
use serde::Serialize;

use super::etc::ConflictPolicy;
use super::host::{Deployment, Host, HostState};
use super::stage::{self, NewDeployment, OciInfo, StageOptions};
use crate::boot::BootState;
use crate::fsverity::Digest;
use crate::fsverity::signature::TrustedCerts;
use crate::oci::pull::{self, PullOptions, PullProgress, Tagging};
use crate::oci::record as oci_record;
use crate::oci::reference::ImageReference;
use crate::oci::source::{self, SourceOptions};
use crate::repo::Repository;

/// How to upgrade.
pub struct UpgradeOptions<'a> {
    /// Only say what would change; write nothing.
    pub check: bool,
    /// Record the deployment but do not make it the next boot.
    pub download_only: bool,
    /// `/etc` conflict policy.
    pub policy: ConflictPolicy,
    /// Registry access.
    pub source: SourceOptions,
    /// Progress display for the pull.
    pub progress: Option<&'a dyn PullProgress>,
    /// Refuse an unsealed image.
    pub require_sealed: bool,
    /// Require the seal's signatures by these certificates' keys.
    pub verity_certs: Option<&'a TrustedCerts>,
    /// Enable verity on the new image with its signature.
    pub kernel_signature: bool,
}

impl std::fmt::Debug for UpgradeOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeOptions")
            .field("check", &self.check)
            .field("download_only", &self.download_only)
            .field("policy", &self.policy)
            .field("require_sealed", &self.require_sealed)
            .field("verity_certs", &self.verity_certs)
            .field("kernel_signature", &self.kernel_signature)
            .finish_non_exhaustive()
    }
}

/// What `upgrade` / `switch` found or did. `cfsctl` maps it to exit codes: 0 for `Staged`,
/// `DownloadOnly`, `Available`; 77 for `NoUpdate`.
#[derive(Clone, Debug, Serialize)]
#[serde(
    tag = "result",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum UpgradeOutcome {
    /// The origin gives the image the host already runs (or has staged).
    NoUpdate {
        /// The origin pulled.
        origin: String,
        /// Its image.
        #[serde(serialize_with = "super::hex")]
        id: Digest,
        /// Why nothing changed.
        reason: String,
    },
    /// `--check`: an update exists.
    Available {
        /// The origin.
        origin: String,
        /// The manifest that would be pulled.
        manifest_digest: String,
        /// Layers that would be fetched (not in the repository).
        layers_to_fetch: usize,
        /// Their compressed size.
        bytes_to_fetch: u64,
        /// Layers in the manifest.
        layers_total: usize,
    },
    /// Staged: the next boot (after finalization at shutdown).
    Staged {
        /// The origin.
        origin: String,
        /// The new deployment.
        #[serde(serialize_with = "super::hex")]
        id: Digest,
        /// Layers fetched.
        layers_fetched: usize,
        /// Bytes fetched.
        bytes_fetched: u64,
        /// Objects written.
        objects_written: u64,
    },
    /// Downloaded and recorded only.
    DownloadOnly {
        /// The origin.
        origin: String,
        /// The new deployment.
        #[serde(serialize_with = "super::hex")]
        id: Digest,
        /// Layers fetched.
        layers_fetched: usize,
        /// Bytes fetched.
        bytes_fetched: u64,
    },
}

/// The deployment updates start from (see the module documentation).
pub fn current(host: &Host, state: &HostState) -> Result<Deployment> {
    let d = match &host.booted {
        Some(b) => state.get(&b.digest).cloned().with_context(|| {
            format!(
                "the booted image {} is not a deployment of {} (no entry and no record)",
                b.digest,
                host.paths.sysroot.display()
            )
        })?,
        None => state
            .default()
            .cloned()
            .context("the target has no deployment (no cfsctl boot entry); use `cfsctl install`")?,
    };
    Ok(d)
}

/// Pulls the current deployment's origin (or `new_origin`, for `switch`) and stages it.
pub fn upgrade(
    host: &Host,
    new_origin: Option<&str>,
    opts: &UpgradeOptions<'_>,
) -> Result<UpgradeOutcome> {
    let state = host.read_state()?;
    let cur = current(host, &state)?;
    let rec = cur.record.clone().with_context(|| {
        format!(
            "deployment {} has no record{}",
            cur.id,
            cur.record_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    })?;
    let origin = match (new_origin, &rec.origin) {
        (Some(o), _) => o.to_string(),
        (None, Some(o)) => o.clone(),
        (None, None) => bail!(
            "deployment {} has no origin to upgrade from (installed from a repository image); \
             use `cfsctl switch REF`",
            cur.id
        ),
    };
    if cur.boot_state() == BootState::Indeterminate && !opts.check {
        bail!(
            "deployment {} has not been marked good yet (its boot entry {} still has tries \
             left: boot-complete.target was not reached); not staging over it, so the rollback \
             target stays one that booted",
            cur.id,
            cur.entry.as_ref().map_or("-", |e| e.file_name.as_str())
        );
    }
    let reference: ImageReference = origin
        .parse()
        .with_context(|| format!("origin '{origin}' of deployment {}", cur.id))?;
    let repo = host.repo()?;
    tracing::info!("{origin}: pulling");
    let src = source::open(&reference, &opts.source)?;
    let result = (|| {
        let manifest = src.manifest()?;
        let same_origin = new_origin.is_none() || rec.origin.as_deref() == Some(&origin);
        if same_origin && rec.manifest_digest.as_deref() == Some(&manifest.digest) {
            return Ok(UpgradeOutcome::NoUpdate {
                id: cur.id,
                reason: format!("{origin} still names manifest {}", manifest.digest),
                origin: origin.clone(),
            });
        }
        if opts.check {
            return check(&repo, &origin, &manifest);
        }
        let pulled = pull::pull_from(
            &repo,
            &*src,
            &origin,
            &PullOptions {
                tagging: Tagging::Name(origin.clone()),
                require_sealed: opts.require_sealed,
                source: opts.source.clone(),
                progress: opts.progress,
                verity_certs: opts.verity_certs,
                kernel_signature: opts.kernel_signature,
            },
        )?;
        stage_pulled(host, &repo, &state, &cur, &rec, &origin, &pulled, opts)
    })();
    let closed = src.close();
    let outcome = result?;
    closed?;
    Ok(outcome)
}

/// What `--check` reports: the layers of `manifest` no pulled image has.
fn check(
    repo: &Repository,
    origin: &str,
    manifest: &source::FetchedManifest,
) -> Result<UpgradeOutcome> {
    let known: std::collections::HashSet<String> = oci_record::list(repo)?
        .into_iter()
        .flat_map(|(_, r)| r.layers.into_iter().map(|l| l.digest))
        .collect();
    let layers = manifest.manifest.layers();
    let missing: Vec<_> = layers
        .iter()
        .filter(|l| !known.contains(&l.digest().to_string()))
        .collect();
    Ok(UpgradeOutcome::Available {
        origin: origin.to_string(),
        manifest_digest: manifest.digest.clone(),
        layers_to_fetch: missing.len(),
        bytes_to_fetch: missing.iter().map(|l| l.size()).sum(),
        layers_total: layers.len(),
    })
}

/// Stages what a pull gave, unless the host runs or has staged it already.
#[allow(clippy::too_many_arguments)]
fn stage_pulled(
    host: &Host,
    repo: &Repository,
    state: &HostState,
    cur: &Deployment,
    rec: &super::record::DeploymentRecord,
    origin: &str,
    pulled: &pull::PullResult,
    opts: &UpgradeOptions<'_>,
) -> Result<UpgradeOutcome> {
    let id = pulled.image_digest;
    let origin = origin.to_string();
    if id == cur.id {
        if rec.origin.as_deref() != Some(origin.as_str()) {
            // `switch` to another reference of the same image: follow the new origin from now.
            let mut r = rec.clone();
            r.origin = Some(origin.clone());
            host.write_record(&r)?;
        }
        return Ok(UpgradeOutcome::NoUpdate {
            origin,
            id,
            reason: "the origin gives the image that is running".into(),
        });
    }
    if let Some(s) = &state.staged
        && s.id == id.to_hex()
        && !opts.download_only
    {
        return Ok(UpgradeOutcome::NoUpdate {
            origin,
            id,
            reason: "already staged; it applies at the next reboot".into(),
        });
    }
    let new = NewDeployment {
        image: id,
        origin: Some(origin.clone()),
        source: origin.clone(),
        oci: oci_info(repo, &pulled.record),
        kargs: rec.kargs.clone(),
    };
    let sopts = StageOptions {
        download_only: opts.download_only,
        policy: opts.policy,
        merge_from: Some(cur.id),
        boot_tries: host.config.boot_tries,
    };
    if let Err(e) = stage::stage(host, repo, &new, &sopts) {
        host.record_failure("staging", Some(&id), &e);
        return Err(e);
    }
    host.clear_failure()?;
    Ok(if opts.download_only {
        UpgradeOutcome::DownloadOnly {
            origin,
            id,
            layers_fetched: pulled.layers_fetched,
            bytes_fetched: pulled.bytes_fetched,
        }
    } else {
        UpgradeOutcome::Staged {
            origin,
            id,
            layers_fetched: pulled.layers_fetched,
            bytes_fetched: pulled.bytes_fetched,
            objects_written: pulled.objects_written,
        }
    })
}

/// Manifest, config and version label of a pulled image.
pub fn oci_info(repo: &Repository, rec: &oci_record::ImageRecord) -> OciInfo {
    let version = (|| -> Result<Option<String>> {
        let mut bytes = Vec::new();
        repo.open_object(&Digest::from_hex(&rec.config_object)?)?
            .take(source::MAX_JSON)
            .read_to_end(&mut bytes)?;
        let config: ImageConfiguration = serde_json::from_slice(&bytes)?;
        Ok(config
            .config()
            .as_ref()
            .and_then(|c| c.labels().as_ref())
            .and_then(|l| l.get("org.opencontainers.image.version").cloned()))
    })()
    .unwrap_or_else(|e| {
        tracing::warn!("reading the version label of {}: {e:#}", rec.reference);
        None
    });
    OciInfo {
        manifest_digest: Some(rec.manifest_digest.clone()),
        config_digest: Some(rec.config_digest.clone()),
        image_version: version,
    }
}
