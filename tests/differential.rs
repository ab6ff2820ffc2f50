//! Differential test against C mkcomposefs: random dumps (all file kinds, xattrs including
//! overlay ones, hard links, whiteouts, long names, inline and external files, big
//! directories) are written by both writers and must give identical bytes.
//!
//! Runs when `$MKCOMPOSEFS` or `/opt/composefs-c/bin/mkcomposefs` exists, else prints that it
//! was skipped. Cases come from proptest (`prop_perturb`: a dump drawn from the case's
//! generator); `CFS_DIFF_CASES` sets their number (default 48; 4 times as many mutations),
//! `CFS_DIFF_SEED` the runner's seed.

mod common;

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Command;

use cfsctl::dumpfile::{ParseMode, parse};
use cfsctl::erofs::writer::{WriteOptions, image_bytes};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};

/// The random choices of one dump, drawn from the generator proptest hands a perturbed
/// strategy (a ChaCha stream, seeded from the runner's: reproducible with `CFS_DIFF_SEED`).
struct Gen<'r>(&'r mut TestRng);

impl Gen<'_> {
    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize])
            .collect()
    }
}

/// A runner for `cases` cases, deterministic: its generator is seeded from `CFS_DIFF_SEED`
/// (default 1) and `salt`, so a failing case can be run again. Failures shrink the dump size
/// a little (every shrink step runs mkcomposefs again) and are not persisted: the failing
/// dump is kept in the temporary directory instead.
fn runner(cases: u32, salt: u8) -> TestRunner {
    let seed: u64 = std::env::var("CFS_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut bytes = [salt; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// `CFS_DIFF_CASES`, default 48.
fn case_count() -> u32 {
    std::env::var("CFS_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

fn mkcomposefs() -> Option<(PathBuf, Option<PathBuf>)> {
    if let Some(p) = std::env::var_os("MKCOMPOSEFS") {
        return Some((PathBuf::from(p), None));
    }
    let p = PathBuf::from("/opt/composefs-c/bin/mkcomposefs");
    p.exists().then(|| {
        (
            p,
            Some(PathBuf::from("/opt/composefs-c/lib/x86_64-linux-gnu")),
        )
    })
}

/// Escapes a field for the dump: anything outside printable ASCII, `\`, `=` and a lone `-`.
fn esc(v: &[u8]) -> String {
    if v.is_empty() {
        return String::new();
    }
    if v == b"-" {
        return "\\x2d".into();
    }
    let mut s = String::new();
    for &b in v {
        if b.is_ascii_graphic() && b != b'\\' && b != b'=' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

const NAME_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.+ #!~\x01\xff\n=\\";
const XATTR_KEYS: &[&str] = &[
    "user.a",
    "user.comment",
    "security.selinux",
    "security.capability",
    "trusted.foo",
    "trusted.overlay.origin",
    "trusted.overlay.redirect",
    "trusted.overlay.overlay.x",
    "system.posix_acl_access",
    "system.posix_acl_default",
    "foo.unprefixed",
];

struct Entry {
    path: Vec<u8>,
    is_dir: bool,
    linkable: bool,
}

fn random_xattrs(rng: &mut Gen, pool: &[Vec<u8>]) -> String {
    let mut s = String::new();
    let n = match rng.below(10) {
        0..=4 => 0,
        5..=8 => 1 + rng.below(3),
        _ => 3 + rng.below(6),
    };
    for _ in 0..n {
        let key = if rng.chance(3) {
            // Rare: on whiteouts and their directories, mkcomposefs then fails (see
            // `set_xattr` in the writer), which the test also checks.
            [
                &b"user.overlay.whiteout"[..],
                b"user.overlay.opaque",
                b"user.overlay.whiteouts",
                b"trusted.overlay.whiteout",
                b"trusted.overlay.opaque",
            ][rng.below(5) as usize]
                .to_vec()
        } else if rng.chance(85) {
            XATTR_KEYS[rng.below(XATTR_KEYS.len() as u64) as usize]
                .as_bytes()
                .to_vec()
        } else {
            let mut k = b"user.r".to_vec();
            let len = 1 + rng.below(40) as usize;
            k.extend(rng.bytes(len, NAME_CHARS));
            k
        };
        let value = if rng.chance(60) {
            pool[rng.below(pool.len() as u64) as usize].clone()
        } else {
            let cap = if rng.chance(5) { 3000 } else { 60 };
            let len = rng.below(cap) as usize;
            rng.bytes(len, NAME_CHARS)
        };
        s.push_str(&format!(" {}={}", esc(&key), esc(&value)));
    }
    s
}

fn mtime(rng: &mut Gen) -> String {
    if rng.chance(50) {
        "1000.0".into()
    } else {
        format!("{}.{}", 500 + rng.below(2000), rng.below(1_000_000_000))
    }
}

fn owner(rng: &mut Gen) -> u64 {
    if rng.chance(10) {
        70000 + rng.below(1000)
    } else {
        rng.below(3) * 1000
    }
}

/// One random dump.
fn random_dump(rng: &mut Gen, size: usize) -> String {
    let pool: Vec<Vec<u8>> = (0..4)
        .map(|_| {
            let len = rng.below(30) as usize;
            rng.bytes(len, NAME_CHARS)
        })
        .collect();
    let mut out = format!(
        "/ 4096 40{:03o} 2 {} {} 0 {} - - -{}\n",
        rng.below(0o1000),
        owner(rng),
        owner(rng),
        mtime(rng),
        random_xattrs(rng, &pool)
    );
    let mut entries = vec![Entry {
        path: Vec::new(),
        is_dir: true,
        linkable: false,
    }];
    let big_dir = rng.chance(20);
    for _ in 0..size {
        let dirs: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].is_dir).collect();
        let parent = if big_dir && rng.chance(70) {
            0
        } else {
            dirs[rng.below(dirs.len() as u64) as usize]
        };
        let name = loop {
            let len = match rng.below(20) {
                0 => 200 + rng.below(56),
                1 => 2,
                _ => 1 + rng.below(24),
            } as usize;
            let n = if len == 2 && rng.chance(50) {
                format!("{:02x}", rng.below(256)).into_bytes()
            } else {
                rng.bytes(len, NAME_CHARS)
            };
            if n != b"." && n != b".." {
                break n;
            }
        };
        let mut path = entries[parent].path.clone();
        path.push(b'/');
        path.extend(&name);
        if entries.iter().any(|e| e.path == path) {
            continue;
        }
        let p = esc(&path);
        let (uid, gid, mt) = (owner(rng), owner(rng), mtime(rng));
        let perm = rng.below(0o10000);
        let nlink = 1 + rng.below(3);
        let x = random_xattrs(rng, &pool);
        let linkable: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].linkable)
            .collect();
        let (line, is_dir, can_link) = match rng.below(14) {
            0 | 1 => (
                format!("{p} 4096 4{perm:04o} 2 {uid} {gid} 0 {mt} - - -{x}"),
                true,
                false,
            ),
            2 | 3 => {
                let len = match rng.below(4) {
                    0 => 1 + rng.below(64),
                    1 => 2000 + rng.below(200),
                    2 => 4000 + rng.below(1001),
                    _ => 1 + rng.below(5000),
                } as usize;
                let content = rng.bytes(len, NAME_CHARS);
                (
                    format!(
                        "{p} {len} 10{perm:04o} {nlink} {uid} {gid} 0 {mt} - {} -{x}",
                        esc(&content)
                    ),
                    false,
                    true,
                )
            }
            4 | 5 => {
                let size = match rng.below(4) {
                    0 => 1 + rng.below(4096),
                    1 => rng.below(1 << 32),
                    2 => rng.below(1 << 45),
                    _ => (1 << 43) * (1 + rng.below(1024)),
                };
                let hex: String = (0..64).map(|_| format!("{:x}", rng.below(16))).collect();
                let payload = if rng.chance(80) {
                    format!("{}/{}", &hex[..2], &hex[2..])
                } else {
                    "-".into()
                };
                let digest = if rng.chance(70) {
                    hex.clone()
                } else {
                    "-".into()
                };
                (
                    format!(
                        "{p} {size} 10{perm:04o} {nlink} {uid} {gid} 0 {mt} {payload} - {digest}{x}"
                    ),
                    false,
                    true,
                )
            }
            6 => (
                format!("{p} 0 10{perm:04o} {nlink} {uid} {gid} 0 {mt} - - -{x}"),
                false,
                true,
            ),
            7 => {
                let len = match rng.below(3) {
                    0 => 3900 + rng.below(196),
                    _ => 1 + rng.below(100),
                } as usize;
                let target = rng.bytes(len, NAME_CHARS);
                (
                    format!(
                        "{p} {len} 120777 1 {uid} {gid} 0 {mt} {} - -{x}",
                        esc(&target)
                    ),
                    false,
                    true,
                )
            }
            8 | 9 => {
                let rdev = if rng.chance(70) {
                    0
                } else {
                    1 + rng.below(1 << 20)
                };
                (
                    format!("{p} 0 2{perm:04o} 1 {uid} {gid} {rdev} {mt} - - -{x}"),
                    false,
                    true,
                )
            }
            10 => {
                let rdev = rng.below(1 << 20);
                (
                    format!("{p} 0 6{perm:04o} 1 {uid} {gid} {rdev} {mt} - - -{x}"),
                    false,
                    true,
                )
            }
            11 => (
                format!("{p} 0 1{perm:04o} 1 {uid} {gid} 0 {mt} - - -{x}"),
                false,
                true,
            ),
            12 => (
                format!("{p} 0 14{perm:04o} 1 {uid} {gid} 0 {mt} - - -{x}"),
                false,
                true,
            ),
            _ if !linkable.is_empty() => {
                let target = &entries[linkable[rng.below(linkable.len() as u64) as usize]];
                (
                    format!("{p} 0 @100644 0 0 0 0 0.0 {} - -", esc(&target.path)),
                    false,
                    false,
                )
            }
            _ => continue,
        };
        out.push_str(&line);
        out.push('\n');
        entries.push(Entry {
            path,
            is_dir,
            linkable: can_link,
        });
    }
    out
}

#[test]
fn random_trees_match_c_mkcomposefs() {
    let Some((tool, libdir)) = mkcomposefs() else {
        return common::skip_or_fail("mkcomposefs not found (set MKCOMPOSEFS)").unwrap_or(());
    };
    let dir = tempfile::tempdir().unwrap();
    let (matched, refused) = (Cell::new(0), Cell::new(0));
    let case = Cell::new(0u32);
    // One case in 8 is a big tree (600 entries, wide directories), as before proptest.
    let size = prop_oneof![1 => Just(600usize), 7 => 1usize..=60];
    let versions = prop::sample::select(vec![(0u32, 0u32), (0, 1), (1, 1), (1, 0)]);
    let cases = (size, versions).prop_perturb(|(size, (min, max)), mut rng| {
        (random_dump(&mut Gen(&mut rng), size), min, max)
    });
    let result = runner(case_count(), 0xd1).run(&cases, |(dump, min, max)| {
        case.set(case.get() + 1);
        let seed = case.get();
        let dump_path = dir.path().join(format!("case-{seed}.dump"));
        let img_path = dir.path().join(format!("case-{seed}.img"));
        std::fs::write(&dump_path, &dump).unwrap();
        let mut cmd = Command::new(&tool);
        if let Some(lib) = &libdir {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        let c = cmd
            .env("CFS_PARSE_STRICT", "1")
            .arg(format!("--min-version={min}"))
            .arg(format!("--max-version={max}"))
            .arg("--from-file")
            .arg(&dump_path)
            .arg(&img_path)
            .output()
            .expect("run mkcomposefs");
        let ours = parse(dump.as_bytes(), ParseMode::Strict)
            .map_err(|e| e.to_string())
            .and_then(|tree| {
                let opts = WriteOptions {
                    min_version: min,
                    max_version: max,
                };
                image_bytes(&tree, &opts).map_err(|e| e.to_string())
            });
        let keep = || {
            let kept = std::env::temp_dir().join(format!("cfs-diff-case-{seed}.dump"));
            std::fs::write(&kept, &dump).unwrap();
            kept.display().to_string()
        };
        match (c.status.success(), ours) {
            (true, Ok(image)) => {
                let want = std::fs::read(&img_path).unwrap();
                if want != image {
                    let at = want.iter().zip(&image).position(|(a, b)| a != b);
                    panic!(
                        "case {seed}: images differ (lengths {} / {}, first difference at {at:?}); dump kept at {}",
                        want.len(),
                        image.len(),
                        keep()
                    );
                }
                matched.set(matched.get() + 1);
            }
            (false, Err(e)) => {
                println!("case {seed}: both refused: {e}");
                refused.set(refused.get() + 1);
            }
            (true, Err(e)) => panic!(
                "case {seed}: C accepted, we refused: {e}; dump at {}",
                keep()
            ),
            (false, Ok(_)) => panic!(
                "case {seed}: C refused ({}), we accepted; dump at {}",
                String::from_utf8_lossy(&c.stderr).trim(),
                keep()
            ),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (matched, refused) = (matched.get(), refused.get());
    println!("{matched} identical images, {refused} dumps refused by both");
    assert!(
        matched >= refused,
        "too few accepted cases to be meaningful"
    );
}

/// A small dump with one line of each kind, the seed of [`mutated_dumps_match_c_lenient`].
const MUTATION_BASE: &str = "/ 4096 40755 2 0 0 0 1000.5 - - - user.a=1 trusted.overlay.x=y
/d 4096 40700 2 10 20 0 1001.0 - - - security.selinux=ctx
/d/f 4 100644 2 0 0 0 1000.5 - ab\\x00c -
/d/e 70000 100600 1 0 0 0 999.1 ab/cdef - 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef user.b=\\xff
/d/w 0 20644 1 0 0 0 1000.5 - - -
/d/c 0 20644 1 0 0 1234 1000.5 - - -
/l 3 120777 1 0 0 0 1000.5 /d/ - -
/h 0 @100644 0 0 0 0 0.0 /d/f - -
/p 0 10644 1 0 0 0 1000.5 - - -
";

/// Random edits of a valid dump, read leniently by both tools: the same dumps must be
/// refused, and accepted ones must give the same image. Known deliberate differences: this
/// parser refuses hard links to directories and malformed digests on external files, which
/// mkcomposefs accepts (writing a broken image, or uninitialised digest bytes).
#[test]
fn mutated_dumps_match_c_lenient() {
    let Some((tool, libdir)) = mkcomposefs() else {
        return common::skip_or_fail("mkcomposefs not found (set MKCOMPOSEFS)").unwrap_or(());
    };
    const EDIT: &[u8] = b" \n\\x-@/09=.a7f\t+";
    let dir = tempfile::tempdir().unwrap();
    let (same, refused, deliberate) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let case = Cell::new(0u32);
    // 1 to 3 edits (replace, delete or insert a byte) at random places of the base dump.
    let mutated = Just(()).prop_perturb(|(), mut rng| {
        let mut rng = Gen(&mut rng);
        let mut dump = MUTATION_BASE.as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(dump.len() as u64) as usize;
            match rng.below(3) {
                0 => dump[at] = EDIT[rng.below(EDIT.len() as u64) as usize],
                1 => {
                    dump.remove(at);
                }
                _ => dump.insert(at, EDIT[rng.below(EDIT.len() as u64) as usize]),
            }
        }
        dump
    });
    let result = runner(case_count() * 4, 0x3a).run(&mutated, |dump| {
        case.set(case.get() + 1);
        let seed = case.get();
        let dump_path = dir.path().join("m.dump");
        let img_path = dir.path().join("m.img");
        std::fs::write(&dump_path, &dump).unwrap();
        let _ = std::fs::remove_file(&img_path);
        let mut cmd = Command::new(&tool);
        if let Some(lib) = &libdir {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        let c = cmd
            .env_remove("CFS_PARSE_STRICT")
            .arg("--from-file")
            .arg(&dump_path)
            .arg(&img_path)
            .output()
            .expect("run mkcomposefs");
        let ours = parse(&dump, ParseMode::Lenient)
            .map_err(|e| e.to_string())
            .and_then(|tree| {
                image_bytes(&tree, &WriteOptions::default()).map_err(|e| e.to_string())
            });
        let shown = String::from_utf8_lossy(&dump).into_owned();
        match (c.status.success(), ours) {
            (true, Ok(image)) => {
                assert!(
                    std::fs::read(&img_path).unwrap() == image,
                    "case {seed}: images differ for\n{shown}"
                );
                same.set(same.get() + 1);
            }
            (false, Err(_)) => refused.set(refused.get() + 1),
            (true, Err(e))
                if e.contains("hardlink to a directory") || e.contains("invalid digest") =>
            {
                deliberate.set(deliberate.get() + 1)
            }
            (true, Err(e)) => panic!("case {seed}: C accepted, we refused: {e}\n{shown}"),
            (false, Ok(_)) => panic!(
                "case {seed}: C refused ({}), we accepted\n{shown}",
                String::from_utf8_lossy(&c.stderr).trim()
            ),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (same, refused, deliberate) = (same.get(), refused.get(), deliberate.get());
    println!("{same} identical, {refused} refused by both, {deliberate} deliberate differences");
}
