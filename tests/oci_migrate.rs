//! A repository from before OCI images were recorded as EROFS v1 (`meta.json` without
//! `oci_erofs_version`, records without `erofs_version`, v0 layer and merged images) is
//! migrated by the next pull: the tag gets the v1 image (the digest a fresh repository gives),
//! re-encoded from the kept layer images without fetching a layer; the old image stays.

mod common;

use std::collections::BTreeMap;

use cfsctl::erofs::writer::{WriteOptions, write_image};
use cfsctl::fsverity::Algorithm;
use cfsctl::oci::layer;
use cfsctl::oci::pull::{self, PullOptions};
use cfsctl::oci::record;
use cfsctl::repo::Repository;
use common::ociimage::{self, Compression, Layer};

#[test]
fn old_repository_is_migrated_by_the_next_pull() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("layout");
    let mut base = tar::Builder::new(Vec::new());
    for (path, data) in [
        (
            "usr/share/doc/hello/copyright",
            &common::content(3000, 1)[..],
        ),
        ("usr/bin/hello", b"#!/bin/sh\necho hi\n"),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        base.append_data(&mut h, path, data).unwrap();
    }
    let layers = [
        Layer::new(base.into_inner().unwrap(), Compression::Gzip),
        Layer::new(ociimage::whiteout_tar(1), Compression::None),
    ];
    ociimage::write_layout(&dir, "v1", &layers, &BTreeMap::new());
    let reference = format!("oci:{}:v1", dir.display()).parse().unwrap();

    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = Repository::init(fresh_dir.path(), Algorithm::Sha256).unwrap();
    let want = pull::pull(&fresh, &reference, &PullOptions::default()).unwrap();

    // Make the repository what an older cfsctl left: v0 layer and merged images.
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(repo_dir.path(), Algorithm::Sha256).unwrap();
    let tag = reference.to_string();
    let mut rec = pull::pull(&repo, &reference, &PullOptions::default())
        .unwrap()
        .record;
    let mut changed = 0;
    for l in &mut rec.layers {
        let tree = layer::load_layer(&repo, &l.layer_image.parse().unwrap()).unwrap();
        let v0 = repo
            .write_object_with(|mut w| {
                Ok(write_image(&tree.tree, &WriteOptions::default(), &mut w)?)
            })
            .unwrap();
        // The default writer picks v1 for a layer with whiteouts: only the others change.
        changed += usize::from(v0.to_hex() != l.layer_image);
        l.layer_image = v0.to_hex();
    }
    assert_eq!(changed, 1);
    rec.erofs_version = 0;
    record::publish(&repo, &tag, &rec).unwrap();
    let (bytes, old_image) = pull::rebuild(&repo, &tag).unwrap();
    assert_eq!(bytes[12], 0, "composefs_version of a v0 image");
    assert_ne!(old_image, want.image_digest);
    repo.write_object(&bytes).unwrap();
    repo.link_image(&old_image).unwrap();
    rec.image = old_image.to_hex();
    let mut json = serde_json::to_value(&rec).unwrap();
    json.as_object_mut().unwrap().remove("erofs_version");
    let rec: record::ImageRecord = serde_json::from_value(json).unwrap();
    record::publish(&repo, &tag, &rec).unwrap();
    drop(repo);
    let meta_path = repo_dir.path().join("meta.json");
    std::fs::write(
        &meta_path,
        br#"{"version": 1, "algorithm": "fsverity-sha256-12"}"#,
    )
    .unwrap();

    let repo = Repository::open(repo_dir.path()).unwrap();
    assert_eq!(repo.oci_erofs_version(), None);
    let again = pull::pull(&repo, &reference, &PullOptions::default()).unwrap();
    assert!(!again.up_to_date);
    assert_eq!(again.layers_fetched, 0);
    assert_eq!(again.image_digest, want.image_digest);
    assert_eq!(again.record.erofs_version, 1);
    assert_eq!(
        again
            .record
            .layers
            .iter()
            .map(|l| &l.layer_image)
            .collect::<Vec<_>>(),
        want.record
            .layers
            .iter()
            .map(|l| &l.layer_image)
            .collect::<Vec<_>>()
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["oci_erofs_version"], 1);
    // The old image is still mountable by its digest (a deployment may boot it).
    assert!(repo.has_image(&old_image));
    // Now up to date, and the rebuilt image checks.
    assert!(
        pull::pull(&repo, &reference, &PullOptions::default())
            .unwrap()
            .up_to_date
    );
    assert_eq!(pull::rebuild(&repo, &tag).unwrap().1, want.image_digest);
    common::assert_fsck_clean(repo_dir.path());
}
