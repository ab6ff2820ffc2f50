//! `oci pull` through a relay that breaks one blob: cut mid-transfer, stalled, or a 500. The
//! pull fails with an error naming the blob, tags nothing, leaves fsck clean, and the next
//! pull completes. Real docker-registry and skopeo.

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

fn check(fault: Fault) {
    if common::find_tool("SKOPEO", "skopeo", &[]).is_none() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    let td = tempfile::tempdir().unwrap();
    let layout = td.path().join("layout");
    let layers = [
        Layer::new(tar_of("a", 3 << 20, 1), Compression::Gzip),
        Layer::new(tar_of("b", 4 << 20, 2), Compression::Zstd),
        Layer::new(tar_of("c", 1 << 20, 3), Compression::Gzip),
    ];
    let written = ociimage::write_layout(&layout, "v1", &layers, &BTreeMap::new());
    reg.push(&layout, "v1", "img");
    // The largest blob breaks.
    let (blob, blob_size, _) = written.layers[1].clone();
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
    let total: u64 = written.layers.iter().map(|l| l.1).sum();
    eprintln!(
        "{fault:?}: retry fetched {} bytes; layers {total} bytes, broken blob {blob_size}",
        relay.served()
    );
    let r = Repository::open(&repo).unwrap();
    assert_eq!(r.list_refs().unwrap().len(), 2, "tag and record refs");
    drop(r);
    common::assert_fsck_clean(&repo);
}

#[test]
fn a_blob_cut_mid_transfer_fails_the_pull_and_the_retry_completes() {
    check(Fault::Cut);
}

#[test]
fn a_stalled_blob_ends_in_the_stall_timeout() {
    check(Fault::Stall);
}

#[test]
fn a_server_error_on_a_blob_fails_the_pull_and_the_retry_completes() {
    check(Fault::ServerError);
}
