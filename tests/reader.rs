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
use cfsctl::dumpfile::{ParseMode, parse};
use cfsctl::erofs::reader::{read_image, referenced_objects};
use cfsctl::erofs::writer::{WriteOptions, image_bytes};
use cfsctl::tree::Tree;

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

/// The writer options of mkcomposefs's `--min-version=V --max-version=V`, or its defaults.
fn write_options(version: Option<&str>) -> WriteOptions {
    match version.map(|v| v.parse::<u32>().unwrap()) {
        Some(v) => WriteOptions {
            min_version: v,
            max_version: v,
        },
        None => WriteOptions::default(),
    }
}

/// Reading recovers everything the writer uses: writing the tree read from our image gives
/// the same image again (whiteout stubs, overlay xattrs and escapes are dropped on reading
/// and added back on writing). Needs no C tools.
#[test]
fn read_then_write_gives_the_same_image() {
    for (name, text, version) in fixtures() {
        let opts = write_options(version.as_deref());
        let tree = parse(&text, ParseMode::Lenient).unwrap();
        let image = image_bytes(&tree, &opts).unwrap();
        let again = image_bytes(&read_image(&image).unwrap(), &opts).unwrap();
        assert!(image == again, "{name}: image differs after read + write");
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
    fn below64(&mut self, n: u64) -> u64 {
        self.next() % n
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
    // Images from our writer (byte-identical to mkcomposefs's, see the writer's fixture
    // test), so this runs without the C tools.
    let inputs = fixtures().into_iter().filter(|(n, ..)| {
        [
            "special.dump",
            "special_v1.dump",
            "config-with-hard-link.dump.gz",
        ]
        .contains(&n.as_str())
    });
    for (name, text, version) in inputs {
        let tree = parse(&text, ParseMode::Lenient).unwrap();
        let image = image_bytes(&tree, &write_options(version.as_deref())).unwrap();
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

/// Damaged images of random trees: more shapes (extended inodes, shared xattrs, deeper
/// directories, whiteouts) than the fixtures.
#[test]
fn damaged_random_images_never_panic() {
    for tree_seed in 0..40 {
        let tree = random_tree(&mut Rng(tree_seed));
        let image = image_bytes(&tree, &WriteOptions::default()).unwrap();
        for seed in 0..100 {
            let mut rng = Rng(tree_seed << 32 | seed);
            let mut damaged = image.clone();
            for _ in 0..1 + rng.below(4) {
                let at = 1024 + rng.below(image.len() - 1024);
                damaged[at] = rng.next() as u8;
            }
            survive(
                &damaged,
                &format!("tree {tree_seed} with flips of seed {seed}"),
            );
        }
    }
}

/// A random tree with every kind of inode the format holds: inline and external files,
/// symlinks, devices, fifos, sockets, whiteouts, nested directories, hard links, user and
/// overlay xattrs, compact and extended inodes.
fn random_tree(rng: &mut Rng) -> Tree {
    use cfsctl::fsverity::Digest;
    use cfsctl::tree::{DirEntry, Inode, Timestamp, Xattr, mode};

    let mut tree = Tree::new(0o755);
    let mut dirs = vec![0usize];
    let mut files: Vec<usize> = Vec::new();
    let names: [&[u8]; 12] = [
        b"a",
        b"b",
        b"bin",
        b"etc",
        b"00",
        b"ff",
        b"with space",
        b"x=y",
        b"-",
        b"\xc3\xa9",
        b"long-name-long-name",
        b"z",
    ];
    for _ in 0..1 + rng.below(40) {
        let parent = dirs[rng.below(dirs.len())];
        let mut name = names[rng.below(names.len())].to_vec();
        if rng.below(2) == 0 {
            name.extend_from_slice(format!("{}", rng.below(1000)).as_bytes());
        }
        if tree.inodes[parent].entries.contains_key(&name[..]) {
            continue;
        }
        if !files.is_empty() && rng.below(8) == 0 {
            let target = files[rng.below(files.len())];
            tree.inodes[target].nlink += 1;
            let e = DirEntry {
                inode: target,
                hardlink: true,
            };
            tree.inodes[parent].entries.insert(name.into(), e);
            continue;
        }
        let kind = rng.below(9);
        let mut inode = Inode::new(match kind {
            0 | 1 => mode::S_IFDIR | 0o755,
            2 => mode::S_IFLNK | 0o777,
            3 => mode::S_IFCHR | 0o600,
            4 => mode::S_IFBLK | 0o660,
            5 => mode::S_IFIFO | 0o644,
            6 => mode::S_IFSOCK | 0o644,
            _ => mode::S_IFREG | 0o644 | (rng.below(2) as u32) << 11,
        });
        // Small ids and the shared mtime give compact inodes, others extended ones.
        if rng.below(3) == 0 {
            inode.uid = rng.below(100_000) as u32;
            inode.gid = rng.below(100_000) as u32;
            inode.mtime = Timestamp {
                sec: rng.below(1 << 40) as i64,
                nsec: rng.below(1_000_000_000) as u32,
            };
        }
        match kind {
            2 => {
                let target = format!("../target/{}", rng.below(1 << 20)).into_bytes();
                inode.size = target.len() as u64;
                inode.payload = Some(target.into());
            }
            3 if rng.below(2) == 0 => {} // 0:0: a whiteout
            3 | 4 => inode.rdev = 1 + rng.below64(1 << 20),
            7 => {
                let len = rng.below(5000);
                inode.size = len as u64;
                if len > 0 {
                    inode.inline = Some((0..len).map(|_| rng.next() as u8).collect());
                }
            }
            8 => {
                let digest =
                    Digest::from_bytes(&(0..32).map(|_| rng.next() as u8).collect::<Vec<_>>())
                        .unwrap();
                inode.size = 1 + rng.below64(1 << 34);
                inode.payload = Some(digest.object_path().into_bytes().into());
                inode.digest = Some(digest);
            }
            _ => {}
        }
        for _ in 0..rng.below(4) {
            let name: &[u8] = [
                &b"user.test"[..],
                b"trusted.overlay.custom",
                b"security.selinux",
                b"user.x=y",
            ][rng.below(4)];
            let value = format!("value {}", rng.below(4)).into_bytes();
            if inode.xattr(name).is_none() {
                inode.xattrs.push(Xattr {
                    name: name.into(),
                    value: value.into(),
                });
            }
        }
        let is_dir = inode.is_dir();
        let is_file = inode.mode & mode::S_IFMT == mode::S_IFREG;
        let id = tree.add_inode(inode);
        tree.inodes[parent].entries.insert(
            name.into(),
            DirEntry {
                inode: id,
                hardlink: false,
            },
        );
        if is_dir {
            dirs.push(id);
        } else if is_file {
            files.push(id);
        }
    }
    first_name_is_primary(&mut tree);
    tree
}

/// Makes the first name of each inode in depth-first name order its primary entry, as in
/// any tree read from an image (the writer places an inode at its primary entry, so a tree
/// whose primary comes later would be laid out differently once read back).
fn first_name_is_primary(tree: &mut Tree) {
    fn visit(tree: &mut Tree, dir: usize, seen: &mut std::collections::HashSet<usize>) {
        let names: Vec<Box<[u8]>> = tree.inodes[dir].entries.keys().cloned().collect();
        for name in names {
            let entry = tree.inodes[dir].entries.get_mut(&name).unwrap();
            entry.hardlink = !seen.insert(entry.inode);
            let (child, hardlink) = (entry.inode, entry.hardlink);
            if !hardlink && tree.inodes[child].is_dir() {
                visit(tree, child, seen);
            }
        }
    }
    visit(tree, 0, &mut Default::default());
}

/// Random trees: written by us, read back and written again, the image must not change; with
/// the C tools, our dump of the image must also equal `composefs-info dump`.
#[test]
fn random_trees_survive_write_read_write() {
    let tools = CTools::find();
    let tmp = tempfile::tempdir().unwrap();
    for seed in 0..400 {
        let mut rng = Rng(seed);
        let tree = random_tree(&mut rng);
        let opts = WriteOptions {
            min_version: rng.below(2) as u32,
            max_version: 1,
        };
        let image = image_bytes(&tree, &opts).unwrap();
        let read = read_image(&image).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let again = image_bytes(&read, &opts).unwrap();
        if image != again {
            let dump = |img: &[u8]| {
                let mut out = Vec::new();
                print(&read_image(img).unwrap(), &mut out).unwrap();
                out
            };
            assert_same_dump(
                &format!("seed {seed}, rewritten"),
                &dump(&again),
                &dump(&image),
            );
            let at = image.iter().zip(&again).position(|(a, b)| a != b);
            panic!("seed {seed}: image differs after read + write at byte {at:?}");
        }
        if let Some(tools) = &tools {
            let mut ours = Vec::new();
            print(&read, &mut ours).unwrap();
            assert_same_dump(
                &format!("seed {seed}"),
                &ours,
                &tools.info_dump(&image, tmp.path()),
            );
        }
    }
}
