//! The host's layout: every path and name that the writers (`install`, `upgrade`, `switch`,
//! `rollback`, `finalize`, `gc`) and the readers (`cfs-setup-root`, `status`, `fsck`) share.
//! Nothing else in cfsctl spells these out.
//!
//! ```text
//! physical root (/sysroot once booted)
//!   composefs/                       the repository (setup-root.conf `repo`)
//!     refs/deploy/<hex>              keeps a deployment's image and objects alive
//!   state/                           (setup-root.conf `state`)
//!     deploy/<hex>/deployment.json   the deployment record (record.rs)
//!     deploy/<hex>/etc/{upper,work}  the deployment's /etc overlay layers
//!     var/                           /var, shared by every deployment
//!     staged.json                    the deployment waiting for finalization
//!     last-failure.json              the last staging or finalization failure
//!     enable-verity-on-boot          marker: enable fs-verity on every object at next boot
//!     lock                           held by every command that changes deployments
//! ESP
//!   loader/loader.conf               never names a default entry
//!   loader/entries/cfsctl-<short>[+LEFT[-DONE]].conf   one per deployment (the commit point)
//!   loader/entries/cfsctl-<short>.staged               written at staging, renamed at finalize
//!   cfsctl/<boot-id>/{vmlinuz,initramfs.img}           shared by deployments with equal files
//!   EFI/BOOT/BOOTX64.EFI, EFI/systemd/systemd-bootx64.efi
//! ```
//! `<short>` is the first 12 hex digits of the image digest; an entry's `options` carry the
//! whole digest (`composefs=<hex>`), which is what identifies the deployment.

use std::path::{Path, PathBuf};

use crate::fsverity::Digest;

pub use super::setup_conf::SetupConf;

/// The physical root of a booted host (mounted there by `cfs-setup-root`).
pub const BOOTED_SYSROOT: &str = "/sysroot";
/// Deployment directories, under the state directory.
pub const DEPLOY_DIR: &str = "deploy";
/// The record file in a deployment directory.
pub const RECORD_FILE: &str = "deployment.json";
/// `/etc` overlay upper directory, under a deployment directory.
pub const ETC_UPPER: &str = "etc/upper";
/// `/etc` overlay work directory, under a deployment directory.
pub const ETC_WORK: &str = "etc/work";
/// The shared `/var`, under the state directory.
pub const VAR_DIR: &str = "var";
/// The staged-deployment marker, under the state directory.
pub const STAGED_FILE: &str = "staged.json";
/// The last failure, under the state directory.
pub const FAILURE_FILE: &str = "last-failure.json";
/// The deployment lock, under the state directory.
pub const LOCK_FILE: &str = "lock";
/// Marker (under the state directory) asking the next boot to enable fs-verity on every object
/// before measuring: written by `cfsctl install` when the target filesystem could not enable
/// it (a disk image built with `mkfs.ext4 -d`). See docs/boot.md.
pub const ENABLE_VERITY_MARKER: &str = "enable-verity-on-boot";
/// Prefix of the repository refs that keep deployments alive.
pub const DEPLOY_REF_PREFIX: &str = "deploy/";

/// BLS entries, under the ESP.
pub const ENTRIES_DIR: &str = "loader/entries";
/// systemd-boot's configuration, under the ESP.
pub const LOADER_CONF: &str = "loader/loader.conf";
/// Kernels and initramfs images, under the ESP.
pub const BOOT_FILES_DIR: &str = "cfsctl";
/// The kernel's name in a boot files directory.
pub const KERNEL_FILE: &str = "vmlinuz";
/// The initramfs's name in a boot files directory.
pub const INITRD_FILE: &str = "initramfs.img";
/// Prefix of every entry cfsctl writes; entries without it are someone else's.
pub const ENTRY_PREFIX: &str = "cfsctl-";
/// Suffix of a staged entry (not `.conf`: systemd-boot does not read it).
pub const STAGED_ENTRY_SUFFIX: &str = ".staged";
/// The `sort-key` of every cfsctl entry.
pub const SORT_KEY: &str = "cfsctl";
/// The fallback path of systemd-boot (firmware boots it without a boot variable).
pub const ESP_FALLBACK_LOADER: &str = "EFI/BOOT/BOOTX64.EFI";
/// systemd-boot's own path.
pub const ESP_SYSTEMD_BOOT: &str = "EFI/systemd/systemd-bootx64.efi";
/// Where systemd-boot comes from when the image does not ship it (Debian `systemd-boot-efi`).
pub const IMAGE_SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// Where a host's parts are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPaths {
    /// The physical root filesystem.
    pub sysroot: PathBuf,
    /// The repository.
    pub repo: PathBuf,
    /// The state directory.
    pub state: PathBuf,
    /// The ESP (or XBOOTLDR) holding loader entries and boot files.
    pub esp: PathBuf,
}

impl HostPaths {
    /// The layout of a host whose physical root is `sysroot` and ESP `esp`, with the
    /// repository and state directories `conf` names (cfs-setup-root reads the same file).
    pub fn new(sysroot: &Path, esp: &Path, conf: &SetupConf) -> HostPaths {
        HostPaths {
            sysroot: sysroot.to_owned(),
            repo: sysroot.join(&conf.repo),
            state: sysroot.join(&conf.state),
            esp: esp.to_owned(),
        }
    }

    /// `state/deploy/<hex>`.
    pub fn deploy_dir(&self, id: &Digest) -> PathBuf {
        self.state.join(deploy_rel(id))
    }
}

/// `deploy/<hex>`, relative to the state directory.
pub fn deploy_rel(id: &Digest) -> String {
    format!("{DEPLOY_DIR}/{}", id.to_hex())
}

/// The repository ref keeping deployment `id` alive.
pub fn deploy_ref(id: &Digest) -> String {
    format!("{DEPLOY_REF_PREFIX}{}", id.to_hex())
}

/// The first 12 hex digits: names on the ESP (FAT names stay short).
pub fn short(id: &Digest) -> String {
    id.to_hex()[..12].to_string()
}

/// The entry id (file name without counter and `.conf`) of deployment `id`.
pub fn entry_id(id: &Digest) -> String {
    format!("{ENTRY_PREFIX}{}", short(id))
}

/// The staged entry's file name of deployment `id`.
pub fn staged_entry_name(id: &Digest) -> String {
    format!("{}{STAGED_ENTRY_SUFFIX}", entry_id(id))
}

/// `cfsctl/<boot-id>` on the ESP.
pub fn boot_files_rel(boot_id: &str) -> String {
    format!("{BOOT_FILES_DIR}/{boot_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let d = Digest::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(entry_id(&d), "cfsctl-abababababab");
        assert_eq!(staged_entry_name(&d), "cfsctl-abababababab.staged");
        assert_eq!(deploy_ref(&d), format!("deploy/{}", "ab".repeat(32)));
        let p = HostPaths::new(Path::new("/r"), Path::new("/e"), &SetupConf::default());
        assert_eq!(p.repo, Path::new("/r/composefs"));
        assert_eq!(
            p.deploy_dir(&d),
            Path::new("/r/state/deploy").join("ab".repeat(32))
        );
    }
}
