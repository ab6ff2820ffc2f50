//! `oci pull` / `oci seal` against real components: docker-registry, skopeo, Debian packages.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cfsctl::fsverity::Algorithm;
use cfsctl::oci::error::{OciError, find};
use cfsctl::oci::pull::{self, PullOptions, PullResult, Tagging};
use cfsctl::oci::reference::ImageReference;
use cfsctl::oci::source::SourceOptions;
use cfsctl::repo::Repository;
use common::ociimage::{self, Compression, Layer, Written};
use common::registry::Registry;

/// Two versions of a multi-layer image from Debian packages; v2 differs from v1 in its last
/// layer only (the one with whiteouts and an opaque directory).
struct Images {
    _td: tempfile::TempDir,
    dir: PathBuf,
    tars_v1: Vec<Vec<u8>>,
    v1: Written,
    v2: Written,
}

fn layers(debs: &[Vec<u8>], version: u32) -> Vec<Layer> {
    vec![
        Layer::new(debs[0].clone(), Compression::Gzip),
        Layer::new(debs[1].clone(), Compression::Zstd),
        Layer::new(debs[2].clone(), Compression::Gzip),
        Layer::new(ociimage::whiteout_tar(version), Compression::Gzip),
    ]
}

fn images() -> Option<Images> {
    let debs = ociimage::deb_tars(&["bash", "tzdata", "hello"])?;
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("layout");
    let none = BTreeMap::new();
    let v1 = ociimage::write_layout(&dir, "v1", &layers(&debs, 1), &none);
    let v2 = ociimage::write_layout(&dir, "v2", &layers(&debs, 2), &none);
    let tars_v1 = layers(&debs, 1).into_iter().map(|l| l.tar).collect();
    Some(Images {
        _td: td,
        dir,
        tars_v1,
        v1,
        v2,
    })
}

fn new_repo() -> (tempfile::TempDir, Repository) {
    let td = tempfile::tempdir().unwrap();
    let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
    (td, repo)
}

fn oci_ref(dir: &Path, tag: &str) -> ImageReference {
    format!("oci:{}:{tag}", dir.display()).parse().unwrap()
}

fn insecure() -> PullOptions<'static> {
    PullOptions {
        source: SourceOptions {
            tls_verify: false,
            ..Default::default()
        },
        ..PullOptions::default()
    }
}

fn pull(
    repo: &Repository,
    r: &ImageReference,
    opts: &PullOptions<'_>,
) -> anyhow::Result<PullResult> {
    pull::pull(repo, r, opts)
}

fn tags(repo: &Repository) -> Vec<String> {
    repo.list_refs()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("oci/tags/") || n.starts_with("oci/records/"))
        .collect()
}

fn skopeo_present() -> bool {
    common::find_tool("SKOPEO", "skopeo", &[]).is_some()
}

#[test]
fn registry_and_oci_dir_agree_incremental_and_noop() {
    let Some(img) = images() else { return };
    if !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push(&img.dir, "v1", "deb");
    reg.push(&img.dir, "v2", "deb");

    let (_a, repo_a) = new_repo();
    let from_dir = pull(&repo_a, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap();
    assert_eq!(from_dir.layers_fetched, 4);
    assert_eq!(from_dir.record.manifest_digest, img.v1.manifest);

    let (_b, repo_b) = new_repo();
    let v1: ImageReference = format!("{}:v1", reg.url("deb")).parse().unwrap();
    reg.reset();
    let from_reg = pull(&repo_b, &v1, &insecure()).unwrap();
    let full_bytes: u64 = img.v1.layers.iter().map(|l| l.1).sum();
    eprintln!(
        "v1 from registry: {} blob bytes, registry served {}, {} objects",
        from_reg.bytes_fetched,
        reg.served(),
        from_reg.objects_written
    );
    assert_eq!(from_reg.image_digest, from_dir.image_digest);
    assert_eq!(from_reg.record.manifest_digest, img.v1.manifest);
    assert_eq!(from_reg.bytes_fetched, full_bytes);
    assert!(reg.served() >= full_bytes);

    // Repeat: a no-op that fetches no layer.
    reg.reset();
    let again = pull(&repo_b, &v1, &insecure()).unwrap();
    assert!(again.up_to_date);
    assert_eq!((again.layers_fetched, again.bytes_fetched), (0, 0));
    assert_eq!(again.image_digest, from_reg.image_digest);
    eprintln!("repeat pull: registry served {} bytes", reg.served());
    assert!(reg.served() < 64 << 10, "{}", reg.served());

    // v2: only the changed (last) layer is fetched, only new objects stored.
    let v2: ImageReference = format!("{}:v2", reg.url("deb")).parse().unwrap();
    reg.reset();
    let upd = pull(&repo_b, &v2, &insecure()).unwrap();
    let changed = img.v2.layers[3].1;
    eprintln!(
        "v2 after v1: {} layer(s) fetched, {} blob bytes (changed layer {changed}), registry \
         served {}, {} objects written",
        upd.layers_fetched,
        upd.bytes_fetched,
        reg.served(),
        upd.objects_written
    );
    assert_eq!(upd.layers_fetched, 1);
    assert_eq!(upd.layers_skipped, 3);
    assert_eq!(upd.bytes_fetched, changed);
    assert!(reg.served() >= changed && reg.served() < changed + (64 << 10));
    // New: one content object (README.replaced; the hello script is inline), the layer
    // image, the merged image, manifest, config, record, the tag's object list.
    assert!(upd.objects_written <= 7, "{}", upd.objects_written);
    assert_ne!(upd.image_digest, from_reg.image_digest);
    // Offline: the tags' images rebuild from the kept layer images alone.
    let tag = format!("{}:v2", reg.url("deb"));
    assert_eq!(pull::rebuild(&repo_b, &tag).unwrap().1, upd.image_digest);
    let tag = format!("{}:v1", reg.url("deb"));
    assert_eq!(
        pull::rebuild(&repo_b, &tag).unwrap().1,
        from_reg.image_digest
    );
    // The same v2 pulled from scratch from the oci: dir gives the same digest.
    let (_c, repo_c) = new_repo();
    let v2_dir = pull(&repo_c, &oci_ref(&img.dir, "v2"), &PullOptions::default()).unwrap();
    assert_eq!(v2_dir.image_digest, upd.image_digest);
}

#[test]
fn pull_equals_create_image_over_unpacked_directory() {
    if !common::is_root() {
        common::skip_or_fail::<()>("unpacking with owners needs root");
        return;
    }
    let Some(img) = images() else { return };
    let (_a, repo) = new_repo();
    let pulled = pull(&repo, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap();

    let td = tempfile::tempdir().unwrap();
    let root = td.path().join("rootfs");
    std::fs::create_dir(&root).unwrap();
    // Unpacked as a runtime would, nothing adjusted: `--oci` applies the canonicalization.
    ociimage::unpack(&img.tars_v1, &root);
    let run = |args: &[&str]| {
        let out = common::run_ok(common::cfsctl().args(args).arg(&root));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let want = pulled.image_digest.to_hex();
    assert_eq!(run(&["compute-id", "--oci"]), want);
    assert_eq!(run(&["create-image", "--oci", "--print-digest-only"]), want);
    // Without it the root directory's metadata differs (unpacking does not copy /usr's).
    assert_ne!(run(&["compute-id"]), want);
}

#[test]
fn seal_then_require_sealed_and_tampering() {
    let Some(img) = images() else { return };
    let (_a, repo) = new_repo();
    let plain = pull(&repo, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap();
    assert!(plain.record.sealed.is_none());

    // Unsealed + --require-sealed: refused, nothing tagged.
    let (_b, repo_b) = new_repo();
    let strict = PullOptions {
        require_sealed: true,
        ..PullOptions::default()
    };
    let err = pull(&repo_b, &oci_ref(&img.dir, "v1"), &strict).unwrap_err();
    assert!(
        matches!(find(&err), Some(OciError::Unsealed { .. })),
        "{err:#}"
    );
    assert!(tags(&repo_b).is_empty());
    common::assert_fsck_clean(repo_b.path());

    // Seal with the CLI into another layout.
    let td = tempfile::tempdir().unwrap();
    let sealed_dir = td.path().join("sealed");
    let out = common::run_ok(
        common::cfsctl()
            .args(["oci", "seal", "--json"])
            .arg(format!("oci:{}:v1", img.dir.display()))
            .arg(format!("oci:{}:v1", sealed_dir.display())),
    );
    let sealed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let label = plain.image_digest.to_hex();
    let merged_key = "composefs.merged.erofs.v1.fsverity-sha256-12";
    let layer_key = "composefs.layer.erofs.v1.fsverity-sha256-12";
    let config_key = "composefs.config.fsverity-sha256-12";
    assert_eq!(sealed["digests"][0]["merged"], label.as_str());
    assert_eq!(sealed["annotations"][merged_key], label.as_str());
    // Layer blobs and the config unchanged; the annotations are the computed digests.
    for (digest, _, _) in &img.v1.layers {
        assert_eq!(
            ociimage::read_blob(&sealed_dir, digest),
            ociimage::read_blob(&img.dir, digest)
        );
    }
    let mut manifest = None;
    ociimage::edit_image(&sealed_dir, "v1", |m, _| manifest = Some(m.clone()));
    let manifest = manifest.unwrap();
    assert_eq!(
        manifest["config"]["digest"],
        plain.record.config_digest.as_str()
    );
    let config_bytes =
        ociimage::read_blob(&sealed_dir, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["config"]["annotations"][config_key],
        cfsctl::fsverity::digest_bytes(Algorithm::Sha256, &config_bytes)
            .to_hex()
            .as_str()
    );
    for (desc, layer) in manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&plain.record.layers)
    {
        assert_eq!(desc["annotations"][layer_key], layer.layer_image.as_str());
    }
    assert_eq!(manifest["annotations"][merged_key], label.as_str());
    // Not a bootc image (no containers.bootc label): no boot variant.
    assert!(
        manifest["annotations"]
            .get("composefs.merged.bootable.erofs.v1.fsverity-sha256-12")
            .is_none()
    );
    let ok = pull(&repo_b, &oci_ref(&sealed_dir, "v1"), &strict).unwrap();
    assert_eq!(ok.image_digest, plain.image_digest);
    assert_eq!(ok.record.sealed.as_deref(), Some(label.as_str()));
    assert_ne!(ok.record.manifest_digest, plain.record.manifest_digest);

    // Images name their file objects by digests of the repository's algorithm, so a sha256
    // seal cannot be checked in a sha512 repository: refused, not ignored.
    let td512 = tempfile::tempdir().unwrap();
    let repo512 = Repository::init(td512.path(), Algorithm::Sha512).unwrap();
    let err = pull(&repo512, &oci_ref(&sealed_dir, "v1"), &strict).unwrap_err();
    assert!(
        matches!(find(&err), Some(OciError::SealAlgorithm { .. })),
        "{err:#}"
    );
    assert!(tags(&repo512).is_empty());
    common::assert_fsck_clean(repo512.path());

    // Each tampered annotation is refused with both digests, nothing tagged.
    let wrong = "ab".repeat(32);
    let (_c, repo_c) = new_repo();
    let tamper = |edit: &dyn Fn(&mut serde_json::Value)| {
        ociimage::edit_image(&sealed_dir, "v1", |m, _| {
            *m = manifest.clone();
            edit(m);
        });
        let err = pull(
            &repo_c,
            &oci_ref(&sealed_dir, "v1"),
            &PullOptions::default(),
        )
        .unwrap_err();
        assert!(tags(&repo_c).is_empty());
        common::assert_fsck_clean(repo_c.path());
        err
    };
    let err = tamper(&|m| m["annotations"][merged_key] = wrong.clone().into());
    let msg = format!("{err:#}");
    assert!(
        matches!(find(&err), Some(OciError::SealMismatch { key, .. }) if key == merged_key),
        "{msg}"
    );
    assert!(msg.contains(&wrong) && msg.contains(&label), "{msg}");
    let err = tamper(&|m| m["config"]["annotations"][config_key] = wrong.clone().into());
    assert!(
        matches!(find(&err), Some(OciError::SealMismatch { key, .. }) if key == config_key),
        "{err:#}"
    );
    let err = tamper(&|m| m["layers"][1]["annotations"][layer_key] = wrong.clone().into());
    assert!(
        matches!(find(&err), Some(OciError::LayerSealMismatch { .. })),
        "{err:#}"
    );
    // Without the config annotation the image is not sealed for --require-sealed.
    ociimage::edit_image(&sealed_dir, "v1", |m, _| {
        *m = manifest.clone();
        m["config"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(config_key);
    });
    let err = pull(&repo_c, &oci_ref(&sealed_dir, "v1"), &strict).unwrap_err();
    assert!(
        matches!(find(&err), Some(OciError::Unsealed { missing, .. }) if missing == config_key),
        "{err:#}"
    );
    assert!(tags(&repo_c).is_empty());
}

#[test]
fn seal_to_registry_and_pull_sealed_via_cli() {
    let Some(img) = images() else { return };
    if !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push(&img.dir, "v1", "deb");
    let src = format!("{}:v1", reg.url("deb"));
    let dst = format!("{}:sealed", reg.url("deb"));
    let out = common::run_ok(
        common::cfsctl()
            .args(["oci", "seal", "--tls-verify=false"])
            .args([&src, &dst]),
    );
    let label = String::from_utf8(out.stdout).unwrap();

    let td = tempfile::tempdir().unwrap();
    let repo_dir = td.path().join("repo");
    let run = |args: &[&str]| {
        let out = common::run_ok(
            common::cfsctl()
                .arg("oci")
                .args(args)
                .arg("--repo")
                .arg(&repo_dir),
        );
        String::from_utf8(out.stdout).unwrap()
    };
    Repository::init(&repo_dir, Algorithm::Sha256).unwrap();
    let digest = run(&[
        "pull",
        "--require-sealed",
        "--tls-verify=false",
        "--tag",
        "os/sealed:1",
        &dst,
    ]);
    assert_eq!(digest.trim(), label.trim());
    let images = run(&["images", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&images).unwrap();
    assert_eq!(v[0]["name"], "os/sealed:1");
    let inspect: serde_json::Value =
        serde_json::from_str(&run(&["inspect", "--json", "os/sealed:1"])).unwrap();
    assert_eq!(inspect["image"], digest.trim());
    assert_eq!(inspect["sealed"], label.trim());
    assert_eq!(inspect["layers"].as_array().unwrap().len(), 4);
    let id = common::cfsctl()
        .args(["oci", "compute-id", "--tls-verify=false", &src])
        .output()
        .unwrap();
    assert!(
        id.status.success(),
        "{}",
        String::from_utf8_lossy(&id.stderr)
    );
    assert_eq!(String::from_utf8(id.stdout).unwrap(), digest);
}

#[test]
fn damaged_blobs_are_refused_and_nothing_is_tagged() {
    let Some(img) = images() else { return };
    let blob = |d: &str| img.dir.join("blobs/sha256").join(&d["sha256:".len()..]);
    let (digest, _, _) = &img.v1.layers[2];
    let original = std::fs::read(blob(digest)).unwrap();

    // Same size, one byte flipped: the blob digest check refuses it.
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    std::fs::write(blob(digest), &flipped).unwrap();
    let (_a, repo) = new_repo();
    let err = pull(&repo, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(digest.as_str()), "{msg}");
    assert!(tags(&repo).is_empty(), "{msg}");
    common::assert_fsck_clean(repo.path());

    // Truncated.
    std::fs::write(blob(digest), &original[..original.len() / 3]).unwrap();
    let err = pull(&repo, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains(digest.as_str()), "{err:#}");
    assert!(tags(&repo).is_empty());
    common::assert_fsck_clean(repo.path());

    // Restored: the pull works, on the same repository.
    std::fs::write(blob(digest), &original).unwrap();
    pull(&repo, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap();
    assert_eq!(tags(&repo).len(), 2);
}

#[test]
fn damaged_blob_in_the_registry_is_refused() {
    let Some(img) = images() else { return };
    if !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push(&img.dir, "v1", "deb");
    let (digest, _, _) = &img.v1.layers[2];
    let hex = &digest["sha256:".len()..];
    let data = reg
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    let (_a, repo) = new_repo();
    let r: ImageReference = format!("{}:v1", reg.url("deb")).parse().unwrap();
    let opts = PullOptions {
        tagging: Tagging::Name("x".into()),
        ..insecure()
    };
    let err = pull(&repo, &r, &opts).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(digest.as_str()), "{msg}");
    assert!(tags(&repo).is_empty());
    common::assert_fsck_clean(repo.path());
}

#[test]
fn docker_schema2_manifest_and_multi_platform_index() {
    let Some(debs) = ociimage::deb_tars(&["hello"]) else {
        return;
    };
    if !skopeo_present() {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("layout");
    let layers = [
        Layer::new(debs[0].clone(), Compression::Gzip),
        Layer::new(ociimage::whiteout_tar(1), Compression::Gzip),
    ];
    let w = ociimage::write_layout(&dir, "v1", &layers, &BTreeMap::new());
    let (_a, repo) = new_repo();
    let oci = pull(&repo, &oci_ref(&dir, "v1"), &PullOptions::default()).unwrap();

    // An index naming an arm64 image first and ours as linux/amd64, tagged "multi".
    let manifest = ociimage::read_blob(&dir, &w.manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": format!("sha256:{}", "0".repeat(64)), "size": 1,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": w.manifest, "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let index_digest = ociimage::sha256(&index);
    std::fs::write(
        dir.join("blobs/sha256")
            .join(&index_digest["sha256:".len()..]),
        &index,
    )
    .unwrap();
    let mut top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let (_b, repo_b) = new_repo();
    let multi = pull(&repo_b, &oci_ref(&dir, "multi"), &PullOptions::default()).unwrap();
    assert_eq!(multi.image_digest, oci.image_digest);
    assert_eq!(multi.record.manifest_digest, w.manifest);

    // Docker schema 2 in the registry (skopeo converts the manifest for us): same image.
    let Some(reg) = Registry::start() else { return };
    reg.push_with(&dir, "v1", "docker", &["--format", "v2s2"]);
    let (_c, repo_c) = new_repo();
    let r: ImageReference = format!("{}:v1", reg.url("docker")).parse().unwrap();
    let docker = pull(&repo_c, &r, &insecure()).unwrap();
    assert_eq!(docker.image_digest, oci.image_digest);
    assert_ne!(docker.record.manifest_digest, w.manifest);
}

#[test]
fn oci_mount_shows_the_merged_tree() {
    if !common::can_mount() {
        return;
    }
    let Some(img) = images() else { return };
    let td = tempfile::tempdir().unwrap();
    let repo_dir = td.path().join("repo");
    Repository::init(&repo_dir, Algorithm::Sha256).unwrap();
    common::run_ok(
        common::cfsctl()
            .args(["oci", "pull", "--tag", "deb", "--repo"])
            .arg(&repo_dir)
            .arg(format!("oci:{}:v1", img.dir.display())),
    );
    let mnt = td.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    common::run_ok(
        common::cfsctl()
            .args(["oci", "mount", "--repo"])
            .arg(&repo_dir)
            .arg("deb")
            .arg(&mnt),
    );
    let hello = std::fs::read_to_string(mnt.join("usr/bin/hello"));
    let again = std::fs::read_to_string(mnt.join("usr/bin/hello-again"));
    let copyright = mnt.join("usr/share/doc/hello/copyright").exists();
    let bash_docs: Vec<_> = std::fs::read_dir(mnt.join("usr/share/doc/bash"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    let bash = mnt.join("bin/bash").exists();
    cfsctl::mount::unmount(&mnt).unwrap();
    assert_eq!(hello.unwrap(), "#!/bin/sh\necho replaced hello v1\n");
    assert_eq!(again.unwrap(), "#!/bin/sh\necho replaced hello v1\n");
    assert!(!copyright, "whiteout");
    assert_eq!(bash_docs, vec![std::ffi::OsString::from("README.replaced")]);
    assert!(bash);
}

/// A layer the importer refuses at its first entry while megabytes are still in flight from
/// skopeo: the pull must fail promptly (the blob pipe is abandoned, FinishPipe still returns)
/// and tag nothing.
#[test]
fn refused_layer_mid_stream_from_the_registry_does_not_hang() {
    if !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(4);
    // `..` cannot be written through set_path; write the raw name.
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let big = common::content(8 << 20, 7);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(big.len() as u64);
    b.append_data(&mut h, "big", &big[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("layout");
    ociimage::write_layout(
        &dir,
        "bad",
        &[Layer::new(tar, Compression::Gzip)],
        &BTreeMap::new(),
    );
    reg.push(&dir, "bad", "bad");
    let (_a, repo) = new_repo();
    let r: ImageReference = format!("{}:bad", reg.url("bad")).parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let repo_path = repo.path().to_owned();
    std::thread::spawn(move || {
        let repo = Repository::open(&repo_path).unwrap();
        let _ = tx.send(pull(&repo, &r, &insecure()).map(|_| ()));
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("pull hung after refusing a layer");
    let err = result.unwrap_err();
    assert!(format!("{err:#}").contains("escape"), "{err:#}");
    assert!(tags(&repo).is_empty());
    common::assert_fsck_clean(repo.path());
}

/// Two pulls sharing layers, at the same time, into one repository.
#[test]
fn concurrent_pulls_into_one_repository() {
    let Some(img) = images() else { return };
    let (_a, repo) = new_repo();
    let (r1, r2) = std::thread::scope(|s| {
        let a = s.spawn(|| pull(&repo, &oci_ref(&img.dir, "v1"), &PullOptions::default()));
        let b = s.spawn(|| pull(&repo, &oci_ref(&img.dir, "v2"), &PullOptions::default()));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    let (_b, fresh) = new_repo();
    let v1 = pull(&fresh, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap();
    let v2 = pull(&fresh, &oci_ref(&img.dir, "v2"), &PullOptions::default()).unwrap();
    assert_eq!(r1.image_digest, v1.image_digest);
    assert_eq!(r2.image_digest, v2.image_digest);
    assert_eq!(tags(&repo).len(), 4);
}

#[test]
fn full_disk_during_pull_loses_nothing() {
    let Some(img) = images() else { return };
    if !common::is_root() {
        return common::skip_or_fail("the full-disk pull needs root (a small tmpfs)").unwrap_or(());
    }
    // A filesystem with room for about half of the image's files.
    let tar_bytes: usize = img.tars_v1.iter().map(Vec::len).sum();
    let td = tempfile::tempdir().unwrap();
    let mnt = td.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let size = format!("size={}k", tar_bytes / 2 / 1024);
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &size, "cfsctl-full"])
        .arg(&mnt)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        return common::skip_or_fail("cannot mount a tmpfs here").unwrap_or(());
    }
    let result = std::panic::catch_unwind(|| {
        let repo = Repository::init(mnt.join("repo"), Algorithm::Sha256).unwrap();
        let err = pull(&repo, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap_err();
        let msg = format!("{err:#}");
        let enospc = err.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.raw_os_error() == Some(28))
        });
        assert!(enospc, "ENOSPC expected: {msg}");
        // The error names the layer being imported.
        assert!(msg.contains("layer sha256:"), "{msg}");
        assert!(tags(&repo).is_empty(), "{msg}");
        common::assert_fsck_clean(repo.path());

        // With room again, the same repository takes the same pull.
        let grown = std::process::Command::new("mount")
            .args(["-o", "remount,size=256m"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(grown.success());
        let done = pull(&repo, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap();
        assert_eq!(tags(&repo).len(), 2);
        let (_a, fresh) = new_repo();
        let reference = pull(&fresh, &oci_ref(&img.dir, "v1"), &PullOptions::default()).unwrap();
        assert_eq!(done.image_digest, reference.image_digest);
        common::assert_fsck_clean(repo.path());
    });
    let _ = cfsctl::mount::unmount(&mnt);
    result.unwrap();
}
