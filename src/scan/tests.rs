use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use rustix::fs::{AtFlags, CWD, FileType as NodeType, Mode, Timespec, Timestamps, XattrFlags};

use super::*;
use crate::erofs::writer::{WriteOptions, image_bytes};
use crate::fsverity::digest_bytes;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    rustix::fs::utimensat(
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

fn setx(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

/// A tree with every kind of file this user can make. Returns the content of `big`.
fn populate(root: &Path) -> Vec<u8> {
    let big = pattern(3 * 4096 + 100);
    fs::create_dir(root.join("dir")).unwrap();
    fs::create_dir(root.join("dir/sub")).unwrap();
    fs::create_dir(root.join("empty-dir")).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("small"), b"hello\n").unwrap();
    fs::write(root.join("dir/64"), pattern(64)).unwrap();
    fs::write(root.join("dir/65"), pattern(65)).unwrap();
    fs::write(root.join("dir/sub/big"), &big).unwrap();
    fs::hard_link(root.join("dir/sub/big"), root.join("big-link")).unwrap();
    fs::hard_link(root.join("dir/sub/big"), root.join("dir/big-link2")).unwrap();
    fs::set_permissions(root.join("small"), fs::Permissions::from_mode(0o640)).unwrap();
    symlink("dir/sub/big", root.join("link")).unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("fifo"),
        NodeType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    setx(&root.join("small"), "user.greeting", b"hi");
    setx(&root.join("dir"), "user.empty", b"");
    if is_root() {
        rustix::fs::mknodat(
            CWD,
            root.join("null"),
            NodeType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        setx(&root.join("small"), "trusted.overlay.foo", b"bar");
        setx(&root.join("link"), "trusted.sym", b"on the link");
        rustix::fs::chown(
            root.join("dir/65"),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
        )
        .unwrap();
    }
    set_mtime(&root.join("small"), 1_700_000_000, 123_456_789);
    set_mtime(&root.join("link"), 1_600_000_000, 5);
    big
}

fn inode<'t>(tree: &'t Tree, path: &str) -> &'t Inode {
    &tree.inodes[tree
        .lookup(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} missing"))]
}

#[test]
fn every_file_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let big = populate(tmp.path());
    let (tree, report) = read_dir(tmp.path(), &ScanOptions::default(), None).unwrap();

    let empty = inode(&tree, "empty");
    assert_eq!(empty.mode & mode::S_IFMT, mode::S_IFREG);
    assert_eq!(
        (empty.size, &empty.inline, &empty.digest),
        (0, &None, &None)
    );
    assert_eq!(empty.payload, None);

    let small = inode(&tree, "small");
    assert_eq!(small.mode, mode::S_IFREG | 0o640);
    assert_eq!(small.inline.as_deref(), Some(&b"hello\n"[..]));
    assert_eq!((small.digest, &small.payload), (None, &None));
    assert_eq!(small.xattr(b"user.greeting"), Some(&b"hi"[..]));
    assert_eq!(
        small.mtime,
        Timestamp {
            sec: 1_700_000_000,
            nsec: 123_456_789
        }
    );

    // 64 bytes is the last inline size, 65 the first external one.
    assert_eq!(
        inode(&tree, "dir/64").inline.as_deref(),
        Some(&pattern(64)[..])
    );
    let ext = inode(&tree, "dir/65");
    assert_eq!(ext.inline, None);
    let d = digest_bytes(Algorithm::Sha256, &pattern(65));
    assert_eq!(ext.digest, Some(d));
    assert_eq!(ext.payload.as_deref(), Some(d.object_path().as_bytes()));

    let big_inode = inode(&tree, "dir/sub/big");
    assert_eq!(big_inode.size, big.len() as u64);
    assert_eq!(
        big_inode.digest,
        Some(digest_bytes(Algorithm::Sha256, &big))
    );
    // mkcomposefs makes one inode per name, link count 1.
    assert_ne!(tree.lookup(b"big-link"), tree.lookup(b"dir/sub/big"));
    assert_eq!(inode(&tree, "big-link").nlink, 1);
    assert_eq!(inode(&tree, "big-link").digest, big_inode.digest);

    let link = inode(&tree, "link");
    assert_eq!(link.mode & mode::S_IFMT, mode::S_IFLNK);
    assert_eq!(link.payload.as_deref(), Some(&b"dir/sub/big"[..]));
    assert_eq!(link.size, 11);
    assert_eq!(
        link.mtime,
        Timestamp {
            sec: 1_600_000_000,
            nsec: 5
        }
    );

    assert_eq!(inode(&tree, "fifo").mode, mode::S_IFIFO | 0o600);
    let dir = inode(&tree, "dir");
    assert_eq!(dir.xattr(b"user.empty"), Some(&b""[..]));
    assert_eq!(dir.nlink, 3);
    assert_eq!(tree.root().nlink, 4);
    assert!(tree.lookup(b"empty-dir").is_some());

    if is_root() {
        let null = inode(&tree, "null");
        assert_eq!(null.mode & mode::S_IFMT, mode::S_IFCHR);
        assert_eq!(null.rdev, rustix::fs::makedev(1, 3));
        // Kept raw: escaping to trusted.overlay.overlay.foo is the writer's business.
        assert_eq!(small.xattr(b"trusted.overlay.foo"), Some(&b"bar"[..]));
        assert_eq!(link.xattr(b"trusted.sym"), Some(&b"on the link"[..]));
        assert_eq!((ext.uid, ext.gid), (1234, 5678));
    }

    assert_eq!(report.external_files, 4);
    assert_eq!(report.inline_files, 2);
    assert_eq!(report.hashed_bytes, 65 + 3 * big.len() as u64);
    assert_eq!(report.symlinks, 1);
    assert!(report.skipped.is_empty());
}

#[test]
fn hardlinks_folded_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let big = populate(tmp.path());
    let opts = ScanOptions {
        hardlinks: true,
        ..ScanOptions::default()
    };
    let (tree, report) = read_dir(tmp.path(), &opts, None).unwrap();
    let id = tree.lookup(b"dir/sub/big").unwrap();
    assert_eq!(tree.lookup(b"big-link"), Some(id));
    assert_eq!(tree.lookup(b"dir/big-link2"), Some(id));
    assert_eq!(tree.inodes[id].nlink, 3);
    assert_eq!(report.hardlinks, 2);
    // Hashed once.
    assert_eq!(report.hashed_bytes, 65 + big.len() as u64);
    // Primary: the first name in depth-first name order ("big-link" < "dir").
    let mut names = Vec::new();
    tree.walk(|path, entry| {
        if entry.inode == id {
            names.push((String::from_utf8_lossy(path).into_owned(), entry.hardlink));
        }
    });
    assert_eq!(
        names,
        [
            ("/big-link".to_string(), false),
            ("/dir/big-link2".to_string(), true),
            ("/dir/sub/big".to_string(), true)
        ]
    );

    // The C reader sees one inode with three names, listed as hard links of the first.
    let image = image_bytes(&tree, &WriteOptions::default()).unwrap();
    let Some(dump) = composefs_info_dump(&image) else {
        return;
    };
    let lines: Vec<&str> = dump.lines().filter(|l| l.contains("big")).collect();
    assert!(lines[0].starts_with("/big-link 12388 100644 3 "), "{dump}");
    for (line, name) in lines[1..3].iter().zip(["/dir/big-link2", "/dir/sub/big"]) {
        assert!(
            line.starts_with(&format!("{name} 12388 @100644 3 ")),
            "{dump}"
        );
        assert!(line.contains(" /big-link - "), "{dump}");
    }
}

/// `composefs-info dump` of an image, when the C tool is installed.
fn composefs_info_dump(image: &[u8]) -> Option<String> {
    let bin = Path::new("/opt/composefs-c/bin/composefs-info");
    if !bin.exists() {
        eprintln!("note: {} missing, dump check skipped", bin.display());
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("img"), image).unwrap();
    let out = Command::new(bin)
        .env("LD_LIBRARY_PATH", "/opt/composefs-c/lib/x86_64-linux-gnu")
        .arg("dump")
        .arg(tmp.path().join("img"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn use_epoch_and_xattr_filters() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path());
    let opts = ScanOptions {
        use_epoch: true,
        xattrs: XattrFilter::UserOnly,
        ..ScanOptions::default()
    };
    let (tree, _) = read_dir(tmp.path(), &opts, None).unwrap();
    assert!(tree.inodes.iter().all(|i| i.mtime == Timestamp::default()));
    let small = inode(&tree, "small");
    assert_eq!(small.xattr(b"user.greeting"), Some(&b"hi"[..]));
    assert_eq!(small.xattr(b"trusted.overlay.foo"), None);

    let opts = ScanOptions {
        xattrs: XattrFilter::None,
        ..ScanOptions::default()
    };
    let (tree, _) = read_dir(tmp.path(), &opts, None).unwrap();
    assert!(tree.inodes.iter().all(|i| i.xattrs.is_empty()));
}

/// Lists and values longer than the first, small read buffer are read whole.
#[test]
fn xattrs_larger_than_first_try() {
    let tmp = tempfile::tempdir().unwrap();
    // Two files: ext4 keeps all xattrs of a file in one 4 KiB block.
    let (value_file, list_file) = (tmp.path().join("value"), tmp.path().join("list"));
    fs::write(&value_file, b"x").unwrap();
    fs::write(&list_file, b"y").unwrap();
    let big = pattern(XATTR_TRY + 500);
    setx(&value_file, "user.big", &big);
    let names: Vec<String> = (0..(XATTR_TRY / 20))
        .map(|i| format!("user.{i:020}"))
        .collect();
    for name in &names {
        setx(&list_file, name, b"");
    }
    let (tree, _) = read_dir(tmp.path(), &ScanOptions::default(), None).unwrap();
    assert_eq!(inode(&tree, "value").xattr(b"user.big"), Some(&big[..]));
    let list = inode(&tree, "list");
    assert_eq!(list.xattrs.len(), names.len());
    for name in &names {
        assert_eq!(list.xattr(name.as_bytes()), Some(&b""[..]));
    }
}

#[test]
fn sockets_kept_like_mkcomposefs_or_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("file"), b"x").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(tmp.path().join("sock")).unwrap();

    let (tree, report) = read_dir(tmp.path(), &ScanOptions::default(), None).unwrap();
    assert_eq!(inode(&tree, "sock").mode & mode::S_IFMT, mode::S_IFSOCK);
    assert_eq!(report.special_files, 1);

    let opts = ScanOptions {
        skip_sockets: true,
        ..ScanOptions::default()
    };
    let (tree, report) = read_dir(tmp.path(), &opts, None).unwrap();
    assert_eq!(tree.lookup(b"sock"), None);
    assert!(tree.lookup(b"file").is_some());
    assert_eq!(
        report.skipped,
        [(PathBuf::from("sock"), SkipReason::Socket)]
    );
}

#[test]
fn skip_devices() {
    if !is_root() {
        eprintln!("skipping skip_devices: needs root for mknod");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path());
    let opts = ScanOptions {
        skip_devices: true,
        ..ScanOptions::default()
    };
    let (tree, report) = read_dir(tmp.path(), &opts, None).unwrap();
    assert_eq!(tree.lookup(b"null"), None);
    assert_eq!(
        report.skipped,
        [(PathBuf::from("null"), SkipReason::Device)]
    );
}

#[test]
fn errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = read_dir(&missing, &ScanOptions::default(), None).unwrap_err();
    assert!(
        format!("{err:#}").contains(&*missing.to_string_lossy()),
        "{err:#}"
    );

    // A file shorter than its stat size (it shrank between stat and read).
    fs::write(tmp.path().join("f"), pattern(100)).unwrap();
    let file = fs::File::open(tmp.path().join("f")).unwrap();
    let mut buf = vec![0; 4096];
    let err = hash::digest_file(&file, 200, Algorithm::Sha256, &mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

/// Runs `f` on a thread with the credentials of `nobody` (credentials are per thread on
/// Linux, and the hashing threads `f` starts inherit them).
fn as_nobody<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        rustix::thread::set_thread_gid(rustix::fs::Gid::from_raw(65534)).unwrap();
        rustix::thread::set_thread_uid(rustix::fs::Uid::from_raw(65534)).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// As an unprivileged user: an unreadable empty file is fine (mkcomposefs never opens it),
/// an unreadable non-empty one is an error naming it.
#[test]
fn unreadable_files_as_nobody() {
    if !is_root() {
        eprintln!("skipping unreadable_files_as_nobody: needs root to switch to nobody");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(tmp.path().join("empty"), b"").unwrap();
    fs::write(tmp.path().join("secret"), pattern(100)).unwrap();
    for f in ["empty", "secret"] {
        fs::set_permissions(tmp.path().join(f), fs::Permissions::from_mode(0o000)).unwrap();
    }
    let scan = |root: PathBuf| {
        as_nobody(move || read_dir(&root, &ScanOptions::default(), None).map(|(tree, _)| tree))
    };
    let err = format!("{:#}", scan(tmp.path().to_owned()).unwrap_err());
    assert!(
        err.contains("secret") && err.contains("Permission denied"),
        "{err}"
    );
    fs::remove_file(tmp.path().join("secret")).unwrap();
    let tree = scan(tmp.path().to_owned()).unwrap();
    assert_eq!(inode(&tree, "empty").mode, mode::S_IFREG);
}

#[test]
fn digest_store_layout_and_dedup() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let big = populate(&src);
    let store_path = tmp.path().join("store/nested");
    let store = DigestStoreDir::open(&store_path).unwrap();

    let (tree, report) = read_dir(&src, &ScanOptions::default(), Some(&store)).unwrap();
    // big and its two extra names share one object.
    assert_eq!((report.objects_stored, report.objects_present), (2, 2));
    let d = inode(&tree, "dir/sub/big").digest.unwrap();
    let object = store_path.join(d.object_path());
    assert_eq!(fs::read(&object).unwrap(), big);
    assert_eq!(
        fs::metadata(&object).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    assert!(store.contains(&d));
    // Inline and empty files are not stored; only the two objects and their fan-out dirs.
    let mut objects = Vec::new();
    for fanout in fs::read_dir(&store_path).unwrap() {
        for obj in fs::read_dir(fanout.unwrap().path()).unwrap() {
            objects.push(obj.unwrap().path());
        }
    }
    assert_eq!(objects.len(), 2);

    let (_, again) = read_dir(&src, &ScanOptions::default(), Some(&store)).unwrap();
    assert_eq!((again.objects_stored, again.objects_present), (0, 4));
}

#[test]
fn digest_store_fallback_copy_and_rename() {
    let tmp = tempfile::tempdir().unwrap();
    let data = pattern(70_000);
    fs::write(tmp.path().join("f"), &data).unwrap();
    let store = DigestStoreDir::open(&tmp.path().join("s")).unwrap();
    let d = digest_bytes(Algorithm::Sha256, &data);
    let (fanout, name) = store.fanout_dir(&d).unwrap();
    let file = fs::File::open(tmp.path().join("f")).unwrap();
    store
        .store_via_rename(fanout, &name, &file, 70_000)
        .unwrap();
    assert_eq!(
        fs::read(tmp.path().join("s").join(d.object_path())).unwrap(),
        data
    );
    let out = rustix::fs::openat(
        CWD,
        tmp.path().join("copy"),
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o600),
    )
    .unwrap();
    sink::copy_plain(&file, &out, 0, 70_000).unwrap();
    assert_eq!(fs::read(tmp.path().join("copy")).unwrap(), data);
}

fn mkcomposefs() -> Option<Command> {
    let bin = Path::new("/opt/composefs-c/bin/mkcomposefs");
    if !bin.exists() {
        eprintln!("note: {} missing, differential test skipped", bin.display());
        return None;
    }
    let mut cmd = Command::new(bin);
    cmd.env("LD_LIBRARY_PATH", "/opt/composefs-c/lib/x86_64-linux-gnu");
    Some(cmd)
}

/// Our tree through our writer against the image C mkcomposefs writes for the same directory.
fn assert_same_image_as_c(src: &Path, use_epoch: bool, with_store: bool) {
    let Some(mut cmd) = mkcomposefs() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let c_image = tmp.path().join("c.img");
    let c_store = tmp.path().join("c-store");
    if use_epoch {
        cmd.arg("--use-epoch");
    }
    if with_store {
        cmd.arg(format!("--digest-store={}", c_store.display()));
    }
    let status = cmd.arg(src).arg(&c_image).status().unwrap();
    assert!(status.success());

    let store = with_store.then(|| DigestStoreDir::open(&tmp.path().join("our-store")).unwrap());
    let opts = ScanOptions {
        use_epoch,
        ..ScanOptions::default()
    };
    let (tree, _) = read_dir(src, &opts, store.as_ref().map(|s| s as &dyn ContentSink)).unwrap();
    let ours = image_bytes(&tree, &WriteOptions::default()).unwrap();
    let theirs = fs::read(&c_image).unwrap();
    assert!(
        ours == theirs,
        "image of {} differs from mkcomposefs (use_epoch={use_epoch}, store={with_store})",
        src.display()
    );
    if with_store {
        let list = |p: &Path| -> Vec<(PathBuf, Vec<u8>)> {
            let mut v = Vec::new();
            for fanout in fs::read_dir(p).unwrap() {
                let fanout = fanout.unwrap().path();
                if !fanout.is_dir() {
                    continue;
                }
                for obj in fs::read_dir(&fanout).unwrap() {
                    let obj = obj.unwrap().path();
                    v.push((
                        obj.strip_prefix(p).unwrap().to_owned(),
                        fs::read(&obj).unwrap(),
                    ));
                }
            }
            v.sort();
            v
        };
        assert_eq!(list(&tmp.path().join("our-store")), list(&c_store));
    }
}

#[test]
fn same_image_as_mkcomposefs() {
    let tmp = tempfile::tempdir().unwrap();
    populate(tmp.path());
    let _listener = std::os::unix::net::UnixListener::bind(tmp.path().join("sock")).unwrap();
    set_mtime(tmp.path(), 1_650_000_000, 42);
    for (use_epoch, with_store) in [(false, false), (true, false), (false, true)] {
        assert_same_image_as_c(tmp.path(), use_epoch, with_store);
    }
}

#[test]
fn fsverity_digest_file_matches_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut buf = vec![0; 4096 + 7];
    for len in [1usize, 4095, 4096, 4097, 128 * 4096 + 1, 300_001] {
        let data = pattern(len);
        fs::write(tmp.path().join("f"), &data).unwrap();
        let file = fs::File::open(tmp.path().join("f")).unwrap();
        // A read buffer that is not a multiple of the block size exercises partial blocks.
        let d = hash::digest_file(&file, len as u64, Algorithm::Sha512, &mut buf).unwrap();
        assert_eq!(d, digest_bytes(Algorithm::Sha512, &data), "len {len}");
    }
}

/// xorshift64*: small and deterministic, enough to vary test trees.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Fills `dir` with a random tree: names of every byte but `/` and NUL, sizes around the
/// inline and block boundaries, xattrs (with overlay ones when root), symlinks, fifos,
/// nested directories, odd modes and mtimes.
fn random_tree(rng: &mut Rng, dir: &Path, depth: u32) {
    let entries = rng.below(12);
    for i in 0..entries {
        let mut name: Vec<u8> = format!("{i}-").into_bytes();
        for _ in 0..rng.below(20) {
            let b = 1 + rng.below(255) as u8;
            if b != b'/' {
                name.push(b);
            }
        }
        let path = dir.join(OsStr::from_bytes(&name));
        match rng.below(10) {
            0..=4 => {
                let size = match rng.below(6) {
                    0 => rng.below(3),
                    1 => 62 + rng.below(5),
                    2 => 4094 + rng.below(5),
                    _ => rng.below(200_000),
                };
                fs::write(&path, pattern(size as usize)).unwrap();
                let mode = [0o644, 0o600, 0o755, 0o4755, 0o1777][rng.below(5) as usize];
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            }
            5 | 6 if depth < 3 => {
                fs::create_dir(&path).unwrap();
                random_tree(rng, &path, depth + 1);
            }
            7 => symlink(OsStr::from_bytes(&name[..name.len().min(9)]), &path).unwrap(),
            _ => rustix::fs::mknodat(CWD, &path, NodeType::Fifo, Mode::from_raw_mode(0o644), 0)
                .unwrap(),
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        // The kernel allows user.* only on regular files and directories.
        if meta.is_file() || meta.is_dir() {
            for x in 0..rng.below(3) {
                let value = pattern(rng.below(300) as usize);
                setx(&path, &format!("user.x{x}"), &value);
            }
        }
        if is_root() && rng.below(3) == 0 {
            let name = [
                "trusted.overlay.opaque",
                "trusted.overlay.foo",
                "trusted.other",
            ][rng.below(3) as usize];
            setx(&path, name, b"y");
        }
        set_mtime(
            &path,
            rng.below(2_000_000_000) as i64,
            rng.below(1_000_000_000) as i64,
        );
    }
}

#[test]
fn random_trees_same_image_as_mkcomposefs() {
    if mkcomposefs().is_none() {
        return;
    }
    let cases: u64 = std::env::var("CFS_FROM_DIR_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    for seed in 1..=cases {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        random_tree(&mut rng, tmp.path(), 0);
        assert_same_image_as_c(tmp.path(), seed % 2 == 0, false);
    }
}
