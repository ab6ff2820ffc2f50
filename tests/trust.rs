//! The repository trusts nothing it did not make: planted symlinks never lead a removal or a
//! write outside it, and a repository others can write is refused (`open`), repaired or
//! refused (`init`) and reported (`fsck`). See docs/security.md.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cfsctl::fsverity::Algorithm;
use cfsctl::repo::{RepoError, Repository};

fn init(path: &Path) {
    common::run_ok(common::cfsctl().arg("init").arg("--repo").arg(path));
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `refs/` holding a planted `oci -> OUTSIDE` link: `oci rm` must not unlink files there.
#[test]
fn oci_rm_does_not_follow_a_planted_link_out_of_refs() {
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    init(&repo);
    let outside = td.path().join("outside");
    let tag = cfsctl::oci::record::tag_ref("victim");
    // tag_ref is `oci/tags/<enc>`: the file a removal through the link would unlink.
    let victim = outside.join(tag.strip_prefix("oci/").unwrap());
    std::fs::create_dir_all(victim.parent().unwrap()).unwrap();
    std::fs::write(&victim, b"not the repository's").unwrap();
    std::os::unix::fs::symlink(&outside, repo.join("refs/oci")).unwrap();

    let out = common::cfsctl()
        .args(["oci", "rm", "victim", "--repo"])
        .arg(&repo)
        .output()
        .unwrap();
    assert!(victim.exists(), "oci rm unlinked {}", victim.display());
    assert!(!out.status.success(), "oci rm through a link succeeded");

    // The library calls resolve and remove through the same walk.
    let r = Repository::open(&repo).unwrap();
    assert!(r.resolve_ref(&tag).is_err());
    assert!(r.remove_ref(&tag).is_err());
    assert!(r.list_refs().is_err(), "listing followed refs/oci");
    assert!(victim.exists());
}

/// Every `objects/XX` a planted link to one outside directory: `create-image --repo` must
/// fail naming the directory and write nothing there.
#[test]
fn create_image_does_not_store_objects_through_a_linked_fanout_dir() {
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    init(&repo);
    let outside = td.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for xx in 0..=255u8 {
        std::os::unix::fs::symlink(&outside, repo.join(format!("objects/{xx:02x}"))).unwrap();
    }
    let src = td.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a"), common::content(10_000, 1)).unwrap();
    std::fs::write(src.join("b"), common::content(20_000, 2)).unwrap();

    let out = common::cfsctl()
        .arg("create-image")
        .arg("--repo")
        .arg(&repo)
        .arg(&src)
        .output()
        .unwrap();
    let stored: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(stored.is_empty(), "objects written outside: {stored:?}");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("objects/"), "{err}");
}

/// `init` on an existing directory of ours with mode 0777 makes it 0700, as the docs promise.
#[test]
fn init_repairs_a_world_writable_directory_of_its_own() {
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    chmod(&repo, 0o777);
    init(&repo);
    assert_eq!(std::fs::metadata(&repo).unwrap().mode() & 0o7777, 0o700);
    common::assert_fsck_clean(&repo);
}

/// `init` refuses a directory owned by another user (it could change it back at any time).
#[test]
fn init_refuses_a_directory_of_another_user() {
    if !common::is_root() {
        eprintln!("note: not root, cannot chown; skipping");
        return;
    }
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    chmod(&repo, 0o777);
    std::os::unix::fs::chown(&repo, Some(65534), Some(65534)).unwrap();
    let err = Repository::init(&repo, Algorithm::Sha256).unwrap_err();
    assert!(
        matches!(err.downcast_ref(), Some(RepoError::UntrustedInit { .. })),
        "{err:#}"
    );
    assert!(!repo.join("meta.json").exists());
}

/// A repository (or one of its top directories) others can write is refused by every
/// command that opens it, and fsck reports it.
#[test]
fn open_refuses_and_fsck_reports_a_repository_others_can_write() {
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    init(&repo);
    for (dir, mode) in [("", 0o777), ("objects", 0o775), ("refs", 0o757)] {
        let path = repo.join(dir);
        let before = std::fs::metadata(&path).unwrap().mode() & 0o7777;
        chmod(&path, mode);

        let err = Repository::open(&repo).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(RepoError::Untrusted { .. })),
            "{dir}: {err:#}"
        );
        let out = common::cfsctl()
            .args(["gc", "--repo"])
            .arg(&repo)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "gc ran on a repository others can write"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("untrusted repository"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let out = common::cfsctl()
            .args(["fsck", "--json", "--repo"])
            .arg(&repo)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "fsck called it clean ({dir})");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let want = if dir.is_empty() { "." } else { dir };
        let found = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "insecure-permissions" && p["path"] == want);
        assert!(found, "{dir}: {report}");

        chmod(&path, before);
        common::assert_fsck_clean(&repo);
    }
}
