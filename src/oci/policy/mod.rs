//! The signature policy: containers-policy.json(5) evaluated by cfsctl itself, on the manifest
//! it pulled, before any layer is fetched or anything is tagged (skopeo's image proxy, which
//! the `docker://` pulls go through, does not evaluate it).
//!
//! - [`config`]: the policy file and which requirements apply to an image (scopes);
//! - [`identity`]: Docker references, their scopes, the `signedIdentity` rules;
//! - [`lookaside`] (+ `http`): registries.d and where a `docker://` image's signatures are;
//! - [`simple_signing`]: OpenPGP "simple signing" verification (the `pgp` crate).
//!
//! `docs/security.md` ("Signatures") says what is supported and how the signature chains to
//! the composefs digest checked at boot.

pub mod config;
mod http;
pub mod identity;
pub mod lookaside;
pub mod simple_signing;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::Digest as _;

use self::config::{Policy, Requirement, Scope};
use self::identity::{DockerRef, SignedIdentity};
use self::lookaside::RegistriesD;
use self::simple_signing::Keyring;
use super::reference::ImageReference;
use super::source::FetchedManifest;

/// The system-wide policy (containers-policy.json(5)).
pub const SYSTEM_POLICY: &str = "/etc/containers/policy.json";
/// The system-wide registries.d (containers-registries.d(5)).
pub const SYSTEM_REGISTRIES_D: &str = "/etc/containers/registries.d";

/// Where the policy and the signature lookaside configuration come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyOptions {
    /// `--signature-policy FILE`; default: `$HOME/.config/containers/policy.json` if it
    /// exists, else [`SYSTEM_POLICY`] (as skopeo and podman).
    pub policy: Option<PathBuf>,
    /// `--registries.d DIR`; default: `$HOME/.config/containers/registries.d` if it exists,
    /// else [`SYSTEM_REGISTRIES_D`].
    pub registries_d: Option<PathBuf>,
}

impl PolicyOptions {
    /// The policy file used.
    pub fn policy_path(&self) -> PathBuf {
        self.policy
            .clone()
            .unwrap_or_else(|| user_or_system("policy.json", SYSTEM_POLICY))
    }

    /// The registries.d directory used.
    pub fn registries_d_path(&self) -> PathBuf {
        self.registries_d
            .clone()
            .unwrap_or_else(|| user_or_system("registries.d", SYSTEM_REGISTRIES_D))
    }
}

fn user_or_system(name: &str, system: &str) -> PathBuf {
    if let Some(home) = std::env::var_os("HOME") {
        let user = Path::new(&home).join(".config/containers").join(name);
        if user.exists() {
            return user;
        }
    }
    PathBuf::from(system)
}

/// An image the policy refused (the root cause of the pull's error).
#[derive(Debug, thiserror::Error)]
#[error("{reference}: refused by the signature policy {policy} ({scope}): {reason}")]
pub struct PolicyRefusal {
    /// The image reference.
    pub reference: String,
    /// The policy file.
    pub policy: String,
    /// Where in it the requirements were found.
    pub scope: String,
    /// Why.
    pub reason: String,
}

/// What the policy accepted, for logs: the requirements' scope and, per `signedBy`, the key
/// that signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The scope whose requirements applied.
    pub scope: String,
    /// Fingerprints of the keys whose signatures were accepted.
    pub signers: Vec<String>,
}

/// The image as the policy sees it.
struct Target {
    transport: String,
    /// `None`: cfsctl does not compute this transport's scopes.
    scopes: Option<Vec<String>>,
    docker: Option<DockerRef>,
}

impl Target {
    fn of(reference: &ImageReference) -> Result<Target> {
        let (transport, rest) = match reference {
            ImageReference::OciDir { path, tag } => {
                return Ok(Target {
                    transport: "oci".into(),
                    scopes: Some(config::path_scopes(path, tag.as_deref())?),
                    docker: None,
                });
            }
            ImageReference::Proxy(s) => s.split_once(':').unwrap_or((s, "")),
        };
        let (scopes, docker) = match transport {
            "docker" => {
                let r = DockerRef::for_pull(rest.trim_start_matches("//"))?;
                (Some(r.scopes()), Some(r))
            }
            "dir" => (Some(config::path_scopes(Path::new(rest), None)?), None),
            // `PATH[:REFERENCE]`: the scope is the archive's path.
            "oci-archive" | "docker-archive" => {
                let path = rest.split_once(':').map_or(rest, |(p, _)| p);
                (Some(config::path_scopes(Path::new(path), None)?), None)
            }
            _ => (None, None),
        };
        Ok(Target {
            transport: transport.to_string(),
            scopes,
            docker,
        })
    }
}

/// Evaluates the policy for the image `reference` (a reference string: `docker://...`,
/// `oci:DIR[:TAG]`) whose manifest is `manifest`, as received: `Ok` when every requirement
/// that applies accepts it, else an error whose root cause is a [`PolicyRefusal`].
pub fn check(
    opts: &PolicyOptions,
    reference: &str,
    manifest: &FetchedManifest,
) -> Result<Accepted> {
    let path = opts.policy_path();
    let policy = Policy::load(&path)?;
    let parsed: ImageReference = reference
        .parse()
        .with_context(|| format!("image reference '{reference}'"))?;
    let refuse = |scope: &str, reason: String| PolicyRefusal {
        reference: reference.to_string(),
        policy: path.display().to_string(),
        scope: scope.to_string(),
        reason,
    };
    let target = Target::of(&parsed)?;
    let (scope, reqs) = policy
        .requirements(&target.transport, target.scopes.as_deref())
        .map_err(|e| refuse("scopes", format!("{e:#}")))?;
    let scope = scope_name(&scope);
    let mut signers = Vec::new();
    for req in reqs {
        match req {
            Requirement::InsecureAcceptAnything {} => {}
            Requirement::Reject {} => {
                return Err(refuse(&scope, "the requirement is reject".into()).into());
            }
            Requirement::SigstoreSigned(_) => {
                return Err(refuse(
                    &scope,
                    "sigstoreSigned is not supported by cfsctl; use a signedBy (GPG simple \
                     signing) requirement for this scope, or pull with a tool that verifies \
                     sigstore signatures and import the result from an oci: layout"
                        .into(),
                )
                .into());
            }
            Requirement::SignedBy {
                signed_identity, ..
            } => {
                let signer = signed_by(opts, &target, &parsed, req, signed_identity, manifest)
                    .map_err(|e| refuse(&scope, format!("{e:#}")))?;
                signers.push(signer);
            }
        }
    }
    Ok(Accepted { scope, signers })
}

fn scope_name(scope: &Scope) -> String {
    scope.to_string()
}

/// A `signedBy` requirement: the fingerprint of the key whose signature was accepted, or why
/// none was.
fn signed_by(
    opts: &PolicyOptions,
    target: &Target,
    reference: &ImageReference,
    req: &Requirement,
    identity: &SignedIdentity,
    manifest: &FetchedManifest,
) -> Result<String> {
    let Some(docker) = &target.docker else {
        anyhow::bail!(
            "signedBy: {}: images carry no signatures cfsctl can read (it reads signatures \
             of docker:// images only, from registries.d lookasides)",
            target.transport
        );
    };
    let keys = Keyring::load(&req.keyrings()?)?;
    let dir = opts.registries_d_path();
    let registries = RegistriesD::load(&dir)?;
    let base = match registries.lookaside(docker) {
        Some(b) => b.to_string(),
        None => lookaside::builtin_lookaside(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let via_skopeo = matches!(reference, ImageReference::Proxy(_));
    let mut reasons = Vec::new();
    for n in 1..=lookaside::MAX_SIGNATURES {
        let url = lookaside::signature_url(&base, docker, &manifest.digest, n)?;
        let Some(blob) = lookaside::fetch(&url)? else {
            if n == 1 {
                anyhow::bail!(
                    "no signature found at {url} (lookaside {base}, from {} or the built-in \
                     default)",
                    dir.display()
                );
            }
            break;
        };
        let outcome = simple_signing::verify(&blob, &keys, now)
            .map_err(anyhow::Error::from)
            .and_then(|claim| {
                digest_matches(&claim.manifest_digest, manifest, via_skopeo)?;
                let signed = DockerRef::parse(&claim.docker_reference)
                    .with_context(|| format!("signed identity '{}'", claim.docker_reference))?;
                if !identity.matches(Some(docker), &signed)? {
                    anyhow::bail!(
                        "identity mismatch: the signature is for {signed}, the image is \
                         {docker} (signedIdentity {identity:?})"
                    );
                }
                Ok(claim.signer)
            });
        match outcome {
            Ok(signer) => {
                tracing::info!("{docker}: signature {url} by key {signer} accepted");
                return Ok(signer);
            }
            Err(e) => reasons.push(format!("{url}: {e:#}")),
        }
    }
    anyhow::bail!("no signature accepted: {}", reasons.join("; "))
}

/// Whether a signature for manifest digest `signed` covers the manifest received: the
/// digest of its exact bytes; or, when skopeo converted a Docker schema 2 manifest to OCI
/// (then no digest of the bytes we hold can equal the published one), the digest skopeo
/// computed over the bytes it received and converted.
fn digest_matches(signed: &str, manifest: &FetchedManifest, via_skopeo: bool) -> Result<()> {
    let of_bytes = match signed.split_once(':').map(|p| p.0) {
        Some("sha256") => format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&manifest.bytes))
        ),
        Some("sha512") => format!(
            "sha512:{}",
            hex::encode(sha2::Sha512::digest(&manifest.bytes))
        ),
        _ => anyhow::bail!("the signature names manifest digest '{signed}', of no known algorithm"),
    };
    if of_bytes == signed {
        return Ok(());
    }
    let sha256 = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(&manifest.bytes))
    );
    if via_skopeo && signed == manifest.digest && sha256 != manifest.digest {
        return Ok(());
    }
    anyhow::bail!(
        "the signature is for manifest digest {signed}, not {} (the manifest pulled)",
        manifest.digest
    )
}
