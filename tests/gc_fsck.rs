//! `cfsctl gc` and `cfsctl fsck` through the binary, on real repositories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use cfsctl::erofs::reader::referenced_objects;
use cfsctl::fsverity::Digest;
use cfsctl::repo::Repository;

fn cfsctl(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
        .args(args)
        .output()
        .expect("running cfsctl");
    eprintln!(
        "cfsctl {args:?} -> {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A repository and a temp dir for sources.
struct Fixture {
    td: tempfile::TempDir,
    repo: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let td = tempfile::tempdir().unwrap();
        let repo = td.path().join("repo");
        assert!(cfsctl(&["init", "--repo", s(&repo)]).status.success());
        Fixture { td, repo }
    }

    /// A source directory with `files` (name, content), stored with `create-image --repo`
    /// (and `--ref`), returning the image digest.
    fn image(&self, name: &str, files: &[(&str, Vec<u8>)], ref_name: Option<&str>) -> Digest {
        let dir = self.td.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (f, data) in files {
            std::fs::write(dir.join(f), data).unwrap();
        }
        let mut args = vec!["create-image", "--repo", s(&self.repo)];
        if let Some(r) = ref_name {
            args.extend(["--ref", r]);
        }
        args.push(s(&dir));
        let out = cfsctl(&args);
        assert!(out.status.success());
        Digest::from_hex(stdout(&out).trim()).unwrap()
    }

    fn open(&self) -> Repository {
        Repository::open(&self.repo).unwrap()
    }

    /// The content objects (`objects/XX/rest`, relative) the stored image names.
    fn content_objects(&self, image: &Digest) -> Vec<String> {
        let bytes = std::fs::read(self.open().object_path(image)).unwrap();
        referenced_objects(&bytes)
            .unwrap()
            .into_iter()
            .map(|r| format!("objects/{}", r.digest.unwrap().object_path()))
            .collect()
    }

    fn fsck(&self, json: bool) -> Output {
        let mut args = vec!["fsck", "--repo", s(&self.repo)];
        if json {
            args.push("--json");
        }
        cfsctl(&args)
    }

    fn gc_json(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["gc", "--json", "--repo", s(&self.repo)];
        args.extend(extra);
        let out = cfsctl(&args);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Incompressible-ish content that is stored as an object (not inlined).
fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

#[test]
fn gc_keeps_what_refs_reach_and_removes_the_rest() {
    let fx = Fixture::new();
    let shared = blob(9000, 1);
    let kept = fx.image(
        "kept",
        &[("shared", shared.clone()), ("only-kept", blob(9000, 2))],
        Some("local/kept"),
    );
    let dropped = fx.image(
        "dropped",
        &[("shared", shared), ("only-dropped", blob(12000, 3))],
        None,
    );
    let kept_objects = fx.content_objects(&kept);
    let dropped_objects = fx.content_objects(&dropped);
    assert_eq!(kept_objects.len(), 2);
    assert!(fx.fsck(false).status.success());

    let dry = fx.gc_json(&["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["objects_removed"], 2,
        "the dropped image and its own file"
    );
    assert!(fx.repo.join(dropped.object_path_in_repo()).exists());

    let report = fx.gc_json(&[]);
    assert_eq!(report["objects_removed"], 2);
    assert_eq!(report["images_pruned"], 1);
    assert_eq!(report["roots"], 1);
    assert_eq!(report["objects_live"], 3);
    assert!(report["object_bytes_freed"].as_u64().unwrap() >= 12000);

    for o in &kept_objects {
        assert!(fx.repo.join(o).is_file(), "{o} kept");
    }
    assert!(fx.repo.join(kept.object_path_in_repo()).is_file());
    assert!(fx.repo.join("images").join(kept.to_hex()).exists());
    assert!(!fx.repo.join(dropped.object_path_in_repo()).exists());
    assert!(
        std::fs::symlink_metadata(fx.repo.join("images").join(dropped.to_hex())).is_err(),
        "the dropped image's link is pruned"
    );
    let only_dropped: Vec<_> = dropped_objects
        .iter()
        .filter(|o| !kept_objects.contains(o))
        .collect();
    assert_eq!(only_dropped.len(), 1);
    assert!(!fx.repo.join(only_dropped[0]).exists());
    // What is left is consistent, and a second run has nothing to do.
    assert!(fx.fsck(false).status.success());
    assert_eq!(fx.gc_json(&[])["objects_removed"], 0);
    // The kept image still opens by its ref.
    fx.open().open_image("local/kept").unwrap();
}

trait InRepo {
    fn object_path_in_repo(&self) -> String;
}
impl InRepo for Digest {
    fn object_path_in_repo(&self) -> String {
        format!("objects/{}", self.object_path())
    }
}

#[test]
fn fsck_names_a_corrupt_object() {
    let fx = Fixture::new();
    let img = fx.image("a", &[("f", blob(10000, 4))], Some("a"));
    let victim = fx.content_objects(&img).remove(0);
    let path = fx.repo.join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5000] ^= 0xff;
    if std::fs::write(&path, &bytes).is_err() {
        // fs-verity files cannot be opened for writing: corruption needs the block device.
        eprintln!("note: objects are fs-verity protected here; skipping");
        return;
    }
    let out = fx.fsck(false);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("corrupt-object: {}", path.display())),
        "{text}"
    );
    let out = fx.fsck(true);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["kind"], "corrupt-object");
    assert_eq!(problems[0]["path"], victim.as_str());
}

#[test]
fn fsck_reports_an_object_an_image_needs() {
    let fx = Fixture::new();
    let img = fx.image("a", &[("f", blob(10000, 5))], Some("a"));
    let victim = fx.content_objects(&img).remove(0);
    std::fs::remove_file(fx.repo.join(&victim)).unwrap();
    let out = fx.fsck(false);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "missing-object: {}",
            fx.repo.join(&victim).display()
        )),
        "{text}"
    );
    let report: serde_json::Value = serde_json::from_slice(&fx.fsck(true).stdout).unwrap();
    let kinds: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["path"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("missing-object", victim.as_str())]);
}

#[test]
fn dangling_ref_is_reported_and_kept() {
    let fx = Fixture::new();
    let img = fx.image("a", &[("f", blob(10000, 6))], Some("deploy/current"));
    std::fs::remove_file(fx.repo.join(img.object_path_in_repo())).unwrap();
    let out = fx.fsck(true);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["path"].as_str().unwrap()))
        .collect();
    let image_link = format!("images/{}", img.to_hex());
    assert!(
        kinds.contains(&("dangling-ref", "refs/deploy/current")),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("dangling-image", image_link.as_str())),
        "{kinds:?}"
    );

    let report = fx.gc_json(&[]);
    assert_eq!(report["dangling_refs"][0]["name"], "deploy/current");
    assert_eq!(report["images_pruned"], 1);
    assert!(
        std::fs::symlink_metadata(fx.repo.join("refs/deploy/current")).is_ok(),
        "a dangling ref is the user's to remove"
    );
}

#[test]
fn gc_waits_for_a_concurrent_writer_and_keeps_what_it_names() {
    let fx = Fixture::new();
    let repo_path = fx.repo.clone();
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let hold = Duration::from_millis(1500);
    // A "pull": stores an object, holds the repository open a while, then names it.
    let writer = std::thread::spawn(move || {
        let repo = Repository::open(&repo_path).unwrap();
        let d = repo.write_object(&blob(20000, 7)).unwrap();
        opened_tx.send(d).unwrap();
        std::thread::sleep(hold);
        repo.set_ref("oci/pulled", &d).unwrap();
        d
    });
    let pulled = opened_rx.recv().unwrap();

    let out = cfsctl(&["gc", "--no-wait", "--repo", s(&fx.repo)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains(s(&fx.repo)), "{err}");

    let start = Instant::now();
    let out = cfsctl(&["gc", "--json", "--repo", s(&fx.repo)]);
    let waited = start.elapsed();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for other processes"),
        "gc says why it waits"
    );
    assert_eq!(writer.join().unwrap(), pulled);
    assert!(
        waited >= Duration::from_millis(500),
        "gc waited: {waited:?}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["objects_removed"], 0);
    assert!(fx.repo.join(pulled.object_path_in_repo()).is_file());
}

#[test]
fn gc_removes_stale_temporary_files_only() {
    let fx = Fixture::new();
    fx.image("a", &[("f", blob(10000, 8))], Some("a"));
    let stale = [
        fx.repo.join("objects/.tmp-object-1-2-3"),
        fx.repo.join("images/.tmp-link-1-2-3"),
        fx.repo.join(".tmp-file-1-2-3"),
    ];
    let fresh = fx.repo.join("objects/.tmp-object-4-5-6");
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    for p in &stale {
        std::fs::write(p, b"partial").unwrap();
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(long_ago).unwrap();
    }
    let stale_link = fx.repo.join("refs/.tmp-link-7-8-9");
    std::os::unix::fs::symlink("../objects/00/dead", &stale_link).unwrap();
    std::fs::write(&fresh, b"being written").unwrap();
    // A symlink's own mtime cannot be set from std: make it old with touch -h.
    let touched = Command::new("touch")
        .args(["-h", "-d", "1 hour ago", s(&stale_link)])
        .status()
        .is_ok_and(|st| st.success());

    let dry = fx.gc_json(&["--dry-run"]);
    assert_eq!(dry["tmp_removed"], 3 + u64::from(touched));
    assert!(stale.iter().all(|p| p.exists()));

    let report = fx.gc_json(&[]);
    assert_eq!(report["tmp_removed"], 3 + u64::from(touched));
    assert_eq!(report["tmp_bytes_freed"], 3 * 7);
    for p in &stale {
        assert!(!p.exists(), "{} removed", p.display());
    }
    assert_eq!(
        std::fs::symlink_metadata(&stale_link).is_err(),
        touched,
        "stale ref link"
    );
    assert!(
        fresh.exists(),
        "a temporary file younger than the lock stays"
    );
    assert!(fx.fsck(false).status.success());
}

#[test]
fn object_lists_keep_oci_style_metadata_and_layer_images() {
    let fx = Fixture::new();
    let layer = fx.image("layer", &[("f", blob(10000, 9))], None);
    let layer_files = fx.content_objects(&layer);
    let repo = fx.open();
    let manifest = repo.write_object(b"{\"schemaVersion\": 2}").unwrap();
    let config = repo.write_object(b"{\"architecture\": \"amd64\"}").unwrap();
    let stale = repo.write_object(b"{\"old\": \"manifest\"}").unwrap();
    let tag = repo.write_object_list(&[manifest, config, layer]).unwrap();
    repo.set_ref("oci/example/latest", &tag).unwrap();
    drop(repo);

    let report = fx.gc_json(&[]);
    assert_eq!(report["objects_removed"], 1, "only the stale manifest");
    assert_eq!(report["images_pruned"], 0);
    for o in [tag, manifest, config, layer] {
        assert!(fx.repo.join(o.object_path_in_repo()).is_file());
    }
    assert!(fx.repo.join(&layer_files[0]).is_file());
    assert!(!fx.repo.join(stale.object_path_in_repo()).exists());
    assert!(fx.fsck(false).status.success());

    // Untagging makes everything only the tag kept garbage.
    fx.open().remove_ref("oci/example/latest").unwrap();
    let report = fx.gc_json(&[]);
    assert_eq!(report["objects_removed"], 5);
    assert_eq!(report["images_pruned"], 1);
    assert_eq!(object_files(&fx.repo), Vec::<PathBuf>::new());
}

/// Regular files under `objects/`.
fn object_files(repo: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for xx in std::fs::read_dir(repo.join("objects")).unwrap() {
        let xx = xx.unwrap().path();
        if xx.is_dir() {
            out.extend(std::fs::read_dir(&xx).unwrap().map(|e| e.unwrap().path()));
        } else {
            out.push(xx);
        }
    }
    out
}

#[test]
fn an_unreadable_image_stops_gc_and_fsck_names_it() {
    let fx = Fixture::new();
    let garbage = fx.open().write_object(b"garbage").unwrap();
    // The composefs magic, then nonsense: an image whose references cannot be known.
    let mut bytes = 0xd078_629a_u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0x55; 5000]);
    let broken = fx.open().write_object(&bytes).unwrap();
    fx.open().set_ref("broken", &broken).unwrap();

    let out = cfsctl(&["gc", "--repo", s(&fx.repo)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to collect"), "{err}");
    assert!(err.contains(&broken.object_path_in_repo()), "{err}");
    assert!(
        fx.repo.join(garbage.object_path_in_repo()).exists(),
        "nothing removed"
    );

    // Also: an images/ entry that is no link of ours, and a stray file in objects/.
    std::fs::write(fx.repo.join("images/junk"), b"").unwrap();
    std::fs::write(fx.repo.join("objects/stray"), b"").unwrap();
    let out = fx.fsck(true);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("bad-image-link", "images/junk"),
            ("broken-image", broken.object_path_in_repo().as_str()),
            ("unexpected-file", "objects/stray"),
        ]
    );
}
