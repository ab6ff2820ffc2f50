//! The signature policy (containers-policy.json(5)) with the real tools: keys made by gpg,
//! images signed by `skopeo copy --sign-by` into a real docker-registry with a file://
//! lookaside from a temporary registries.d, then pulled by cfsctl under a policy. A refused
//! image leaves nothing behind: no tag and no object.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::ociimage::{self, Compression, Layer};
use common::osimage::{self, Target, dir, file};
use common::registry::Registry;

/// A GnuPG home with keys, and the tools.
struct Gpg {
    home: PathBuf,
    gpg: PathBuf,
}

impl Gpg {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.gpg);
        c.env("GNUPGHOME", &self.home).arg("--batch");
        c
    }

    /// Makes a key for `uid`: its fingerprint.
    fn new_key(&self, uid: &str) -> String {
        common::run_ok(
            self.cmd()
                .args(["--passphrase", "", "--quick-gen-key", uid]),
        );
        let out = common::run_ok(self.cmd().args(["--with-colons", "--list-keys", uid]));
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .expect("a fingerprint")
    }

    /// `gpg --export FPR` into `path` (the keyring a policy names).
    fn export(&self, fpr: &str, path: &Path) {
        let out = common::run_ok(self.cmd().args(["--export", fpr]));
        assert!(!out.stdout.is_empty());
        std::fs::write(path, out.stdout).unwrap();
    }
}

/// Everything a test needs: tools, two keys, a registry, a lookaside, two images.
struct World {
    td: tempfile::TempDir,
    gpg: Gpg,
    alice: String,
    bob: String,
    registry: Registry,
    /// registries.d with `lookaside` and `lookaside-staging` at [`Self::lookaside`].
    registries_d: PathBuf,
    lookaside: PathBuf,
    layout: PathBuf,
}

fn world() -> Option<World> {
    let gpg = common::find_tool("GPG", "gpg", &[])?;
    common::find_tool("SKOPEO", "skopeo", &[])?;
    let registry = Registry::start()?;
    let td = tempfile::tempdir().unwrap();
    let home = td.path().join("gnupg");
    std::fs::create_dir(&home).unwrap();
    // gpg warns about (and may refuse) a home others can read.
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = Gpg { home, gpg };
    let alice = gpg.new_key("Alice <alice@example.com>");
    let bob = gpg.new_key("Bob <bob@example.com>");
    gpg.export(&alice, &td.path().join("alice.gpg"));
    gpg.export(&bob, &td.path().join("bob.gpg"));
    let lookaside = td.path().join("lookaside");
    std::fs::create_dir(&lookaside).unwrap();
    let registries_d = td.path().join("registries.d");
    std::fs::create_dir(&registries_d).unwrap();
    std::fs::write(
        registries_d.join("test.yaml"),
        format!(
            "default-docker:\n  lookaside: file://{0}\n  lookaside-staging: file://{0}\n",
            lookaside.display()
        ),
    )
    .unwrap();
    let layout = td.path().join("layout");
    for (tag, text) in [("a", "image A\n"), ("b", "image B\n")] {
        let tar = osimage::tar(&[dir("etc"), file("etc/which", text.as_bytes())]);
        ociimage::write_layout(
            &layout,
            tag,
            &[Layer::new(tar, Compression::Gzip)],
            &Default::default(),
        );
    }
    Some(World {
        td,
        gpg,
        alice,
        bob,
        registry,
        registries_d,
        lookaside,
        layout,
    })
}

impl World {
    /// `skopeo copy oci:LAYOUT:TAG docker://REGISTRY/NAME`, signed by `key` when given.
    fn push(&self, tag: &str, name: &str, key: Option<&str>) {
        let mut c = Command::new("skopeo");
        c.env("GNUPGHOME", &self.gpg.home)
            .arg("--registries.d")
            .arg(&self.registries_d)
            .args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(k) = key {
            c.args(["--sign-by", k]);
        }
        c.arg(format!("oci:{}:{tag}", self.layout.display()))
            .arg(self.registry.url(name));
        common::run_ok(&mut c);
    }

    /// Writes a policy file: `docker` scope of the registry host -> `requirement`, every
    /// other image rejected.
    fn policy(&self, name: &str, requirement: serde_json::Value) -> PathBuf {
        let p = self.td.path().join(name);
        let policy = serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {self.registry.addr.clone(): [requirement]}},
        });
        std::fs::write(&p, serde_json::to_vec_pretty(&policy).unwrap()).unwrap();
        p
    }

    fn signed_by(&self, name: &str, key_file: &str, identity: serde_json::Value) -> PathBuf {
        let mut req = serde_json::json!({
            "type": "signedBy",
            "keyType": "GPGKeys",
            "keyPath": self.td.path().join(key_file),
        });
        if !identity.is_null() {
            req["signedIdentity"] = identity;
        }
        self.policy(name, req)
    }

    /// The manifest digest a name resolves to in the registry.
    fn digest(&self, name: &str) -> String {
        let out = common::run_ok(
            Command::new("skopeo")
                .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
                .arg(self.registry.url(name)),
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The lookaside directory of signatures of `repo` at `digest`.
    fn sig_dir(&self, repo: &str, digest: &str) -> PathBuf {
        self.lookaside
            .join(format!("{repo}@{}", digest.replacen(':', "=", 1)))
    }
}

/// A fresh repository.
fn repo() -> (tempfile::TempDir, PathBuf) {
    let td = tempfile::tempdir().unwrap();
    let path = td.path().join("repo");
    common::run_ok(common::cfsctl().arg("init").arg("--repo").arg(&path));
    (td, path)
}

/// `cfsctl oci pull` under a policy (and the world's registries.d).
fn pull(w: &World, repo: &Path, policy: Option<&Path>, reference: &str) -> Output {
    let mut c = common::cfsctl();
    c.args(["oci", "pull", "--tls-verify=false", "--repo"])
        .arg(repo)
        .arg("--registries.d")
        .arg(&w.registries_d);
    if let Some(p) = policy {
        c.arg("--signature-policy").arg(p);
    }
    c.arg(reference).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Tags and objects in `repo`: a refused pull must leave both empty.
fn assert_nothing_stored(repo: &Path, why: &str) {
    let out = common::run_ok(common::cfsctl().args(["oci", "images", "--repo"]).arg(repo));
    assert!(out.stdout.is_empty(), "{why}: tagged {:?}", out.stdout);
    let objects = common::files_under(&repo.join("objects"));
    assert!(objects.is_empty(), "{why}: stored {objects:?}");
}

fn refused(o: &Output, repo: &Path, why: &str, expect: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "{why}: accepted\n{err}");
    eprintln!("{why}: refused as expected:\n{err}");
    for e in expect {
        assert!(err.contains(e), "{why}: no '{e}' in:\n{err}");
    }
    assert_nothing_stored(repo, why);
}

#[test]
fn gpg_signatures_through_a_file_lookaside() {
    let Some(w) = world() else { return };
    w.push("a", "signed/a:v1", Some(&w.alice));
    w.push("a", "bob/a:v1", Some(&w.bob));
    w.push("b", "plain/b:v1", None);
    let alice_only = w.signed_by("alice.json", "alice.gpg", serde_json::Value::Null);
    let policy_name = alice_only.display().to_string();

    // Unsigned: refused, naming the image, the policy and where it looked.
    let (_t, r) = repo();
    let unsigned = w.registry.url("plain/b:v1");
    let o = pull(&w, &r, Some(&alice_only), &unsigned);
    let b = w.digest("plain/b:v1");
    let want_url = format!(
        "no signature found at file://{}/signature-1",
        w.sig_dir("plain/b", &b).display()
    );
    refused(&o, &r, "unsigned", &[&unsigned, &policy_name, &want_url]);

    // Signed by a key the policy does not trust.
    let o = pull(&w, &r, Some(&alice_only), &w.registry.url("bob/a:v1"));
    let by_bob = format!("signed by key {}", w.bob);
    refused(&o, &r, "signed by bob", &[&by_bob, "alice.gpg"]);

    // Signed by the trusted key: accepted and tagged.
    let signed = w.registry.url("signed/a:v1");
    let o = pull(&w, &r, Some(&alice_only), &signed);
    assert!(o.status.success(), "signed: {}", stderr(&o));
    let images = common::run_ok(common::cfsctl().args(["oci", "images", "--repo"]).arg(&r));
    assert!(String::from_utf8_lossy(&images.stdout).contains(&signed));

    // `reject` refuses even the signed image.
    let (_t2, r2) = repo();
    let reject = w.policy("reject.json", serde_json::json!({"type": "reject"}));
    let o = pull(&w, &r2, Some(&reject), &signed);
    refused(
        &o,
        &r2,
        "reject",
        &["the requirement is reject", "reject.json"],
    );

    // sigstoreSigned is refused, not accepted.
    let sigstore = w.policy(
        "sigstore.json",
        serde_json::json!({"type": "sigstoreSigned", "keyPath": "/nonexistent.pub"}),
    );
    let o = pull(&w, &r2, Some(&sigstore), &signed);
    refused(
        &o,
        &r2,
        "sigstoreSigned",
        &["sigstoreSigned is not supported by cfsctl"],
    );

    // The default Debian policy (insecureAcceptAnything) pulls the unsigned image.
    let debian = w.td.path().join("debian-policy.json");
    std::fs::write(&debian, "{\n    \"default\": [\n        {\n            \"type\": \"insecureAcceptAnything\"\n        }\n    ]\n}\n").unwrap();
    let o = pull(&w, &r2, Some(&debian), &unsigned);
    assert!(o.status.success(), "debian policy: {}", stderr(&o));
    // And so does the system's, when it is that one (no --signature-policy).
    let system = std::fs::read("/etc/containers/policy.json").ok();
    let same = system
        .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s).ok())
        .is_some_and(|v| v == serde_json::json!({"default": [{"type": "insecureAcceptAnything"}]}));
    if same
        && std::env::var_os("HOME").is_none_or(|h| {
            !Path::new(&h)
                .join(".config/containers/policy.json")
                .exists()
        })
    {
        let (_t3, r3) = repo();
        let o = pull(&w, &r3, None, &unsigned);
        assert!(o.status.success(), "system policy: {}", stderr(&o));
    } else {
        eprintln!("note: /etc/containers/policy.json is not Debian's default; not pulled with it");
    }
}

#[test]
fn a_signature_for_another_manifest_or_identity_is_refused() {
    let Some(w) = world() else { return };
    // Image A signed as swap:v1, then swap:v1 re-pointed at image B (unsigned) and A's
    // signature copied to B's lookaside directory: the identity matches, the digest does not.
    w.push("a", "swap:v1", Some(&w.alice));
    let a = w.digest("swap:v1");
    w.push("b", "swap:v1", None);
    let b = w.digest("swap:v1");
    assert_ne!(a, b);
    let to = w.sig_dir("swap", &b);
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(
        w.sig_dir("swap", &a).join("signature-1"),
        to.join("signature-1"),
    )
    .unwrap();
    let policy = w.signed_by("alice.json", "alice.gpg", serde_json::Value::Null);
    let (_t, r) = repo();
    let o = pull(&w, &r, Some(&policy), &w.registry.url("swap:v1"));
    let msg = format!("the signature is for manifest digest {a}, not {b}");
    refused(&o, &r, "signature of another manifest", &[&msg]);

    // A signed as id:v1 and pushed again, unsigned, as id:v2 (same manifest, so the
    // lookaside has v1's signature): the default identity rule wants the exact tag.
    w.push("a", "id:v1", Some(&w.alice));
    w.push("a", "id:v2", None);
    let v2 = w.registry.url("id:v2");
    let o = pull(&w, &r, Some(&policy), &v2);
    refused(&o, &r, "another tag", &["identity mismatch", "id:v1"]);
    // matchRepository accepts any tag of the repository.
    let repo_rule = w.signed_by(
        "repo.json",
        "alice.gpg",
        serde_json::json!({"type": "matchRepository"}),
    );
    let o = pull(&w, &r, Some(&repo_rule), &v2);
    assert!(o.status.success(), "matchRepository: {}", stderr(&o));
    // exactReference to another name refuses it again.
    let (_t2, r2) = repo();
    let exact = w.signed_by(
        "exact.json",
        "alice.gpg",
        serde_json::json!({"type": "exactReference", "dockerReference": format!("{}/other:v1", w.registry.addr)}),
    );
    let o = pull(&w, &r2, Some(&exact), &v2);
    refused(&o, &r2, "exactReference", &["identity mismatch"]);
}

#[test]
fn oci_layouts_and_install_and_upgrade_go_through_the_policy() {
    let t = Target::new();
    osimage::publish(&t.layout, "stable", &[osimage::base_layer(1)], "1");
    let policies = t.dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let write = |name: &str, v: serde_json::Value| {
        let p = policies.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    let reject = write(
        "reject.json",
        serde_json::json!({"default": [{"type": "reject"}]}),
    );
    let layout = std::fs::canonicalize(&t.layout).unwrap();
    // Reject by default, accept this layout directory by its path scope.
    let this_dir = write(
        "dir.json",
        serde_json::json!({"default": [{"type": "reject"}], "transports": {"oci": {
            layout.display().to_string(): [{"type": "insecureAcceptAnything"}]}}}),
    );
    // signedBy on oci: refused: a layout has no signatures.
    let signed = write(
        "signed.json",
        serde_json::json!({"default": [{"type": "signedBy", "keyType": "GPGKeys",
            "keyData": "AAAA"}]}),
    );
    let origin = t.origin("stable");
    let (_td, r) = repo();
    for (policy, expect) in [
        (&reject, "the requirement is reject"),
        (&signed, "carry no signatures"),
    ] {
        let o = common::cfsctl()
            .args(["oci", "pull", "--repo"])
            .arg(&r)
            .arg("--signature-policy")
            .arg(policy)
            .arg(&origin)
            .output()
            .unwrap();
        refused(
            &o,
            &r,
            &format!("oci: under {}", policy.display()),
            &[expect, &origin],
        );
    }
    // compute-id stores layers too: the policy applies.
    let o = common::cfsctl()
        .args(["oci", "compute-id", "--repo"])
        .arg(&r)
        .arg("--signature-policy")
        .arg(&reject)
        .arg(&origin)
        .output()
        .unwrap();
    refused(&o, &r, "compute-id", &["the requirement is reject"]);

    // install pulls under the policy.
    let o = common::cfsctl()
        .args(["install", "--repo"])
        .arg(&t.src)
        .arg(&origin)
        .arg("--sysroot")
        .arg(&t.sysroot)
        .arg("--esp")
        .arg(&t.esp)
        .arg("--signature-policy")
        .arg(&reject)
        .args(["--karg", "rw", "--bootloader"])
        .arg(&t.bootloader)
        .output()
        .unwrap();
    refused(&o, &t.src, "install", &["the requirement is reject"]);
    let o = common::cfsctl()
        .args(["install", "--repo"])
        .arg(&t.src)
        .arg(&origin)
        .arg("--sysroot")
        .arg(&t.sysroot)
        .arg("--esp")
        .arg(&t.esp)
        .arg("--signature-policy")
        .arg(&this_dir)
        .args(["--karg", "rw", "--bootloader"])
        .arg(&t.bootloader)
        .output()
        .unwrap();
    assert!(o.status.success(), "install under dir.json: {}", stderr(&o));

    // upgrade (and switch) pull v2 under the policy: refused, nothing staged.
    osimage::publish(
        &t.layout,
        "stable",
        &[osimage::base_layer(1), osimage::v2_layer()],
        "2",
    );
    let before = t.status();
    let o = t
        .cmd(&["upgrade"])
        .arg("--signature-policy")
        .arg(&reject)
        .output()
        .unwrap();
    assert!(!o.status.success(), "upgrade accepted: {}", stderr(&o));
    assert!(
        stderr(&o).contains("the requirement is reject"),
        "{}",
        stderr(&o)
    );
    let o = t
        .cmd(&["switch", &origin])
        .arg("--signature-policy")
        .arg(&reject)
        .output()
        .unwrap();
    assert!(!o.status.success(), "switch accepted: {}", stderr(&o));
    assert_eq!(t.status()["deployments"], before["deployments"]);
    let o = t
        .cmd(&["upgrade"])
        .arg("--signature-policy")
        .arg(&this_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "upgrade under dir.json: {}", stderr(&o));
}

/// `python3 -m http.server` serving a directory on 127.0.0.1; killed on drop.
struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path) -> Option<HttpServer> {
        let python = common::find_tool("PYTHON3", "python3", &[])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(python)
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = HttpServer { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http.server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(server)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn signatures_through_an_http_lookaside_of_a_docker_namespace() {
    let Some(w) = world() else { return };
    w.push("a", "signed/a:v1", Some(&w.alice));
    w.push("b", "plain/b:v1", None);
    let Some(http) = HttpServer::start(&w.lookaside) else {
        return;
    };
    // A per-namespace `docker:` section (more specific than the world's default-docker,
    // which is left out here so only the http lookaside can serve the signature).
    let regd = w.td.path().join("registries-http.d");
    std::fs::create_dir(&regd).unwrap();
    std::fs::write(
        regd.join("ns.yaml"),
        format!(
            "docker:\n  {}:\n    lookaside: http://127.0.0.1:{}\n",
            w.registry.addr, http.port
        ),
    )
    .unwrap();
    let policy = w.signed_by("alice.json", "alice.gpg", serde_json::Value::Null);
    let pull_http = |repo: &Path, reference: &str| {
        common::cfsctl()
            .args(["oci", "pull", "--tls-verify=false", "--repo"])
            .arg(repo)
            .arg("--registries.d")
            .arg(&regd)
            .arg("--signature-policy")
            .arg(&policy)
            .arg(reference)
            .output()
            .unwrap()
    };
    let (_t, r) = repo();
    let o = pull_http(&r, &w.registry.url("plain/b:v1"));
    let want = format!(
        "no signature found at http://127.0.0.1:{}/plain/b@",
        http.port
    );
    refused(&o, &r, "unsigned over http", &[&want]);
    let o = pull_http(&r, &w.registry.url("signed/a:v1"));
    assert!(o.status.success(), "signed over http: {}", stderr(&o));
}
