//! What `cfsctl mount` and `oci mount` accept and how they mount: only composefs images (a
//! plain EROFS image is refused before the kernel sees it), a file only when IMAGE is
//! spelled as a path (`/`, `./`, `../`), the digest when one is named, and nosuid,nodev unless
//! asked otherwise. Real kernel mounts on the host (root only).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::ociimage::{self, Compression, Layer};
use rustix::fs::StatVfsMountFlags;

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mountpoint(&self.0) {
            cfsctl::mount::unmount(&self.0).unwrap();
        }
    }
}

fn is_mountpoint(path: &Path) -> bool {
    let path = path.canonicalize().unwrap();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

struct Setup {
    td: tempfile::TempDir,
    repo: PathBuf,
    mnt: PathBuf,
}

fn setup() -> Option<Setup> {
    if !common::can_mount() {
        return None;
    }
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    common::run_ok(common::cfsctl().arg("init").arg("--repo").arg(&repo));
    let mnt = td.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    Some(Setup { td, repo, mnt })
}

/// A source tree whose file `marker` says `text`.
fn tree(s: &Setup, name: &str, text: &str) -> PathBuf {
    let dir = s.td.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("marker"), text).unwrap();
    dir
}

fn mount(s: &Setup, args: &[&str]) -> std::process::Output {
    common::cfsctl()
        .current_dir(s.td.path())
        .arg("mount")
        .arg("--repo")
        .arg(&s.repo)
        .args(args)
        .arg(&s.mnt)
        .output()
        .unwrap()
}

#[test]
fn a_plain_erofs_image_is_refused_before_mounting() {
    let Some(s) = setup() else { return };
    if Command::new("mkfs.erofs").arg("--help").output().is_err() {
        common::skip_or_fail::<()>("mkfs.erofs not found");
        return;
    }
    let src = tree(&s, "src", "plain erofs");
    let img = s.td.path().join("plain.erofs");
    common::run_ok(
        Command::new("mkfs.erofs")
            .arg("--quiet")
            .arg(&img)
            .arg(&src),
    );
    let out = mount(&s, &[img.to_str().unwrap()]);
    let _guard = Mounted(s.mnt.clone());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a plain EROFS image mounted");
    assert!(!is_mountpoint(&s.mnt));
    assert!(err.contains("not a composefs image"), "{err}");
    assert!(err.contains(img.to_str().unwrap()), "{err}");
}

#[test]
fn a_name_is_a_ref_and_a_file_must_be_spelled_as_a_path() {
    let Some(s) = setup() else { return };
    let in_repo = tree(&s, "a", "the ref");
    common::run_ok(
        common::cfsctl()
            .args(["create-image", "--ref", "local/test", "--repo"])
            .arg(&s.repo)
            .arg(&in_repo),
    );
    // A file at ./local/test, relative to the working directory of the mount command.
    let file_src = tree(&s, "b", "the file");
    std::fs::create_dir(s.td.path().join("local")).unwrap();
    let out = common::run_ok(
        common::cfsctl()
            .current_dir(s.td.path())
            .args(["create-image", "--print-digest"])
            .arg(&file_src)
            .arg("local/test"),
    );
    let file_digest = String::from_utf8(out.stdout).unwrap().trim().to_string();

    for (image, expect) in [("local/test", "the ref"), ("./local/test", "the file")] {
        common::run_ok(
            common::cfsctl()
                .current_dir(s.td.path())
                .args(["mount", "--repo"])
                .arg(&s.repo)
                .arg(image)
                .arg(&s.mnt),
        );
        let guard = Mounted(s.mnt.clone());
        let got = std::fs::read_to_string(s.mnt.join("marker")).unwrap();
        assert_eq!(got, expect, "mount {image}");
        drop(guard);
    }

    // A named digest must match: the file's own digest mounts, another is refused.
    let wrong = "0".repeat(64);
    let out = mount(&s, &["--digest", &wrong, "./local/test"]);
    let _guard = Mounted(s.mnt.clone());
    assert!(!out.status.success());
    assert!(!is_mountpoint(&s.mnt));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file_digest) && err.contains(&wrong), "{err}");
    let out = mount(&s, &["--digest", &file_digest, "./local/test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mountpoint(&s.mnt));
}

fn mount_flags(path: &Path) -> StatVfsMountFlags {
    rustix::fs::statvfs(path).unwrap().f_flag
}

/// A tar with a setuid-root executable at `bin/su-like`.
fn setuid_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, "bin", &[][..]).unwrap();
    let body = b"#!/bin/sh\nid -u\n";
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o4755);
    h.set_size(body.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, "bin/su-like", &body[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn inspection_mounts_are_nosuid_nodev_unless_asked() {
    let Some(s) = setup() else { return };
    let src = tree(&s, "src", "setuid inside");
    let suid = src.join("su-like");
    std::fs::write(&suid, b"#!/bin/sh\nid -u\n").unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    common::run_ok(
        common::cfsctl()
            .args(["create-image", "--ref", "suid", "--repo"])
            .arg(&s.repo)
            .arg(&src),
    );
    let both = StatVfsMountFlags::NOSUID | StatVfsMountFlags::NODEV;

    common::run_ok(&mut mount_cmd(&s, &["suid"]));
    let guard = Mounted(s.mnt.clone());
    let mode = std::fs::metadata(s.mnt.join("su-like"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o4000, 0o4000, "the image keeps the setuid bit");
    assert!(
        mount_flags(&s.mnt).contains(both),
        "{:?}",
        mount_flags(&s.mnt)
    );
    drop(guard);

    common::run_ok(&mut mount_cmd(&s, &["--allow-setuid-devices", "suid"]));
    let guard = Mounted(s.mnt.clone());
    assert!(
        !mount_flags(&s.mnt).intersects(both),
        "{:?}",
        mount_flags(&s.mnt)
    );
    drop(guard);

    // `oci mount` of a pulled image holding a setuid-root file.
    let layout = s.td.path().join("layout");
    ociimage::write_layout(
        &layout,
        "v1",
        &[Layer::new(setuid_tar(), Compression::Gzip)],
        &BTreeMap::new(),
    );
    common::run_ok(
        common::cfsctl()
            .args(["oci", "pull", "--tag", "suid", "--repo"])
            .arg(&s.repo)
            .arg(format!("oci:{}:v1", layout.display())),
    );
    common::run_ok(
        common::cfsctl()
            .args(["oci", "mount", "--repo"])
            .arg(&s.repo)
            .arg("suid")
            .arg(&s.mnt),
    );
    let _guard = Mounted(s.mnt.clone());
    let meta = std::fs::metadata(s.mnt.join("bin/su-like")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o4000, 0o4000);
    assert!(
        mount_flags(&s.mnt).contains(both),
        "{:?}",
        mount_flags(&s.mnt)
    );
}

fn mount_cmd(s: &Setup, args: &[&str]) -> Command {
    let mut c = common::cfsctl();
    c.arg("mount")
        .arg("--repo")
        .arg(&s.repo)
        .args(args)
        .arg(&s.mnt);
    c
}
