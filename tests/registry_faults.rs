//! `oci pull` through a relay that breaks one blob: cut mid-transfer, stalled, or a 500. The
//! pull fails with an error naming the blob, tags nothing, leaves fsck clean, and the next
//! pull completes, fetching only the layers the failed one did not finish (the layer index).
//! Real docker-registry and skopeo.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cfsctl::repo::Repository;
use common::faultrelay::{Fault, FaultRelay};
use common::ociimage::{self, Compression, Layer};
use common::registry::Registry;

/// A tar of one regular file `name` with `len` bytes of incompressible content.
fn tar_of(name: &str, len: usize, seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = common::content(len, seed);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, name, &data[..]).unwrap();
    b.into_inner().unwrap()
}

fn pull(repo: &Path, url: &str, stall_secs: u64) -> std::process::Output {
    common::cfsctl()
        .env("CFSCTL_STALL_TIMEOUT", stall_secs.to_string())
        .args(["oci", "pull", "--tls-verify=false", "--tag", "t", "--repo"])
        .arg(repo)
        .arg(format!("{url}:v1"))
        .output()
        .unwrap()
}

/// Breaks layer `broken` (of three: 3, 4 and 1 MiB; fetched biggest first) with `fault`.
/// Returns the number of layers the failed pull finished (`None`: skipped, a tool missing).
fn check(fault: Fault, broken: usize) -> Option<usize> {
    common::find_tool("SKOPEO", "skopeo", &[])?;
    let reg = Registry::start()?;
    let td = tempfile::tempdir().unwrap();
    let layout = td.path().join("layout");
    let layers = [
        Layer::new(tar_of("a", 3 << 20, 1), Compression::Gzip),
        Layer::new(tar_of("b", 4 << 20, 2), Compression::Zstd),
        Layer::new(tar_of("c", 1 << 20, 3), Compression::Gzip),
    ];
    let written = ociimage::write_layout(&layout, "v1", &layers, &BTreeMap::new());
    reg.push(&layout, "v1", "img");
    let (blob, blob_size, _) = written.layers[broken].clone();
    let relay = FaultRelay::start(&reg.addr, &blob, fault);
    let repo = td.path().join("repo");
    common::run_ok(common::cfsctl().arg("init").arg("--repo").arg(&repo));

    // Long enough for skopeo to start on a loaded machine; the stall case waits it out.
    let out = pull(&repo, &relay.url("img"), 20);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        relay.fired(),
        "{fault:?}: the fault was never injected: {err}"
    );
    assert!(!out.status.success(), "{fault:?}: pull succeeded");
    assert!(
        err.contains(&blob),
        "{fault:?}: error does not name {blob}: {err}"
    );
    if fault == Fault::Stall {
        assert!(err.contains("CFSCTL_STALL_TIMEOUT"), "{err}");
    }
    let r = Repository::open(&repo).unwrap();
    assert!(
        r.list_refs().unwrap().is_empty(),
        "{fault:?}: something was tagged"
    );
    // The layers that finished are in the layer index; the broken one is not.
    let finished: Vec<bool> = written
        .layers
        .iter()
        .map(|(_, _, diff_id)| r.indexed_layer(diff_id).unwrap().is_some())
        .collect();
    assert!(!finished[broken], "{fault:?}: the broken layer was indexed");
    drop(r);
    common::assert_fsck_clean(&repo);

    // The retry completes (the fault fires once) and tags the image.
    relay.reset();
    let out = pull(&repo, &relay.url("img"), 60);
    assert!(
        out.status.success(),
        "{fault:?}: retry failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The retry fetched the unfinished layers whole and none of the finished ones: what the
    // relay served beyond their blobs is the manifest, the config and HTTP heads.
    let total: u64 = written.layers.iter().map(|l| l.1).sum();
    let missing: u64 = written
        .layers
        .iter()
        .zip(&finished)
        .filter(|(_, f)| !**f)
        .map(|(l, _)| l.1)
        .sum();
    let served = relay.served();
    eprintln!(
        "{fault:?}: retry fetched {served} bytes; unfinished layers {missing} bytes, all layers \
         {total} bytes, broken blob {blob_size}"
    );
    assert!(
        served >= missing && served < missing + (256 << 10),
        "{fault:?}: the retry fetched {served} bytes, the unfinished layers are {missing} bytes \
         (finished: {finished:?})"
    );
    let r = Repository::open(&repo).unwrap();
    assert_eq!(r.list_refs().unwrap().len(), 2, "tag and record refs");
    drop(r);
    common::assert_fsck_clean(&repo);
    Some(finished.iter().filter(|f| **f).count())
}

#[test]
fn a_blob_cut_mid_transfer_fails_the_pull_and_the_retry_completes() {
    check(Fault::Cut, 1);
}

#[test]
fn a_stalled_blob_ends_in_the_stall_timeout() {
    check(Fault::Stall, 1);
}

#[test]
fn a_server_error_on_a_blob_fails_the_pull_and_the_retry_completes() {
    check(Fault::ServerError, 1);
}

/// The smallest layer is fetched last, so both others finish whatever the number of threads
/// (no fetch is cancelled when another fails): the retry fetches only the broken one.
#[test]
fn a_retry_fetches_only_the_layers_the_failed_pull_did_not_finish() {
    if let Some(finished) = check(Fault::Cut, 2) {
        assert_eq!(
            finished, 2,
            "both other layers finish before the broken one is fetched"
        );
    }
}
