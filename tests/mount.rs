//! A composefs mount on the host kernel: an EROFS image made by `mkfs.erofs` whose file
//! redirects into the repository's object store, mounted with verity off (this host has no
//! fs-verity; enforcement is tested in a VM).

mod common;

use std::path::Path;
use std::process::Command;

use cfsctl::fsverity::Algorithm;
use cfsctl::mount::{MountOptions, VerityMode, mount_image, unmount};
use cfsctl::repo::Repository;

/// `trusted.overlay.metacopy` value: struct ovl_metacopy { version 0, len, flags 0,
/// digest_algo } followed by the digest (fs/overlayfs/overlayfs.h).
fn metacopy_xattr(digest: &cfsctl::fsverity::Digest) -> Vec<u8> {
    let mut v = vec![
        0,
        4 + digest.as_bytes().len() as u8,
        0,
        digest.algorithm().kernel_id(),
    ];
    v.extend_from_slice(digest.as_bytes());
    v
}

/// An empty file of `len` bytes whose data overlayfs takes from object `digest`.
fn metadata_file(path: &Path, digest: &cfsctl::fsverity::Digest, len: usize) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(len as u64)
        .unwrap();
    let flags = rustix::fs::XattrFlags::empty();
    let redirect = format!("/{}", digest.object_path());
    rustix::fs::setxattr(path, "trusted.overlay.redirect", redirect.as_bytes(), flags).unwrap();
    rustix::fs::setxattr(
        path,
        "trusted.overlay.metacopy",
        &metacopy_xattr(digest),
        flags,
    )
    .unwrap();
}

fn have_mkfs_erofs() -> bool {
    Command::new("mkfs.erofs").arg("--help").output().is_ok()
}

#[test]
fn mount_image_reads_objects_through_overlay() {
    if !common::is_root() {
        eprintln!("note: not root, skipping the mount test");
        return;
    }
    if !have_mkfs_erofs() {
        eprintln!("note: mkfs.erofs (erofs-utils) not installed, skipping the mount test");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let repo = Repository::init(td.path().join("repo"), Algorithm::Sha256).unwrap();
    let content = b"hello from the object store\n";
    let digest = repo.write_object(content).unwrap();

    // The metadata tree: empty, correctly sized files pointing at objects.
    let tree = td.path().join("tree");
    std::fs::create_dir_all(tree.join("dir")).unwrap();
    metadata_file(&tree.join("dir/hello.txt"), &digest, content.len());
    // An object placed behind the repository's back, without fs-verity: with
    // verity=require the kernel must refuse to serve it.
    let sneaky = b"object without fs-verity\n";
    let sneaky_digest = cfsctl::fsverity::digest_bytes(Algorithm::Sha256, sneaky);
    let sneaky_path = repo.object_path(&sneaky_digest);
    std::fs::create_dir_all(sneaky_path.parent().unwrap()).unwrap();
    std::fs::write(&sneaky_path, sneaky).unwrap();
    metadata_file(&tree.join("sneaky.txt"), &sneaky_digest, sneaky.len());
    std::fs::write(tree.join("inline.txt"), b"inline data\n").unwrap();

    let img = td.path().join("meta.erofs");
    let status = Command::new("mkfs.erofs")
        .args(["--quiet", "--all-root", "-T0"])
        .arg(&img)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success());
    // mkfs.erofs leaves the first 1024 bytes zero; a composefs image carries its 32-byte
    // header there (lcfs_erofs_header_s: magic, version 1, flags, composefs version), and
    // cfsctl mounts only images that have it.
    let mut bytes = std::fs::read(&img).unwrap();
    assert!(bytes[..32].iter().all(|&b| b == 0));
    for (i, word) in [0xd078_629a_u32, 1, 0, 1].iter().enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    let image = repo.write_image(&bytes).unwrap();

    let mnt = td.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // verity=require only where objects can carry fs-verity (the VM suite); this host has none.
    let verity = if repo.verity_supported() {
        VerityMode::Require
    } else {
        VerityMode::Off
    };
    let options = MountOptions {
        verity,
        ..MountOptions::default()
    };
    match mount_image(&repo, &image.to_hex(), &mnt, &options) {
        Ok(d) => assert_eq!(d, image),
        Err(e) if format!("{e:#}").contains("EPERM") || format!("{e:#}").contains("permitted") => {
            eprintln!("note: mounting not permitted here, skipping: {e:#}");
            return;
        }
        Err(e) => panic!("{e:#}"),
    }
    let result = std::panic::catch_unwind(|| {
        assert_eq!(std::fs::read(mnt.join("dir/hello.txt")).unwrap(), content);
        assert_eq!(
            std::fs::read(mnt.join("inline.txt")).unwrap(),
            b"inline data\n"
        );
        let sneaky_read = std::fs::read(mnt.join("sneaky.txt"));
        if verity == VerityMode::Require {
            let err = sneaky_read.expect_err("verity=require served an object without verity");
            assert_eq!(err.raw_os_error(), Some(5), "EIO expected: {err}");
        } else {
            assert_eq!(sneaky_read.unwrap(), sneaky);
        }
        // Read-only mount.
        assert!(std::fs::write(mnt.join("new"), b"x").is_err());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = mountinfo
            .lines()
            .find(|l| l.contains(mnt.to_str().unwrap()))
            .expect("mount listed");
        assert!(line.contains("overlay"), "{line}");
    });
    unmount(Path::new(&mnt)).unwrap();
    result.unwrap();
    assert!(!mnt.join("inline.txt").exists());
}
