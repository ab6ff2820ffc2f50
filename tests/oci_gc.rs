//! Garbage collection of pulled OCI images: a tag keeps exactly what its image needs,
//! `oci rm` + `gc` frees what no other tag needs. Real registry, skopeo, Debian packages.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cfsctl::fsverity::Algorithm;
use cfsctl::repo::Repository;
use common::ociimage::{self, Compression, Layer};
use common::registry::Registry;

/// Two versions sharing their first three layers (v2 changes the whiteout layer).
fn layout(dir: &Path) -> Option<()> {
    let debs = ociimage::deb_tars(&["bash", "tzdata", "hello"])?;
    let layers = |version| {
        vec![
            Layer::new(debs[0].clone(), Compression::Gzip),
            Layer::new(debs[1].clone(), Compression::Zstd),
            Layer::new(debs[2].clone(), Compression::Gzip),
            Layer::new(ociimage::whiteout_tar(version), Compression::Gzip),
        ]
    };
    ociimage::write_layout(dir, "v1", &layers(1), &BTreeMap::new());
    ociimage::write_layout(dir, "v2", &layers(2), &BTreeMap::new());
    Some(())
}

fn cfsctl(repo: &Path, args: &[&str]) -> String {
    let out = common::run_ok(common::cfsctl().args(args).arg("--repo").arg(repo));
    String::from_utf8(out.stdout).unwrap()
}

fn gc(repo: &Path) -> serde_json::Value {
    serde_json::from_str(&cfsctl(repo, &["gc", "--json"])).unwrap()
}

/// Every stored object (`XX/rest`), temporary files excluded.
fn objects(repo: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in std::fs::read_dir(repo.join("objects")).unwrap() {
        let sub = sub.unwrap();
        if !sub.file_type().unwrap().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(sub.path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            if !name.starts_with('.') {
                out.insert(format!("{}/{name}", sub.file_name().to_string_lossy()));
            }
        }
    }
    out
}

fn new_repo(td: &tempfile::TempDir, name: &str) -> PathBuf {
    let path = td.path().join(name);
    Repository::init(&path, Algorithm::Sha256).unwrap();
    path
}

#[test]
fn untag_and_gc_free_exactly_what_only_that_tag_needed() {
    if common::find_tool("SKOPEO", "skopeo", &[]).is_none() {
        common::skip_or_fail::<()>("skopeo not found");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("layout");
    if layout(&dir).is_none() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push(&dir, "v1", "deb");
    reg.push(&dir, "v2", "deb");
    let (r1, r2) = (
        format!("{}:v1", reg.url("deb")),
        format!("{}:v2", reg.url("deb")),
    );
    let pull = |repo: &Path, tag: &str, r: &str| {
        cfsctl(
            repo,
            &["oci", "pull", "--tls-verify=false", "--tag", tag, r],
        )
        .trim()
        .to_string()
    };

    let repo = new_repo(&td, "repo");
    let d1 = pull(&repo, "v1", &r1);
    let d2 = pull(&repo, "v2", &r2);
    assert_ne!(d1, d2);
    let refs: Vec<String> = Repository::open(&repo)
        .unwrap()
        .list_refs()
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(
        refs,
        [
            "oci/records/v1",
            "oci/records/v2",
            "oci/tags/v1",
            "oci/tags/v2"
        ],
        "one tag ref and one record ref per tag, nothing per layer"
    );

    // Everything is reachable from the two tags.
    let all = objects(&repo);
    let report = gc(&repo);
    assert_eq!(report["objects_removed"], 0, "{report}");
    assert_eq!(objects(&repo), all);

    // What v2 alone needs: a repository that only ever pulled v2.
    let only_v2 = new_repo(&td, "only-v2");
    assert_eq!(pull(&only_v2, "v2", &r2), d2);
    let v2_objects = objects(&only_v2);

    cfsctl(&repo, &["oci", "rm", "v1"]);
    let images = cfsctl(&repo, &["oci", "images"]);
    assert!(
        images.starts_with("v2\t") && images.lines().count() == 1,
        "{images}"
    );
    let report = gc(&repo);
    let removed = report["objects_removed"].as_u64().unwrap();
    eprintln!("gc after `oci rm v1`: {report}");
    assert!(removed > 0);
    assert_eq!(
        objects(&repo),
        v2_objects,
        "exactly v1's own objects removed"
    );
    assert_eq!(removed as usize, all.len() - v2_objects.len());
    assert_eq!(report["images_pruned"], 1, "{report}");
    common::assert_fsck_clean(&repo);
    // v2 is intact: rebuilt offline from its layer images, and mountable.
    {
        let r = Repository::open(&repo).unwrap();
        assert_eq!(cfsctl::oci::pull::rebuild(&r, "v2").unwrap().1.to_hex(), d2);
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&cfsctl(&repo, &["oci", "inspect", "--json", "v2"])).unwrap();
    assert_eq!(inspect["image"], d2.as_str());
    if common::can_mount() {
        let mnt = td.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        cfsctl(&repo, &["oci", "mount", "v2", mnt.to_str().unwrap()]);
        let hello = std::fs::read_to_string(mnt.join("usr/bin/hello"));
        cfsctl::mount::unmount(&mnt).unwrap();
        assert_eq!(hello.unwrap(), "#!/bin/sh\necho replaced hello v2\n");
    }

    // v1 again: its shared layers are known from v2's record, only the last is fetched.
    let again: serde_json::Value = serde_json::from_str(&cfsctl(
        &repo,
        &[
            "oci",
            "pull",
            "--json",
            "--tls-verify=false",
            "--tag",
            "v1",
            &r1,
        ],
    ))
    .unwrap();
    assert_eq!(again["layers_fetched"], 1, "{again}");
    assert_eq!(again["image_digest"], d1.as_str());
    assert_eq!(gc(&repo)["objects_removed"], 0);

    // Untag both: gc leaves an empty store.
    cfsctl(&repo, &["oci", "rm", "v1", "v2"]);
    let report = gc(&repo);
    eprintln!("gc after `oci rm v1 v2`: {report}");
    assert!(objects(&repo).is_empty(), "{:?}", objects(&repo));
    let r = Repository::open(&repo).unwrap();
    assert!(r.list_refs().unwrap().is_empty());
    assert!(r.list_images().unwrap().is_empty());
    drop(r);
    common::assert_fsck_clean(&repo);
    // Untagging an unknown name is an error.
    let out = common::cfsctl()
        .args(["oci", "rm", "v1", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// A pull refused after some layers were imported leaves only garbage: gc removes it and
/// fsck is clean.
#[test]
fn refused_pull_leaves_only_garbage() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("layout");
    if layout(&dir).is_none() {
        return;
    }
    // Damage the last (smallest) layer: the others are imported first or alongside.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&ociimage::read_blob(&dir, &manifest_digest)).unwrap();
    let last = manifest["layers"][3]["digest"].as_str().unwrap();
    let blob = dir.join("blobs/sha256").join(&last["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();

    let repo = new_repo(&td, "repo");
    let out = common::cfsctl()
        .args(["oci", "pull", "--tag", "v1", "--repo"])
        .arg(&repo)
        .arg(format!("oci:{}:v1", dir.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    common::assert_fsck_clean(&repo);
    assert!(
        Repository::open(&repo)
            .unwrap()
            .list_refs()
            .unwrap()
            .is_empty(),
        "nothing tagged"
    );
    let report = gc(&repo);
    eprintln!("gc after a refused pull: {report}");
    assert!(objects(&repo).is_empty(), "{report}");
    common::assert_fsck_clean(&repo);
}
