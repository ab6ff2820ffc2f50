//! OCI layer import: the first byte picks the compression (0 tar, 1 gzip, 2 zstd), the rest
//! is the blob. Any blob is imported or refused without a panic, within small limits, and a
//! layer it accepts is written as an image the reader reads back.
#![no_main]

use std::sync::OnceLock;

use cfsctl::erofs::{reader::read_image, writer};
use cfsctl::fsverity::Algorithm;
use cfsctl::oci::layer::{ImportOptions, Limits, import_layer};
use cfsctl::oci::stream::decompress;
use cfsctl::repo::Repository;
use libfuzzer_sys::fuzz_target;

/// One repository for the whole run: objects accumulate, which is what a real one does.
fn repo() -> &'static Repository {
    static REPO: OnceLock<(tempfile::TempDir, Repository)> = OnceLock::new();
    &REPO
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temporary directory");
            let repo = Repository::init(dir.path(), Algorithm::Sha256).expect("repository");
            (dir, repo)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, blob)) = data.split_first() else {
        return;
    };
    let media_type = match kind % 3 {
        0 => "application/vnd.oci.image.layer.v1.tar",
        1 => "application/vnd.oci.image.layer.v1.tar+gzip",
        _ => "application/vnd.oci.image.layer.v1.tar+zstd",
    };
    let Ok(tar) = decompress(media_type, blob) else {
        return;
    };
    let opts = ImportOptions {
        layer: "fuzz".into(),
        // Small caps: a decompression bomb must end in an error, fast.
        limits: Limits {
            max_tar_bytes: 16 << 20,
            max_entries: 100_000,
            max_metadata_bytes: 16 << 20,
            max_extension_bytes: 1 << 20,
        },
    };
    let Ok(layer) = import_layer(tar, repo(), &opts) else {
        return;
    };
    let image = match writer::image_bytes(&layer.tree, &writer::WriteOptions::default()) {
        Ok(image) => image,
        Err(e) => panic!("an imported layer cannot be written: {e}"),
    };
    if let Err(e) = read_image(&image) {
        panic!("the reader refuses a layer image the writer wrote: {e}");
    }
});
