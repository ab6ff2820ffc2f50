//! BLS Type 1 boot entries (`loader/entries/*.conf`, the Boot Loader Specification), as
//! systemd-boot reads them.

use crate::fsverity::Digest;

/// One boot entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEntry {
    /// `title`.
    pub title: String,
    /// `version` (the kernel version; systemd-boot sorts by it).
    pub version: String,
    /// `linux`: the kernel, relative to the ESP root, starting with `/`.
    pub linux: String,
    /// `initrd`.
    pub initrd: String,
    /// `options`: the kernel command line.
    pub options: Vec<String>,
}

impl BootEntry {
    /// The entry's file name for deployment `digest`: `cfsctl-<first 12 hex>.conf`.
    pub fn file_name(digest: &Digest) -> String {
        format!("cfsctl-{}.conf", short(digest))
    }

    /// The entry file's text.
    pub fn render(&self) -> String {
        format!(
            "title {}\nversion {}\nlinux {}\ninitrd {}\noptions {}\n",
            self.title,
            self.version,
            self.linux,
            self.initrd,
            self.options.join(" ")
        )
    }
}

/// The short form of a digest used in file names.
pub fn short(digest: &Digest) -> String {
    digest.to_hex()[..12].to_string()
}

/// `loader/loader.conf` booting `default_entry` at once.
pub fn loader_conf(default_entry: &str) -> String {
    format!("default {default_entry}\ntimeout 0\nconsole-mode keep\neditor no\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_entry() {
        let d = Digest::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(BootEntry::file_name(&d), "cfsctl-abababababab.conf");
        let e = BootEntry {
            title: "t".into(),
            version: "6.12".into(),
            linux: "/cfsctl/x/vmlinuz".into(),
            initrd: "/cfsctl/x/initramfs.img".into(),
            options: vec![format!("composefs={d}"), "rw".into()],
        };
        let text = e.render();
        assert!(text.contains(&format!("\noptions composefs={} rw\n", "ab".repeat(32))));
        assert!(text.starts_with("title t\nversion 6.12\nlinux /cfsctl/x/vmlinuz\n"));
    }
}
