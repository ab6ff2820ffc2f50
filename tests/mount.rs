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

    // The metadata tree: an empty, correctly sized file pointing at the object.
    let tree = td.path().join("tree");
    std::fs::create_dir_all(tree.join("dir")).unwrap();
    let file = tree.join("dir/hello.txt");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(content.len() as u64)
        .unwrap();
    let redirect = format!("/{}", digest.object_path());
    rustix::fs::setxattr(
        &file,
        "trusted.overlay.redirect",
        redirect.as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        &file,
        "trusted.overlay.metacopy",
        &metacopy_xattr(&digest),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    std::fs::write(tree.join("inline.txt"), b"inline data\n").unwrap();

    let img = td.path().join("meta.erofs");
    let status = Command::new("mkfs.erofs")
        .args(["--quiet", "--all-root", "-T0"])
        .arg(&img)
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success());
    let image = repo.write_image(&std::fs::read(&img).unwrap()).unwrap();

    let mnt = td.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let options = MountOptions {
        verity: VerityMode::Off,
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
