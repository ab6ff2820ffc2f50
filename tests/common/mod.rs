//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cfsctl::fsverity::{Algorithm, Digest};

/// Sizes around every block and Merkle-tree-level boundary that matters for 4096-byte blocks.
pub const SIZES: &[usize] = &[
    0,
    1,
    4095,
    4096,
    4097,
    128 * 4096,
    128 * 4096 + 1,
    3 * 1024 * 1024 + 123,
];

/// Deterministic, incompressible-looking content (xorshift), different per `seed`.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `fsverity digest --hash-alg=ALG --compact FILE`, or `None` (with a note) when the tool is
/// not installed.
pub fn fsverity_tool_digest(path: &Path, alg: Algorithm) -> Option<Digest> {
    let out = match Command::new("fsverity")
        .arg("digest")
        .arg(format!("--hash-alg={}", alg.name()))
        .arg("--compact")
        .arg(path)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: `fsverity` not installed, skipping comparison with it");
            return None;
        }
        Err(e) => panic!("running fsverity: {e}"),
    };
    assert!(out.status.success(), "fsverity digest failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    Some(Digest::from_hex(text.trim()).expect("fsverity --compact prints hex"))
}

/// Every non-directory entry under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(base, &e.path(), out);
            } else {
                out.push(e.path().strip_prefix(base).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
