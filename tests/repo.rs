//! The repository on a real filesystem: objects, dedup, imports, concurrency, a full disk.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use cfsctl::fsverity::{Algorithm, digest_bytes};
use cfsctl::repo::{RepoError, Repository};

fn new_repo(alg: Algorithm) -> (tempfile::TempDir, Repository) {
    let td = tempfile::tempdir().unwrap();
    let repo = Repository::init(td.path().join("repo"), alg).unwrap();
    (td, repo)
}

fn objects(repo: &Repository) -> Vec<std::path::PathBuf> {
    common::files_under(&repo.path().join("objects"))
}

#[test]
fn write_object_dedups_and_names_by_fsverity_digest() {
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let (_td, repo) = new_repo(alg);
        let data = common::content(10_000, 7);
        let d1 = repo.write_object(&data).unwrap();
        let d2 = repo.write_object(&data).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(
            objects(&repo),
            vec![Path::new(&d1.object_path()).to_owned()]
        );
        assert!(repo.has_object(&d1));
        let stored = repo.object_path(&d1);
        assert_eq!(std::fs::read(&stored).unwrap(), data);
        if let Some(theirs) = common::fsverity_tool_digest(&stored, alg) {
            assert_eq!(theirs, d1);
        }
        let mut via_open = Vec::new();
        std::io::Read::read_to_end(&mut repo.open_object(&d1).unwrap(), &mut via_open).unwrap();
        assert_eq!(via_open, data);
    }
}

#[test]
fn import_file_sizes() {
    let (_td, repo) = new_repo(Algorithm::Sha256);
    for (i, &size) in common::SIZES.iter().enumerate() {
        let data = common::content(size, 100 + i as u64);
        let mut src = tempfile::NamedTempFile::new().unwrap();
        src.write_all(&data).unwrap();
        // The source offset is at the end: import must read from offset 0 regardless.
        let d = repo.import_file(src.as_file(), None).unwrap();
        assert_eq!(d, digest_bytes(Algorithm::Sha256, &data), "size {size}");
        assert_eq!(std::fs::read(repo.object_path(&d)).unwrap(), data);
        if let Some(theirs) = common::fsverity_tool_digest(&repo.object_path(&d), d.algorithm()) {
            assert_eq!(theirs, d, "size {size}");
        }
        // With the expected digest and the object present, nothing is copied.
        assert_eq!(repo.import_file(src.as_file(), Some(d)).unwrap(), d);
    }
    assert_eq!(objects(&repo).len(), common::SIZES.len());
}

#[test]
fn concurrent_imports_from_threads() {
    let (_td, repo) = new_repo(Algorithm::Sha256);
    const THREADS: usize = 6;
    const FILES: usize = 12;
    // Every thread imports the same 12 contents (in a different order) plus 3 of its own.
    let results: Vec<Vec<_>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let repo = &repo;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for k in 0..FILES + 3 {
                        let seed = if k < FILES {
                            ((k + t) % FILES) as u64
                        } else {
                            1000 + (t * 3 + k) as u64
                        };
                        let data = common::content(1000 + 5000 * (seed as usize % 7), seed);
                        let mut src = tempfile::tempfile().unwrap();
                        src.write_all(&data).unwrap();
                        let d = if k % 2 == 0 {
                            repo.import_file(&src, None).unwrap()
                        } else {
                            repo.write_object(&data).unwrap()
                        };
                        assert_eq!(d, digest_bytes(Algorithm::Sha256, &data));
                        out.push(d);
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<_> = results.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), FILES + 3 * THREADS);
    let on_disk = objects(&repo);
    assert_eq!(on_disk.len(), all.len(), "{on_disk:?}");
    for d in &all {
        assert!(repo.has_object(d));
    }
}

#[test]
fn full_disk_leaves_nothing_visible() {
    if !common::is_root() {
        eprintln!("note: not root, skipping the ENOSPC test (needs a small tmpfs)");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let mnt = td.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "cfsctl-test"])
        .arg(&mnt)
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("note: cannot mount a tmpfs here ({status:?}), skipping the ENOSPC test");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let repo = Repository::init(mnt.join("repo"), Algorithm::Sha256).unwrap();
        let mut src = tempfile::NamedTempFile::new_in(td.path()).unwrap();
        src.write_all(&common::content(4 << 20, 9)).unwrap();
        let err = repo.import_file(src.as_file(), None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&src.path().display().to_string()), "{msg}");
        let io = err.root_cause().downcast_ref::<std::io::Error>();
        assert_eq!(io.and_then(|e| e.raw_os_error()), Some(28), "ENOSPC: {msg}");
        assert!(objects(&repo).is_empty(), "{:?}", objects(&repo));
        let big = common::content(3 << 20, 10);
        assert!(repo.write_object(&big).is_err());
        assert!(objects(&repo).is_empty(), "{:?}", objects(&repo));
        // The space is free again: a small object still fits.
        let d = repo.write_object(b"small").unwrap();
        assert_eq!(objects(&repo), vec![Path::new(&d.object_path()).to_owned()]);
    });
    let _ = cfsctl::mount::unmount(&mnt);
    result.unwrap();
}

#[test]
fn images_and_refs_on_disk() {
    let (_td, repo) = new_repo(Algorithm::Sha256);
    let d = repo.write_image(b"image bytes").unwrap();
    let reopened = Repository::open(repo.path()).unwrap();
    let (_, got) = reopened.open_image(&d.to_hex()).unwrap();
    assert_eq!(got, d);
    reopened.set_ref("tags/v1", &d).unwrap();
    drop(reopened);
    assert_eq!(repo.resolve_ref("tags/v1").unwrap(), d);
    let err = repo.open_image("tags/nope").unwrap_err();
    assert!(matches!(
        err.downcast_ref::<RepoError>(),
        Some(RepoError::MissingImage(_))
    ));
}

/// Where the filesystem has fs-verity (the VM suite, ext4 `-O verity`): every object carries
/// it, the kernel's measurement is the name, and objects can no longer be written.
#[test]
fn objects_have_verity_where_supported() {
    use cfsctl::fsverity::ioctl::measure_verity;
    let (_td, repo) = new_repo(Algorithm::Sha256);
    if !repo.verity_supported() {
        eprintln!("note: no fs-verity on this filesystem, skipping");
        return;
    }
    let d1 = repo.write_object(&common::content(20_000, 3)).unwrap();
    let mut src = tempfile::tempfile().unwrap();
    src.write_all(&common::content(300_000, 4)).unwrap();
    let d2 = repo.import_file(&src, None).unwrap();
    for d in [d1, d2] {
        assert_eq!(measure_verity(repo.open_object(&d).unwrap()).unwrap(), d);
        assert!(
            std::fs::OpenOptions::new()
                .write(true)
                .open(repo.object_path(&d))
                .is_err()
        );
    }
    let image = repo.write_image(b"pretend erofs").unwrap();
    assert_eq!(repo.open_image(&image.to_hex()).unwrap().1, image);
}
