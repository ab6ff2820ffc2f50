//! Artifact mode of the composefs OCI sealing specification: the digests (and signatures) of
//! an image travel in a separate OCI artifact that names the image as its `subject`, so the
//! image itself is left untouched.
//!
//! The artifact is an image manifest with `artifactType` [`ARTIFACT_TYPE`], the empty config
//! (`{}`) and one layer per sealed object, in the specification's order: manifest, config,
//! merged, merged.bootable. Each layer carries exactly one digest annotation (the inline keys
//! of [`super::sealspec`]); its blob is the PKCS#7 DER signature of that digest
//! ([`SIGNATURE_MEDIA_TYPE`]), or, for an unsigned seal, the empty blob
//! (`application/vnd.oci.empty.v1+json`, the OCI artifacts guidance for a layer without
//! content). One artifact holds one algorithm.
//!
//! Where it lives: in an `oci:` layout, an untagged `index.json` entry; in a registry, pushed
//! by digest next to the image, and listed in the referrers tag schema (`<alg>-<hex>` of the
//! subject's digest, an image index of the referrers), which is what a registry without the
//! referrers API (docker-registry 2.8) offers. Found the same way. See
//! `docs/oci-conventions.md` section 8.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::error::OciError;
use super::layout::Layout;
use super::reference::ImageReference;
use super::sealspec::{self, Role};
pub use super::sealspec::{Artifact, Entry};
use super::source::{self, MAX_JSON, SourceOptions, ocidir::OciDir};
use crate::bounded;
use crate::fsverity::Algorithm;

/// `artifactType` of a composefs metadata artifact.
pub const ARTIFACT_TYPE: &str = "application/vnd.composefs.metadata.v1";
/// Media type of a signature layer (PKCS#7 DER).
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.composefs.signature.v1+pkcs7";
/// The OCI empty descriptor's media type, and its blob.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_BLOB: &[u8] = b"{}";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Bound on a signature blob (a PKCS#7 signature with a certificate chain is a few KiB).
const MAX_SIGNATURE: u64 = 1 << 20;

/// An artifact ready to be written: its manifest and blobs.
#[derive(Debug)]
pub struct Built {
    /// Manifest bytes.
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`.
    pub digest: String,
    /// `(digest, bytes)` of every blob (the empty config first).
    pub blobs: Vec<(String, Vec<u8>)>,
    /// The algorithm of its entries.
    pub algorithm: Algorithm,
}

/// The subject: the image manifest the artifact refers to.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size of the manifest in bytes.
    pub size: usize,
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Manifest => 0,
        Role::Config => 1,
        Role::Merged => 2,
        Role::MergedBootable => 3,
        Role::Layer => 4,
    }
}

/// Builds the artifact for `subject` from `entries` (all of `algorithm`; a merged entry
/// needed; no layer entries: the specification has none in artifact mode).
pub fn build(subject: &Subject, algorithm: Algorithm, entries: &[Entry]) -> Result<Built> {
    anyhow::ensure!(
        entries.iter().any(|e| e.role == Role::Merged),
        "an artifact needs the merged image's digest"
    );
    let mut entries = entries.to_vec();
    entries.sort_by_key(|e| rank(e.role));
    let empty = source::sha256_of(EMPTY_BLOB);
    let mut blobs = vec![(empty.clone(), EMPTY_BLOB.to_vec())];
    let mut layers = Vec::new();
    for e in &entries {
        anyhow::ensure!(
            e.role != Role::Layer && e.digest.algorithm() == algorithm,
            "artifact entry {:?} of {} does not belong in a {algorithm} artifact",
            e.role,
            e.digest.algorithm()
        );
        let annotations = json!({ sealspec::key(e.role, algorithm): e.digest.to_hex() });
        let layer = match &e.signature {
            Some(sig) => {
                let d = source::sha256_of(sig);
                blobs.push((d.clone(), sig.clone()));
                json!({"mediaType": SIGNATURE_MEDIA_TYPE, "digest": d, "size": sig.len(),
                       "annotations": annotations})
            }
            None => {
                json!({"mediaType": EMPTY_MEDIA_TYPE, "digest": empty, "size": EMPTY_BLOB.len(),
                           "annotations": annotations})
            }
        };
        layers.push(layer);
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": empty, "size": EMPTY_BLOB.len()},
        "layers": layers,
        "subject": {"mediaType": MANIFEST_MEDIA_TYPE, "digest": subject.digest, "size": subject.size},
    });
    let manifest = serde_json::to_vec(&manifest)?;
    Ok(Built {
        digest: source::sha256_of(&manifest),
        manifest,
        blobs,
        algorithm,
    })
}

/// The index entry that lists `built` (in a layout's `index.json`, or a referrers index).
fn descriptor(built: &Built) -> Value {
    json!({
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": built.digest,
        "size": built.manifest.len(),
        "artifactType": ARTIFACT_TYPE,
    })
}

/// Whether `manifest` (parsed JSON) is a composefs metadata artifact.
fn is_ours(manifest: &Value) -> bool {
    manifest["artifactType"] == ARTIFACT_TYPE
}

/// Parses and checks an artifact manifest whose bytes have digest `digest` and that should
/// refer to `subject`: its type, subject, layer order, one algorithm. `blob` reads a layer's
/// blob (already digest-checked by the caller's transport).
pub fn parse(
    what: &str,
    digest: &str,
    bytes: &[u8],
    subject: &str,
    blob: &dyn Fn(&oci_spec::image::Digest) -> Result<Vec<u8>>,
) -> Result<Artifact> {
    let bad = |why: String| OciError::MalformedArtifact {
        what: format!("{what}: artifact {digest}"),
        why,
    };
    let m: oci_spec::image::ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not an image manifest: {e}")))?;
    match m.artifact_type() {
        Some(t) if t.to_string() == ARTIFACT_TYPE => {}
        other => return Err(bad(format!("artifactType is {other:?}")).into()),
    }
    let sub = m
        .subject()
        .as_ref()
        .ok_or_else(|| bad("no subject".into()))?;
    if sub.digest().to_string() != subject {
        return Err(bad(format!(
            "its subject is {}, not the image {subject}",
            sub.digest()
        ))
        .into());
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut algorithm = None;
    for layer in m.layers() {
        let keys: Vec<(Role, Algorithm, &String, &String)> = layer
            .annotations()
            .iter()
            .flatten()
            .filter_map(|(k, v)| sealspec::parse_key(k).map(|(r, a)| (r, a, k, v)))
            .collect();
        let [(role, alg, key, value)] = keys.as_slice() else {
            return Err(bad(format!(
                "layer {} has {} composefs digest annotations, not one",
                layer.digest(),
                keys.len()
            ))
            .into());
        };
        if *role == Role::Layer {
            return Err(bad("per-layer digests do not belong in an artifact".into()).into());
        }
        if *algorithm.get_or_insert(*alg) != *alg {
            return Err(
                bad("entries of two algorithms (one artifact, one algorithm)".into()).into(),
            );
        }
        if entries.last().is_some_and(|e| rank(e.role) >= rank(*role)) {
            return Err(bad(format!(
                "{key} is out of order (manifest, config, merged, merged.bootable; once each)"
            ))
            .into());
        }
        let digest = sealspec::parse_value(key, value, *alg)?;
        let media_type = layer.media_type().to_string();
        let signature = if media_type == SIGNATURE_MEDIA_TYPE {
            if layer.size() > MAX_SIGNATURE {
                return Err(bad(format!("signature of {key}: {} bytes", layer.size())).into());
            }
            Some(blob(layer.digest())?)
        } else if media_type == EMPTY_MEDIA_TYPE {
            None
        } else {
            return Err(bad(format!("layer media type {media_type}")).into());
        };
        entries.push(Entry {
            role: *role,
            digest,
            signature,
        });
    }
    let algorithm = algorithm.ok_or_else(|| bad("no composefs digest".into()))?;
    if !entries.iter().any(|e| e.role == Role::Merged) {
        return Err(bad("no merged image digest".into()).into());
    }
    Ok(Artifact {
        digest: digest.to_string(),
        algorithm,
        entries,
    })
}

/// The `docker://` reference of another manifest in the same repository as `reference`
/// (`None` for other transports): `@sha256:...` or `:tag`.
fn sibling(reference: &str, at: &str) -> Option<String> {
    let rest = reference.strip_prefix("docker://")?;
    let repo = match rest.split_once('@') {
        Some((repo, _)) => repo,
        None => {
            // A tag is what follows the last ':' after the last '/' (a port is before it).
            let slash = rest.rfind('/').unwrap_or(0);
            match rest[slash..].rfind(':') {
                Some(i) => &rest[..slash + i],
                None => rest,
            }
        }
    };
    Some(format!("docker://{repo}{at}"))
}

/// The referrers tag of `subject` (`sha256:<hex>` -> `sha256-<hex>`).
fn referrers_tag(subject: &str) -> String {
    subject.replacen(':', "-", 1)
}

fn skopeo(args: &[&str], tls_verify: bool, what: &str) -> Result<std::process::Output> {
    let mut cmd = Command::new("skopeo");
    cmd.args(args);
    if !tls_verify {
        // The option belongs to the subcommand (args[0]).
        cmd.arg(match args[0] {
            "copy" => "--src-tls-verify=false",
            _ => "--tls-verify=false",
        });
        if args[0] == "copy" {
            cmd.arg("--dest-tls-verify=false");
        }
    }
    let out = cmd
        .output()
        .with_context(|| format!("running skopeo for {what}"))?;
    Ok(out)
}

/// Runs `skopeo inspect --raw`; `Ok(None)` when the registry has no such manifest.
fn inspect_raw(reference: &str, tls_verify: bool) -> Result<Option<Vec<u8>>> {
    let out = skopeo(&["inspect", "--raw", reference], tls_verify, reference)?;
    if out.status.success() {
        anyhow::ensure!(
            out.stdout.len() as u64 <= MAX_JSON,
            "{reference}: manifest too large"
        );
        return Ok(Some(out.stdout));
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("manifest unknown") || err.contains("not found") {
        return Ok(None);
    }
    anyhow::bail!("skopeo inspect {reference}: {}", err.trim())
}

/// The composefs artifacts that refer to `subject` where `reference` (the image's reference)
/// lives. Other transports than `oci:` and `docker://` have none.
pub fn find(
    reference: &ImageReference,
    subject: &str,
    opts: &SourceOptions,
) -> Result<Vec<Artifact>> {
    let what = reference.to_string();
    match reference {
        ImageReference::OciDir { path, .. } => find_in_layout(path, &what, subject),
        ImageReference::Proxy(r) => {
            let Some(tag_ref) = sibling(r, &format!(":{}", referrers_tag(subject))) else {
                return Ok(Vec::new());
            };
            let Some(index) = inspect_raw(&tag_ref, opts.tls_verify)? else {
                return Ok(Vec::new());
            };
            let index: Value = serde_json::from_slice(&index)
                .with_context(|| format!("{tag_ref}: parsing the referrers index"))?;
            let mut found = Vec::new();
            for d in index["manifests"].as_array().into_iter().flatten() {
                // skopeo 1.9 drops `artifactType` from index entries it writes: an entry
                // without one is looked at.
                if !(d["artifactType"].is_null() || d["artifactType"] == ARTIFACT_TYPE) {
                    continue;
                }
                let Some(digest) = d["digest"].as_str() else {
                    continue;
                };
                let at = sibling(r, &format!("@{digest}")).expect("docker reference");
                if let Some(a) = fetch(&at, &what, digest, subject, opts)? {
                    found.push(a);
                }
            }
            Ok(found)
        }
    }
}

/// Copies the manifest `digest` (with its blobs) from a registry into a temporary layout
/// and parses it; `None` when it is not a composefs artifact.
fn fetch(
    at: &str,
    what: &str,
    digest: &str,
    subject: &str,
    opts: &SourceOptions,
) -> Result<Option<Artifact>> {
    let Some(bytes) = inspect_raw(at, opts.tls_verify)? else {
        return Ok(None);
    };
    source::verify_bytes(at, &digest.parse()?, &bytes)?;
    let parsed: Value = serde_json::from_slice(&bytes).with_context(|| format!("parsing {at}"))?;
    if !is_ours(&parsed) {
        return Ok(None);
    }
    let tmp = tempfile::tempdir().context("creating a temporary OCI layout")?;
    let dst = format!("oci:{}:a", tmp.path().display());
    let out = skopeo(
        &["copy", "--quiet", "--preserve-digests", at, &dst],
        opts.tls_verify,
        at,
    )?;
    if !out.status.success() {
        anyhow::bail!(
            "skopeo copy {at}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let dir = OciDir::open(tmp.path(), Some("a"))?;
    let blob = |d: &oci_spec::image::Digest| read_blob(&dir, d);
    parse(what, digest, &bytes, subject, &blob).map(Some)
}

fn read_blob(dir: &OciDir, d: &oci_spec::image::Digest) -> Result<Vec<u8>> {
    let bytes = bounded::read_file(&dir.blob_path(d), MAX_SIGNATURE)
        .with_context(|| format!("artifact blob {d}"))?;
    source::verify_bytes(&format!("artifact blob {d}"), d, &bytes)?;
    Ok(bytes)
}

fn find_in_layout(path: &Path, what: &str, subject: &str) -> Result<Vec<Artifact>> {
    let index_path = path.join("index.json");
    let index: Value = serde_json::from_slice(&bounded::read_file(&index_path, MAX_JSON)?)
        .with_context(|| format!("parsing {}", index_path.display()))?;
    let dir = OciDir::open(path, None)?;
    let mut found = Vec::new();
    for d in index["manifests"].as_array().into_iter().flatten() {
        if d["artifactType"] != ARTIFACT_TYPE {
            continue;
        }
        let Some(digest) = d["digest"].as_str() else {
            continue;
        };
        let digest_parsed: oci_spec::image::Digest = digest.parse()?;
        let bytes = bounded::read_file(&dir.blob_path(&digest_parsed), MAX_JSON)
            .with_context(|| format!("{what}: artifact {digest}"))?;
        source::verify_bytes(
            &format!("{what}: artifact {digest}"),
            &digest_parsed,
            &bytes,
        )?;
        let parsed: Value = serde_json::from_slice(&bytes)?;
        if parsed["subject"]["digest"] != subject {
            continue;
        }
        let blob = |d: &oci_spec::image::Digest| read_blob(&dir, d);
        found.push(parse(what, digest, &bytes, subject, &blob)?);
    }
    Ok(found)
}

/// Writes `built` next to the image `reference` names: into the layout (an untagged entry),
/// or pushed by digest to the registry and listed under the referrers tag, replacing an
/// earlier composefs artifact of the same algorithm there (a seal made again supersedes it).
pub fn push(
    reference: &ImageReference,
    built: &Built,
    subject: &str,
    tls_verify: bool,
) -> Result<()> {
    let write = |dir: &Path| -> Result<()> {
        let layout = Layout::create(dir)?;
        for (d, b) in &built.blobs {
            layout.write_blob(d, b)?;
        }
        layout.write_blob(&built.digest, &built.manifest)?;
        Ok(())
    };
    match reference {
        ImageReference::OciDir { path, .. } => {
            write(path)?;
            let old = find_in_layout(path, &reference.to_string(), subject)?;
            let layout = Layout::create(path)?;
            layout.update_index(|manifests| {
                manifests.retain(|m| {
                    !old.iter()
                        .any(|a| a.algorithm == built.algorithm && m["digest"] == a.digest.as_str())
                });
            })?;
            layout.add_untagged(descriptor(built))
        }
        ImageReference::Proxy(r) => {
            let at = sibling(r, &format!("@{}", built.digest)).ok_or_else(|| {
                anyhow::anyhow!(
                    "{r}: artifacts can be pushed to oci: layouts and docker:// registries only"
                )
            })?;
            let tmp = tempfile::tempdir().context("creating a temporary OCI layout")?;
            write(tmp.path())?;
            let layout = Layout::create(tmp.path())?;
            layout.set_index(Some("artifact"), &built.digest, built.manifest.len())?;
            let src = format!("oci:{}:artifact", tmp.path().display());
            run_copy(
                &["copy", "--quiet", "--preserve-digests", &src, &at],
                tls_verify,
                &at,
            )?;

            // The referrers tag schema: the index of the subject's referrers.
            let tag_ref = sibling(r, &format!(":{}", referrers_tag(subject))).expect("docker");
            let mut manifests = Vec::new();
            if let Some(old) = inspect_raw(&tag_ref, tls_verify)? {
                let old: Value = serde_json::from_slice(&old)
                    .with_context(|| format!("{tag_ref}: parsing the referrers index"))?;
                for d in old["manifests"].as_array().into_iter().flatten() {
                    if d["digest"] == built.digest.as_str() || superseded(r, d, built, tls_verify)?
                    {
                        continue;
                    }
                    manifests.push(d.clone());
                }
            }
            manifests.push(descriptor(built));
            let index = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": INDEX_MEDIA_TYPE,
                "manifests": manifests,
            }))?;
            let index_digest = source::sha256_of(&index);
            let layout_dir = tempfile::tempdir().context("creating a temporary OCI layout")?;
            let layout = Layout::create(layout_dir.path())?;
            layout.write_blob(&index_digest, &index)?;
            layout.update_index(|m| {
                m.clear();
                m.push(
                    json!({"mediaType": INDEX_MEDIA_TYPE, "digest": index_digest,
                              "size": index.len(),
                              "annotations": {source::ocidir::REF_NAME: "referrers"}}),
                );
            })?;
            let src = format!("oci:{}:referrers", layout_dir.path().display());
            run_copy(
                &[
                    "copy",
                    "--quiet",
                    "--multi-arch",
                    "index-only",
                    &src,
                    &tag_ref,
                ],
                tls_verify,
                &tag_ref,
            )
        }
    }
}

/// Whether the referrers index entry `d` is a composefs artifact of `built`'s algorithm
/// (which `built` replaces).
fn superseded(reference: &str, d: &Value, built: &Built, tls_verify: bool) -> Result<bool> {
    if !(d["artifactType"].is_null() || d["artifactType"] == ARTIFACT_TYPE) {
        return Ok(false);
    }
    let Some(digest) = d["digest"].as_str() else {
        return Ok(false);
    };
    let at = sibling(reference, &format!("@{digest}")).expect("docker reference");
    let Some(bytes) = inspect_raw(&at, tls_verify)? else {
        return Ok(true);
    };
    let m: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !is_ours(&m) {
        return Ok(false);
    }
    let alg_of = |l: &Value| {
        l["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .find_map(|(k, _)| sealspec::parse_key(k).map(|(_, a)| a))
    };
    Ok(m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| alg_of(l) == Some(built.algorithm)))
}

fn run_copy(args: &[&str], tls_verify: bool, what: &str) -> Result<()> {
    let out = skopeo(args, tls_verify, what)?;
    if !out.status.success() {
        anyhow::bail!(
            "skopeo copy to {what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::Digest;

    #[test]
    fn sibling_references() {
        for (r, want) in [
            (
                "docker://127.0.0.1:5000/os:v1",
                "docker://127.0.0.1:5000/os@sha256:x",
            ),
            (
                "docker://127.0.0.1:5000/os",
                "docker://127.0.0.1:5000/os@sha256:x",
            ),
            (
                "docker://quay.io/a/b@sha256:aa",
                "docker://quay.io/a/b@sha256:x",
            ),
            (
                "docker://localhost:5000/a/b:latest",
                "docker://localhost:5000/a/b@sha256:x",
            ),
        ] {
            assert_eq!(sibling(r, "@sha256:x").as_deref(), Some(want), "{r}");
        }
        assert_eq!(sibling("containers-storage:x", "@y"), None);
        assert_eq!(referrers_tag("sha256:abc"), "sha256-abc");
    }

    #[test]
    fn built_artifacts_parse_back_and_misordered_ones_do_not() {
        let d = |b: u8| Digest::from_hex(&hex::encode([b; 32])).unwrap();
        let subject = Subject {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 10,
        };
        let entries = vec![
            Entry {
                role: Role::Merged,
                digest: d(3),
                signature: Some(vec![0x30, 0x00]),
            },
            Entry {
                role: Role::Config,
                digest: d(2),
                signature: None,
            },
        ];
        let built = build(&subject, Algorithm::Sha256, &entries).unwrap();
        let blobs = built.blobs.clone();
        let blob = move |dg: &oci_spec::image::Digest| {
            Ok(blobs
                .iter()
                .find(|(k, _)| *k == dg.to_string())
                .unwrap()
                .1
                .clone())
        };
        let a = parse("t", &built.digest, &built.manifest, &subject.digest, &blob).unwrap();
        assert_eq!(a.entries.len(), 2);
        assert_eq!(
            a.entries[0].role,
            Role::Config,
            "sorted into the specification's order"
        );
        assert_eq!(
            a.entry(Role::Merged).unwrap().signature,
            Some(vec![0x30, 0x00])
        );
        // Another subject, and a swapped order, are refused.
        let other = format!("sha256:{}", "b".repeat(64));
        assert!(parse("t", &built.digest, &built.manifest, &other, &blob).is_err());
        let mut m: Value = serde_json::from_slice(&built.manifest).unwrap();
        m["layers"].as_array_mut().unwrap().swap(0, 1);
        let swapped = serde_json::to_vec(&m).unwrap();
        let e = parse("t", "x", &swapped, &subject.digest, &blob).unwrap_err();
        assert!(format!("{e:#}").contains("out of order"), "{e:#}");
    }
}
