//! The OCI test harness itself: a real registry, images from real Debian packages.

mod common;

use std::collections::BTreeMap;

use common::ociimage::{self, Compression, Layer};
use common::registry::Registry;

#[test]
fn registry_serves_a_pushed_image_and_counts_bytes() {
    let Some(reg) = Registry::start() else { return };
    let Some(tars) = ociimage::deb_tars(&["hello"]) else {
        return;
    };
    let td = tempfile::tempdir().unwrap();
    let layout = td.path().join("img");
    let w = ociimage::write_layout(
        &layout,
        "v1",
        &[Layer::new(tars[0].clone(), Compression::Gzip)],
        &BTreeMap::new(),
    );
    reg.push(&layout, "v1", "hello");
    reg.reset();
    let out = common::run_ok(
        std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("{}:v1", reg.url("hello"))),
    );
    assert_eq!(ociimage::sha256(&out.stdout), w.manifest);
    assert!(reg.served() >= out.stdout.len() as u64, "{}", reg.served());
}
