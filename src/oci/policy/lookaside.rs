//! Where the signatures of a `docker://` image are: containers-registries.d(5) (YAML files in
//! a directory, `default-docker` and per-namespace `docker:` sections) chooses a lookaside
//! URL, and signature `n` of manifest `alg:hex` of repository `ns/app` is at
//! `<lookaside>/ns/app@alg=hex/signature-<n>`, n from 1 until one is absent (containers/image
//! `docker/registries_d.go`, `docs/signature-protocols.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use yaml_rust2::{Yaml, YamlLoader};

use super::identity::DockerRef;
use crate::bounded;

/// Bound on one signature (containers/image's `maxSignatureBodySize`).
pub const MAX_SIGNATURE: u64 = 4 << 20;
/// Signatures read per image at most (containers/image's `maxLookasideSignatures`).
pub const MAX_SIGNATURES: usize = 128;
/// Bound on one registries.d file.
const MAX_CONFIG: u64 = 1 << 20;

/// The lookaside keys of one section. Reading uses `lookaside` (or the older `sigstore`);
/// the `-staging` keys are where signers write (`skopeo copy --sign-by`) and are read only
/// to check the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// `lookaside`, or `sigstore` when absent.
    pub read: Option<String>,
}

/// The merged registries.d configuration.
#[derive(Debug, Clone, Default)]
pub struct RegistriesD {
    /// Where it was read from (for messages).
    pub dir: PathBuf,
    default_docker: Option<Section>,
    docker: BTreeMap<String, Section>,
}

impl RegistriesD {
    /// Reads every `*.yaml` in `dir` (absent: an empty configuration, as containers/image).
    /// A scope configured twice, even in two files, is an error (containers-registries.d(5)).
    pub fn load(dir: &Path) -> Result<RegistriesD> {
        let mut out = RegistriesD {
            dir: dir.to_owned(),
            ..Default::default()
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {}", dir.display()))?;
        files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
        files.sort();
        for f in files {
            let text = bounded::read_file(&f, MAX_CONFIG)?;
            let text =
                String::from_utf8(text).with_context(|| format!("{}: not UTF-8", f.display()))?;
            out.add(&text)
                .with_context(|| format!("registries.d file {}", f.display()))?;
        }
        Ok(out)
    }

    fn add(&mut self, text: &str) -> Result<()> {
        let docs = YamlLoader::load_from_str(text).context("invalid YAML")?;
        for doc in docs {
            if doc.is_null() {
                continue;
            }
            let top = doc.as_hash().context("the top level is not a mapping")?;
            for (k, v) in top {
                match k.as_str() {
                    Some("default-docker") => {
                        if self.default_docker.is_some() {
                            bail!("default-docker is configured more than once");
                        }
                        self.default_docker = Some(section(v).context("default-docker")?);
                    }
                    Some("docker") => {
                        if v.is_null() {
                            continue;
                        }
                        let map = v.as_hash().context("docker: not a mapping")?;
                        for (scope, sec) in map {
                            let scope = scope.as_str().context("docker: a key is not a string")?;
                            let sec = section(sec).with_context(|| format!("docker.{scope}"))?;
                            if self.docker.insert(scope.to_string(), sec).is_some() {
                                bail!("docker.{scope} is configured more than once");
                            }
                        }
                    }
                    _ => bail!("unknown top-level key {k:?}"),
                }
            }
        }
        Ok(())
    }

    /// The lookaside base URL for `image`: the most specific `docker:` scope with a
    /// `lookaside`, else `default-docker`'s (containers/image `signatureTopLevel`), else
    /// `None` (the caller falls back to the built-in default).
    pub fn lookaside(&self, image: &DockerRef) -> Option<&str> {
        image
            .scopes()
            .iter()
            .filter_map(|s| self.docker.get(s))
            .chain(self.default_docker.as_ref())
            .find_map(|s| s.read.as_deref())
    }
}

fn section(v: &Yaml) -> Result<Section> {
    if v.is_null() {
        return Ok(Section::default());
    }
    let map = v.as_hash().context("not a mapping")?;
    let mut keys: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in map {
        let k = k.as_str().context("a key is not a string")?;
        match k {
            "lookaside" | "lookaside-staging" | "sigstore" | "sigstore-staging" => {
                let url = v.as_str().with_context(|| format!("{k}: not a string"))?;
                keys.insert(k, url.to_string());
            }
            // Read by containers/image for sigstore attachments; cfsctl does not read those
            // (sigstoreSigned requirements are refused), so its value changes nothing here.
            "use-sigstore-attachments" => {
                v.as_bool().with_context(|| format!("{k}: not a boolean"))?;
            }
            other => bail!("unknown key '{other}'"),
        }
    }
    Ok(Section {
        read: keys
            .get("lookaside")
            .or_else(|| keys.get("sigstore"))
            .cloned(),
    })
}

/// The built-in lookaside when no configuration names one (containers-registries.d(5)):
/// `/var/lib/containers/sigstore` for root, `$HOME/.local/share/containers/sigstore` else.
pub fn builtin_lookaside() -> String {
    if rustix::process::geteuid().is_root() {
        return "file:///var/lib/containers/sigstore".to_string();
    }
    match std::env::var_os("HOME") {
        Some(h) => format!(
            "file://{}/.local/share/containers/sigstore",
            Path::new(&h).display()
        ),
        None => "file:///var/lib/containers/sigstore".to_string(),
    }
}

/// URL of signature `n` (from 1) of manifest `digest` (`alg:hex`) of `image`.
pub fn signature_url(base: &str, image: &DockerRef, digest: &str, n: usize) -> Result<String> {
    let Some((alg, hex)) = digest.split_once(':') else {
        bail!("manifest digest '{digest}' is not ALG:HEX");
    };
    Ok(format!(
        "{}/{}@{alg}={hex}/signature-{n}",
        base.trim_end_matches('/'),
        image.path()
    ))
}

/// Reads the signature at `url`: `None` when there is none (the end of the list).
pub fn fetch(url: &str) -> Result<Option<Vec<u8>>> {
    if let Some(path) = url.strip_prefix("file://") {
        return match bounded::read_file(Path::new(path), MAX_SIGNATURE) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e)
                if e.chain().any(|c| {
                    c.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.context(format!("reading signature {url}"))),
        };
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return super::http::get(url, MAX_SIGNATURE);
    }
    bail!("signature URL {url}: only file://, http:// and https:// lookasides are supported")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration() {
        let mut c = RegistriesD::default();
        c.add("default-docker:\n  lookaside: file:///d\n").unwrap();
        c.add(
            "docker:\n  h.io/ns:\n    lookaside: https://s.example/ns\n    lookaside-staging: file:///st\n  h.io/ns/app:v1:\n    lookaside-staging: file:///only-staging\n  q.io:\n    sigstore: http://old/\n",
        )
        .unwrap();
        let r = |s| DockerRef::parse(s).unwrap();
        assert_eq!(
            c.lookaside(&r("h.io/ns/app:v2")),
            Some("https://s.example/ns")
        );
        // A section without a read key falls through to the next scope.
        assert_eq!(
            c.lookaside(&r("h.io/ns/app:v1")),
            Some("https://s.example/ns")
        );
        assert_eq!(c.lookaside(&r("q.io/x:1")), Some("http://old/"));
        assert_eq!(c.lookaside(&r("z.io/x:1")), Some("file:///d"));
        assert!(c.add("default-docker:\n  lookaside: file:///e\n").is_err());
        assert!(
            c.add("docker:\n  h.io/ns:\n    lookaside: file:///e\n")
                .is_err()
        );
        assert!(
            c.add("docker:\n  n.io:\n    lookasid: file:///e\n")
                .is_err()
        );
        assert_eq!(
            signature_url("file:///l/", &r("h.io/ns/app:v1"), "sha256:ab", 2).unwrap(),
            "file:///l/ns/app@sha256=ab/signature-2"
        );
    }
}
