//! One depth limit for every writer and reader (`MAX_DEPTH` path components): trees deeper
//! than it are refused at import with an error naming the path, never a stack overflow, and
//! nothing is written or tagged that the reader, `dump`, `fsck` and `gc` cannot read.

mod common;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Output;

use cfsctl::erofs::limits::MAX_DEPTH;
use common::ociimage::{Compression, Layer, write_layout};
use common::{assert_fsck_clean, cfsctl, run_ok};
use rustix::fs::{AtFlags, CWD, Mode, OFlags};

fn open_dir(at: &impl rustix::fd::AsFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `top/d/d/.../d` with `dirs` directories below `top`, the last holding a file `f` when
/// `file`; made fd by fd, as its paths are longer than `PATH_MAX`.
fn make_chain(top: &Path, dirs: usize, file: bool) {
    std::fs::create_dir(top).unwrap();
    let mut fd = open_dir(&CWD, top.to_str().unwrap()).unwrap();
    for _ in 0..dirs {
        rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
        fd = open_dir(&fd, "d").unwrap();
    }
    if file {
        let f = rustix::fs::openat(
            &fd,
            "f",
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&f, b"deep").unwrap();
    }
}

/// Removes a chain made by [`make_chain`] without recursion: `top/d/d` moves up to `top/n`,
/// the emptied `top/d` goes, `top/n` becomes `top/d`, until one directory is left.
fn remove_chain(top: &Path) {
    let fd = open_dir(&CWD, top.to_str().unwrap()).unwrap();
    while let Ok(d) = open_dir(&fd, "d") {
        if rustix::fs::renameat(&d, "d", &fd, "n").is_err() {
            break;
        }
        let _ = rustix::fs::unlinkat(&d, "f", AtFlags::empty());
        drop(d);
        rustix::fs::unlinkat(&fd, "d", AtFlags::REMOVEDIR).unwrap();
        rustix::fs::renameat(&fd, "n", &fd, "d").unwrap();
    }
    drop(fd);
    std::fs::remove_dir_all(top).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 1 with an error that names the limit (a stack overflow aborts with 134).
fn assert_refused_as_too_deep(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(out));
    assert!(
        stderr(out).contains(&format!("more than {MAX_DEPTH}"))
            || stderr(out).contains(&format!("at most {MAX_DEPTH}")),
        "{what}: {}",
        stderr(out)
    );
}

#[test]
fn a_directory_nested_7000_deep_is_refused_not_a_stack_overflow() {
    let td = tempfile::tempdir().unwrap();
    let top = td.path().join("deep");
    make_chain(&top, 7000, true);
    let out = cfsctl().arg("compute-id").arg(&top).output().unwrap();
    assert_refused_as_too_deep(&out, "compute-id");
    // The error names the path, from the scanned directory down.
    assert!(stderr(&out).contains(&format!("{}/d/d/d", top.display())));
    let repo = td.path().join("repo");
    run_ok(cfsctl().args(["init", "--repo"]).arg(&repo));
    let out = cfsctl()
        .args(["create-image", "--repo"])
        .arg(&repo)
        .args(["--ref", "deep"])
        .arg(&top)
        .output()
        .unwrap();
    assert_refused_as_too_deep(&out, "create-image");
    remove_chain(&top);
}

/// The deepest tree allowed is written, ref'd, dumped, checked and kept by gc; one level more
/// is refused at import and nothing is ref'd, so gc and fsck keep working.
#[test]
fn directories_at_the_limit_round_trip_and_one_more_is_refused() {
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    run_ok(cfsctl().args(["init", "--repo"]).arg(&repo));
    let ok = td.path().join("ok");
    make_chain(&ok, MAX_DEPTH - 1, true); // the file has MAX_DEPTH components
    let image = td.path().join("ok.cfs");
    run_ok(
        cfsctl()
            .args(["create-image", "--repo"])
            .arg(&repo)
            .args(["--ref", "ok"])
            .arg(&ok)
            .arg(&image),
    );
    let dump = run_ok(cfsctl().arg("dump").arg(&image));
    let dump = String::from_utf8(dump.stdout).unwrap();
    let deepest = format!("/{}f ", "d/".repeat(MAX_DEPTH - 1));
    assert!(dump.lines().any(|l| l.starts_with(&deepest)));
    // The same tree as a dump reads and writes to the same image.
    let dump_file = td.path().join("ok.dump");
    std::fs::write(&dump_file, &dump).unwrap();
    let from_dump = run_ok(cfsctl().args(["compute-id", "--from-dump"]).arg(&dump_file));
    let from_dir = run_ok(cfsctl().arg("compute-id").arg(&ok));
    assert_eq!(from_dump.stdout, from_dir.stdout);

    let too_deep = td.path().join("too-deep");
    make_chain(&too_deep, MAX_DEPTH, true); // the file has MAX_DEPTH + 1 components
    let out = cfsctl()
        .args(["create-image", "--repo"])
        .arg(&repo)
        .args(["--ref", "too-deep"])
        .arg(&too_deep)
        .output()
        .unwrap();
    assert_refused_as_too_deep(&out, "create-image");
    // A dump one level deeper than the limit: refused, naming the line and the path.
    let deeper = format!(
        "{dump}/{}d 0 40755 2 0 0 0 0.0 - - -\n/{}f 4 100644 1 0 0 0 0.0 - deep -\n",
        "d/".repeat(MAX_DEPTH - 1),
        "d/".repeat(MAX_DEPTH)
    );
    std::fs::write(&dump_file, &deeper).unwrap();
    let out = cfsctl()
        .args(["create-image", "--from-dump", "--repo"])
        .arg(&repo)
        .args(["--ref", "too-deep"])
        .arg(&dump_file)
        .output()
        .unwrap();
    assert_refused_as_too_deep(&out, "create-image --from-dump");
    let line = format!("line {}", deeper.lines().count());
    assert!(stderr(&out).contains(&line), "{}", stderr(&out));

    assert!(repo.join("refs/ok").exists());
    assert!(!repo.join("refs/too-deep").exists());
    assert_fsck_clean(&repo);
    run_ok(cfsctl().args(["gc", "--repo"]).arg(&repo));
    run_ok(cfsctl().arg("dump").arg(&image));
    remove_chain(&ok);
    remove_chain(&too_deep);
}

/// A layer with one entry `a/a/.../f` of `components` components (a GNU long name).
fn deep_layer(components: usize) -> Vec<u8> {
    let path = format!("{}f", "a/".repeat(components - 1));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(4);
    b.append_data(&mut h, &path, &b"deep"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn a_layer_with_an_8000_component_path_is_refused_not_a_stack_overflow() {
    let td = tempfile::tempdir().unwrap();
    let repo = td.path().join("repo");
    run_ok(cfsctl().args(["init", "--repo"]).arg(&repo));
    let layout = td.path().join("layout");
    let layers = [Layer::new(deep_layer(8000), Compression::Gzip)];
    write_layout(&layout, "deep", &layers, &BTreeMap::new());
    let out = cfsctl()
        .args(["oci", "pull", "--repo"])
        .arg(&repo)
        .arg(format!("oci:{}:deep", layout.display()))
        .output()
        .unwrap();
    assert_refused_as_too_deep(&out, "oci pull");
    assert!(stderr(&out).contains("entry 'a/a/a/"), "{}", stderr(&out));
    let images = run_ok(cfsctl().args(["oci", "images", "--repo"]).arg(&repo));
    assert!(images.stdout.is_empty());

    // At the limit the pull works, and the image reads back.
    let layers = [Layer::new(deep_layer(MAX_DEPTH), Compression::Zstd)];
    write_layout(&layout, "limit", &layers, &BTreeMap::new());
    run_ok(
        cfsctl()
            .args(["oci", "pull", "--repo"])
            .arg(&repo)
            .arg(format!("oci:{}:limit", layout.display())),
    );
    assert_fsck_clean(&repo);
    run_ok(cfsctl().args(["gc", "--repo"]).arg(&repo));
}
