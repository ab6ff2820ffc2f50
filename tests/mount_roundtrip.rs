//! Host integration test: a tree with every file kind goes through `cfsctl create-image --repo`,
//! is mounted with `cfsctl mount` (real EROFS + overlayfs on the host kernel, verity off here
//! because the host has no fs-verity), and the mounted view must equal the source.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", path.display()));
}

/// Builds the source tree; returns the names that the image cannot hold (skipped with a warning).
fn build_source(src: &Path) -> Vec<PathBuf> {
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    fs::create_dir_all(src.join("dir/sub/deeper")).unwrap();
    fs::create_dir(src.join("empty")).unwrap();
    fs::create_dir(src.join("sticky")).unwrap();
    fs::set_permissions(src.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(src.join("empty-file"), b"").unwrap();
    fs::write(src.join("small"), b"hello world\n").unwrap();
    fs::write(src.join("dir/exactly64"), [b'a'; 64]).unwrap();
    fs::write(src.join("dir/sixtyfive"), [b'b'; 65]).unwrap();
    let big: Vec<u8> = (0..(3 << 20) + 123)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(src.join("dir/sub/big"), &big).unwrap();
    fs::write(src.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(src.join("private"), b"secret").unwrap();
    fs::set_permissions(src.join("private"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(src.join("private"), Some(1234), Some(5678)).unwrap();
    fs::write(src.join("dir/linked"), vec![b'L'; 5000]).unwrap();
    fs::hard_link(src.join("dir/linked"), src.join("dir/sub/linked-again")).unwrap();
    fs::hard_link(src.join("dir/linked"), src.join("linked-third")).unwrap();
    fs::write(src.join("tiny-linked"), b"tiny").unwrap();
    fs::hard_link(src.join("tiny-linked"), src.join("dir/tiny-linked2")).unwrap();
    symlink("small", src.join("rel-link")).unwrap();
    symlink("/etc/passwd", src.join("abs-link")).unwrap();
    symlink("does/not/exist", src.join("dangling")).unwrap();
    symlink("x".repeat(1000), src.join("long-link")).unwrap();
    mknodat(
        CWD,
        src.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    mknodat(
        CWD,
        src.join("null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    mknodat(
        CWD,
        src.join("loop9"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        rustix::fs::makedev(7, 9),
    )
    .unwrap();
    setxattr(&src.join("small"), "user.comment", b"a user xattr");
    setxattr(&src.join("small"), "trusted.foo", b"\x00\x01binary\xff");
    setxattr(&src.join("dir"), "trusted.overlay.opaque", b"y");
    setxattr(&src.join("dir/sub/big"), "user.empty", b"");
    setxattr(&src.join("dir/sub/big"), "security.whatever", b"v");
    let long_name = "n".repeat(255);
    fs::write(src.join(&long_name), b"long name").unwrap();
    fs::write(src.join("dir/utf8-\u{e9}\u{1f600}"), b"unicode").unwrap();
    // A socket cannot be stored in an image: cfsctl must warn and skip it.
    let sock = src.join("dir/socket");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // Distinct mtimes with nanoseconds, set last so file creation doesn't disturb directories.
    let mut n = 0i64;
    for entry in walk(src) {
        n += 1;
        set_mtime(
            &entry,
            1_600_000_000 + n * 1000,
            (n * 123_456_789) % 1_000_000_000,
        );
    }
    set_mtime(src, 1_500_000_000, 42);
    vec![PathBuf::from("dir/socket")]
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            if p.symlink_metadata().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[derive(Debug, PartialEq)]
struct Seen {
    mode: u32,
    uid: u32,
    gid: u32,
    size: Option<u64>,
    mtime: (i64, i64),
    nlink: u64,
    rdev: u64,
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap();
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        let mut val = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut val[..]).unwrap();
        val.truncate(len);
        out.insert(name, val);
    }
    out
}

fn observe(path: &Path) -> Seen {
    let md = path.symlink_metadata().unwrap();
    let ft = md.file_type();
    Seen {
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        size: (ft.is_file() || ft.is_symlink()).then_some(md.size()),
        mtime: (md.mtime(), md.mtime_nsec()),
        nlink: md.nlink(),
        rdev: md.rdev(),
        content: ft.is_file().then(|| fs::read(path).unwrap()),
        target: ft.is_symlink().then(|| fs::read_link(path).unwrap()),
        xattrs: xattrs(path),
    }
}

#[test]
fn image_mounted_from_repository_equals_source() {
    if !common::can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let skipped = build_source(&src);
    let repo = tmp.path().join("repo");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();

    run(common::cfsctl().args(["init", "--repo"]).arg(&repo));
    let out = common::run_ok(
        common::cfsctl()
            .args(["create-image", "--print-digest", "--repo"])
            .arg(&repo)
            .arg(&src)
            .arg(tmp.path().join("copy.img")),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("socket"),
        "no warning about the socket: {stderr}"
    );
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(digest.len(), 64, "digest printed: {digest:?}");
    assert!(repo.join("images").join(&digest).exists());

    // The image copy written next to the repository has the same digest.
    let id = run(common::cfsctl().arg("compute-id").arg(&src));
    assert_eq!(id.trim(), digest);

    run(common::cfsctl()
        .args(["mount", "--repo"])
        .arg(&repo)
        .arg(&digest)
        .arg(&mnt));
    let result = std::panic::catch_unwind(|| {
        let src_entries = walk(&src);
        let mut compared = 0;
        let mut inode_of: BTreeMap<u64, u64> = BTreeMap::new();
        for s in &src_entries {
            let rel = s.strip_prefix(&src).unwrap();
            let m = mnt.join(rel);
            if skipped.iter().any(|k| k == rel) {
                assert!(
                    m.symlink_metadata().is_err(),
                    "{} should be skipped",
                    rel.display()
                );
                continue;
            }
            let (a, b) = (observe(s), observe(&m));
            assert_eq!(a, b, "mounted view differs at {}", rel.display());
            // Hardlinks stay one inode: the same source inode maps to one mounted inode.
            let (si, mi) = (
                s.symlink_metadata().unwrap().ino(),
                m.symlink_metadata().unwrap().ino(),
            );
            if let Some(prev) = inode_of.insert(si, mi) {
                assert_eq!(prev, mi, "hardlink {} split into two inodes", rel.display());
            }
            compared += 1;
        }
        let root = (observe(&src), observe(&mnt));
        assert_eq!(root.0.mode, root.1.mode);
        assert_eq!(root.0.mtime, root.1.mtime);
        let mounted_count = walk(&mnt).len();
        assert_eq!(mounted_count, compared, "mounted tree has extra entries");
        compared
    });
    let unmounted = cfsctl::mount::unmount(&mnt);
    let compared = result.unwrap();
    unmounted.unwrap();
    assert!(compared > 25, "only {compared} entries compared");
}
