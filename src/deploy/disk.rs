//! A whole raw disk image for a deployment, built without mounting anything (so it works in
//! containers and on hosts without loop devices or fs-verity): GPT with an ESP (FAT made by
//! `mkfs.vfat`, filled by mtools) and an ext4 root with the `verity` feature made by
//! `mkfs.ext4 -d`. ext4 cannot be created with fs-verity already enabled on files, so the
//! install leaves the marker that makes the first boot enable it (docs/boot.md).

use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::install::{InstallOptions, Installed, install_to_root};
use crate::repo::Repository;

const MIB: u64 = 1024 * 1024;
/// The smallest ESP made (systemd's advice for an ESP holding kernels is 512 MiB or more).
const ESP_MIN: u64 = 512 * MIB;
/// First partition at 1 MiB (alignment; the primary GPT needs 34 sectors).
const FIRST: u64 = MIB;
/// Space kept free at the end for the backup GPT (33 sectors), rounded to 1 MiB.
const TAIL: u64 = MIB;
/// UEFI "EFI System" partition type.
const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Discoverable Partitions Specification: root, x86-64.
const ROOT_TYPE: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";

/// What `--to-disk` made.
#[derive(Debug)]
pub struct DiskImage {
    /// The install into the staging root and ESP.
    pub installed: Installed,
    /// The root filesystem's UUID (on the kernel command line as `root=UUID=`).
    pub root_uuid: String,
    /// Partition offsets and sizes in bytes: (ESP, root).
    pub partitions: [(u64, u64); 2],
}

/// Writes a bootable disk image of `size` bytes to `path` holding image `name` of `src`;
/// `template` gives the kernel arguments (after `root=UUID=... rw console=ttyS0`), origin and
/// bootloader (its `sysroot` and `esp` are ignored: the disk's are used).
pub fn install_to_disk(
    src: &Repository,
    name: &str,
    path: &Path,
    size: u64,
    template: &InstallOptions,
) -> Result<DiskImage> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".cfsctl-disk-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    let root_uuid = fs::read_to_string("/proc/sys/kernel/random/uuid")
        .context("reading a random UUID")?
        .trim()
        .to_string();
    let mut kargs = vec![
        format!("root=UUID={root_uuid}"),
        "rw".to_string(),
        "console=ttyS0".into(),
    ];
    kargs.extend(template.kargs.iter().cloned());
    let opts = InstallOptions {
        sysroot: staging.path().join("root"),
        esp: staging.path().join("esp"),
        kargs,
        ..template.clone()
    };
    let mut installed = install_to_root(src, name, &opts)?;
    // The staging ESP goes away: name the entry by its place on the ESP partition.
    if let Ok(rel) = installed.entry.strip_prefix(&opts.esp) {
        installed.entry = Path::new("ESP:/").join(rel);
    }

    let esp_bytes = tree_size(&opts.esp)?;
    // Room for the boot files of several deployments (booted, rollback, staged, and one
    // being written), as upgrades bring new kernels.
    let esp_size = (esp_bytes * 4 / MIB + 32).max(ESP_MIN / MIB) * MIB;
    if size < FIRST + esp_size + 64 * MIB + TAIL {
        bail!(
            "--size {size} is too small: the ESP alone needs {} MiB",
            esp_size / MIB
        );
    }
    let root_size = (size - FIRST - esp_size - TAIL) / MIB * MIB;
    let needed = tree_size(&opts.sysroot)?;
    if root_size < needed * 5 / 4 + 32 * MIB {
        bail!(
            "--size {size} is too small: the root filesystem needs about {} MiB",
            (needed * 5 / 4 + 32 * MIB) / MIB + (FIRST + esp_size + TAIL) / MIB
        );
    }

    let esp_img = staging.path().join("esp.img");
    run(Command::new("mkfs.vfat")
        .args(["-n", "ESP", "-C"])
        .arg(&esp_img)
        .arg((esp_size / 1024).to_string()))?;
    fill_fat(&esp_img, &opts.esp)?;

    let root_img = staging.path().join("root.img");
    run(Command::new("mkfs.ext4")
        .args([
            "-q", "-F", "-O", "verity", "-b", "4096", "-L", "cfsroot", "-U", &root_uuid, "-d",
        ])
        .arg(&opts.sysroot)
        .arg(&root_img)
        .arg(format!("{}k", root_size / 1024)))?;

    let disk = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    disk.set_len(size)?;
    drop(disk);
    let esp_off = FIRST;
    let root_off = FIRST + esp_size;
    let script = format!(
        "label: gpt\nstart={}, size={}, type={ESP_TYPE}, name=ESP\nstart={}, size={}, type={ROOT_TYPE}, name=root\n",
        esp_off / 512,
        esp_size / 512,
        root_off / 512,
        root_size / 512
    );
    run_with_input(
        Command::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(path),
        &script,
    )?;
    copy_at(&esp_img, path, esp_off)?;
    copy_at(&root_img, path, root_off)?;
    Ok(DiskImage {
        installed,
        root_uuid,
        partitions: [(esp_off, esp_size), (root_off, root_size)],
    })
}

fn tree_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            tree_size(&entry.path())? + 4096
        } else {
            meta.len().div_ceil(4096) * 4096
        };
    }
    Ok(total)
}

/// Copies the content of `dir` into the FAT image with mtools (`mmd`, `mcopy`), no mount.
fn fill_fat(image: &Path, dir: &Path) -> Result<()> {
    fn walk(image: &Path, dir: &Path, rel: &str) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let target = format!("{rel}/{name}");
            if e.file_type()?.is_dir() {
                run(Command::new("mmd")
                    .arg("-i")
                    .arg(image)
                    .arg(format!("::{target}")))?;
                walk(image, &e.path(), &target)?;
            } else {
                run(Command::new("mcopy")
                    .arg("-i")
                    .arg(image)
                    .arg(e.path())
                    .arg(format!("::{target}")))?;
            }
        }
        Ok(())
    }
    walk(image, dir, "")
}

fn copy_at(from: &Path, to: &Path, offset: u64) -> Result<()> {
    let mut src = File::open(from)?;
    let mut dst = fs::OpenOptions::new().write(true).open(to)?;
    dst.seek(SeekFrom::Start(offset))?;
    std::io::copy(&mut src, &mut dst)
        .with_context(|| format!("copying {} into {}", from.display(), to.display()))?;
    dst.sync_all()?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    run_with_input(cmd, "")
}

fn run_with_input(cmd: &mut Command, input: &str) -> Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {what} (is it installed?)"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
