//! BLS Type 1 boot entries (`loader/entries/*.conf`, the Boot Loader Specification) and their
//! boot counters (systemd's Automatic Boot Assessment), as systemd-boot reads and orders them.
//!
//! Boot counting lives in the file name: `ID+LEFT.conf` or `ID+LEFT-DONE.conf`. systemd-boot
//! renames the entry before booting it (LEFT-1, DONE+1); `systemd-bless-boot` strips the
//! counter once `boot-complete.target` is reached (the entry is good); an entry at `+0-N` is
//! bad and sorted after every other entry, so the next one boots by itself.

use std::cmp::Ordering;

/// One boot entry, as written by cfsctl (and parsed back from any entry file).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BootEntry {
    /// `title`.
    pub title: String,
    /// `sort-key`: entries that have one are ordered by it, then by `version`, newest first.
    pub sort_key: Option<String>,
    /// `version`: cfsctl writes the deployment's boot priority here (a decimal number; the
    /// highest good one boots).
    pub version: Option<String>,
    /// `machine-id`.
    pub machine_id: Option<String>,
    /// `linux`: the kernel, relative to the ESP root, starting with `/`.
    pub linux: String,
    /// `initrd` lines.
    pub initrd: Vec<String>,
    /// `options`: the kernel command line, split at whitespace.
    pub options: Vec<String>,
}

impl BootEntry {
    /// The entry file's text.
    pub fn render(&self) -> String {
        let mut out = format!("title {}\n", self.title);
        if let Some(k) = &self.sort_key {
            out.push_str(&format!("sort-key {k}\n"));
        }
        if let Some(v) = &self.version {
            out.push_str(&format!("version {v}\n"));
        }
        if let Some(m) = &self.machine_id {
            out.push_str(&format!("machine-id {m}\n"));
        }
        out.push_str(&format!("linux {}\n", self.linux));
        for i in &self.initrd {
            out.push_str(&format!("initrd {i}\n"));
        }
        out.push_str(&format!("options {}\n", self.options.join(" ")));
        out
    }

    /// Parses an entry file. Unknown keys are ignored (as systemd-boot does); `options` lines
    /// accumulate. `None` when the text has no `linux` line (not an entry cfsctl can boot).
    pub fn parse(text: &str) -> Option<BootEntry> {
        let mut e = BootEntry::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = match line.split_once(|c: char| c.is_ascii_whitespace()) {
                Some((k, v)) => (k, v.trim()),
                None => (line, ""),
            };
            match key {
                "title" => e.title = value.to_string(),
                "sort-key" => e.sort_key = Some(value.to_string()),
                "version" => e.version = Some(value.to_string()),
                "machine-id" => e.machine_id = Some(value.to_string()),
                "linux" => e.linux = value.to_string(),
                "initrd" => e.initrd.push(value.to_string()),
                "options" => e
                    .options
                    .extend(value.split_ascii_whitespace().map(String::from)),
                _ => {}
            }
        }
        (!e.linux.is_empty()).then_some(e)
    }
}

/// An entry file name, split into its id and boot counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryName {
    /// The name without the counter and without `.conf` (systemd-boot's entry id).
    pub id: String,
    /// Tries left, when the name carries a counter.
    pub tries_left: Option<u32>,
    /// Tries done (`-DONE`; 0 when the counter has only `+LEFT`).
    pub tries_done: Option<u32>,
}

impl EntryName {
    /// Parses `ID[+LEFT[-DONE]].conf`, as systemd-boot does: the counter is after the last
    /// `+`, digits only; anything else is part of the id. `None` for a name not ending in
    /// `.conf`.
    pub fn parse(file_name: &str) -> Option<EntryName> {
        let stem = file_name.strip_suffix(".conf")?;
        if stem.is_empty() {
            return None;
        }
        let plain = EntryName {
            id: stem.to_string(),
            tries_left: None,
            tries_done: None,
        };
        let Some((id, counter)) = stem.rsplit_once('+') else {
            return Some(plain);
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (left, done) = match counter.split_once('-') {
            Some((l, d)) if digits(l) && digits(d) => (l, Some(d)),
            None if digits(counter) => (counter, None),
            _ => return Some(plain),
        };
        let (Ok(left), Ok(done)) = (left.parse(), done.unwrap_or("0").parse()) else {
            return Some(plain);
        };
        Some(EntryName {
            id: id.to_string(),
            tries_left: Some(left),
            tries_done: Some(done),
        })
    }

    /// The file name: `ID.conf`, `ID+LEFT.conf` or `ID+LEFT-DONE.conf` (DONE only when > 0).
    pub fn file_name(&self) -> String {
        match (self.tries_left, self.tries_done) {
            (Some(l), Some(d)) if d > 0 => format!("{}+{l}-{d}.conf", self.id),
            (Some(l), _) => format!("{}+{l}.conf", self.id),
            _ => format!("{}.conf", self.id),
        }
    }

    /// The boot assessment this name says.
    pub fn state(&self) -> BootState {
        match self.tries_left {
            None => BootState::Good,
            Some(0) => BootState::Bad,
            Some(_) => BootState::Indeterminate,
        }
    }
}

/// What boot counting says of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BootState {
    /// No counter: booted and blessed (or never counted).
    Good,
    /// Tries left: not yet booted to `boot-complete.target`.
    Indeterminate,
    /// No tries left: failed every try; sorted last.
    Bad,
}

impl BootState {
    /// `good`, `indeterminate` or `bad` (as in `status --json`).
    pub fn as_str(self) -> &'static str {
        match self {
            BootState::Good => "good",
            BootState::Indeterminate => "indeterminate",
            BootState::Bad => "bad",
        }
    }
}

/// systemd-boot's order of two entries (`boot_entry_compare` in systemd's `src/boot/boot.c`,
/// v251 and later): entries without tries left last; entries with a sort key before those
/// without; then by sort key, machine id, version (newest first); then by id (newest first);
/// then more tries left first, fewer tries done first. The first entry in this order is the
/// default when neither `LoaderEntryDefault`, a one-shot entry nor `default` in loader.conf
/// says otherwise.
pub fn compare(a: (&EntryName, &BootEntry), b: (&EntryName, &BootEntry)) -> Ordering {
    let bad = |n: &EntryName| n.tries_left == Some(0);
    let (an, ae) = a;
    let (bn, be) = b;
    bad(an)
        .cmp(&bad(bn))
        .then_with(|| ae.sort_key.is_none().cmp(&be.sort_key.is_none()))
        .then_with(|| match (&ae.sort_key, &be.sort_key) {
            (Some(ak), Some(bk)) => ak
                .cmp(bk)
                .then_with(|| ae.machine_id.cmp(&be.machine_id))
                .then_with(|| verscmp(bv(ae), bv(be)).reverse()),
            _ => Ordering::Equal,
        })
        .then_with(|| verscmp(&an.id, &bn.id).reverse())
        .then_with(|| match (an.tries_left, bn.tries_left) {
            (Some(al), Some(bl)) => bl.cmp(&al).then_with(|| an.tries_done.cmp(&bn.tries_done)),
            _ => Ordering::Equal,
        })
}

fn bv(e: &BootEntry) -> &str {
    e.version.as_deref().unwrap_or("")
}

/// Version comparison in the spirit of systemd's `strverscmp_improved`: runs of digits compare
/// as numbers, other characters bytewise, `~` sorts before everything (pre-releases), and a
/// string that is a prefix of the other is older.
pub fn verscmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        // '~' first: "1~rc" < "1".
        match (a.first(), b.first()) {
            (Some(b'~'), Some(b'~')) => {
                a = &a[1..];
                b = &b[1..];
                continue;
            }
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            _ => {}
        }
        let (ad, bd) = (a[0].is_ascii_digit(), b[0].is_ascii_digit());
        if ad && bd {
            let an = a.iter().take_while(|c| c.is_ascii_digit()).count();
            let bn = b.iter().take_while(|c| c.is_ascii_digit()).count();
            let (x, y) = (trim_zeros(&a[..an]), trim_zeros(&b[..bn]));
            let ord = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if ord != Ordering::Equal {
                return ord;
            }
            a = &a[an..];
            b = &b[bn..];
        } else if ad != bd {
            // A number is newer than a letter at the same place ("1.1" > "1.a").
            return if ad {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        } else {
            let ord = a[0].cmp(&b[0]);
            if ord != Ordering::Equal {
                return ord;
            }
            a = &a[1..];
            b = &b[1..];
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sort_key: Option<&str>, version: &str) -> BootEntry {
        BootEntry {
            title: "t".into(),
            sort_key: sort_key.map(String::from),
            version: Some(version.into()),
            linux: "/k".into(),
            initrd: vec!["/i".into()],
            options: vec!["composefs=ab".into(), "rw".into()],
            ..BootEntry::default()
        }
    }

    #[test]
    fn renders_and_parses_back() {
        let e = entry(Some("cfsctl"), "7");
        let text = e.render();
        assert_eq!(
            text,
            "title t\nsort-key cfsctl\nversion 7\nlinux /k\ninitrd /i\noptions composefs=ab rw\n"
        );
        assert_eq!(BootEntry::parse(&text).unwrap(), e);
        let foreign =
            "# hand-written\ntitle  Other OS\nlinux /vmlinuz\noptions a\noptions  b c\nunknown x\n";
        let p = BootEntry::parse(foreign).unwrap();
        assert_eq!(p.title, "Other OS");
        assert_eq!(p.options, ["a", "b", "c"]);
        assert!(BootEntry::parse("title no kernel\n").is_none());
    }

    #[test]
    fn entry_names_with_counters() {
        let n = EntryName::parse("cfsctl-abc+3.conf").unwrap();
        assert_eq!(
            (n.id.as_str(), n.tries_left, n.tries_done),
            ("cfsctl-abc", Some(3), Some(0))
        );
        assert_eq!(n.file_name(), "cfsctl-abc+3.conf");
        assert_eq!(n.state(), BootState::Indeterminate);
        let n = EntryName::parse("cfsctl-abc+0-3.conf").unwrap();
        assert_eq!((n.tries_left, n.tries_done), (Some(0), Some(3)));
        assert_eq!(n.state(), BootState::Bad);
        assert_eq!(n.file_name(), "cfsctl-abc+0-3.conf");
        let n = EntryName::parse("cfsctl-abc.conf").unwrap();
        assert_eq!(n.state(), BootState::Good);
        // Not a counter: stays part of the id.
        for odd in [
            "a+b.conf",
            "a+1-.conf",
            "a+-1.conf",
            "a+.conf",
            "a+1-x.conf",
        ] {
            let n = EntryName::parse(odd).unwrap();
            assert_eq!(n.tries_left, None, "{odd}");
            assert_eq!(n.file_name(), odd);
        }
        assert!(EntryName::parse("a.staged").is_none());
        assert!(EntryName::parse(".conf").is_none());
    }

    #[test]
    fn versions_compare_like_systemd() {
        use Ordering::*;
        for (a, b, o) in [
            ("10", "9", Greater),
            ("2", "10", Less),
            ("007", "7", Equal),
            ("1.2", "1.10", Less),
            ("1~rc1", "1", Less),
            ("1", "1.0", Less),
            ("1.a", "1.1", Less),
            ("", "1", Less),
        ] {
            assert_eq!(verscmp(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn order_is_systemd_boots() {
        let name = |s: &str| EntryName::parse(s).unwrap();
        let (e1, e2, e3) = (
            entry(Some("cfsctl"), "1"),
            entry(Some("cfsctl"), "2"),
            entry(Some("cfsctl"), "3"),
        );
        let foreign = entry(None, "99");
        let (n1, n2, n3, nf) = (
            name("cfsctl-a.conf"),
            name("cfsctl-b+2-1.conf"),
            name("cfsctl-c+0-3.conf"),
            name("zzz.conf"),
        );
        let mut v = [(&nf, &foreign), (&n1, &e1), (&n3, &e3), (&n2, &e2)];
        v.sort_by(|a, b| compare(*a, *b));
        let ids: Vec<&str> = v.iter().map(|(n, _)| n.id.as_str()).collect();
        // Highest version first; the bad entry (+0-3) last even though its version is highest;
        // the entry without a sort key after all that have one.
        assert_eq!(ids, ["cfsctl-b", "cfsctl-a", "zzz", "cfsctl-c"]);
    }
}
