//! Small "bootable" OS images for host lifecycle tests (bootc layout): a kernel and initramfs
//! under `/usr/lib/modules/<kver>/`, kargs.d, an `/etc`, and a target with `--sysroot` /
//! `--esp` directories to install them on. They are never booted (tests/vm/run boots real
//! ones), so the kernel is a byte pattern.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ociimage::{Compression, Layer, Written, write_layout};

/// The kernel version of the test images.
pub const KVER: &str = "6.12.0-lifecycle";

/// One entry of a layer tar.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A directory with mode.
    Dir(String, u32),
    /// A file with content and mode.
    File(String, Vec<u8>, u32),
    /// A symlink to a target.
    Symlink(&'static str, &'static str),
    /// An OCI whiteout removing the path.
    Whiteout(&'static str),
}

/// A directory entry, mode 0755.
pub fn dir(path: &str) -> Entry {
    Entry::Dir(path.to_string(), 0o755)
}

/// A file entry.
pub fn file(path: &str, content: &[u8]) -> Entry {
    Entry::File(path.to_string(), content.to_vec(), 0o644)
}

/// A layer tar of `entries` (parents must be listed; paths relative, no leading `/`).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{p}/"), &[][..]).unwrap();
            }
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            Entry::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            Entry::Whiteout(p) => {
                let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, wh, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The base layer: directories, kernel + initramfs (`kernel_seed` varies their bytes),
/// kargs.d, `/sysroot`, and an `/etc` with the files the tests change.
pub fn base_layer(kernel_seed: u64) -> Vec<u8> {
    let kdir = format!("usr/lib/modules/{KVER}");
    let mut entries = vec![
        dir("usr"),
        dir("usr/lib"),
        dir("usr/lib/modules"),
        dir("usr/lib/bootc"),
        dir("usr/lib/bootc/kargs.d"),
        dir("sysroot"),
        dir("etc"),
        dir("etc/app"),
        dir("etc/ssl"),
        dir("var"),
    ];
    entries.push(dir(&kdir));
    entries.push(Entry::File(
        format!("{kdir}/vmlinuz"),
        super::content(200_000, kernel_seed),
        0o644,
    ));
    entries.push(Entry::File(
        format!("{kdir}/initramfs.img"),
        super::content(150_000, kernel_seed + 1),
        0o644,
    ));
    entries.push(file(
        "usr/lib/bootc/kargs.d/10-test.toml",
        b"kargs = [\"quiet\"]\n",
    ));
    for (p, c) in [
        ("etc/os-release", "ID=test\n"),
        ("etc/app/local-only.conf", "image v1\n"),
        ("etc/app/image-changes.conf", "image v1\n"),
        ("etc/app/both.conf", "image v1\n"),
        ("etc/ssl/openssl.cnf", "image v1\n"),
    ] {
        entries.push(file(p, c.as_bytes()));
    }
    tar(&entries)
}

/// The layer that makes v2 of v1: changes `image-changes.conf` and `both.conf`, adds a file.
pub fn v2_layer() -> Vec<u8> {
    tar(&[
        dir("etc"),
        dir("etc/app"),
        file("etc/app/image-changes.conf", b"image v2\n"),
        file("etc/app/both.conf", b"image v2\n"),
        file("etc/app/new-in-v2.conf", b"new in v2\n"),
    ])
}

/// Writes image `tag` of an OCI layout at `dir` from layer tars (gzip), with a version label.
pub fn publish(dir: &Path, tag: &str, layers: &[Vec<u8>], version: &str) -> Written {
    let labels: BTreeMap<String, String> = [
        ("containers.bootc".to_string(), "1".to_string()),
        (
            "org.opencontainers.image.version".to_string(),
            version.to_string(),
        ),
    ]
    .into();
    let layers: Vec<Layer> = layers
        .iter()
        .map(|t| Layer::new(t.clone(), Compression::Gzip))
        .collect();
    write_layout(dir, tag, &layers, &labels)
}

/// A target host: a source repository, a physical root and an ESP, in a temporary directory.
pub struct Target {
    /// Keeps everything.
    pub dir: tempfile::TempDir,
    /// The repository `install` pulls into.
    pub src: PathBuf,
    /// The target's physical root.
    pub sysroot: PathBuf,
    /// The target's ESP.
    pub esp: PathBuf,
    /// The OCI layout images are published to.
    pub layout: PathBuf,
    /// A fake systemd-boot.
    pub bootloader: PathBuf,
}

impl Target {
    /// Creates the directories and the source repository.
    pub fn new() -> Target {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let t = Target {
            src: dir.path().join("src"),
            sysroot: dir.path().join("root"),
            esp: dir.path().join("esp"),
            layout: dir.path().join("layout"),
            bootloader: dir.path().join("sd-boot.efi"),
            dir,
        };
        std::fs::write(&t.bootloader, b"MZ fake systemd-boot").unwrap();
        super::run_ok(super::cfsctl().arg("init").arg("--repo").arg(&t.src));
        t
    }

    /// `oci:<layout>:<tag>`.
    pub fn origin(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.layout.display())
    }

    /// `cfsctl ARGS --sysroot S --esp E`.
    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = super::cfsctl();
        c.args(args)
            .arg("--sysroot")
            .arg(&self.sysroot)
            .arg("--esp")
            .arg(&self.esp);
        c
    }

    /// `cfsctl install --repo SRC IMAGE --sysroot S --esp E --karg root=... --karg rw`.
    pub fn install(&self, image: &str) -> std::process::Output {
        super::run_ok(
            super::cfsctl()
                .args(["install", "--repo"])
                .arg(&self.src)
                .arg(image)
                .arg("--sysroot")
                .arg(&self.sysroot)
                .arg("--esp")
                .arg(&self.esp)
                .args(["--karg", "root=UUID=test", "--karg", "rw", "--bootloader"])
                .arg(&self.bootloader),
        )
    }

    /// `cfsctl status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = super::run_ok(&mut self.cmd(&["status", "--json"]));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The state directory of deployment `hex`.
    pub fn deploy_dir(&self, hex: &str) -> PathBuf {
        self.sysroot.join("state/deploy").join(hex)
    }

    /// Names of the files in `loader/entries`, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.esp.join("loader/entries"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Plays systemd-boot and systemd-bless-boot: the entry of `hex` loses its counter.
    pub fn bless(&self, hex: &str) {
        let dir = self.esp.join("loader/entries");
        for e in self.entries() {
            if e.starts_with(&format!("cfsctl-{}", &hex[..12])) && e.ends_with(".conf") {
                std::fs::rename(
                    dir.join(&e),
                    dir.join(format!("cfsctl-{}.conf", &hex[..12])),
                )
                .unwrap();
            }
        }
    }

    /// Plays systemd-boot booting the entry of `hex` once without it being blessed:
    /// `+L-D` becomes `+(L-1)-(D+1)`.
    pub fn fail_boot(&self, hex: &str) {
        let dir = self.esp.join("loader/entries");
        let prefix = format!("cfsctl-{}+", &hex[..12]);
        for e in self.entries() {
            let Some(counter) = e
                .strip_prefix(&prefix)
                .and_then(|c| c.strip_suffix(".conf"))
            else {
                continue;
            };
            let (left, done) = match counter.split_once('-') {
                Some((l, d)) => (l.parse::<u32>().unwrap(), d.parse::<u32>().unwrap()),
                None => (counter.parse().unwrap(), 0),
            };
            assert!(left > 0, "{e}: no tries left to fail");
            std::fs::rename(
                dir.join(&e),
                dir.join(format!("{prefix}{}-{}.conf", left - 1, done + 1)),
            )
            .unwrap();
        }
    }
}

impl Default for Target {
    fn default() -> Self {
        Target::new()
    }
}

/// The deployment of `status` with id `hex`.
pub fn deployment<'a>(status: &'a serde_json::Value, hex: &str) -> &'a serde_json::Value {
    status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == hex)
        .unwrap_or_else(|| panic!("no deployment {hex} in {status:#}"))
}
