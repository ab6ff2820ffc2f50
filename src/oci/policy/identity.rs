//! Docker references as containers/image names them in policies and signatures: the fully
//! expanded form (`docker.io/library/busybox:latest`, not `busybox`), the scopes a policy or a
//! registries.d file may name for one (containers-policy.json(5), "docker:"), and the
//! `signedIdentity` rules that compare the identity a signature claims with the image's.

use std::fmt;

use anyhow::{Result, bail};

/// Docker Hub's canonical host name, and the namespace of its single-component names.
const DOCKER_HUB: &str = "docker.io";
const OFFICIAL_NAMESPACE: &str = "library";

/// A named Docker reference, fully expanded: `host[:port]/path[:tag][@alg:hex]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRef {
    /// `host[:port]/path` (the repository).
    pub name: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// `alg:hex`, if any.
    pub digest: Option<String>,
}

impl DockerRef {
    /// Parses and expands (docker/distribution's `ParseNormalizedNamed`): a first component
    /// without `.` or `:` that is not `localhost` is a Docker Hub path, and a single-component
    /// Docker Hub path is in `library/`.
    pub fn parse(s: &str) -> Result<DockerRef> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let Some((alg, hex)) = d.split_once(':') else {
                    bail!("'{s}': digest '{d}' is not ALG:HEX");
                };
                if alg.is_empty()
                    || hex.len() < 32
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                {
                    bail!("'{s}': invalid digest '{d}'");
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
        {
            bail!("'{s}': invalid tag '{t}'");
        }
        let (host, path) = match name.split_once('/') {
            Some((h, p)) if h.contains(['.', ':']) || h == "localhost" => (h, p.to_string()),
            _ => (DOCKER_HUB, name.to_string()),
        };
        let host = if host == "index.docker.io" {
            DOCKER_HUB
        } else {
            host
        };
        let path = if host == DOCKER_HUB && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path
        };
        let valid_path = path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
        if host.is_empty() || !valid_path {
            bail!("'{s}': not a valid repository name");
        }
        Ok(DockerRef {
            name: format!("{host}/{path}"),
            tag,
            digest,
        })
    }

    /// The reference of a `docker://` image: as parsed, with `:latest` when it names neither
    /// a tag nor a digest (containers/image's docker transport does the same).
    pub fn for_pull(s: &str) -> Result<DockerRef> {
        let mut r = DockerRef::parse(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_string());
        }
        Ok(r)
    }

    /// The repository path without the host (`library/busybox`): the lookaside layout's.
    pub fn path(&self) -> &str {
        self.name.split_once('/').map_or("", |(_, p)| p)
    }

    /// Neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// The scopes naming this image, most specific first, as containers/image's
    /// `PolicyConfigurationIdentity` then `PolicyConfigurationNamespaces`: the reference,
    /// the repository, each parent namespace up to the host, then `*.domain` wildcards of the
    /// host without its port.
    pub fn scopes(&self) -> Vec<String> {
        let mut out = vec![self.to_string()];
        let mut name = self.name.as_str();
        loop {
            out.push(name.to_string());
            match name.rfind('/') {
                Some(i) => name = &name[..i],
                None => break,
            }
        }
        let mut host = name.split(':').next().unwrap_or(name);
        while let Some(i) = host.find('.') {
            host = &host[i + 1..];
            out.push(format!("*.{host}"));
        }
        out.dedup();
        out
    }
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `signedIdentity` of a `signedBy` requirement (containers-policy.json(5)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum SignedIdentity {
    /// The signature's identity equals the image's (both tagged or digested).
    #[serde(rename = "matchExact")]
    MatchExact {},
    /// Tagged image: exact match; digested image: same repository (the default).
    #[serde(rename = "matchRepoDigestOrExact")]
    MatchRepoDigestOrExact {},
    /// Same repository, any tag.
    #[serde(rename = "matchRepository")]
    MatchRepository {},
    /// The signature's identity equals this reference.
    #[serde(rename = "exactReference")]
    ExactReference {
        /// A tagged or digested reference.
        #[serde(rename = "dockerReference")]
        docker_reference: String,
    },
    /// The signature's identity is in this repository.
    #[serde(rename = "exactRepository")]
    ExactRepository {
        /// A repository.
        #[serde(rename = "dockerRepository")]
        docker_repository: String,
    },
    /// The image's identity with `prefix` replaced by `signed_prefix`, then
    /// matchRepoDigestOrExact.
    #[serde(rename = "remapIdentity")]
    RemapIdentity {
        /// Host, namespace or repository the image identity starts with.
        prefix: String,
        /// What it is replaced by.
        #[serde(rename = "signedPrefix")]
        signed_prefix: String,
    },
}

impl Default for SignedIdentity {
    fn default() -> Self {
        SignedIdentity::MatchRepoDigestOrExact {}
    }
}

impl SignedIdentity {
    /// Whether a signature claiming `signed` is acceptable for `image` (`None`: the transport
    /// gives no Docker identity, as for `oci:` layouts). `Err` for a rule that is itself
    /// invalid (an `exactReference` without tag or digest...).
    pub fn matches(&self, image: Option<&DockerRef>, signed: &DockerRef) -> Result<bool> {
        let need_image = || match image {
            Some(i) => Ok(i),
            None => bail!(
                "signedIdentity {self:?} needs a Docker reference, which this transport does \
                 not give (use exactReference or exactRepository)"
            ),
        };
        Ok(match self {
            SignedIdentity::MatchExact {} => {
                let image = need_image()?;
                !image.is_name_only() && !signed.is_name_only() && image == signed
            }
            SignedIdentity::MatchRepoDigestOrExact {} => {
                repo_digest_or_exact(need_image()?, signed)
            }
            SignedIdentity::MatchRepository {} => need_image()?.name == signed.name,
            SignedIdentity::ExactReference { docker_reference } => {
                let want = DockerRef::parse(docker_reference)?;
                if want.is_name_only() {
                    bail!("exactReference '{docker_reference}' names neither a tag nor a digest");
                }
                !signed.is_name_only() && &want == signed
            }
            SignedIdentity::ExactRepository { docker_repository } => {
                DockerRef::parse(docker_repository)?.name == signed.name
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                let image = need_image()?;
                let full = image.to_string();
                let remapped = match full.strip_prefix(prefix.as_str()) {
                    Some(rest) if prefix_boundary(prefix, rest) => {
                        DockerRef::parse(&format!("{signed_prefix}{rest}"))?
                    }
                    _ => image.clone(),
                };
                repo_digest_or_exact(&remapped, signed)
            }
        })
    }
}

fn repo_digest_or_exact(image: &DockerRef, signed: &DockerRef) -> bool {
    if image.digest.is_some() && image.tag.is_none() {
        image.name == signed.name
    } else {
        !image.is_name_only() && image == signed
    }
}

/// A prefix matches whole components only: a host is followed by `/`, a namespace or
/// repository by `/`, `:` or `@` (containers/image `refMatchesPrefix`).
fn prefix_boundary(prefix: &str, rest: &str) -> bool {
    if prefix.contains('/') {
        rest.starts_with(['/', ':', '@'])
    } else {
        rest.starts_with('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> DockerRef {
        DockerRef::parse(s).unwrap()
    }

    #[test]
    fn expansion() {
        assert_eq!(r("busybox").to_string(), "docker.io/library/busybox");
        assert_eq!(r("quay.io/a/b:v1").to_string(), "quay.io/a/b:v1");
        assert_eq!(
            r("127.0.0.1:5000/x/y:t").name,
            "127.0.0.1:5000/x/y".to_string()
        );
        assert_eq!(r("localhost/x").name, "localhost/x");
        assert_eq!(r("me/app:1").to_string(), "docker.io/me/app:1");
        assert_eq!(
            DockerRef::for_pull("h.io/x").unwrap().to_string(),
            "h.io/x:latest"
        );
        for bad in [
            "",
            "Upper/x",
            "h.io/x:",
            "h.io//x",
            "h.io/x@sha256:zz",
            "h.io/x:a b",
        ] {
            assert!(DockerRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes() {
        assert_eq!(
            r("reg.example.com:5000/ns/app:v1").scopes(),
            [
                "reg.example.com:5000/ns/app:v1",
                "reg.example.com:5000/ns/app",
                "reg.example.com:5000/ns",
                "reg.example.com:5000",
                "*.example.com",
                "*.com"
            ]
        );
    }

    #[test]
    fn identities() {
        let tagged = r("h.io/ns/app:v1");
        let other_tag = r("h.io/ns/app:v2");
        let digested = r(
            "h.io/ns/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        );
        let m = |rule: SignedIdentity, image: &DockerRef, signed: &DockerRef| {
            rule.matches(Some(image), signed).unwrap()
        };
        let default = SignedIdentity::default();
        assert!(m(default.clone(), &tagged, &tagged));
        assert!(!m(default.clone(), &tagged, &other_tag));
        assert!(m(default.clone(), &digested, &other_tag));
        assert!(!m(default.clone(), &digested, &r("h.io/ns/other:v1")));
        assert!(!m(SignedIdentity::MatchExact {}, &digested, &other_tag));
        assert!(m(SignedIdentity::MatchRepository {}, &tagged, &other_tag));
        let exact = SignedIdentity::ExactReference {
            docker_reference: "pub.io/app:v1".into(),
        };
        assert!(m(exact.clone(), &tagged, &r("pub.io/app:v1")));
        assert!(!m(exact, &tagged, &tagged));
        let repo = SignedIdentity::ExactRepository {
            docker_repository: "pub.io/app".into(),
        };
        assert!(m(repo, &tagged, &r("pub.io/app:v9")));
        let remap = SignedIdentity::RemapIdentity {
            prefix: "h.io/ns".into(),
            signed_prefix: "pub.io/up".into(),
        };
        assert!(m(remap.clone(), &tagged, &r("pub.io/up/app:v1")));
        assert!(!m(remap.clone(), &tagged, &tagged));
        // `h.io/nsx` does not start with the namespace `h.io/ns`.
        assert!(m(remap, &r("h.io/nsx/app:v1"), &r("h.io/nsx/app:v1")));
        assert!(SignedIdentity::default().matches(None, &tagged).is_err());
    }
}
