//! `cfs-setup-root` on the host kernel: a repository and image made by `cfsctl`, a temporary
//! "physical root", and the new root assembled on a temporary target. The host has no
//! fs-verity, so the secure form must refuse; `composefs=?<hex>` must mount. Enforcement with
//! fs-verity is tested in a VM (tests/vm/run).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn setup_root() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cfs-setup-root"))
}

/// A physical root with a repository at `composefs/` holding an image of a small rootfs.
/// Returns the image digest (hex).
fn make_sysroot(sysroot: &Path, rootfs: &Path) -> String {
    for d in ["etc", "var/lib/demo", "usr/bin", "sysroot"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::write(rootfs.join("etc/hostname"), "image-host\n").unwrap();
    fs::write(rootfs.join("var/lib/demo/seed"), "from the image\n").unwrap();
    fs::write(rootfs.join("usr/bin/hello"), common::content(100_000, 7)).unwrap();
    let repo = sysroot.join("composefs");
    let ok = common::cfsctl()
        .args(["init", "--repo"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = common::run_ok(
        common::cfsctl()
            .args(["create-image", "--ref", "test/root", "--repo"])
            .arg(&repo)
            .arg(rootfs),
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn run(sysroot: &Path, target: &Path, cmdline: &str) -> Output {
    setup_root()
        .args([
            "--config",
            "/nonexistent/setup-root.conf",
            "--cmdline",
            cmdline,
            "--sysroot",
        ])
        .arg(sysroot)
        .arg("--target")
        .arg(target)
        .output()
        .unwrap()
}

fn mountinfo_under(target: &Path) -> Vec<String> {
    let t = target.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| m == t || m.starts_with(&format!("{t}/")))
        })
        .map(str::to_string)
        .collect()
}

fn unmount_all(target: &Path) {
    for sub in ["etc", "var", "sysroot", ""] {
        let _ = rustix::mount::unmount(target.join(sub), rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn insecure_mode_mounts_root_etc_var_and_sysroot() {
    if !common::binaries_present() {
        return;
    }
    if !common::can_mount() {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let (sysroot, target) = (td.path().join("sysroot"), td.path().join("target"));
    fs::create_dir_all(&target).unwrap();
    let hex = make_sysroot(&sysroot, &td.path().join("rootfs"));

    let out = run(&sysroot, &target, &format!("quiet composefs=?{hex} rw"));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let mounts = mountinfo_under(&target);
    let check = || -> Result<(), String> {
        if !out.status.success() {
            return Err(format!("cfs-setup-root failed: {stderr}"));
        }
        assert!(
            stderr.contains("WARNING") && stderr.contains("WITHOUT integrity"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("measured digest {hex}")),
            "{stderr}"
        );
        let root = mounts
            .iter()
            .find(|l| l.split(' ').nth(4) == target.to_str());
        let root = root.ok_or_else(|| format!("no root mount: {mounts:?}"))?;
        assert!(root.contains(" - overlay composefs:"), "{root}");
        assert!(
            root.contains("metacopy=on") && root.contains("redirect_dir=on"),
            "{root}"
        );
        assert_eq!(mounts.len(), 4, "root, sysroot, etc, var: {mounts:?}");
        // Content through the object store.
        assert_eq!(
            fs::read(target.join("usr/bin/hello")).unwrap(),
            common::content(100_000, 7)
        );
        // /etc: writable, the change lands in the deployment's upper dir.
        assert_eq!(
            fs::read_to_string(target.join("etc/hostname")).unwrap(),
            "image-host\n"
        );
        fs::write(target.join("etc/new-file"), "local change").unwrap();
        let upper = sysroot.join(format!("state/deploy/{hex}/etc/upper/new-file"));
        assert_eq!(fs::read_to_string(upper).unwrap(), "local change");
        // /var: seeded from the image, and the bind of state/var.
        assert_eq!(
            fs::read_to_string(target.join("var/lib/demo/seed")).unwrap(),
            "from the image\n"
        );
        fs::write(target.join("var/written"), "x").unwrap();
        assert!(sysroot.join("state/var/written").exists());
        // The physical root is reachable.
        assert!(target.join("sysroot/composefs/images").join(&hex).exists());
        Ok(())
    };
    let result = check();
    unmount_all(&target);
    result.unwrap();
    assert!(mountinfo_under(&target).is_empty(), "left mounts behind");
}

#[test]
fn secure_mode_refuses_image_without_verity() {
    if !common::binaries_present() {
        return;
    }
    if !common::can_mount() {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let (sysroot, target) = (td.path().join("sysroot"), td.path().join("target"));
    fs::create_dir_all(&target).unwrap();
    let hex = make_sysroot(&sysroot, &td.path().join("rootfs"));
    for cmdline in [
        format!("composefs={hex}"),
        format!("composefs.digest=v1-sha256-12:{hex}"),
    ] {
        let out = run(&sysroot, &target, &cmdline);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("REFUSING TO BOOT"), "{stderr}");
        assert!(stderr.contains("has no fs-verity digest"), "{stderr}");
        assert!(
            stderr.contains(&format!("expected digest: {hex}")),
            "{stderr}"
        );
        assert!(
            mountinfo_under(&target).is_empty(),
            "mounted after refusing"
        );
    }
}

#[test]
fn refuses_altered_image_and_unknown_image() {
    if !common::binaries_present() {
        return;
    }
    if !common::can_mount() {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let (sysroot, target) = (td.path().join("sysroot"), td.path().join("target"));
    fs::create_dir_all(&target).unwrap();
    let hex = make_sysroot(&sysroot, &td.path().join("rootfs"));

    let other = hex.chars().rev().collect::<String>();
    let out = run(&sysroot, &target, &format!("composefs=?{other}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not in the repository"), "{stderr}");

    // Alter one byte of the stored image (the image link points at an object).
    let image = fs::canonicalize(sysroot.join("composefs/images").join(&hex)).unwrap();
    let mut bytes = fs::read(&image).unwrap();
    bytes[2000] ^= 0x55;
    let mut perm = fs::metadata(&image).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    fs::set_permissions(&image, perm).unwrap();
    fs::write(&image, &bytes).unwrap();
    let out = run(&sysroot, &target, &format!("composefs=?{hex}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not match the kernel command line"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("expected digest: {hex}")),
        "{stderr}"
    );
    assert!(stderr.contains("measured digest: "), "{stderr}");
    assert!(
        mountinfo_under(&target).is_empty(),
        "mounted after refusing"
    );
}

#[test]
fn no_composefs_argument_is_a_no_op() {
    if !common::binaries_present() {
        return;
    }
    let out = setup_root()
        .args([
            "--cmdline",
            "root=/dev/vda2 quiet",
            "--sysroot",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to do"));
}
