//! The boot variant of a merged image: the OCI sealing specification's `merged.bootable`
//! role, which bootc (composefs backend) mounts as the root filesystem. Its rules are those of
//! composefs-rs (`composefs-boot`, `BootOps::transform_for_boot`), applied to the canonical
//! tree (`docs/oci-conventions.md` section 8):
//!
//! 1. `/boot` and `/sysroot` must be directories (and `/usr`); both are emptied and take the
//!    seconds of `/usr`'s mtime (their nanoseconds stay: composefs-rs sets `st_mtim_sec`
//!    only). The kernel and initramfs reach the ESP another way, so the digest does not
//!    depend on files the boot entry itself is made from (a UKI holding the digest would
//!    otherwise be a cycle).
//! 2. Compaction (what only `/boot` or `/sysroot` named goes; link counts recomputed).
//! 3. SELinux: with no policy in the image (no `/etc/selinux/config` naming a
//!    `SELINUXTYPE`), every `security.selinux` xattr is removed. An image that ships a policy
//!    is labelled from its `file_contexts` ([`super::selabel`]), every inode, and link
//!    counts are recomputed (a hard link whose paths get different labels is split). A
//!    policy that cannot be read or compiled is an error ([`BootableError::SelinuxPolicy`]):
//!    no boot variant rather than one whose digest differs from bootc's.

use anyhow::Result;

use crate::tree::transform::compact_in_place;
use crate::tree::{FileType, Tree};

/// Why the boot variant cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BootableError {
    /// `/usr`, `/boot` or `/sysroot` is missing or not a directory.
    #[error("not bootable: {0} is missing or not a directory")]
    MissingDirectory(&'static str),
    /// The image's SELinux policy cannot be used to label the boot variant.
    #[error("the image's SELinux policy (/etc/selinux/config: SELINUXTYPE={policy}): {why}")]
    SelinuxPolicy {
        /// The policy's name.
        policy: String,
        /// What is wrong.
        why: String,
    },
    /// `/etc/selinux/config` or a policy file is not a regular file.
    #[error("{0} is not a regular file")]
    NotRegular(String),
}

use super::selabel::{self, SELINUX_XATTR};

/// Turns the canonical merged tree into its boot variant. `read` returns the content of a
/// regular file of the tree (needed for `/etc/selinux/config`).
pub fn make_bootable(
    tree: &mut Tree,
    read: impl Fn(&Tree, usize) -> Result<Vec<u8>>,
) -> Result<()> {
    let dir = |tree: &Tree, path: &'static str| {
        tree.lookup(path.as_bytes())
            .filter(|&i| tree.inodes[i].is_dir())
            .ok_or(BootableError::MissingDirectory(path))
    };
    let usr_sec = tree.inodes[dir(tree, "/usr")?].mtime.sec;
    for path in ["/boot", "/sysroot"] {
        let id = dir(tree, path)?;
        let inode = &mut tree.inodes[id];
        inode.entries.clear();
        inode.mtime.sec = usr_sec;
    }
    compact_in_place(tree);
    match selinux_policy(tree, &read)? {
        Some(name) => {
            let policy =
                load_policy(tree, &read, &name).map_err(|e| BootableError::SelinuxPolicy {
                    policy: name.clone(),
                    why: format!("{e:#}"),
                })?;
            selabel::label(tree, &policy);
            compact_in_place(tree);
        }
        None => {
            for inode in &mut tree.inodes {
                inode.xattrs.retain(|x| &*x.name != SELINUX_XATTR);
            }
        }
    }
    Ok(())
}

/// Reads `/etc/selinux/<name>/contexts/files/file_contexts*` and compiles them.
fn load_policy(
    tree: &Tree,
    read: &impl Fn(&Tree, usize) -> Result<Vec<u8>>,
    name: &str,
) -> Result<selabel::Policy> {
    let dir_path = format!("/etc/selinux/{name}/contexts/files");
    let dir = tree
        .lookup(dir_path.as_bytes())
        .filter(|&i| tree.inodes[i].is_dir())
        .ok_or_else(|| anyhow::anyhow!("{dir_path} is missing or not a directory"))?;
    selabel::Policy::build(|file| {
        let Some(entry) = tree.inodes[dir].entries.get(file.as_bytes()) else {
            return Ok(None);
        };
        if tree.inodes[entry.inode].file_type() != Some(FileType::Regular) {
            return Err(BootableError::NotRegular(format!("{dir_path}/{file}")).into());
        }
        read(tree, entry.inode).map(Some)
    })
}

/// The `SELINUXTYPE` of `/etc/selinux/config`, read as composefs-rs does: the first line
/// whose part before `=` is `SELINUXTYPE` (trimmed, any case), value trimmed.
fn selinux_policy(
    tree: &Tree,
    read: &impl Fn(&Tree, usize) -> Result<Vec<u8>>,
) -> Result<Option<String>> {
    let Some(config) = tree.lookup(b"/etc/selinux/config") else {
        return Ok(None);
    };
    if tree.inodes[config].file_type() != Some(FileType::Regular) {
        return Err(BootableError::NotRegular("/etc/selinux/config".into()).into());
    }
    let text = read(tree, config)?;
    for line in String::from_utf8_lossy(&text).lines() {
        if let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("SELINUXTYPE")
        {
            return Ok(Some(value.trim().to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dumpfile::{ParseMode, parse};

    fn inline(tree: &Tree, id: usize) -> Result<Vec<u8>> {
        Ok(tree.inodes[id]
            .inline
            .as_deref()
            .unwrap_or_default()
            .to_vec())
    }

    #[test]
    fn empties_boot_and_sysroot_and_strips_labels() {
        let dump = b"/ 0 40755 5 0 0 0 1.0 - - -\n\
            /boot 0 40700 2 0 0 0 9.5 - - -\n\
            /boot/vmlinuz 3 100644 1 0 0 0 9.0 - abc -\n\
            /sysroot 0 40755 3 0 0 0 8.25 - - -\n\
            /sysroot/ostree 0 40755 2 0 0 0 8.0 - - -\n\
            /usr 0 40755 2 0 0 0 7.75 - - - security.selinux=x\n\
            /usr/f 1 100644 1 0 0 0 7.0 - a - security.capability=c\n";
        let mut tree = parse(dump, ParseMode::Lenient).unwrap();
        make_bootable(&mut tree, inline).unwrap();
        let boot = &tree.inodes[tree.lookup(b"/boot").unwrap()];
        assert!(boot.entries.is_empty());
        assert_eq!(
            (boot.mtime.sec, boot.mtime.nsec, boot.mode & 0o7777),
            (7, 5, 0o700)
        );
        let sysroot = &tree.inodes[tree.lookup(b"/sysroot").unwrap()];
        assert_eq!((sysroot.nlink, sysroot.mtime.sec), (2, 7));
        assert_eq!(tree.inodes.len(), 5);
        let usr = &tree.inodes[tree.lookup(b"/usr").unwrap()];
        assert!(usr.xattrs.is_empty());
        let f = &tree.inodes[tree.lookup(b"/usr/f").unwrap()];
        assert_eq!(&*f.xattrs[0].name, b"security.capability");
    }

    #[test]
    fn refuses_a_policy_it_cannot_read_and_what_is_not_bootable() {
        let base = "/ 0 40755 5 0 0 0 1.0 - - -\n/boot 0 40755 2 0 0 0 1.0 - - -\n\
            /etc 0 40755 3 0 0 0 1.0 - - -\n/etc/selinux 0 40755 2 0 0 0 1.0 - - -\n";
        let with_config = |text: &str| {
            format!(
                "{base}/etc/selinux/config {} 100644 1 0 0 0 1.0 - {} -\n\
                 /sysroot 0 40755 2 0 0 0 1.0 - - -\n/usr 0 40755 2 0 0 0 1.0 - - -\n",
                text.len(),
                text.replace('\n', "\\n").replace(' ', "\\x20")
            )
        };
        let policy = with_config("SELINUX=enforcing\n SELINUXTYPE = targeted\n");
        let mut tree = parse(policy.as_bytes(), ParseMode::Lenient).unwrap();
        let err = make_bootable(&mut tree, inline).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(BootableError::SelinuxPolicy { policy, why })
                if policy == "targeted" && why.contains("contexts/files is missing")),
            "{err:#}"
        );
        // A commented-out type is no policy.
        let none = with_config("#SELINUXTYPE=targeted\n");
        let mut tree = parse(none.as_bytes(), ParseMode::Lenient).unwrap();
        make_bootable(&mut tree, inline).unwrap();

        let no_sysroot = format!("{base}/usr 0 40755 2 0 0 0 1.0 - - -\n");
        let mut tree = parse(no_sysroot.as_bytes(), ParseMode::Lenient).unwrap();
        let err = make_bootable(&mut tree, inline).unwrap_err();
        assert!(
            matches!(
                err.downcast_ref(),
                Some(BootableError::MissingDirectory("/sysroot"))
            ),
            "{err:#}"
        );
    }
}
