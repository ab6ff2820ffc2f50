//! The userspace fs-verity digest against `fsverity digest`, and the ioctls on this host.

mod common;

use std::io::Write;

use cfsctl::fsverity::ioctl::{
    EnableError, MeasureError, enable_verity, measure_or_compute, measure_verity,
};
use cfsctl::fsverity::{Algorithm, digest_bytes, digest_reader};

#[test]
fn userspace_digest_matches_fsverity_tool() {
    // 64 * 64 * 4096 + 1: three tree levels for SHA-512 (64 hashes per 4096-byte block).
    let mut sizes = common::SIZES.to_vec();
    sizes.push(64 * 64 * 4096 + 1);
    for (i, &size) in sizes.iter().enumerate() {
        let data = common::content(size, i as u64);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let ours = digest_bytes(alg, &data);
            assert_eq!(digest_reader(alg, &data[..]).unwrap(), ours);
            match common::fsverity_tool_digest(f.path(), alg) {
                Some(theirs) => assert_eq!(ours, theirs, "size {size} {alg}"),
                None => return,
            }
        }
    }
}

#[test]
fn ioctls_report_typed_errors() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"some content").unwrap();
    f.flush().unwrap();
    let expected = digest_bytes(Algorithm::Sha256, b"some content");

    // No verity yet: NoVerity where the filesystem supports it, NotSupported otherwise.
    let before = measure_verity(f.as_file());
    assert!(
        matches!(
            before,
            Err(MeasureError::NotSupported) | Err(MeasureError::NoVerity)
        ),
        "{before:?}"
    );

    // A writable descriptor is open: Busy on filesystems with verity.
    let busy = enable_verity(f.as_file(), Algorithm::Sha256);
    assert!(
        matches!(
            busy,
            Err(EnableError::NotSupported) | Err(EnableError::Busy)
        ),
        "{busy:?}"
    );

    let (_, path) = f.keep().unwrap();
    let ro = std::fs::File::open(&path).unwrap();
    match enable_verity(&ro, Algorithm::Sha256) {
        Ok(()) => {
            eprintln!("note: fs-verity is supported here");
            assert_eq!(measure_verity(&ro).unwrap(), expected);
        }
        Err(EnableError::NotSupported) => {
            // This host: CONFIG_FS_VERITY is unset (ENVIRONMENT.md).
            assert!(matches!(
                measure_verity(&ro),
                Err(MeasureError::NotSupported)
            ));
        }
        Err(e) => panic!("enable_verity: {e:?}"),
    }
    assert_eq!(
        measure_or_compute(&ro, Algorithm::Sha256).unwrap(),
        expected
    );
    std::fs::remove_file(path).unwrap();
}
