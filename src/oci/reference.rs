//! Image references as podman and skopeo spell them: `TRANSPORT:REF`.
//!
//! `oci:DIR[:TAG]` is read natively; every other containers-image transport (`docker://`,
//! `oci-archive:`, `containers-storage:`, `dir:`, `docker-archive:`, `docker-daemon:`) goes
//! through `skopeo experimental-image-proxy`, so registries.conf and auth files apply as they
//! do for podman; policy.json is evaluated by [`crate::oci::policy`] (the proxy does not).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Transports handed to skopeo as they are.
const PROXY_TRANSPORTS: &[&str] = &[
    "docker",
    "docker-archive",
    "docker-daemon",
    "oci-archive",
    "containers-storage",
    "dir",
];

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageReference {
    /// An OCI image layout directory, optionally naming a tag
    /// (`org.opencontainers.image.ref.name` in `index.json`).
    OciDir {
        /// The layout directory.
        path: PathBuf,
        /// The tag; without it the index must hold exactly one image.
        tag: Option<String>,
    },
    /// Any other transport, passed verbatim to skopeo (`docker://quay.io/x:tag`).
    Proxy(String),
}

/// Why a reference string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// No `TRANSPORT:` prefix.
    #[error(
        "'{0}' names no transport; write e.g. docker://{0} (registry) or oci:{0} (OCI layout \
         directory)"
    )]
    NoTransport(String),
    /// A transport nobody implements.
    #[error("'{0}': unknown transport '{1}'")]
    UnknownTransport(String, String),
    /// `oci:` with an empty directory or tag.
    #[error("'{0}': empty directory or tag")]
    Empty(String),
}

impl FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((transport, rest)) = s.split_once(':') else {
            return Err(ReferenceError::NoTransport(s.to_string()));
        };
        if transport == "oci" {
            // skopeo splits `oci:` references at the first ':' too: directories with ':' in
            // their name cannot be named this way there either.
            let (path, tag) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t)),
                None => (rest, None),
            };
            if path.is_empty() || tag.is_some_and(str::is_empty) {
                return Err(ReferenceError::Empty(s.to_string()));
            }
            return Ok(ImageReference::OciDir {
                path: PathBuf::from(path),
                tag: tag.map(str::to_string),
            });
        }
        if PROXY_TRANSPORTS.contains(&transport) {
            if rest.is_empty() || rest == "//" {
                return Err(ReferenceError::Empty(s.to_string()));
            }
            return Ok(ImageReference::Proxy(s.to_string()));
        }
        if rest.starts_with("//") || transport.contains('/') || transport.contains('.') {
            return Err(ReferenceError::UnknownTransport(
                s.to_string(),
                transport.to_string(),
            ));
        }
        // `registry:5000/x` or `fedora:40`: a name with a port or tag, no transport.
        Err(ReferenceError::NoTransport(s.to_string()))
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageReference::OciDir { path, tag: None } => write!(f, "oci:{}", path.display()),
            ImageReference::OciDir { path, tag: Some(t) } => {
                write!(f, "oci:{}:{t}", path.display())
            }
            ImageReference::Proxy(s) => f.write_str(s),
        }
    }
}

/// Encodes a tag name (which may hold `/`, `:` or anything else) as one safe ref-name
/// component: bytes outside `[A-Za-z0-9._:@+=-]` and a leading `.` become `%XX`, so the
/// encoding is injective, never `.`/`..`/`.tmp-*`, and never contains `/`.
pub fn encode_tag(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b"_:@+=-".contains(&b) || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Inverse of [`encode_tag`] (`None` for strings it never produces).
pub fn decode_tag(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(
            "oci:/tmp/x:v1".parse::<ImageReference>().unwrap(),
            ImageReference::OciDir {
                path: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci:rel/dir".parse::<ImageReference>().unwrap(),
            ImageReference::OciDir {
                path: "rel/dir".into(),
                tag: None
            }
        );
        let d = "docker://127.0.0.1:5000/a/b:v2";
        assert_eq!(
            d.parse::<ImageReference>().unwrap(),
            ImageReference::Proxy(d.into())
        );
        assert_eq!(d.parse::<ImageReference>().unwrap().to_string(), d);
        for bad in [
            "fedora:40",
            "quay.io/x",
            "oci:",
            "oci:dir:",
            "docker://",
            "ftp://x",
        ] {
            assert!(bad.parse::<ImageReference>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_encoding() {
        for name in [
            "docker://127.0.0.1:5000/a/b:v2",
            "x",
            ".tmp-x",
            "..",
            "100%",
            "ünïcode",
        ] {
            let e = encode_tag(name);
            assert!(!e.contains('/') && !e.starts_with('.'), "{e}");
            crate::repo::validate_ref_name(&format!("oci/tags/{e}")).unwrap();
            assert_eq!(decode_tag(&e).as_deref(), Some(name));
        }
        assert_eq!(encode_tag("a/b:c"), "a%2Fb:c");
    }
}
