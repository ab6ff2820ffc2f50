//! Manifests, indexes, configs and image records: the first byte picks the kind, the rest is
//! the JSON. Parsing and what pull does next with the result never panic.
#![no_main]

use cfsctl::oci::record::ImageRecord;
use cfsctl::oci::source::pick_platform;
use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, json)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Ok(m) = serde_json::from_slice::<ImageManifest>(json) {
                for l in m.layers() {
                    let _ = (l.digest().to_string(), l.media_type().to_string(), l.size());
                }
                let _ = m.config().digest().to_string();
            }
        }
        1 => {
            if let Ok(index) = serde_json::from_slice::<ImageIndex>(json) {
                let _ = pick_platform(&index, "fuzz");
            }
        }
        2 => {
            if let Ok(c) = serde_json::from_slice::<ImageConfiguration>(json) {
                let _ = c.rootfs().diff_ids().len();
                let _ = c.config().as_ref().and_then(|c| c.labels().clone());
            }
        }
        _ => {
            if let Ok(r) = serde_json::from_slice::<ImageRecord>(json) {
                let _ = r.members();
            }
        }
    }
});
