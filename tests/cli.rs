//! The command-line conventions of docs/cli.md: global options anywhere, `CFSCTL_REPO`, quiet
//! ends on a closed pipe, errors (not panics) on a full output, bounded `--threads`, `--json` on
//! every reporting command, and the exit-code table.

mod common;

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::cfsctl;

/// A repository holding one image under ref `local/x`, and the directory it came from.
fn repo_with_one_ref(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(
        src.join("d/f"),
        b"some content that is stored as an object\n".repeat(100),
    )
    .unwrap();
    let repo = dir.join("repo");
    common::run_ok(cfsctl().arg("init").arg("--repo").arg(&repo));
    common::run_ok(
        cfsctl()
            .args(["create-image", "--ref", "local/x", "--repo"])
            .arg(&repo)
            .arg(&src),
    );
    repo
}

/// `fsck --json`'s count of refs, or the failure.
fn refs_checked(out: &Output) -> u64 {
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["refs_checked"].as_u64().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn global_options_are_accepted_before_and_after_the_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with_one_ref(tmp.path());
    let r = repo.to_str().unwrap();
    // Neither the default repository nor $CFSCTL_REPO exists: only the option can make these
    // succeed with the one ref.
    let env_free = |args: &[&str]| {
        cfsctl()
            .env("CFSCTL_REPO", tmp.path().join("absent"))
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["--repo", r, "--json", "fsck"][..],
        &["fsck", "--repo", r, "--json"],
        &["--json", "fsck", "--repo", r],
        &["-v", "--repo", r, "fsck", "--json"],
    ] {
        assert_eq!(refs_checked(&env_free(args)), 1, "cfsctl {args:?}");
    }
    for args in [
        &["--repo", r, "oci", "images"][..],
        &["oci", "--repo", r, "images"],
        &["oci", "images", "--repo", r],
        &["--json", "oci", "images", "--repo", r],
    ] {
        let out = env_free(args);
        assert!(out.status.success(), "cfsctl {args:?}: {}", stderr(&out));
    }
    // The option names the repository, not a default: a missing one fails.
    let out = env_free(&["--repo", tmp.path().join("nope").to_str().unwrap(), "fsck"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn cfsctl_repo_is_the_default_and_repo_overrides_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with_one_ref(tmp.path());
    let with_env = |args: &[&str]| {
        cfsctl()
            .env("CFSCTL_REPO", &repo)
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(refs_checked(&with_env(&["fsck", "--json"])), 1);
    let out = with_env(&["oci", "images"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // --repo wins over the environment.
    let other = tmp.path().join("other");
    common::run_ok(cfsctl().arg("init").arg("--repo").arg(&other));
    let out = with_env(&["--repo", other.to_str().unwrap(), "fsck", "--json"]);
    assert_eq!(refs_checked(&out), 0);
    // The environment does not turn create-image into an import.
    let img = tmp.path().join("out.img");
    let out = cfsctl()
        .env("CFSCTL_REPO", &other)
        .arg("create-image")
        .arg(tmp.path().join("src"))
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        refs_checked(&with_env(&[
            "--repo",
            other.to_str().unwrap(),
            "fsck",
            "--json"
        ])),
        0
    );
    let objects = std::fs::read_dir(other.join("objects")).unwrap().count();
    assert_eq!(
        objects, 0,
        "create-image without --repo stored objects in $CFSCTL_REPO"
    );
}

#[test]
fn a_global_option_where_it_does_not_apply_is_a_usage_error() {
    for (args, option, command) in [
        (
            &["--repo", "/tmp", "dump", "x.img"][..],
            "--repo",
            "cfsctl dump",
        ),
        (&["dump", "x.img", "--json"], "--json", "cfsctl dump"),
        (&["status", "--repo", "/tmp"], "--repo", "cfsctl status"),
        (&["--json", "oci", "rm", "x"], "--json", "cfsctl oci rm"),
    ] {
        let out = cfsctl().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "cfsctl {args:?}");
        let msg = stderr(&out);
        assert!(
            msg.contains(&format!("{option} does not apply to `{command}`")),
            "cfsctl {args:?}: {msg}"
        );
    }
}

/// An image whose dump is far larger than a pipe's buffer.
fn big_image(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("big");
    for i in 0..3000 {
        std::fs::create_dir_all(src.join(format!("directory-{i:05}"))).unwrap();
    }
    let img = dir.join("big.img");
    common::run_ok(cfsctl().arg("create-image").arg(&src).arg(&img));
    img
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let img = big_image(tmp.path());
    // `cfsctl dump BIG | head -1`: the reader takes one line and goes away mid-output.
    let mut child = cfsctl()
        .arg("dump")
        .arg(&img)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("/ "), "{first}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");

    // `compute-id | head -0`: the reader is gone before anything is written.
    for args in [
        vec![
            "compute-id".to_string(),
            tmp.path().join("big").display().to_string(),
        ],
        vec!["--help".to_string()],
        vec!["fsck".into(), "--json".into(), "--repo".into(), {
            let repo = tmp.path().join("repo");
            common::run_ok(cfsctl().arg("init").arg("--repo").arg(&repo));
            repo.display().to_string()
        }],
    ] {
        let mut child = cfsctl()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "cfsctl {args:?}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "cfsctl {args:?}: {}",
            stderr(&out)
        );
    }
}

/// An argument list of strings and paths.
fn os_args(items: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_owned()).collect()
}

/// Runs cfsctl with standard output on /dev/full.
fn to_dev_full(args: &[OsString]) -> Output {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    cfsctl()
        .args(args)
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_full_output_is_an_error_with_a_message_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with_one_ref(tmp.path());
    let img = big_image(tmp.path());
    let src = tmp.path().join("src");
    for args in [
        os_args(&[&"fsck", &"--repo", &repo]),
        os_args(&[&"fsck", &"--json", &"--repo", &repo]),
        os_args(&[&"gc", &"--repo", &repo]),
        os_args(&[&"gc", &"--json", &"--repo", &repo]),
        os_args(&[&"dump", &img]),
        os_args(&[&"compute-id", &src]),
    ] {
        let out = to_dev_full(&args);
        let msg = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "cfsctl {args:?}: {msg}");
        assert!(
            msg.contains("cfsctl: error: writing to standard output: No space left on device"),
            "cfsctl {args:?}: {msg}"
        );
        assert!(!msg.contains("panicked"), "cfsctl {args:?}: {msg}");
    }
    // gc did its work even though its report was lost; the repository is still sound.
    assert_eq!(
        refs_checked(
            &cfsctl()
                .args(["fsck", "--json", "--repo"])
                .arg(&repo)
                .output()
                .unwrap()
        ),
        1
    );
}

#[test]
fn an_absurd_thread_count_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with_one_ref(tmp.path());
    let src = tmp.path().join("src");
    for args in [
        os_args(&[&"compute-id", &"--threads", &"100000", &src]),
        os_args(&[
            &"create-image",
            &"--threads",
            &"100000",
            &"--repo",
            &repo,
            &src,
        ]),
        os_args(&[&"fsck", &"--threads", &"100000", &"--repo", &repo]),
    ] {
        let out: Output = cfsctl().args(&args).output().unwrap();
        let msg = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "cfsctl {args:?}: {msg}");
        assert!(msg.contains("'100000' is not a thread count"), "{msg}");
    }
    // The largest accepted count works.
    let out = cfsctl()
        .args(["compute-id", "--threads"])
        .arg(cfsctl::cli::MAX_THREADS.to_string())
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The leaf subcommand at `path` (`["oci", "pull"]`).
fn subcommand<'a>(cmd: &'a clap::Command, path: &[&str]) -> &'a clap::Command {
    path.iter().fold(cmd, |c, name| {
        c.find_subcommand(name)
            .unwrap_or_else(|| panic!("no subcommand {name} in {}", c.get_name()))
    })
}

#[test]
fn every_reporting_command_has_json() {
    let cmd = cfsctl::cli::command();
    for path in [
        &["create-image"][..],
        &["compute-id"],
        &["gc"],
        &["fsck"],
        &["install"],
        &["oci", "pull"],
        &["oci", "images"],
        &["oci", "inspect"],
        &["oci", "compute-id"],
        &["oci", "seal"],
        &["upgrade"],
        &["switch"],
        &["rollback"],
        &["status"],
        &["pin"],
        &["unpin"],
        &["finalize"],
        &["etc", "diff"],
        &["health-check"],
    ] {
        let c = subcommand(&cmd, path);
        let json = c.get_arguments().find(|a| a.get_id() == "json");
        assert!(
            json.is_some_and(|a| !a.is_hide_set()),
            "cfsctl {} has no --json",
            path.join(" ")
        );
    }
}

#[test]
fn compute_id_json_has_the_digest_it_prints() {
    let tmp = tempfile::tempdir().unwrap();
    repo_with_one_ref(tmp.path());
    let src = tmp.path().join("src");
    let plain = common::run_ok(cfsctl().arg("compute-id").arg(&src));
    let json = common::run_ok(cfsctl().args(["--json", "compute-id"]).arg(&src));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["digest"].as_str().unwrap(),
        String::from_utf8_lossy(&plain.stdout).trim()
    );
}

#[test]
fn the_exit_code_table_matches_the_code() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    let table: Vec<u8> = doc
        .split("## Exit codes")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok())
        .collect();
    use cfsctl::cli::{EXIT_FAILURE, EXIT_NO_UPDATE, EXIT_OK, EXIT_USAGE};
    for code in [EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NO_UPDATE] {
        assert!(
            table.contains(&code),
            "exit code {code} is not in docs/cli.md"
        );
    }
    // clap's status for usage errors is the one documented.
    let out = Command::new(env!("CARGO_BIN_EXE_cfsctl"))
        .arg("--no-such-option")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(i32::from(EXIT_USAGE)));
}
