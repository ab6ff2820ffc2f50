//! The EROFS reader and dump printer against the C tools: for every golden dump, the image
//! C `mkcomposefs` writes, read by us and printed, must equal `composefs-info dump` of that
//! image byte for byte. Also: mutated images never make the reader panic or hang.
//!
//! Needs C composefs 1.0.8 (`$MKCOMPOSEFS`, default `/opt/composefs-c/bin/mkcomposefs`,
//! `composefs-info` next to it); without it the tests print a note and pass.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cfsctl::dumpfile::print::print;
use cfsctl::erofs::reader::{read_image, referenced_objects};

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("CFS_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/composefs-dumps"),
    }
}

/// The C tools, or `None` (with a note) when they are not installed.
struct CTools {
    mkcomposefs: PathBuf,
    info: PathBuf,
    lib_dir: PathBuf,
}

impl CTools {
    fn find() -> Option<Self> {
        let mkcomposefs = std::env::var_os("MKCOMPOSEFS")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/opt/composefs-c/bin/mkcomposefs".into());
        if !mkcomposefs.exists() {
            eprintln!(
                "note: {} not found, skipping the C comparison",
                mkcomposefs.display()
            );
            return None;
        }
        let bin = mkcomposefs.parent()?.to_path_buf();
        Some(CTools {
            info: bin.join("composefs-info"),
            lib_dir: bin.join("../lib/x86_64-linux-gnu"),
            mkcomposefs,
        })
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("LD_LIBRARY_PATH", &self.lib_dir);
        cmd
    }

    /// The image mkcomposefs writes for `dump` (plain text) at the given version bounds.
    fn mkcomposefs(&self, dump: &[u8], version: Option<&str>, dir: &Path) -> Vec<u8> {
        let input = dir.join("input.dump");
        let image = dir.join("image.cfs");
        std::fs::write(&input, dump).unwrap();
        let mut cmd = self.command(&self.mkcomposefs);
        if let Some(v) = version {
            cmd.arg(format!("--min-version={v}"))
                .arg(format!("--max-version={v}"));
        }
        let out = cmd
            .arg("--from-file")
            .arg(&input)
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkcomposefs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(&image).unwrap()
    }

    fn info_dump(&self, image: &[u8], dir: &Path) -> Vec<u8> {
        let path = dir.join("info.cfs");
        std::fs::write(&path, image).unwrap();
        let out = self
            .command(&self.info)
            .arg("dump")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "composefs-info: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// `(name, dump text, version)` of every fixture mkcomposefs accepts.
fn fixtures() -> Vec<(String, Vec<u8>, Option<String>)> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures at {} (set CFS_FIXTURES): {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            (n.ends_with(".dump") || n.ends_with(".dump.gz")) && !n.starts_with("should-fail")
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let raw = std::fs::read(dir.join(&name)).unwrap();
            let text = if name.ends_with(".gz") {
                let mut text = Vec::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut text)
                    .unwrap();
                text
            } else {
                raw
            };
            let version = std::fs::read_to_string(dir.join(format!("{name}.version")))
                .ok()
                .map(|v| v.trim().to_string());
            (name, text, version)
        })
        .collect()
}

fn our_dump(image: &[u8]) -> Vec<u8> {
    let tree = read_image(image).unwrap();
    let mut out = Vec::new();
    print(&tree, &mut out).unwrap();
    out
}

fn assert_same_dump(what: &str, ours: &[u8], theirs: &[u8]) {
    if ours == theirs {
        return;
    }
    let (ours, theirs) = (
        String::from_utf8_lossy(ours),
        String::from_utf8_lossy(theirs),
    );
    let (o, t): (Vec<_>, Vec<_>) = (ours.lines().collect(), theirs.lines().collect());
    let i = o
        .iter()
        .zip(&t)
        .position(|(a, b)| a != b)
        .unwrap_or(o.len().min(t.len()));
    panic!(
        "{what}: dump differs at line {} ({} vs {} lines)\n ours:   {:?}\n theirs: {:?}",
        i + 1,
        o.len(),
        t.len(),
        o.get(i),
        t.get(i)
    );
}

#[test]
fn dump_of_c_images_matches_composefs_info() {
    let Some(tools) = CTools::find() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (name, text, version) in fixtures() {
        let mut versions = vec![version.clone()];
        // Small inputs are also written at the other format version: version 1 changes
        // how whiteouts are marked, which the reader must undo.
        if !name.ends_with(".gz") {
            versions.push(Some(
                if version.as_deref() == Some("1") {
                    "0"
                } else {
                    "1"
                }
                .into(),
            ));
        }
        for v in versions {
            let image = tools.mkcomposefs(&text, v.as_deref(), tmp.path());
            let what = format!("{name} (version {})", v.as_deref().unwrap_or("default"));
            assert_same_dump(
                &what,
                &our_dump(&image),
                &tools.info_dump(&image, tmp.path()),
            );
            eprintln!("ok: {what}");
        }
    }
}

#[test]
fn referenced_objects_match_composefs_info_objects() {
    let Some(tools) = CTools::find() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (name, text, version) in fixtures()
        .into_iter()
        .filter(|(n, ..)| n.starts_with("config"))
    {
        let image = tools.mkcomposefs(&text, version.as_deref(), tmp.path());
        let path = tmp.path().join("objects.cfs");
        std::fs::write(&path, &image).unwrap();
        let out = tools
            .command(&tools.info)
            .arg("objects")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut ours: Vec<u8> = Vec::new();
        for o in referenced_objects(&image).unwrap() {
            if let Some(p) = o.path {
                ours.extend_from_slice(&p);
                ours.push(b'\n');
            }
        }
        assert_same_dump(&name, &ours, &out.stdout);
    }
}

/// splitmix64: a tiny deterministic generator, so failures name a reproducible seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Reads (and prints, when it reads) a damaged image; Ok or Err are both fine, a panic or a
/// slow read is a failure. Returns whether the image still read.
fn survive(image: &[u8], what: &str) -> bool {
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| match read_image(image) {
        Ok(tree) => {
            print(&tree, &mut std::io::sink()).unwrap();
            true
        }
        Err(_) => false,
    }));
    let Ok(read) = result else {
        panic!("reader panicked on {what}");
    };
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "reader took {:?} on {what}",
        start.elapsed()
    );
    read
}

#[test]
fn damaged_images_never_panic() {
    let Some(tools) = CTools::find() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let inputs = fixtures().into_iter().filter(|(n, ..)| {
        [
            "special.dump",
            "special_v1.dump",
            "config-with-hard-link.dump.gz",
        ]
        .contains(&n.as_str())
    });
    for (name, text, version) in inputs {
        let image = tools.mkcomposefs(&text, version.as_deref(), tmp.path());
        read_image(&image).unwrap();
        // Truncation: densely through the metadata at the front, sparsely through the data.
        let meta_len = image.len().min(64 << 10);
        let truncations = (0..meta_len)
            .step_by(61)
            .chain((meta_len..image.len()).step_by(image.len() / 64 + 1));
        for len in truncations {
            survive(&image[..len], &format!("{name} truncated to {len}"));
        }
        // Flips concentrate on the metadata (superblock, inodes, dirents, xattrs), which sits
        // before the data blocks; a few land anywhere. Big images cost more per read.
        let seeds = if image.len() > 256 << 10 { 200 } else { 1500 };
        let mut read = 0;
        for seed in 0..seeds {
            let mut rng = Rng(seed);
            let mut damaged = image.clone();
            for _ in 0..1 + rng.below(8) {
                let at = if rng.below(8) == 0 {
                    rng.below(image.len())
                } else {
                    rng.below(meta_len)
                };
                damaged[at] ^= 1 << rng.below(8);
                if rng.below(4) == 0 {
                    damaged[at] = rng.next() as u8;
                }
            }
            read += usize::from(survive(
                &damaged,
                &format!("{name} with flips of seed {seed}"),
            ));
        }
        eprintln!("{name}: {read} of {seeds} damaged images still read");
    }
}
