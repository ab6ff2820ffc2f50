//! The sealing specification's artifact mode and fs-verity signatures, against real parts:
//! docker-registry 2.8 (no referrers API: the referrers tag schema), skopeo, OpenSSL keys,
//! `fsverity sign` (fsverity-utils) as the reference signer, Debian packages as content.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cfsctl::fsverity::signature::{SigningKey, TrustedCerts};
use cfsctl::fsverity::{Algorithm, Digest};
use cfsctl::oci::artifact::{self, Entry, Subject};
use cfsctl::oci::error::{OciError, find};
use cfsctl::oci::pull::{self, PullOptions};
use cfsctl::oci::reference::ImageReference;
use cfsctl::oci::sealspec::Role;
use cfsctl::oci::source::SourceOptions;
use cfsctl::repo::Repository;
use common::ociimage::{self, Compression, Layer};
use common::registry::Registry;

/// A self-signed RSA key and certificate made by the openssl tool.
struct Keys {
    key: PathBuf,
    cert: PathBuf,
}

fn keys(dir: &Path, name: &str) -> Option<Keys> {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .arg("-subj")
        .arg(format!("/CN=cfsctl test {name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Keys { key, cert }),
        Ok(o) => panic!("openssl req: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => common::skip_or_fail("openssl is not installed"),
    }
}

/// A two-layer image of Debian packages in an `oci:` layout.
fn image(dir: &Path, tag: &str) -> Option<ociimage::Written> {
    let debs = ociimage::deb_tars(&["hello", "tzdata"])?;
    let layers = [
        Layer::new(debs[0].clone(), Compression::Gzip),
        Layer::new(debs[1].clone(), Compression::Zstd),
    ];
    Some(ociimage::write_layout(dir, tag, &layers, &BTreeMap::new()))
}

fn new_repo() -> (tempfile::TempDir, Repository) {
    let td = tempfile::tempdir().unwrap();
    let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
    (td, repo)
}

fn tags(repo: &Repository) -> usize {
    repo.list_refs()
        .unwrap()
        .iter()
        .filter(|(n, _)| n.starts_with("oci/"))
        .count()
}

fn cfsctl_ok(args: &[&str]) -> String {
    let out = common::run_ok(common::cfsctl().args(args));
    String::from_utf8(out.stdout).unwrap()
}

fn cfsctl_err(args: &[&str]) -> String {
    let out = common::cfsctl().args(args).output().unwrap();
    assert!(!out.status.success(), "cfsctl {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn our_signature_is_byte_identical_to_fsverity_sign_and_verifies() {
    let Some(tool) = common::find_tool("FSVERITY", "fsverity", &[]) else {
        common::skip_or_fail::<()>("fsverity (fsverity-utils) is not installed");
        return;
    };
    let td = tempfile::tempdir().unwrap();
    let Some(k) = keys(td.path(), "a") else {
        return;
    };
    let Some(other) = keys(td.path(), "b") else {
        return;
    };
    let signer = SigningKey::load(&k.key, &k.cert).unwrap();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let file = td.path().join("data");
        std::fs::write(&file, common::content(100_000, 7)).unwrap();
        let sig_path = td.path().join("sig");
        let out = Command::new(&tool)
            .arg("sign")
            .arg(&file)
            .arg(&sig_path)
            .arg(format!("--hash-alg={}", alg.name()))
            .arg("--key")
            .arg(&k.key)
            .arg("--cert")
            .arg(&k.cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = std::fs::read(&sig_path).unwrap();
        let digest = cfsctl::fsverity::digest_bytes(alg, &std::fs::read(&file).unwrap());
        let ours = signer.sign(&digest).unwrap();
        // RSA PKCS#1 v1.5 is deterministic: the same structure gives the same bytes. For
        // sha512 files `fsverity sign` hashes the signed content with SHA-512 where OpenSSL's
        // PKCS7_sign (and composefs-rs) use SHA-256: both verify, the bytes differ there.
        if alg == Algorithm::Sha256 {
            assert_eq!(
                ours, theirs,
                "{alg}: our PKCS#7 differs from fsverity sign's"
            );
        } else {
            assert_ne!(ours, theirs);
        }

        let trusted = TrustedCerts::load(&[&k.cert]).unwrap();
        trusted.verify(&theirs, &digest).unwrap();
        // Another digest, another certificate, a damaged signature: refused.
        let wrong = Digest::from_bytes(&vec![0x5a; alg.digest_len()]).unwrap();
        assert!(trusted.verify(&ours, &wrong).is_err());
        let untrusted = TrustedCerts::load(&[&other.cert]).unwrap();
        assert!(untrusted.verify(&ours, &digest).is_err());
        let mut damaged = ours.clone();
        let n = damaged.len() - 8;
        damaged[n] ^= 0xff;
        assert!(trusted.verify(&damaged, &digest).is_err());
    }
    // A key that is not the certificate's is refused when loading.
    let e = SigningKey::load(&k.key, &other.cert).unwrap_err();
    assert!(format!("{e:#}").contains("does not belong"), "{e:#}");
}

#[test]
fn signed_inline_seal_is_verified_on_pull() {
    let td = tempfile::tempdir().unwrap();
    let src = td.path().join("src");
    if image(&src, "v1").is_none() {
        return;
    }
    let Some(a) = keys(td.path(), "a") else {
        return;
    };
    let Some(b) = keys(td.path(), "b") else {
        return;
    };
    let signed = td.path().join("signed");
    let unsigned = td.path().join("unsigned");
    let src_ref = format!("oci:{}:v1", src.display());
    let signed_ref = format!("oci:{}:v1", signed.display());
    let unsigned_ref = format!("oci:{}:v1", unsigned.display());
    let seal = cfsctl_ok(&[
        "oci",
        "seal",
        "--json",
        "--sign-key",
        a.key.to_str().unwrap(),
        "--sign-cert",
        a.cert.to_str().unwrap(),
        &src_ref,
        &signed_ref,
    ]);
    let seal: serde_json::Value = serde_json::from_str(&seal).unwrap();
    assert_eq!(seal["signed"], true);
    let merged = seal["digests"][0]["merged"].as_str().unwrap().to_string();
    cfsctl_ok(&["oci", "seal", &src_ref, &unsigned_ref]);

    // Every digest key has its `.sig`, each a signature of that digest.
    let mut manifest = None;
    ociimage::edit_image(&signed, "v1", |m, _| manifest = Some(m.clone()));
    let manifest = manifest.unwrap();
    let trusted = TrustedCerts::load(&[&a.cert]).unwrap();
    let mut maps = vec![&manifest["annotations"], &manifest["config"]["annotations"]];
    maps.extend(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["annotations"]),
    );
    let mut checked = 0;
    for map in maps {
        for (k, v) in map.as_object().unwrap() {
            if k.ends_with(".sig") {
                continue;
            }
            let sig = map[format!("{k}.sig")]
                .as_str()
                .unwrap_or_else(|| panic!("{k}: no .sig"));
            let der = base64_decode(sig);
            let d = Digest::from_hex(v.as_str().unwrap()).unwrap();
            trusted.verify(&der, &d).unwrap();
            checked += 1;
        }
    }
    assert_eq!(checked, 2 + 2, "merged, config and two layers");

    let pull = |image: &str, cert: &Keys| {
        let (td, repo) = new_repo();
        let r: ImageReference = image.parse().unwrap();
        let certs = TrustedCerts::load(&[&cert.cert]).unwrap();
        let opts = PullOptions {
            verity_certs: Some(&certs),
            ..Default::default()
        };
        let result = pull::pull(&repo, &r, &opts);
        let tagged = tags(&repo);
        (result, tagged, td)
    };
    let (ok, _, _td) = pull(&signed_ref, &a);
    let ok = ok.unwrap();
    assert!(ok.record.signed);
    assert_eq!(ok.record.sealed.as_deref(), Some(merged.as_str()));

    let (err, tagged, _td) = pull(&signed_ref, &b);
    let err = err.unwrap_err();
    assert!(
        matches!(find(&err), Some(OciError::BadSignature { .. })),
        "{err:#}"
    );
    assert_eq!(tagged, 0, "nothing tagged");

    let (err, tagged, _td) = pull(&unsigned_ref, &a);
    let err = err.unwrap_err();
    assert!(
        matches!(find(&err), Some(OciError::Unsigned { .. })),
        "{err:#}"
    );
    assert_eq!(tagged, 0);

    // The CLI says the same, naming the key.
    let repo_dir = td.path().join("repo");
    Repository::init(&repo_dir, Algorithm::Sha256).unwrap();
    let e = cfsctl_err(&[
        "oci",
        "pull",
        "--repo",
        repo_dir.to_str().unwrap(),
        "--verity-cert",
        b.cert.to_str().unwrap(),
        &signed_ref,
    ]);
    assert!(
        e.contains("the signature of composefs.") && e.contains("nothing was tagged"),
        "{e}"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn skopeo_digest(reference: &str) -> String {
    let out = common::run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        reference,
    ]));
    ociimage::sha256(&out.stdout)
}

#[test]
fn artifact_mode_round_trips_through_a_registry_without_the_referrers_api() {
    let td = tempfile::tempdir().unwrap();
    let layout = td.path().join("layout");
    let Some(v1) = image(&layout, "v1") else {
        return;
    };
    let Some(reg) = Registry::start() else { return };
    let Some(a) = keys(td.path(), "a") else {
        return;
    };
    reg.push(&layout, "v1", "os");
    reg.push(&layout, "v1", "plain");
    let image_ref = format!("{}:v1", reg.url("os"));
    let before = skopeo_digest(&image_ref);
    assert_eq!(before, v1.manifest);

    let out = cfsctl_ok(&[
        "oci",
        "seal",
        "--artifact",
        "--json",
        "--tls-verify=false",
        "--algorithm",
        "sha256,sha512",
        "--sign-key",
        a.key.to_str().unwrap(),
        "--sign-cert",
        a.cert.to_str().unwrap(),
        &image_ref,
    ]);
    let seal: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The image is untouched; one artifact per algorithm, listed under the referrers tag.
    assert_eq!(skopeo_digest(&image_ref), before);
    assert_eq!(seal["manifest_digest"], before.as_str());
    let artifacts: Vec<&str> = seal["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(artifacts.len(), 2);
    let tag_ref = format!("{}:{}", reg.url("os"), before.replacen(':', "-", 1));
    let index = common::run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &tag_ref,
    ]));
    let index: serde_json::Value = serde_json::from_slice(&index.stdout).unwrap();
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{index}");
    for a in &artifacts {
        assert!(listed.contains(a), "{a} not in {index}");
    }
    let merged = seal["digests"][0]["merged"].as_str().unwrap().to_string();

    // --require-sealed finds the artifact of the repository's algorithm and checks it.
    let repo_dir = td.path().join("repo");
    Repository::init(&repo_dir, Algorithm::Sha256).unwrap();
    let repo_arg = repo_dir.to_str().unwrap();
    let digest = cfsctl_ok(&[
        "oci",
        "pull",
        "--repo",
        repo_arg,
        "--require-sealed",
        "--tls-verify=false",
        "--verity-cert",
        a.cert.to_str().unwrap(),
        "--tag",
        "os",
        &image_ref,
    ]);
    assert_eq!(digest.trim(), merged);
    let inspect: serde_json::Value = serde_json::from_str(&cfsctl_ok(&[
        "oci", "inspect", "--json", "--repo", repo_arg, "os",
    ]))
    .unwrap();
    assert_eq!(inspect["sealed"], merged.as_str());
    assert_eq!(inspect["signed"], true);
    assert_eq!(inspect["seal_artifacts"][0], artifacts[0]);
    // A sha512 repository checks the sha512 artifact.
    let repo512 = td.path().join("repo512");
    Repository::init(&repo512, Algorithm::Sha512).unwrap();
    let d512 = cfsctl_ok(&[
        "oci",
        "pull",
        "--repo",
        repo512.to_str().unwrap(),
        "--require-sealed",
        "--tls-verify=false",
        &image_ref,
    ]);
    assert_eq!(d512.trim(), seal["digests"][1]["merged"].as_str().unwrap());

    // An image without an artifact: not sealed.
    let e = cfsctl_err(&[
        "oci",
        "pull",
        "--repo",
        repo_arg,
        "--require-sealed",
        "--tls-verify=false",
        &format!("{}:v1", reg.url("plain")),
    ]);
    assert!(e.contains("is not sealed"), "{e}");

    // An artifact whose merged digest is wrong (it replaces the good one under the referrers
    // tag): refused with both digests, nothing tagged.
    let wrong = Digest::from_hex(&"ab".repeat(32)).unwrap();
    let subject = Subject {
        digest: before.clone(),
        size: ociimage::read_blob(&layout, &before).len(),
    };
    let bad = artifact::build(
        &subject,
        Algorithm::Sha256,
        &[Entry {
            role: Role::Merged,
            digest: wrong,
            signature: None,
        }],
    )
    .unwrap();
    let r: ImageReference = image_ref.parse().unwrap();
    artifact::push(&r, &bad, &before, false).unwrap();
    let (_t, repo) = new_repo();
    let opts = PullOptions {
        require_sealed: true,
        source: SourceOptions {
            tls_verify: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let err = pull::pull(&repo, &r, &opts).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        matches!(find(&err), Some(OciError::SealMismatch { .. })),
        "{msg}"
    );
    assert!(
        msg.contains(&wrong.to_hex()) && msg.contains(&merged),
        "{msg}"
    );
    assert_eq!(tags(&repo), 0);
    common::assert_fsck_clean(repo.path());
}

#[test]
fn artifact_mode_in_an_oci_layout_and_an_unsigned_artifact_with_certificates() {
    let td = tempfile::tempdir().unwrap();
    let layout = td.path().join("layout");
    if image(&layout, "v1").is_none() {
        return;
    }
    let Some(a) = keys(td.path(), "a") else {
        return;
    };
    let Some(b) = keys(td.path(), "b") else {
        return;
    };
    let image_ref = format!("oci:{}:v1", layout.display());
    // Unsigned artifact first: digests only.
    let out = cfsctl_ok(&["oci", "seal", "--artifact", &image_ref]);
    let merged = out.trim().to_string();
    let r: ImageReference = image_ref.parse().unwrap();
    let (_t, repo) = new_repo();
    let strict = PullOptions {
        require_sealed: true,
        ..Default::default()
    };
    let p = pull::pull(&repo, &r, &strict).unwrap();
    assert_eq!(p.image_digest.to_hex(), merged);
    assert_eq!(p.record.seal_artifacts.len(), 1);
    // The layout still names one image without a tag (the artifact entry is not one).
    let untagged: ImageReference = format!("oci:{}", layout.display()).parse().unwrap();
    let (_tu, repo_u) = new_repo();
    let p = pull::pull(&repo_u, &untagged, &strict).unwrap();
    assert_eq!(p.image_digest.to_hex(), merged);

    // Certificates asked for, the artifact unsigned: refused.
    let certs = TrustedCerts::load(&[&a.cert]).unwrap();
    let with_certs = PullOptions {
        verity_certs: Some(&certs),
        ..Default::default()
    };
    let (_t2, repo2) = new_repo();
    let err = pull::pull(&repo2, &r, &with_certs).unwrap_err();
    assert!(
        matches!(find(&err), Some(OciError::Unsigned { .. })),
        "{err:#}"
    );
    assert_eq!(tags(&repo2), 0);

    // Sealed again, signed by b: the new artifact replaces the unsigned one, and a's
    // certificate refuses b's signatures.
    cfsctl_ok(&[
        "oci",
        "seal",
        "--artifact",
        "--sign-key",
        b.key.to_str().unwrap(),
        "--sign-cert",
        b.cert.to_str().unwrap(),
        &image_ref,
    ]);
    let (_t3, repo3) = new_repo();
    let err = pull::pull(&repo3, &r, &with_certs).unwrap_err();
    assert!(
        matches!(find(&err), Some(OciError::BadSignature { .. })),
        "{err:#}"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");
    let b_certs = TrustedCerts::load(&[&b.cert]).unwrap();
    let (_t4, repo4) = new_repo();
    let opts = PullOptions {
        verity_certs: Some(&b_certs),
        ..Default::default()
    };
    assert!(pull::pull(&repo4, &r, &opts).unwrap().record.signed);
}
