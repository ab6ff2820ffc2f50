//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod faultrelay;
pub mod ociimage;
pub mod osimage;
pub mod registry;

use std::path::{Path, PathBuf};

/// Where the golden composefs dumps live: `$CFS_FIXTURES`, else `../shared/fixtures/...` next to
/// the checkout (the layout CI and developers have).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("CFS_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/composefs-dumps")
        })
}

/// True when CI asked for every reference tool to be present (`CFS_REQUIRE_TOOLS=1`): then a
/// missing tool fails the test instead of skipping it.
pub fn tools_required() -> bool {
    std::env::var("CFS_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Finds an external tool: `$ENV_VAR`, then `fallbacks`, then `$PATH`. Prints a skip note and
/// returns `None` when absent, or panics when CI requires the tool.
pub fn find_tool(env_var: &str, name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let candidates = std::env::var_os(env_var)
        .map(PathBuf::from)
        .into_iter()
        .chain(fallbacks.iter().map(PathBuf::from))
        .chain(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|d| d.join(name))
                .collect::<Vec<_>>(),
        );
    for c in candidates {
        if c.is_file() {
            return Some(c);
        }
    }
    skip_or_fail(&format!("tool {name} not found (set {env_var})"))
}

/// C mkcomposefs 1.0.8 (scripts/install-mkcomposefs.sh puts it in /opt/composefs-c).
pub fn mkcomposefs() -> Option<PathBuf> {
    find_tool(
        "MKCOMPOSEFS",
        "mkcomposefs",
        &["/opt/composefs-c/bin/mkcomposefs"],
    )
}

/// C composefs-info 1.0.8.
pub fn composefs_info() -> Option<PathBuf> {
    find_tool(
        "COMPOSEFS_INFO",
        "composefs-info",
        &["/opt/composefs-c/bin/composefs-info"],
    )
}

/// A `Command` for a C composefs tool with its library path set.
pub fn c_tool(path: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(path);
    if let Some(prefix) = path.parent().and_then(Path::parent) {
        cmd.env("LD_LIBRARY_PATH", prefix.join("lib/x86_64-linux-gnu"));
    }
    cmd
}

/// True when this process may mount filesystems (root in the initial namespaces here).
pub fn can_mount() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    skip_or_fail::<()>("not root: mount tests need CAP_SYS_ADMIN").is_some()
}

/// Prints why a test is skipped, or panics when CI requires the prerequisite.
pub fn skip_or_fail<T>(why: &str) -> Option<T> {
    if tools_required() {
        panic!("CFS_REQUIRE_TOOLS=1 but {why}");
    }
    eprintln!("SKIP: {why}");
    None
}

/// The binaries under test, when they exist (tests/vm/run-store-tests.sh runs test binaries in
/// a VM that has no cargo target directory: skip there).
pub fn binaries_present() -> bool {
    let present = [
        env!("CARGO_BIN_EXE_cfsctl"),
        env!("CARGO_BIN_EXE_cfs-setup-root"),
    ]
    .iter()
    .all(|p| Path::new(p).exists());
    if !present {
        eprintln!("SKIP: cfsctl binaries not found (running outside the build tree)");
    }
    present
}

/// The cfsctl binary built for this test run.
pub fn cfsctl() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_cfsctl"))
}

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
    let out = match std::process::Command::new("fsverity")
        .arg("digest")
        .arg(format!("--hash-alg={}", alg.name()))
        .arg("--compact")
        .arg(path)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return skip_or_fail("`fsverity` not installed: no comparison with it");
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

/// Runs `cfsctl fsck --repo REPO` and fails the test unless it exits 0.
pub fn assert_fsck_clean(repo: &Path) {
    let out = cfsctl()
        .arg("fsck")
        .arg("--repo")
        .arg(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck of {}: {}{}",
        repo.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` and fails the test, showing the command and its stderr, unless it exits 0.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
