//! The host lifecycle on directories (`--sysroot`/`--esp`, no VM): install from an OCI
//! layout, upgrade, finalize, boot counting states, rollback, pin, pruning, gc, orphans, the
//! lock, download-only, /etc conflicts, and `status --json`. Booting the result is
//! tests/vm/run's job; here systemd-boot's renames of entry files are played by the test.

mod common;

use std::fs;
use std::process::Command;

use common::osimage::{self, Target, deployment, file, tar};

fn hex_of(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no digest in {text}"))
        .to_string()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn code(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// v1 published as `stable` and installed; returns the target and v1's digest.
fn installed() -> (Target, String) {
    let t = Target::new();
    osimage::publish(&t.layout, "stable", &[osimage::base_layer(1)], "1");
    let out = t.install(&t.origin("stable"));
    (t, hex_of(&out))
}

#[test]
fn install_upgrade_finalize_rollback_and_prune() {
    let (t, v1) = installed();
    let s = t.status();
    let d1 = deployment(&s, &v1);
    assert_eq!(d1["image"], t.origin("stable"));
    assert_eq!(d1["default"], true);
    assert_eq!(d1["booted"], false);
    assert_eq!(d1["bootState"], "good");
    assert_eq!(d1["version"], "1");
    assert_eq!(s["deployments"].as_array().unwrap().len(), 1);

    // Nothing new: exit 77, for --check too.
    let (c, out, _) = code(&mut t.cmd(&["upgrade"]));
    assert_eq!(c, 77, "{out}");
    let (c, _, _) = code(&mut t.cmd(&["upgrade", "--check"]));
    assert_eq!(c, 77);

    // v2 = v1 + one layer: --check names one layer and its size, writes nothing.
    let w2 = osimage::publish(
        &t.layout,
        "stable",
        &[osimage::base_layer(1), osimage::v2_layer()],
        "2",
    );
    let entries_before = t.entries();
    let out = common::run_ok(&mut t.cmd(&["upgrade", "--check", "--json"]));
    let check = json(&out);
    assert_eq!(check["result"], "available");
    assert_eq!(check["layersToFetch"], 1);
    assert_eq!(check["bytesToFetch"], w2.layers[1].1);
    assert_eq!(check["manifestDigest"], w2.manifest.as_str());
    assert_eq!(t.entries(), entries_before);

    // Staged: a staged entry and staged.json; the boot order is unchanged.
    let out = common::run_ok(&mut t.cmd(&["upgrade", "--json"]));
    let up = json(&out);
    assert_eq!(up["result"], "staged");
    assert_eq!(up["layersFetched"], 1);
    let v2 = up["id"].as_str().unwrap().to_string();
    assert_ne!(v2, v1);
    let s = t.status();
    assert_eq!(deployment(&s, &v2)["staged"], true);
    assert_eq!(deployment(&s, &v2)["default"], false);
    assert_eq!(deployment(&s, &v1)["default"], true);
    assert_eq!(s["host"]["staged"], v2.as_str());
    assert!(
        t.entries()
            .contains(&format!("cfsctl-{}.staged", &v2[..12]))
    );
    // Same kernel and initramfs: one copy on the ESP.
    assert_eq!(fs::read_dir(t.esp.join("cfsctl")).unwrap().count(), 1);

    // Finalize: the staged entry becomes NAME+3.conf and boots next; v1 is the rollback.
    common::run_ok(&mut t.cmd(&["finalize"]));
    assert!(
        t.entries()
            .contains(&format!("cfsctl-{}+3.conf", &v2[..12]))
    );
    let s = t.status();
    let d2 = deployment(&s, &v2);
    assert_eq!(d2["default"], true);
    assert_eq!(d2["staged"], false);
    assert_eq!(d2["bootState"], "indeterminate");
    assert_eq!(d2["triesLeft"], 3);
    assert_eq!(deployment(&s, &v1)["rollback"], true);
    assert!(!t.sysroot.join("state/staged.json").exists());

    // No upgrade over a deployment whose boot is indeterminate.
    osimage::publish(
        &t.layout,
        "stable",
        &[
            osimage::base_layer(1),
            osimage::v2_layer(),
            tar(&[osimage::dir("usr"), file("usr/v3", b"3")]),
        ],
        "3",
    );
    let (c, _, err) = code(&mut t.cmd(&["upgrade"]));
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("has not been marked good yet"), "{err}");

    // Booted and blessed: now it upgrades to v3; finalizing prunes v1 (keep = 2).
    t.bless(&v2);
    assert_eq!(deployment(&t.status(), &v2)["bootState"], "good");
    let up = json(&common::run_ok(&mut t.cmd(&["upgrade", "--json"])));
    let v3 = up["id"].as_str().unwrap().to_string();
    let fin = json(&common::run_ok(&mut t.cmd(&["finalize", "--json"])));
    assert_eq!(fin["pruned"], serde_json::json!([v1]));
    let s = t.status();
    assert_eq!(s["deployments"].as_array().unwrap().len(), 2, "{s:#}");
    assert!(!t.deploy_dir(&v1).exists());
    assert!(!t.sysroot.join("composefs/refs/deploy").join(&v1).exists());

    // Rollback makes v2 the next boot, keeping v3's counter; again undoes it.
    let rb = json(&common::run_ok(&mut t.cmd(&["rollback", "--json"])));
    assert_eq!(rb["id"], v2.as_str());
    assert_eq!(rb["previous"], v3.as_str());
    let s = t.status();
    assert_eq!(deployment(&s, &v2)["default"], true);
    assert_eq!(deployment(&s, &v3)["rollback"], true);
    assert_eq!(deployment(&s, &v3)["triesLeft"], 3);
    common::run_ok(&mut t.cmd(&["rollback"]));
    assert_eq!(deployment(&t.status(), &v3)["default"], true);

    // Pinning is recorded and shown.
    common::run_ok(&mut t.cmd(&["pin", &v2[..8]]));
    assert_eq!(deployment(&t.status(), &v2)["pinned"], true);
    common::run_ok(&mut t.cmd(&["unpin", &v2]));
    assert_eq!(deployment(&t.status(), &v2)["pinned"], false);

    // gc keeps every deployment's image; the target stays consistent.
    common::run_ok(&mut t.cmd(&["gc"]));
    common::run_ok(&mut t.cmd(&["fsck"]));
    for h in [&v2, &v3] {
        assert!(t.sysroot.join("composefs/images").join(h).exists());
    }
}

#[test]
fn boot_counting_states_and_fallback() {
    let (t, v1) = installed();
    osimage::publish(
        &t.layout,
        "stable",
        &[osimage::base_layer(1), osimage::v2_layer()],
        "2",
    );
    let v2 = json(&common::run_ok(&mut t.cmd(&["upgrade", "--json"])))["id"]
        .as_str()
        .unwrap()
        .to_string();
    common::run_ok(&mut t.cmd(&["finalize"]));
    // Three failed tries: +3 -> +2-1 -> +1-2 -> +0-3 (bad, sorted last: v1 boots).
    for left in [2, 1, 0] {
        t.fail_boot(&v2);
        let d = t.status();
        assert_eq!(deployment(&d, &v2)["triesLeft"], left);
    }
    let s = t.status();
    let d2 = deployment(&s, &v2);
    assert_eq!(d2["bootState"], "bad");
    assert_eq!(d2["default"], false);
    assert_eq!(deployment(&s, &v1)["default"], true);
    // The bad one is no rollback target.
    assert_eq!(d2["rollback"], false);
    let (c, _, err) = code(&mut t.cmd(&["rollback"]));
    assert_eq!(c, 1);
    assert!(err.contains("no deployment to roll back to"), "{err}");
}

#[test]
fn download_only_then_upgrade_stages_without_fetching() {
    let (t, _v1) = installed();
    osimage::publish(
        &t.layout,
        "stable",
        &[osimage::base_layer(1), osimage::v2_layer()],
        "2",
    );
    let dl = json(&common::run_ok(&mut t.cmd(&[
        "upgrade",
        "--download-only",
        "--json",
    ])));
    assert_eq!(dl["result"], "downloadOnly");
    let v2 = dl["id"].as_str().unwrap().to_string();
    let s = t.status();
    assert_eq!(deployment(&s, &v2)["downloadOnly"], true);
    assert_eq!(deployment(&s, &v2)["staged"], false);
    assert!(!t.entries().iter().any(|e| e.contains(&v2[..12])));
    // A new process (as after a reboot) finds it and stages it with nothing to fetch.
    let up = json(&common::run_ok(&mut t.cmd(&["upgrade", "--json"])));
    assert_eq!(up["result"], "staged");
    assert_eq!(up["id"], v2.as_str());
    assert_eq!(up["bytesFetched"], 0);
    let s = t.status();
    assert_eq!(deployment(&s, &v2)["downloadOnly"], false);
    assert_eq!(deployment(&s, &v2)["staged"], true);
}

#[test]
fn etc_conflicts_are_refused_by_name_before_staging() {
    let (t, v1) = installed();
    // Local changes of the current deployment, as its /etc overlay upper holds them.
    let upper = t.deploy_dir(&v1).join("etc/upper/app");
    fs::create_dir_all(&upper).unwrap();
    fs::write(upper.join("local-only.conf"), "host\n").unwrap();
    fs::write(upper.join("both.conf"), "host\n").unwrap();
    osimage::publish(
        &t.layout,
        "stable",
        &[osimage::base_layer(1), osimage::v2_layer()],
        "2",
    );
    let (c, _, err) = code(&mut t.cmd(&["upgrade"]));
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("/etc/app/both.conf"), "{err}");
    assert!(!err.contains("local-only.conf"), "{err}");
    assert!(!t.sysroot.join("state/staged.json").exists());
    assert!(!t.entries().iter().any(|e| e.ends_with(".staged")));
    let s = t.status();
    assert!(
        s["host"]["lastFailure"]["error"]
            .as_str()
            .unwrap()
            .contains("both.conf"),
        "{s:#}"
    );

    // keep-local: staged; finalize writes the merged upper.
    let up = json(&common::run_ok(&mut t.cmd(&[
        "upgrade",
        "--etc-conflict",
        "keep-local",
        "--json",
    ])));
    let v2 = up["id"].as_str().unwrap().to_string();
    common::run_ok(&mut t.cmd(&["finalize"]));
    let new_upper = t.deploy_dir(&v2).join("etc/upper/app");
    assert_eq!(
        fs::read_to_string(new_upper.join("local-only.conf")).unwrap(),
        "host\n"
    );
    assert_eq!(
        fs::read_to_string(new_upper.join("both.conf")).unwrap(),
        "host\n"
    );
    // Unchanged locally: not in the upper, so the new image's content shows.
    assert!(!new_upper.join("image-changes.conf").exists());
    assert!(t.status()["host"]["lastFailure"].is_null());
}

#[test]
fn orphans_foreign_entries_and_pinned_defaults_are_reported() {
    let (t, v1) = installed();
    // A hand-written entry and a pinned default: listed, warned about, never fatal.
    let entries = t.esp.join("loader/entries");
    fs::write(
        entries.join("zz-rescue.conf"),
        "title Rescue\nlinux /rescue/vmlinuz\noptions quiet\n",
    )
    .unwrap();
    fs::write(
        t.esp.join("loader/loader.conf"),
        "timeout 0\ndefault zz-rescue.conf\n",
    )
    .unwrap();
    let s = t.status();
    assert_eq!(
        s["host"]["foreignEntries"],
        serde_json::json!(["zz-rescue.conf"])
    );
    let warnings = s["host"]["warnings"].to_string();
    assert!(warnings.contains("names a default entry"), "{warnings}");
    assert_eq!(deployment(&s, &v1)["default"], true);

    // An entry whose record is gone: status and fsck say so.
    let rec = t.deploy_dir(&v1).join("deployment.json");
    let saved = fs::read(&rec).unwrap();
    fs::remove_file(&rec).unwrap();
    let s = t.status();
    assert!(
        deployment(&s, &v1)["problems"]
            .to_string()
            .contains("no deployment record"),
        "{s:#}"
    );
    let (c, out, _) = code(&mut t.cmd(&["fsck"]));
    assert_eq!(c, 1);
    assert!(out.contains("has no deployment record"), "{out}");
    fs::write(&rec, saved).unwrap();

    // A record whose entry is gone is an orphan: gc removes it and its ref.
    let entry = t
        .entries()
        .into_iter()
        .find(|e| e.starts_with("cfsctl-"))
        .unwrap();
    fs::remove_file(entries.join(&entry)).unwrap();
    let s = t.status();
    assert!(
        deployment(&s, &v1)["problems"]
            .to_string()
            .contains("orphan")
    );
    let out = common::run_ok(&mut t.cmd(&["gc", "--json"]));
    assert_eq!(
        json(&out)["host"]["orphansRemoved"],
        serde_json::json!([v1])
    );
    assert!(!t.deploy_dir(&v1).exists());
    assert!(!t.sysroot.join("composefs/refs/deploy").join(&v1).exists());
    // The origin's tag (which keeps its layers for the next upgrade) still names the image.
    assert!(t.sysroot.join("composefs/images").join(&v1).exists());
}

#[test]
fn one_lifecycle_command_at_a_time() {
    let (t, _) = installed();
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.sysroot.join("state/lock"))
        .unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let (c, _, err) = code(&mut t.cmd(&["upgrade"]));
    assert_eq!(c, 1);
    assert!(
        err.contains("another cfsctl is changing the deployments"),
        "{err}"
    );
    // Reading needs no lock.
    t.status();
    drop(lock);
    let (c, _, err) = code(&mut t.cmd(&["upgrade"]));
    assert_eq!(c, 77, "{err}");
}

/// v2 = v1 + real Debian packages + the /etc layer: an upgrade with enough to do that a kill
/// lands in every phase (pull, image, boot files, record, entries).
fn with_real_content(t: &Target) -> Option<()> {
    let debs = common::ociimage::deb_tars(&["bash", "tzdata"])?;
    let mut layers = vec![osimage::base_layer(1)];
    layers.extend(debs);
    layers.push(osimage::v2_layer());
    osimage::publish(&t.layout, "stable", &layers, "2");
    Some(())
}

fn assert_consistent(t: &Target, when: &str) -> serde_json::Value {
    let out = t.cmd(&["status", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{when}: status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fsck = t.cmd(&["fsck"]).output().unwrap();
    assert!(
        fsck.status.success(),
        "{when}: fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    json(&out)
}

#[test]
fn sigkill_at_many_instants_of_staging_and_finalization() {
    let (t, v1) = installed();
    if with_real_content(&t).is_none() {
        return;
    }
    // Kill `upgrade` after growing delays until one run finishes by itself. Each killed run
    // leaves whatever it wrote; the next one continues from there, as after a power cut.
    let mut delay = std::time::Duration::from_millis(2);
    let mut kills = 0;
    let staged = loop {
        let mut child = t
            .cmd(&["upgrade", "--json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let s = assert_consistent(&t, &format!("upgrade killed after {delay:?}"));
        // Whatever happened, v1 still boots next until finalization.
        assert_eq!(deployment(&s, &v1)["default"], true, "{s:#}");
        if finished || out.status.success() {
            assert!(out.status.success(), "upgrade failed on its own");
            break json(&out);
        }
        kills += 1;
        assert!(kills < 40, "upgrade never finished");
        delay = delay * 3 / 2;
    };
    eprintln!("upgrade killed {kills} times, the last after {delay:?}");
    assert!(
        kills >= 3,
        "only {kills} kills: the upgrade was too fast to test"
    );
    let v2 = staged["id"].as_str().unwrap().to_string();
    assert_eq!(deployment(&t.status(), &v2)["staged"], true);

    // Finalization is short; kill it at once and after a few instants, then let it finish.
    for micros in [0u64, 200, 1000, 3000] {
        let mut child = t.cmd(&["finalize"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_micros(micros));
        let _ = child.kill();
        child.wait().unwrap();
        let s = assert_consistent(&t, &format!("finalize killed after {micros}us"));
        let default = s["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["default"] == true)
            .unwrap()["id"]
            .clone();
        assert!(default == v1.as_str() || default == v2.as_str(), "{s:#}");
    }
    common::run_ok(&mut t.cmd(&["finalize"]));
    let s = assert_consistent(&t, "after finalize");
    assert_eq!(deployment(&s, &v2)["default"], true);
    assert_eq!(deployment(&s, &v1)["rollback"], true);
    assert!(s["host"]["staged"].is_null());
}

#[test]
fn upgrade_through_a_registry_fetches_only_the_changed_layer() {
    let Some(reg) = common::registry::Registry::start() else {
        return;
    };
    let t = Target::new();
    osimage::publish(&t.layout, "v1", &[osimage::base_layer(1)], "1");
    let w2 = osimage::publish(
        &t.layout,
        "v2",
        &[osimage::base_layer(1), osimage::v2_layer()],
        "2",
    );
    reg.push(&t.layout, "v1", "os");
    reg.push(&t.layout, "v2", "os");
    let copy = |from: &str| {
        common::run_ok(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("{}:{from}", reg.url("os")),
            &format!("{}:stable", reg.url("os")),
        ]));
    };
    copy("v1");
    let stable = format!("{}:stable", reg.url("os"));
    common::run_ok(
        common::cfsctl()
            .args(["install", "--repo"])
            .arg(&t.src)
            .args([&stable, "--tls-verify=false", "--sysroot"])
            .arg(&t.sysroot)
            .arg("--esp")
            .arg(&t.esp)
            .args(["--karg", "rw", "--bootloader"])
            .arg(&t.bootloader),
    );
    let (c, _, err) = code(&mut t.cmd(&["upgrade", "--tls-verify=false"]));
    assert_eq!(c, 77, "{err}");
    copy("v2");
    reg.reset();
    let up = json(&common::run_ok(&mut t.cmd(&[
        "upgrade",
        "--tls-verify=false",
        "--json",
    ])));
    assert_eq!(up["result"], "staged");
    assert_eq!(up["layersFetched"], 1);
    assert_eq!(up["bytesFetched"], w2.layers[1].1);
    // The registry served that layer, the manifest and the config, and little else (HTTP
    // headers, the proxy's manifest request when it opens the image).
    let served = reg.served();
    let layer = w2.layers[1].1;
    assert!(
        served >= layer && served < layer + 64 * 1024,
        "served {served}, layer {layer}"
    );
}

#[test]
fn finalize_recovers_entries_a_power_cut_left_empty() {
    // On FAT, a rename writes the new directory entry before the file's size: a cut in
    // between leaves an empty file under the new name. Both the staged entry and the
    // committed one can be hit; finalize rewrites them from the record.
    let (t, v1) = installed();
    osimage::publish(
        &t.layout,
        "stable",
        &[osimage::base_layer(1), osimage::v2_layer()],
        "2",
    );
    let v2 = json(&common::run_ok(&mut t.cmd(&["upgrade", "--json"])))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let entries = t.esp.join("loader/entries");
    let staged = entries.join(format!("cfsctl-{}.staged", &v2[..12]));
    fs::write(&staged, b"").unwrap();
    common::run_ok(&mut t.cmd(&["finalize"]));
    let committed = entries.join(format!("cfsctl-{}+3.conf", &v2[..12]));
    let text = fs::read_to_string(&committed).unwrap();
    assert!(text.contains(&format!("options composefs={v2} ")), "{text}");
    assert_eq!(deployment(&t.status(), &v2)["default"], true);

    // The commit itself cut: the staged entry renamed, the entry empty, the marker left.
    common::run_ok(&mut t.cmd(&["rollback"]));
    assert_eq!(deployment(&t.status(), &v1)["default"], true);
    let marker = format!(
        "{{\"version\":1,\"id\":\"{v2}\",\"mergeFrom\":\"{v1}\",\"etcConflict\":\"refuse\",\"bootTries\":3}}"
    );
    fs::write(t.sysroot.join("state/staged.json"), marker).unwrap();
    fs::write(&committed, b"").unwrap();
    let s = t.status();
    assert!(
        s["host"]["warnings"]
            .to_string()
            .contains("is not a boot entry"),
        "{s:#}"
    );
    common::run_ok(&mut t.cmd(&["finalize"]));
    let text = fs::read_to_string(&committed).unwrap();
    assert!(text.contains(&format!("options composefs={v2} ")), "{text}");
    let s = assert_consistent(&t, "after recovery");
    assert_eq!(deployment(&s, &v2)["default"], true);
    assert!(
        s["host"]["warnings"].as_array().unwrap().is_empty(),
        "{s:#}"
    );
}

#[test]
fn the_host_config_can_require_a_signed_seal_for_upgrades() {
    let (t, _v1) = installed();
    let keys = t.dir.path().join("keys");
    fs::create_dir_all(&keys).unwrap();
    for k in ["a", "b"] {
        common::run_ok(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                ])
                .args(["-subj", &format!("/CN={k}")])
                .arg("-keyout")
                .arg(keys.join(format!("{k}.key")))
                .arg("-out")
                .arg(keys.join(format!("{k}.pem"))),
        );
    }
    // v2 published unsealed, then sealed and signed by b under another tag.
    let layers = [osimage::base_layer(1), osimage::v2_layer()];
    osimage::publish(&t.layout, "stable", &layers, "2");
    let config = t.dir.path().join("config.toml");
    let write_config = |cert: &str| {
        fs::write(
            &config,
            format!(
                "require-sealed = true\nverity-cert = [\"{}\"]\n",
                keys.join(cert).display()
            ),
        )
        .unwrap()
    };
    write_config("a.pem");
    let (c, _, err) =
        code(&mut t.cmd(&["upgrade", "--json", "--config", config.to_str().unwrap()]));
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("is not sealed"), "{err}");

    common::run_ok(
        common::cfsctl()
            .args(["oci", "seal", "--sign-key"])
            .arg(keys.join("b.key"))
            .arg("--sign-cert")
            .arg(keys.join("b.pem"))
            .arg(t.origin("stable"))
            .arg(t.origin("signed")),
    );
    let switch = |cfg: &std::path::Path| {
        code(
            t.cmd(&["switch", "--json", "--config", cfg.to_str().unwrap()])
                .arg(t.origin("signed")),
        )
    };
    // Signed by b, a's certificate configured: refused, nothing staged.
    let (c, _, err) = switch(&config);
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("the signature of composefs."), "{err}");
    assert!(t.status()["deployments"].as_array().unwrap().len() == 1);
    // b's certificate: staged.
    write_config("b.pem");
    let (c, out, err) = switch(&config);
    assert_eq!(c, 0, "{out}{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["result"],
        "staged"
    );
}
