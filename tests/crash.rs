//! SIGKILL at growing instants of `create-image --repo`, `oci pull` and `gc`, and two
//! importers racing a gc on one repository: after every kill and at the end, `fsck` is clean
//! and every ref resolves to a stored object (images to an image that opens).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cfsctl::repo::Repository;
use common::ociimage::{self, Compression, Layer};

/// A tar of `files` regular files of `len` incompressible bytes each.
fn tar_of(prefix: &str, files: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..files {
        let data = common::content(len, seed * 1000 + i as u64);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, format!("{prefix}/f{i}"), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// An `oci:` layout with tags v1 and v2 of three layers each (the first two shared).
fn layout(dir: &Path) {
    let layers = |v: u64| {
        vec![
            Layer::new(tar_of("usr", 200, 16 << 10, 1), Compression::Gzip),
            Layer::new(tar_of("opt", 40, 256 << 10, 2), Compression::Zstd),
            Layer::new(tar_of("etc", 100, 8 << 10, 10 + v), Compression::Gzip),
        ]
    };
    for v in [1, 2] {
        ociimage::write_layout(dir, &format!("v{v}"), &layers(v), &BTreeMap::new());
    }
}

/// A directory tree of `files` files for `create-image`.
fn source_tree(dir: &Path, files: usize, seed: u64) {
    for i in 0..files {
        let sub = dir.join(format!("d{}", i % 16));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i}")),
            common::content(32 << 10, seed * 7919 + i as u64),
        )
        .unwrap();
    }
}

/// fsck clean, and every ref names a stored object; refs naming images open as images.
fn assert_consistent(repo: &Path, when: &str) {
    let out = common::cfsctl()
        .args(["fsck", "--repo"])
        .arg(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{when}: fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Repository::open(repo).unwrap();
    for (name, digest) in r.list_refs().unwrap() {
        assert!(
            r.has_object(&digest),
            "{when}: ref {name} names a missing object"
        );
        if r.has_image(&digest) {
            r.open_image(&name)
                .unwrap_or_else(|e| panic!("{when}: ref {name}: {e:#}"));
        }
    }
}

/// Runs `args` killing it after growing delays until a run finishes by itself; checks the
/// repository after every kill. Returns the number of kills.
fn kill_until_done(repo: &Path, args: &[&str]) -> u32 {
    let mut delay = Duration::from_millis(2);
    let mut kills = 0;
    loop {
        let mut child = common::cfsctl()
            .args(args)
            .arg("--repo")
            .arg(repo)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert_consistent(repo, &format!("{args:?} killed after {delay:?}"));
        if finished || out.status.success() {
            assert!(
                out.status.success(),
                "{args:?} failed on its own: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return kills;
        }
        kills += 1;
        assert!(kills < 60, "{args:?} never finished");
        delay = delay * 3 / 2;
    }
}

fn init(repo: &Path) {
    common::run_ok(common::cfsctl().arg("init").arg("--repo").arg(repo));
}

#[test]
fn sigkill_during_create_image_pull_and_gc_leaves_a_consistent_repository() {
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    init(&repo);
    let src = td.path().join("src");
    source_tree(&src, 600, 1);
    let oci = td.path().join("layout");
    layout(&oci);
    let src_s = src.to_str().unwrap().to_string();
    let v1 = format!("oci:{}:v1", oci.display());
    let v2 = format!("oci:{}:v2", oci.display());

    let k1 = kill_until_done(
        &repo,
        &["create-image", "--no-cache", "--ref", "local/src", &src_s],
    );
    let k2 = kill_until_done(&repo, &["oci", "pull", "--tag", "v1", &v1]);
    let k3 = kill_until_done(&repo, &["oci", "pull", "--tag", "v2", &v2]);
    // Garbage for gc: untag v1 and the directory image.
    common::run_ok(
        common::cfsctl()
            .args(["oci", "rm", "v1", "--repo"])
            .arg(&repo),
    );
    let r = Repository::open(&repo).unwrap();
    r.remove_ref("local/src").unwrap();
    drop(r);
    let k4 = kill_until_done(&repo, &["gc"]);
    eprintln!("kills: create-image {k1}, pull v1 {k2}, pull v2 {k3}, gc {k4}");
    assert!(k1 + k2 + k3 >= 3, "the commands were too fast to interrupt");
    // What gc kept still makes the same image.
    let r = Repository::open(&repo).unwrap();
    assert_eq!(r.list_refs().unwrap().len(), 2, "v2's tag and record");
    drop(r);
    let fresh = td.path().join("fresh");
    init(&fresh);
    let want = common::run_ok(
        common::cfsctl()
            .args(["oci", "pull", "--tag", "v2", "--repo"])
            .arg(&fresh)
            .arg(&v2),
    );
    let again = common::run_ok(
        common::cfsctl()
            .args(["oci", "pull", "--tag", "v2", "--repo"])
            .arg(&repo)
            .arg(&v2),
    );
    assert_eq!(want.stdout, again.stdout);
}

/// Two importers (a directory import and a pull, each in a loop) and a gc loop, as
/// separate processes on one repository.
#[test]
fn two_importers_and_a_gc_race_on_one_repository() {
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    init(&repo);
    let oci = td.path().join("layout");
    layout(&oci);
    let srcs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let d = td.path().join(format!("src{i}"));
            source_tree(&d, 150, 10 + i);
            d
        })
        .collect();
    let spawn = |args: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_cfsctl"))
            .args(&args)
            .arg("--repo")
            .arg(&repo)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let rounds = 4;
    let mut children = Vec::new();
    for round in 0..rounds {
        for (i, s) in srcs.iter().enumerate() {
            children.push(spawn(vec![
                "create-image".into(),
                "--no-cache".into(),
                "--ref".into(),
                format!("local/src{i}"),
                s.display().to_string(),
            ]));
        }
        let tag = if round % 2 == 0 { "v1" } else { "v2" };
        children.push(spawn(vec![
            "oci".into(),
            "pull".into(),
            "--tag".into(),
            format!("t{round}"),
            format!("oci:{}:{tag}", oci.display()),
        ]));
        children.push(spawn(vec!["gc".into()]));
        if round > 0 {
            children.push(spawn(vec![
                "oci".into(),
                "rm".into(),
                format!("t{}", round - 1),
            ]));
        }
        for c in children.drain(..) {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_consistent(&repo, &format!("round {round}"));
    }
    let r = Repository::open(&repo).unwrap();
    let refs: Vec<String> = r.list_refs().unwrap().into_iter().map(|r| r.0).collect();
    assert_eq!(refs.len(), 3 + 2, "{refs:?}");
}
