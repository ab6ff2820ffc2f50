//! `cfsctl install` on the host: a small "bootable" tree (bootc layout) imported with
//! `cfsctl create-image`, installed onto a root + ESP directory pair and as a raw disk image.
//! Booting the result is tests/vm/run's job.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

const KVER: &str = "6.12.0-test";

fn make_repo(td: &Path) -> (std::path::PathBuf, String) {
    let rootfs = td.join("rootfs");
    let kdir = rootfs.join("usr/lib/modules").join(KVER);
    fs::create_dir_all(&kdir).unwrap();
    fs::write(kdir.join("vmlinuz"), common::content(300_000, 1)).unwrap();
    fs::write(kdir.join("initramfs.img"), common::content(200_000, 2)).unwrap();
    let kargs = rootfs.join("usr/lib/bootc/kargs.d");
    fs::create_dir_all(&kargs).unwrap();
    fs::write(
        kargs.join("10-console.toml"),
        "kargs = [\"quiet\", \"loglevel=3\"]\n",
    )
    .unwrap();
    fs::write(
        kargs.join("20-other-arch.toml"),
        "kargs = [\"never\"]\nmatch-architectures = [\"riscv64\"]\n",
    )
    .unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/os-release"), "ID=test\n").unwrap();
    let repo = td.join("repo");
    assert!(
        common::cfsctl()
            .args(["init", "--repo"])
            .arg(&repo)
            .status()
            .unwrap()
            .success()
    );
    let out = common::run_ok(
        common::cfsctl()
            .args(["create-image", "--ref", "os/test", "--repo"])
            .arg(&repo)
            .arg(&rootfs),
    );
    (
        repo,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

#[test]
fn install_to_root_and_esp() {
    if !common::binaries_present() {
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let (repo, hex) = make_repo(td.path());
    let fake_boot = td.path().join("sd-boot.efi");
    fs::write(&fake_boot, b"MZ fake systemd-boot").unwrap();
    let (root, esp) = (td.path().join("root"), td.path().join("esp"));
    common::run_ok(
        common::cfsctl()
            .args(["install", "--repo"])
            .arg(&repo)
            .arg("os/test")
            .arg("--root")
            .arg(&root)
            .arg("--boot")
            .arg(&esp)
            .args(["--karg", "root=/dev/vda2", "--karg", "rw", "--bootloader"])
            .arg(&fake_boot),
    );

    let short = &hex[..12];
    let entry =
        fs::read_to_string(esp.join(format!("loader/entries/cfsctl-{short}.conf"))).unwrap();
    assert!(
        entry.contains(&format!(
            "\noptions composefs={hex} root=/dev/vda2 rw quiet loglevel=3\n"
        )),
        "{entry}"
    );
    // The first deployment: priority 1, the sort key that orders cfsctl's entries, no boot
    // counter (nothing to fall back to).
    assert!(entry.contains("\nsort-key cfsctl\nversion 1\n"), "{entry}");
    assert!(entry.contains(&format!("kernel {KVER}")), "{entry}");
    let linux = entry
        .lines()
        .find_map(|l| l.strip_prefix("linux /"))
        .expect("linux line");
    let boot_dir = linux
        .strip_suffix("/vmlinuz")
        .expect("kernel named vmlinuz");
    assert!(boot_dir.starts_with("cfsctl/"), "{entry}");
    assert!(
        entry.contains(&format!("\ninitrd /{boot_dir}/initramfs.img\n")),
        "{entry}"
    );
    assert_eq!(
        fs::read(esp.join(boot_dir).join("vmlinuz")).unwrap(),
        common::content(300_000, 1)
    );
    assert_eq!(
        fs::read(esp.join(boot_dir).join("initramfs.img")).unwrap(),
        common::content(200_000, 2)
    );
    assert_eq!(
        fs::read(esp.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
        b"MZ fake systemd-boot"
    );
    // No pinned default: it would defeat boot counting's fallback.
    let loader = fs::read_to_string(esp.join("loader/loader.conf")).unwrap();
    assert!(!loader.contains("default"), "{loader}");

    // The target repository holds the image and is consistent.
    assert!(root.join("composefs/images").join(&hex).exists());
    assert!(root.join("composefs/refs/deploy").join(&hex).exists());
    let record: serde_json::Value = serde_json::from_slice(
        &fs::read(root.join(format!("state/deploy/{hex}/deployment.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["id"], hex.as_str());
    assert_eq!(record["source"], "os/test");
    assert_eq!(record["origin"], serde_json::Value::Null);
    assert_eq!(record["kernelVersion"], KVER);
    assert_eq!(record["kargs"], serde_json::json!(["root=/dev/vda2", "rw"]));
    let fsck = common::cfsctl()
        .args(["fsck", "--repo"])
        .arg(root.join("composefs"))
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn install_to_disk_makes_gpt_esp_and_ext4_root() {
    if !["mkfs.vfat", "mcopy", "sfdisk", "mkfs.ext4", "debugfs"]
        .iter()
        .all(|t| have(t))
    {
        common::skip_or_fail::<()>("dosfstools, mtools, fdisk, e2fsprogs needed");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let (repo, hex) = make_repo(td.path());
    let fake_boot = td.path().join("sd-boot.efi");
    fs::write(&fake_boot, b"MZ fake systemd-boot").unwrap();
    let disk = td.path().join("disk.img");
    let out = common::cfsctl()
        .args(["install", "--repo"])
        .arg(&repo)
        .arg(&hex)
        .arg("--to-disk")
        .arg(&disk)
        .args(["--size", "1G", "--bootloader"])
        .arg(&fake_boot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("fs-verity: enabled on first boot"),
        "{stdout}"
    );

    let table = Command::new("sfdisk")
        .arg("--dump")
        .arg(&disk)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("label: gpt"), "{table}");
    assert!(
        table.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "{table}"
    );
    assert!(
        table.contains("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
        "{table}"
    );

    let esp_off: u64 = 1 << 20;
    let entry = Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@{esp_off}", disk.display()))
        .arg(format!("::/loader/entries/cfsctl-{}.conf", &hex[..12]))
        .output()
        .unwrap();
    let entry = String::from_utf8_lossy(&entry.stdout);
    assert!(
        entry.contains(&format!("options composefs={hex} root=UUID=")),
        "{entry}"
    );

    let root_off = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("root  offset "))
        .and_then(|r| r.split(' ').next())
        .expect("root offset printed");
    let fs_spec = format!("{}?offset={root_off}", disk.display());
    let features = Command::new("dumpe2fs")
        .args(["-h", &fs_spec])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&features.stdout).contains("verity"));
    let ls = Command::new("debugfs")
        .args(["-R", "ls -l /state", &fs_spec])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).contains("enable-verity-on-boot"));
}
