//! containers-policy.json(5): the file, parsed as strictly as containers/image parses it (an
//! unknown field, a missing `default` or an unknown requirement type refuses the whole file),
//! and the lookup of the requirements that apply to one image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::identity::SignedIdentity;
use crate::bounded;

/// Bound on the policy file and on each key file it names.
pub const MAX_POLICY: u64 = 4 << 20;

/// A policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The global default requirements (mandatory).
    pub default: Vec<Requirement>,
    /// Per transport: scope -> requirements (`""`: the transport's default).
    #[serde(default)]
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One policy requirement. Every one that applies must accept the image.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Requirement {
    /// Accepts any image.
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything {},
    /// Refuses every image.
    #[serde(rename = "reject")]
    Reject {},
    /// A "simple signing" OpenPGP signature by one of these keys, with an expected identity.
    #[serde(rename = "signedBy")]
    SignedBy {
        /// `GPGKeys`, the only type defined.
        #[serde(rename = "keyType")]
        key_type: String,
        /// A keyring file.
        #[serde(rename = "keyPath")]
        key_path: Option<PathBuf>,
        /// Keyring files.
        #[serde(rename = "keyPaths")]
        key_paths: Option<Vec<PathBuf>>,
        /// A keyring, base64.
        #[serde(rename = "keyData")]
        key_data: Option<String>,
        /// What the signature must claim the image is.
        #[serde(rename = "signedIdentity", default)]
        signed_identity: SignedIdentity,
    },
    /// A sigstore (cosign) signature: parsed so that a policy using it loads, refused when it
    /// applies (not implemented here).
    #[serde(rename = "sigstoreSigned")]
    SigstoreSigned(serde_json::Map<String, serde_json::Value>),
}

/// Where a keyring comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A file.
    Path(PathBuf),
    /// Inline (`keyData`), decoded.
    Data(Vec<u8>),
}

impl Requirement {
    /// The keyrings of a `signedBy` requirement, after the checks containers/image makes
    /// (`keyType` is `GPGKeys`, exactly one of keyPath / keyPaths / keyData).
    pub fn keyrings(&self) -> Result<Vec<KeySource>> {
        let Requirement::SignedBy {
            key_type,
            key_path,
            key_paths,
            key_data,
            ..
        } = self
        else {
            return Ok(Vec::new());
        };
        if key_type != "GPGKeys" {
            bail!("signedBy: keyType '{key_type}' is not supported (only GPGKeys is defined)");
        }
        match (key_path, key_paths, key_data) {
            (Some(p), None, None) => Ok(vec![KeySource::Path(p.clone())]),
            (None, Some(ps), None) if !ps.is_empty() => {
                Ok(ps.iter().cloned().map(KeySource::Path).collect())
            }
            (None, None, Some(d)) => {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(d.trim())
                    .context("signedBy: keyData is not base64")?;
                Ok(vec![KeySource::Data(bytes)])
            }
            _ => bail!(
                "signedBy: exactly one of keyPath, keyPaths (not empty) and keyData is needed"
            ),
        }
    }
}

/// Where the requirements for an image were found (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `transports.<transport>.<scope>`.
    Transport(String, String),
    /// `default`.
    Default,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Transport(t, s) => write!(f, "transports.{t}.\"{s}\""),
            Scope::Default => f.write_str("default"),
        }
    }
}

impl Policy {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Policy> {
        let bytes = bounded::read_file(path, MAX_POLICY)
            .with_context(|| format!("reading the signature policy {}", path.display()))?;
        Policy::parse(&bytes).with_context(|| format!("signature policy {}", path.display()))
    }

    /// Parses policy JSON and checks what can be checked before use.
    pub fn parse(bytes: &[u8]) -> Result<Policy> {
        let policy: Policy = serde_json::from_slice(bytes).context("invalid policy")?;
        let all = std::iter::once(("default".to_string(), &policy.default)).chain(
            policy.transports.iter().flat_map(|(t, scopes)| {
                scopes
                    .iter()
                    .map(move |(s, reqs)| (format!("transports.{t}.\"{s}\""), reqs))
            }),
        );
        for (at, reqs) in all {
            if reqs.is_empty() {
                bail!("{at}: an empty list of requirements (write insecureAcceptAnything)");
            }
            for r in reqs {
                r.keyrings().with_context(|| at.clone())?;
            }
        }
        Ok(policy)
    }

    /// The requirements for an image of `transport` whose scopes (most specific first, as
    /// the transport defines them) are `scopes`: the first scope the policy names for that
    /// transport, else the transport's `""`, else `default`. `Err` when the policy names
    /// scopes of a transport for which `scopes` is `None` (cfsctl cannot tell which one
    /// applies, so it refuses rather than guess).
    pub fn requirements(
        &self,
        transport: &str,
        scopes: Option<&[String]>,
    ) -> Result<(Scope, &[Requirement])> {
        if let Some(by_scope) = self.transports.get(transport) {
            match scopes {
                Some(scopes) => {
                    for s in scopes {
                        if let Some(reqs) = by_scope.get(s) {
                            return Ok((Scope::Transport(transport.into(), s.clone()), reqs));
                        }
                    }
                }
                None => {
                    if let Some(s) = by_scope.keys().find(|s| !s.is_empty()) {
                        bail!(
                            "transports.{transport}.\"{s}\": cfsctl does not compute the scopes \
                             of {transport}: images, so it cannot tell whether this one applies"
                        );
                    }
                }
            }
            if let Some(reqs) = by_scope.get("") {
                return Ok((Scope::Transport(transport.into(), String::new()), reqs));
            }
        }
        Ok((Scope::Default, &self.default))
    }
}

/// The scopes of a path-based transport (`oci:`, `dir:`, archives), most specific first:
/// `DIR:TAG` (the man page's form), `DIR`, then each parent directory but `/`. `DIR` is the
/// absolute path with symlinks resolved, as containers/image requires.
pub fn path_scopes(path: &Path, tag: Option<&str>) -> Result<Vec<String>> {
    let resolved = std::fs::canonicalize(path)
        .with_context(|| format!("resolving {} for the signature policy", path.display()))?;
    let dir = resolved
        .to_str()
        .with_context(|| format!("{}: not UTF-8", resolved.display()))?
        .to_string();
    let mut out = Vec::new();
    if let Some(t) = tag {
        out.push(format!("{dir}:{t}"));
    }
    let mut p = dir.as_str();
    while p != "/" && !p.is_empty() {
        out.push(p.to_string());
        p = &p[..p.rfind('/').unwrap_or(0)];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing() {
        let ok = br#"{"default":[{"type":"insecureAcceptAnything"}],
            "transports":{"docker":{"h.io/x":[{"type":"signedBy","keyType":"GPGKeys",
            "keyPath":"/k.gpg","signedIdentity":{"type":"matchRepository"}}],
            "h.io/y":[{"type":"sigstoreSigned","keyPath":"/c.pub"}]}}}"#;
        let p = Policy::parse(ok).unwrap();
        assert_eq!(p.transports["docker"].len(), 2);
        for bad in [
            &br#"{"transports":{}}"#[..],
            br#"{"default":[]}"#,
            br#"{"default":[{"type":"reject"}],"extra":1}"#,
            br#"{"default":[{"type":"reject","x":1}]}"#,
            br#"{"default":[{"type":"acceptAll"}]}"#,
            br#"{"default":[{"type":"signedBy","keyType":"GPGKeys"}]}"#,
            br#"{"default":[{"type":"signedBy","keyType":"X509","keyPath":"/k"}]}"#,
            br#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","keyData":"AA=="}]}"#,
            br#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k","signedIdentity":{"type":"matchAll"}}]}"#,
        ] {
            assert!(
                Policy::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn scope_lookup() {
        let p = Policy::parse(
            br#"{"default":[{"type":"reject"}],"transports":{"docker":{
            "":[{"type":"insecureAcceptAnything"}],
            "h.io/ns":[{"type":"reject"}],
            "*.example.com":[{"type":"reject"}]},
            "docker-daemon":{"x":[{"type":"reject"}]}}}"#,
        )
        .unwrap();
        let r = super::super::identity::DockerRef::parse("h.io/ns/app:v1").unwrap();
        let (s, _) = p.requirements("docker", Some(&r.scopes())).unwrap();
        assert_eq!(s, Scope::Transport("docker".into(), "h.io/ns".into()));
        let r = super::super::identity::DockerRef::parse("h.io/other:v1").unwrap();
        let (s, _) = p.requirements("docker", Some(&r.scopes())).unwrap();
        assert_eq!(s, Scope::Transport("docker".into(), "".into()));
        let r = super::super::identity::DockerRef::parse("a.b.example.com/x:1").unwrap();
        let (s, _) = p.requirements("docker", Some(&r.scopes())).unwrap();
        assert_eq!(s, Scope::Transport("docker".into(), "*.example.com".into()));
        assert_eq!(p.requirements("oci", Some(&[])).unwrap().0, Scope::Default);
        assert!(p.requirements("docker-daemon", None).is_err());
    }

    #[test]
    fn paths() {
        let td = tempfile::tempdir().unwrap();
        let dir = td.path().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        let real = std::fs::canonicalize(&dir).unwrap();
        let s = path_scopes(&dir, Some("v1")).unwrap();
        assert_eq!(s[0], format!("{}:v1", real.display()));
        assert_eq!(s[1], real.display().to_string());
        assert_eq!(s[2], real.parent().unwrap().display().to_string());
        assert!(!s.contains(&"/".to_string()));
    }
}
