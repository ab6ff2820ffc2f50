//! `cfsctl health-check`: what `cfsctl-health-check.service` runs before
//! `boot-complete.target`, so `systemd-bless-boot` marks the entry good only when it passes
//! and boot counting falls back when it keeps failing.
//!
//! Built-in checks: the kernel command line names a composefs image; `/` is the composefs
//! overlay of that image (mount source `composefs:<hex>`) with `verity=require` (unless the
//! argument said `?`); the image in the repository measures to that digest. Then every
//! executable in `/usr/lib/cfsctl/health.d/` and `/etc/cfsctl/health.d/` (by file name; one in
//! `/etc` replaces one of the same name in `/usr`) must exit 0: images and admins add their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::layout::{BOOTED_SYSROOT, SetupConf};
use crate::boot::cmdline;
use crate::fsverity::Digest;
use crate::fsverity::ioctl::measure_verity;

/// Directories of drop-in checks, lowest precedence first.
pub const CHECK_DIRS: [&str; 2] = ["/usr/lib/cfsctl/health.d", "/etc/cfsctl/health.d"];

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// Runs every check (see the module documentation) on the running system.
pub fn run(setup_conf: &SetupConf) -> Vec<Check> {
    let mut out = Vec::new();
    let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let image = match cmdline::parse(&line) {
        Ok(Some(i)) => i,
        Ok(None) => {
            out.push(check(
                "kernel command line",
                false,
                "no composefs= argument".into(),
            ));
            return out;
        }
        Err(e) => {
            out.push(check("kernel command line", false, e.to_string()));
            return out;
        }
    };
    out.push(check(
        "kernel command line",
        true,
        format!(
            "composefs={}{}",
            if image.insecure { "?" } else { "" },
            image.digest
        ),
    ));
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    out.push(root_check(&info, &image.digest, image.insecure));
    let path = Path::new(BOOTED_SYSROOT)
        .join(&setup_conf.repo)
        .join("images")
        .join(image.digest.to_hex());
    out.push(
        match std::fs::File::open(&path).map(|f| measure_verity(&f)) {
            Ok(Ok(d)) if d == image.digest => check(
                "image digest",
                true,
                format!("{} measures {d}", path.display()),
            ),
            Ok(Ok(d)) => check(
                "image digest",
                false,
                format!("{} measures {d}", path.display()),
            ),
            Ok(Err(e)) if image.insecure => check(
                "image digest",
                true,
                format!("not measured ({e}); composefs=? allows it"),
            ),
            Ok(Err(e)) => check("image digest", false, format!("{}: {e}", path.display())),
            Err(e) => check("image digest", false, format!("{}: {e}", path.display())),
        },
    );
    for (name, exe) in drop_ins(&CHECK_DIRS.map(PathBuf::from)) {
        out.push(match Command::new(&exe).output() {
            Ok(o) if o.status.success() => check(&name, true, exe.display().to_string()),
            Ok(o) => check(
                &name,
                false,
                format!(
                    "{} exited with {}: {}",
                    exe.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            ),
            Err(e) => check(&name, false, format!("running {}: {e}", exe.display())),
        });
    }
    out
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_string(),
        ok,
        detail,
    }
}

/// The mount on `/` as `/proc/self/mountinfo` shows it (mountinfo(5): the mount point is
/// field 5; after ` - `: type, source, super options). The last line wins (the top mount).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootMount {
    /// Filesystem type.
    pub fstype: String,
    /// Mount source (`composefs:<hex>` for the root cfs-setup-root mounted).
    pub source: String,
    /// Whether the super options include `verity=require`.
    pub verity: bool,
}

impl RootMount {
    /// Parses the text of `/proc/self/mountinfo`.
    pub fn find(mountinfo: &str) -> Option<RootMount> {
        let root = mountinfo
            .lines()
            .rev()
            .find(|l| l.split(' ').nth(4) == Some("/"))?;
        let (_, tail) = root.split_once(" - ")?;
        let mut f = tail.split(' ');
        let (fstype, source, opts) = (f.next()?, f.next()?, f.next()?);
        Some(RootMount {
            fstype: fstype.to_string(),
            source: source.to_string(),
            verity: opts.split(',').any(|o| o == "verity=require"),
        })
    }

    /// Of the running system.
    pub fn current() -> Option<RootMount> {
        RootMount::find(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
    }
}

/// `/` must be the overlay cfs-setup-root mounted for `digest`, with verity unless `insecure`.
fn root_check(mountinfo: &str, digest: &Digest, insecure: bool) -> Check {
    let Some(root) = RootMount::find(mountinfo) else {
        return check("root filesystem", false, "no / in mountinfo".into());
    };
    let ok = root.fstype == "overlay"
        && root.source == format!("composefs:{digest}")
        && (root.verity || insecure);
    check(
        "root filesystem",
        ok,
        format!(
            "{} from {}, verity {}",
            root.fstype,
            root.source,
            if root.verity { "require" } else { "off" }
        ),
    )
}

/// Executables of the drop-in directories by file name, later directories replacing earlier.
fn drop_ins(dirs: &[PathBuf]) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            out.insert(name, e.path());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_must_be_the_named_verified_overlay() {
        let d = Digest::from_hex(&"ab".repeat(32)).unwrap();
        let line =
            |src: &str, opts: &str| format!("1 0 0:30 / / rw,relatime - overlay {src} {opts}\n");
        let good = line(&format!("composefs:{d}"), "ro,lowerdir+=x,verity=require");
        assert!(root_check(&good, &d, false).ok);
        let off = line(&format!("composefs:{d}"), "ro,verity=off");
        assert!(!root_check(&off, &d, false).ok);
        assert!(root_check(&off, &d, true).ok);
        let other = line("composefs:cd", "ro,verity=require");
        assert!(!root_check(&other, &d, false).ok);
        assert!(!root_check("1 0 8:1 / / rw - ext4 /dev/vda rw\n", &d, false).ok);
    }

    #[test]
    fn drop_ins_replace_by_name() {
        let td = tempfile::tempdir().unwrap();
        let (usr, etc) = (td.path().join("usr"), td.path().join("etc"));
        std::fs::create_dir_all(&usr).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        for (d, n) in [
            (&usr, "10-a"),
            (&usr, "20-b"),
            (&etc, "20-b"),
            (&etc, ".hidden"),
        ] {
            std::fs::write(d.join(n), "").unwrap();
        }
        let got = drop_ins(&[usr.clone(), etc.clone()]);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["10-a", "20-b"]);
        assert_eq!(got["20-b"], etc.join("20-b"));
    }
}
