//! Golden test against the C composefs 1.0.8 fixtures: for every dump, the image we write
//! must have the sha256 mkcomposefs's image has; every `should-fail-*` dump must be refused.
//!
//! Fixtures: `$CFS_FIXTURES`, default `$CARGO_MANIFEST_DIR/../shared/fixtures/composefs-dumps`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use cfsctl::dumpfile::{ParseMode, parse};
use cfsctl::erofs::writer::{WriteOptions, write_image};
use sha2::{Digest as _, Sha256};

/// Dumps mkcomposefs's own test reads without `CFS_PARSE_STRICT` (tests/test-checksums.sh).
const NONSTRICT: &[&str] = &[
    "no-newline.dump",
    "longlink.dump",
    "honggfuzz-longlink-unterminated.dump",
];

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("CFS_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/composefs-dumps"),
    }
}

fn read_dump(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        raw
    }
}

fn dumps() -> Vec<PathBuf> {
    let dir = fixtures_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures at {}: {e} (set CFS_FIXTURES)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".dump") || n.ends_with(".dump.gz")
        })
        .collect();
    v.sort();
    v
}

fn fsck_available() -> bool {
    Command::new("fsck.erofs").arg("--help").output().is_ok()
}

#[test]
fn golden_images() {
    let fsck = fsck_available();
    if !fsck {
        println!("fsck.erofs not found: skipping fsck of written images");
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in dumps() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("should-fail-") {
            continue;
        }
        let mode = if NONSTRICT.contains(&name.as_str()) {
            ParseMode::Lenient
        } else {
            ParseMode::Strict
        };
        let input = read_dump(&path);
        let tree = match parse(&input, mode) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        if NONSTRICT.contains(&name.as_str()) {
            assert!(
                parse(&input, ParseMode::Strict).is_err(),
                "{name} must be refused in strict mode"
            );
        }
        let mut opts = WriteOptions::default();
        let version_file = PathBuf::from(format!("{}.version", path.display()));
        if let Ok(v) = std::fs::read_to_string(&version_file) {
            let v: u32 = v.trim().parse().expect("version number");
            opts.min_version = v;
            opts.max_version = v;
        }
        let mut image = Vec::new();
        if let Err(e) = write_image(&tree, &opts, &mut image) {
            failures.push(format!("{name}: write: {e}"));
            continue;
        }
        let want =
            std::fs::read_to_string(format!("{}.sha256", path.display())).expect("sha256 file");
        let want = want.split_whitespace().next().unwrap_or_default();
        let got = hex::encode(Sha256::digest(&image));
        if got != want {
            failures.push(format!("{name}: sha256 {got}, want {want}"));
        }
        if fsck {
            let tmp = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(tmp.path(), &image).unwrap();
            let out = Command::new("fsck.erofs").arg(tmp.path()).output().unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{name}: fsck.erofs failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        checked += 1;
    }
    assert!(checked > 0, "no fixtures found");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn should_fail_fixtures_are_refused() {
    let mut n = 0;
    for path in dumps() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("should-fail-") {
            continue;
        }
        let input = read_dump(&path);
        for mode in [ParseMode::Lenient, ParseMode::Strict] {
            let err = parse(&input, mode).expect_err(&format!("{name} accepted in {mode:?} mode"));
            // Every refusal names the line and the rule.
            let msg = err.to_string();
            assert!(msg.starts_with("line "), "{name}: {msg}");
            println!("{name} ({mode:?}): {msg}");
        }
        n += 1;
    }
    assert!(n > 0, "no should-fail fixtures found");
}
