//! Finding the ESP of a booted host, and reading the boot loader's EFI variables.
//!
//! The ESP is the partition systemd-boot says it was loaded from (`LoaderDevicePartUUID`):
//! where it is mounted already (any mount point of that device), else cfsctl mounts it at
//! `/run/cfsctl/esp` for the command's duration. So an idle `/boot` automount, or none at all,
//! is never a reason to fail (bootc#2402), including at shutdown when systemd refuses to start
//! automount jobs. Without that variable (not booted by systemd-boot), the first of `/efi`,
//! `/boot`, `/boot/efi` that holds `loader/` is used.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::mount::{MountFlags, UnmountFlags};

/// The vendor GUID of systemd-boot's variables (the Boot Loader Interface).
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// Where cfsctl mounts the ESP when nothing else has.
pub const PRIVATE_MOUNT: &str = "/run/cfsctl/esp";

/// A string variable of the boot loader (`LoaderEntrySelected`, `LoaderEntryDefault`...):
/// the efivarfs file is 4 bytes of attributes then UTF-16LE, NUL-terminated. `None` when the
/// variable does not exist or cannot be read.
pub fn loader_var(name: &str) -> Option<String> {
    let bytes = fs::read(format!("{EFIVARS}/{name}-{LOADER_GUID}")).ok()?;
    decode_utf16_var(&bytes)
}

fn decode_utf16_var(bytes: &[u8]) -> Option<String> {
    let data = bytes.get(4..)?;
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

/// The ESP in use, unmounted again on drop when cfsctl mounted it.
#[derive(Debug)]
pub struct Esp {
    /// Where it is mounted.
    pub path: PathBuf,
    mounted_here: bool,
}

impl Esp {
    /// An ESP directory given by the user (`--esp`).
    pub fn at(path: &Path) -> Result<Esp> {
        if !path.is_dir() {
            bail!("--esp {}: not a directory", path.display());
        }
        Ok(Esp {
            path: path.to_owned(),
            mounted_here: false,
        })
    }

    /// The ESP of the booted host (see the module documentation).
    pub fn find() -> Result<Esp> {
        if let Some(uuid) = loader_var("LoaderDevicePartUUID") {
            return Esp::from_partuuid(&uuid.to_ascii_lowercase());
        }
        for candidate in ["/efi", "/boot", "/boot/efi"] {
            if Path::new(candidate).join("loader").is_dir() {
                return Esp::at(Path::new(candidate));
            }
        }
        bail!(
            "cannot find the ESP: no LoaderDevicePartUUID EFI variable (not booted by \
             systemd-boot?) and none of /efi, /boot, /boot/efi holds loader/; pass --esp DIR"
        )
    }

    fn from_partuuid(uuid: &str) -> Result<Esp> {
        let dev = Path::new("/dev/disk/by-partuuid").join(uuid);
        let meta = fs::metadata(&dev)
            .with_context(|| format!("the ESP (LoaderDevicePartUUID {uuid}): {}", dev.display()))?;
        if !meta.file_type().is_block_device() {
            bail!("{} is not a block device", dev.display());
        }
        let rdev = meta.rdev();
        let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        if let Some(path) = mount_point_of(&mountinfo, major, minor) {
            return Ok(Esp {
                path,
                mounted_here: false,
            });
        }
        fs::create_dir_all(PRIVATE_MOUNT).with_context(|| format!("creating {PRIVATE_MOUNT}"))?;
        rustix::mount::mount(
            &dev,
            PRIVATE_MOUNT,
            "vfat",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"",
        )
        .with_context(|| format!("mounting the ESP {} on {PRIVATE_MOUNT}", dev.display()))?;
        Ok(Esp {
            path: PRIVATE_MOUNT.into(),
            mounted_here: true,
        })
    }
}

impl Drop for Esp {
    fn drop(&mut self) {
        if self.mounted_here
            && let Err(e) = rustix::mount::unmount(&self.path, UnmountFlags::DETACH)
        {
            tracing::warn!("unmounting {}: {e}", self.path.display());
        }
    }
}

/// The first mount point of device `major:minor` whose root is the filesystem's root, from
/// the text of `/proc/self/mountinfo` (proc(5): `id parent major:minor root mountpoint ...`).
fn mount_point_of(mountinfo: &str, major: u32, minor: u32) -> Option<PathBuf> {
    let want = format!("{major}:{minor}");
    mountinfo.lines().find_map(|line| {
        let mut f = line.split(' ');
        let (_id, _parent, dev, root, point) =
            (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        (dev == want && root == "/").then(|| PathBuf::from(unescape_octal(point)))
    })
}

/// Undoes the `\040`-style escapes of mountinfo fields.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_variables() {
        let mut bytes = vec![7, 0, 0, 0];
        for u in "cfsctl-ab+2-1.conf".encode_utf16().chain([0]) {
            bytes.extend(u.to_le_bytes());
        }
        assert_eq!(decode_utf16_var(&bytes).unwrap(), "cfsctl-ab+2-1.conf");
        assert_eq!(decode_utf16_var(&[1, 2]), None);
    }

    #[test]
    fn finds_mount_points() {
        let info = "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n\
                    30 22 0:40 / /boot rw - autofs systemd-1 rw\n\
                    41 30 254:2 /sub /x rw - vfat /dev/vda2 rw\n\
                    42 30 254:2 / /boot\\040esp rw - vfat /dev/vda2 rw\n";
        assert_eq!(
            mount_point_of(info, 254, 2).unwrap(),
            PathBuf::from("/boot esp")
        );
        assert_eq!(mount_point_of(info, 254, 3), None);
    }
}
