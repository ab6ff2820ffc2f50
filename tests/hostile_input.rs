//! Inputs an attacker or an unlucky host can hand cfsctl: files that never end, FIFOs where a
//! file is expected, huge sparse metadata, malformed tar owners, tag names that break listings,
//! and the smaller promises around them (image file modes, `oci rm` of several names, the
//! warning for images naming absent objects). Every case ends in a clear error, not a hang.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::ociimage::{Compression, Layer, write_layout};
use common::{cfsctl, run_ok};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd` to its end; a command still running after two minutes is a hang: killed, and
/// the test fails (the deadline only catches hangs, nothing here is expected to come near it).
fn run_without_hang(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            panic!("{cmd:?} hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

fn init_repo(dir: &Path) -> std::path::PathBuf {
    let repo = dir.join("repo");
    run_ok(cfsctl().args(["init", "--repo"]).arg(&repo));
    repo
}

/// A small layout with one file, tagged `tag`.
fn layout(dir: &Path, tag: &str) -> common::ociimage::Written {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(5);
    b.append_data(&mut h, "etc/hello", &b"hello"[..]).unwrap();
    let layers = [Layer::new(b.into_inner().unwrap(), Compression::Gzip)];
    write_layout(dir, tag, &layers, &BTreeMap::new())
}

#[test]
fn dump_of_a_device_or_fifo_is_refused_at_once() {
    let out = run_without_hang(cfsctl().args(["dump", "/dev/zero"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/dev/zero is a character device"),
        "{}",
        stderr(&out)
    );
    let td = tempfile::tempdir().unwrap();
    let fifo = td.path().join("image.cfs");
    mkfifo(&fifo);
    let out = run_without_hang(cfsctl().arg("dump").arg(&fifo));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a FIFO"), "{}", stderr(&out));
    // An image file larger than any image: refused from its size, not read.
    let huge = td.path().join("huge.cfs");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(cfsctl::bounded::MAX_IMAGE + 1)
        .unwrap();
    let out = run_without_hang(cfsctl().arg("dump").arg(&huge));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bytes is more than"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_dump_without_newlines_is_refused_within_one_line() {
    let out = run_without_hang(cfsctl().args(["compute-id", "--from-dump", "/dev/zero"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("line 1: line longer than"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_huge_sparse_index_and_a_fifo_blob_end_in_errors_not_memory_or_hangs() {
    let td = tempfile::tempdir().unwrap();
    let repo = init_repo(td.path());
    let dir = td.path().join("layout");
    let written = layout(&dir, "v1");
    let reference = format!("oci:{}:v1", dir.display());

    // A layer blob replaced by a FIFO nobody writes to.
    let (layer, _, _) = &written.layers[0];
    let blob = dir.join("blobs/sha256").join(&layer["sha256:".len()..]);
    std::fs::remove_file(&blob).unwrap();
    mkfifo(&blob);
    let out = run_without_hang(
        cfsctl()
            .args(["oci", "pull", "--repo"])
            .arg(&repo)
            .arg(&reference),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a FIFO"), "{}", stderr(&out));
    assert!(stderr(&out).contains(layer.as_str()), "{}", stderr(&out));

    // An 8 GiB sparse index.json: refused from its size.
    let index = dir.join("index.json");
    std::fs::File::create(&index)
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let out = run_without_hang(
        cfsctl()
            .args(["oci", "pull", "--repo"])
            .arg(&repo)
            .arg(&reference),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("index.json: 8589934592 bytes is more than"),
        "{}",
        stderr(&out)
    );
    let images = run_ok(cfsctl().args(["oci", "images", "--repo"]).arg(&repo));
    assert!(images.stdout.is_empty());
}

/// A PAX `uid`/`gid` record that does not parse is an error naming the entry, not silently
/// replaced by the header's value.
#[test]
fn unparseable_pax_owners_are_refused() {
    let td = tempfile::tempdir().unwrap();
    let repo = init_repo(td.path());
    let dir = td.path().join("layout");
    for (i, (key, value)) in [
        ("uid", "abc"),
        ("gid", "-5"),
        ("uid", "18446744073709551617"),
        ("gid", "4294967296"),
        ("uid", ""),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([(key, value.as_bytes())]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(7);
        h.set_gid(7);
        h.set_size(2);
        b.append_data(&mut h, "owned", &b"hi"[..]).unwrap();
        let tag = format!("t{i}");
        let layers = [Layer::new(b.into_inner().unwrap(), Compression::None)];
        write_layout(&dir, &tag, &layers, &BTreeMap::new());
        let out = cfsctl()
            .args(["oci", "pull", "--repo"])
            .arg(&repo)
            .arg(format!("oci:{}:{tag}", dir.display()))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{key}={value}: {}",
            stderr(&out)
        );
        let want = format!("entry 'owned': PAX {key} '{value}' is not a 32-bit decimal id");
        assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    }
    // A valid PAX owner wins over the header's.
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("uid", &b"4000000000"[..]), ("gid", b"12")])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(2);
    b.append_data(&mut h, "owned", &b"hi"[..]).unwrap();
    let layers = [Layer::new(b.into_inner().unwrap(), Compression::None)];
    write_layout(&dir, "ok", &layers, &BTreeMap::new());
    run_ok(
        cfsctl()
            .args(["oci", "pull", "--repo"])
            .arg(&repo)
            .arg(format!("oci:{}:ok", dir.display())),
    );
    let img = td.path().join("ok.cfs");
    let record = run_ok(
        cfsctl()
            .args(["oci", "inspect", "--json", "--repo"])
            .arg(&repo)
            .arg(format!("oci:{}:ok", dir.display())),
    );
    let record: serde_json::Value = serde_json::from_slice(&record.stdout).unwrap();
    let image = record["image"].as_str().unwrap();
    let objects = repo.join("objects").join(&image[..2]).join(&image[2..]);
    std::fs::copy(objects, &img).unwrap();
    let dump = run_ok(cfsctl().arg("dump").arg(&img));
    let dump = String::from_utf8(dump.stdout).unwrap();
    assert!(
        dump.lines()
            .any(|l| l.starts_with("/owned 2 100644 1 4000000000 12 ")),
        "{dump}"
    );
}

/// Tags with control characters or too long to be a ref name are refused before anything is
/// fetched (the source here does not even exist).
#[test]
fn bad_tags_are_refused_before_the_pull() {
    let td = tempfile::tempdir().unwrap();
    let repo = init_repo(td.path());
    let missing = format!("oci:{}:v1", td.path().join("nothing-here").display());
    for (tag, why) in [
        ("a\nb", "control character '\\n'"),
        ("a\tb", "control character '\\t'"),
        (&*"x".repeat(256), "too long: 256 bytes"),
        (&*"/".repeat(100), "too long: 300 bytes"),
    ] {
        let out = cfsctl()
            .args(["oci", "pull", "--repo"])
            .arg(&repo)
            .args(["--tag", tag])
            .arg(&missing)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{tag:?}: {}", stderr(&out));
    }
    // A reference used as the tag is checked the same way.
    let long = format!("oci:{}:{}", td.path().display(), "v".repeat(300));
    let out = cfsctl()
        .args(["oci", "pull", "--repo"])
        .arg(&repo)
        .arg(&long)
        .output()
        .unwrap();
    assert!(stderr(&out).contains("too long"), "{}", stderr(&out));
}

/// `oci rm a missing b c` removes nothing and names every missing tag; with all present it
/// removes all.
#[test]
fn oci_rm_of_several_names_is_all_or_nothing() {
    let td = tempfile::tempdir().unwrap();
    let repo = init_repo(td.path());
    let dir = td.path().join("layout");
    layout(&dir, "v1");
    let reference = format!("oci:{}:v1", dir.display());
    for tag in ["a", "b", "c"] {
        run_ok(
            cfsctl()
                .args(["oci", "pull", "--repo"])
                .arg(&repo)
                .args(["--tag", tag])
                .arg(&reference),
        );
    }
    let images = |repo: &Path| {
        let out = run_ok(cfsctl().args(["oci", "images", "--repo"]).arg(repo));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let out = cfsctl()
        .args(["oci", "rm", "--repo"])
        .arg(&repo)
        .args(["a", "missing", "b", "gone"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no images named 'missing', 'gone'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(images(&repo), ["a", "b", "c"]);
    run_ok(
        cfsctl()
            .args(["oci", "rm", "--repo"])
            .arg(&repo)
            .args(["a", "b", "a"]),
    );
    assert_eq!(images(&repo), ["c"]);
}

/// Image files get the mode mkcomposefs gives them (0666 less the umask: 0644 under 022).
#[test]
fn image_files_are_created_0644() {
    let td = tempfile::tempdir().unwrap();
    let src = td.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let image = td.path().join("out.cfs");
    let out = run_ok(Command::new("sh").arg("-c").arg(format!(
        "umask 022 && exec {} create-image {} {}",
        env!("CARGO_BIN_EXE_cfsctl"),
        src.display(),
        image.display()
    )));
    assert!(out.status.success());
    let mode = std::fs::metadata(&image).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
}

/// An image made from a dump whose external files name objects the repository lacks, by
/// digest or only by payload path, is written with a warning naming them.
#[test]
fn from_dump_images_naming_absent_objects_warn() {
    let td = tempfile::tempdir().unwrap();
    let repo = init_repo(td.path());
    let hex = "ab".repeat(32);
    for (payload, digest, shown) in [
        (
            format!("{}/{}", &hex[..2], &hex[2..]),
            "-".to_string(),
            format!("ab/{}", &hex[2..]),
        ),
        (
            "not/an/object".to_string(),
            "-".to_string(),
            "not/an/object".to_string(),
        ),
        (
            format!("cd/{}", &hex[2..]),
            hex.clone(),
            format!("ab/{}", &hex[2..]),
        ),
    ] {
        let dump = td.path().join("d.dump");
        std::fs::write(
            &dump,
            format!(
                "/ 0 40755 2 0 0 0 0.0 - - -\n/big 100000 100644 1 0 0 0 0.0 {payload} - {digest}\n"
            ),
        )
        .unwrap();
        let out = run_ok(
            cfsctl()
                .args(["create-image", "--from-dump", "--repo"])
                .arg(&repo)
                .arg(&dump),
        );
        let err = stderr(&out);
        assert!(err.contains("objects the image names are not in"), "{err}");
        assert!(err.contains(&shown), "{shown}: {err}");
    }
}

/// `install` takes the name `oci pull` tagged and printed (the reference itself), from the
/// repository, also once the source is gone; it does not pull that reference again.
#[test]
fn install_takes_the_tag_oci_pull_printed() {
    use common::osimage::{Target, base_layer, publish};
    let t = Target::new();
    publish(&t.layout, "stable", &[base_layer(1)], "1");
    let origin = t.origin("stable");
    let pulled = run_ok(
        cfsctl()
            .args(["oci", "pull", "--json", "--repo"])
            .arg(&t.src)
            .arg(&origin),
    );
    let pulled: serde_json::Value = serde_json::from_slice(&pulled.stdout).unwrap();
    let tag = pulled["tag"].as_str().unwrap();
    assert_eq!(tag, origin);
    std::fs::remove_dir_all(&t.layout).unwrap();
    let out = t.install(tag);
    let digest = pulled["image_digest"].as_str().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("installed {digest}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
