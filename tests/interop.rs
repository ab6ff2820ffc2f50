//! Interoperability with composefs-rs: for OCI images built here, cfsctl's composefs digests
//! (merged image, and the boot variant) equal those of the `composefs` / `composefs-oci` /
//! `composefs-boot` crates (0.9.4, dev-dependencies, used as an oracle only), in EROFS format
//! V1, for sha256 and sha512. Ours come from a real `oci pull` of an `oci:` layout; theirs from
//! their layer import (`import_layer`), config stream, `create_filesystem` (their merge and
//! OCI transform), `transform_for_boot` and `compute_image_id(V1)`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cfsctl::fsverity::Algorithm;
use cfsctl::oci::pull::{self, PullOptions};
use cfsctl::oci::reference::ImageReference;
use cfsctl::repo::Repository;
use common::ociimage::{self, Compression, Layer};

use composefs::erofs::format::FormatVersion;
use composefs::fsverity::{FsVerityHashValue, Sha256HashValue, Sha512HashValue};
use composefs::generic_tree::OciTransformOptions;
use composefs::repository::{Repository as TheirRepository, RepositoryConfig};
use composefs_boot::BootOps;

/// One tar entry.
enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, Vec<u8>),
    Link(&'a str, &'a str),
    Symlink(&'a str, &'a str),
    Fifo(&'a str),
    CharDev(&'a str, u32, u32),
}

/// A layer tar; `xattrs` (path -> SCHILY xattrs) and a PAX mtime with a fraction on
/// `/usr/bin/tool`, as buildah and Go's archive/tar write them.
fn tar(entries: &[Entry], xattrs: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (path, kind, mode, data, link, dev) = match e {
            Entry::Dir(p, m) => (*p, tar::EntryType::Directory, *m, &[][..], None, None),
            Entry::File(p, m, d) => (*p, tar::EntryType::Regular, *m, &d[..], None, None),
            Entry::Link(p, t) => (*p, tar::EntryType::Link, 0o644, &[][..], Some(*t), None),
            Entry::Symlink(p, t) => (*p, tar::EntryType::Symlink, 0o777, &[][..], Some(*t), None),
            Entry::Fifo(p) => (*p, tar::EntryType::Fifo, 0o600, &[][..], None, None),
            Entry::CharDev(p, ma, mi) => (
                *p,
                tar::EntryType::Char,
                0o666,
                &[][..],
                None,
                Some((*ma, *mi)),
            ),
        };
        let mut pax: Vec<(String, Vec<u8>)> = xattrs
            .iter()
            .filter(|x| x.0 == path)
            .map(|x| (format!("SCHILY.xattr.{}", x.1), x.2.to_vec()))
            .collect();
        if path == "usr/bin/tool" {
            pax.push(("mtime".into(), b"1700000123.25".to_vec()));
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), &v[..])))
                .unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(if path.starts_with("etc") { 7 } else { 0 });
        h.set_gid(0);
        h.set_mtime(1_700_000_000 + path.len() as u64);
        h.set_size(data.len() as u64);
        if let Some((major, minor)) = dev {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        match link {
            Some(target) => b.append_link(&mut h, path, target).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    }
    b.into_inner().unwrap()
}

/// The base: every entry kind, inline and external files, a hard link, xattrs that the
/// canonical form keeps (`security.capability`) and drops (`user.*`, `security.selinux`),
/// `/run` content that is emptied, `/boot` and `/sysroot` content for the boot variant.
fn base_layer() -> Vec<u8> {
    use Entry::*;
    tar(
        &[
            Dir("./", 0o755),
            Dir("usr", 0o755),
            Dir("usr/bin", 0o755),
            File("usr/bin/tool", 0o755, common::content(5000, 1)),
            Link("usr/bin/tool-again", "usr/bin/tool"),
            File("usr/bin/small", 0o644, b"tiny inline content".to_vec()),
            Symlink("usr/bin/sh", "tool"),
            Dir("usr/lib", 0o755),
            Dir("usr/lib/modules", 0o755),
            Dir("usr/lib/modules/6.1.0", 0o755),
            File(
                "usr/lib/modules/6.1.0/vmlinuz",
                0o644,
                common::content(9000, 2),
            ),
            File(
                "usr/lib/modules/6.1.0/initramfs.img",
                0o644,
                common::content(7000, 3),
            ),
            Dir("etc", 0o755),
            File("etc/hostname", 0o644, b"interop\n".to_vec()),
            File("etc/big.conf", 0o600, common::content(300, 4)),
            Dir("dev", 0o755),
            CharDev("dev/null", 1, 3),
            Dir("run", 0o755),
            File("run/.containerenv", 0o644, b"engine=buildah\n".to_vec()),
            Fifo("run/fifo"),
            Dir("boot", 0o755),
            File("boot/vmlinuz-6.1.0", 0o644, common::content(4000, 5)),
            Dir("sysroot", 0o755),
            Dir("sysroot/ostree", 0o755),
            Dir("tmp", 0o1777),
        ],
        &[
            (
                "usr/bin/tool",
                "security.capability",
                &[1, 0, 0, 2, 0, 32, 0, 0][..],
            ),
            ("usr/bin/small", "user.note", b"dropped"),
            ("usr", "security.selinux", b"system_u:object_r:usr_t:s0\0"),
            ("etc/hostname", "user.keep", b"only with KeepUser"),
        ],
    )
}

/// An upper layer with a whiteout, an opaque directory, a new hard link and new content.
fn whiteout_layer() -> Vec<u8> {
    use Entry::*;
    tar(
        &[
            Dir("usr", 0o755),
            Dir("usr/bin", 0o755),
            File("usr/bin/.wh.small", 0o644, Vec::new()),
            File("usr/bin/new", 0o755, common::content(200, 6)),
            Link("usr/bin/new-link", "usr/bin/new"),
            Dir("etc", 0o750),
            File("etc/.wh..wh..opq", 0o644, Vec::new()),
            File("etc/os-release", 0o644, b"ID=interop\n".to_vec()),
            Dir("var", 0o755),
            Dir("var/lib", 0o755),
        ],
        &[(
            "usr/bin/new",
            "security.capability",
            &[2, 0, 0, 2, 0, 1, 0, 0][..],
        )],
    )
}

/// Their digest of the image made of `tars` with config `config`: merged, or boot variant.
fn oracle<H: FsVerityHashValue>(tars: &[Vec<u8>], config: &[u8], bootable: bool) -> String {
    let td = tempfile::tempdir().unwrap();
    let cfg = RepositoryConfig::new(H::ALGORITHM).set_insecure();
    let (repo, _) =
        TheirRepository::<H>::init_path(rustix::fs::CWD, td.path().join("repo"), cfg).unwrap();
    let repo = Arc::new(repo);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut refs = HashMap::new();
    for tar in tars {
        let diff_id = composefs_oci::sha256_content_digest(tar);
        let (verity, _) = rt
            .block_on(composefs_oci::import_layer(&repo, &diff_id, None, &tar[..]))
            .unwrap();
        refs.insert(diff_id.to_string().into_boxed_str(), verity);
    }
    let (config_digest, config_verity) =
        composefs_oci::write_config_raw(&repo, config, refs, None, None, &HashMap::new()).unwrap();
    let mut fs = composefs_oci::image::create_filesystem(
        &repo,
        &config_digest,
        Some(&config_verity),
        &OciTransformOptions::default(),
    )
    .unwrap();
    if bootable {
        fs.transform_for_boot(&repo).unwrap();
    }
    fs.compute_image_id(FormatVersion::V1).to_hex()
}

/// Our digests (merged, boot variant) of the same image, by `oci pull` / `compute`.
fn ours(dir: &std::path::Path, alg: Algorithm) -> (String, String) {
    let td = tempfile::tempdir().unwrap();
    let repo = Repository::init(td.path(), alg).unwrap();
    let reference = ImageReference::OciDir {
        path: dir.to_owned(),
        tag: Some("t".into()),
    };
    let pulled = pull::pull(&repo, &reference, &PullOptions::default()).unwrap();
    let computed = pull::compute(&repo, &reference, &Default::default(), true, None).unwrap();
    assert_eq!(computed.image_digest, pulled.image_digest);
    common::assert_fsck_clean(td.path());
    (
        pulled.image_digest.to_hex(),
        computed.bootable_digest.unwrap().to_hex(),
    )
}

fn check(name: &str, tars: Vec<Vec<u8>>) {
    let td = tempfile::tempdir().unwrap();
    let layers: Vec<Layer> = tars
        .iter()
        .map(|t| Layer::new(t.clone(), Compression::Gzip))
        .collect();
    let written = ociimage::write_layout(td.path(), "t", &layers, &BTreeMap::new());
    let config = ociimage::read_blob(td.path(), &written.config);
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        let (merged, bootable) = ours(td.path(), alg);
        let (theirs, theirs_boot) = match alg {
            Algorithm::Sha256 => (
                oracle::<Sha256HashValue>(&tars, &config, false),
                oracle::<Sha256HashValue>(&tars, &config, true),
            ),
            Algorithm::Sha512 => (
                oracle::<Sha512HashValue>(&tars, &config, false),
                oracle::<Sha512HashValue>(&tars, &config, true),
            ),
        };
        assert_eq!(merged, theirs, "{name}: merged image, {alg}");
        assert_eq!(bootable, theirs_boot, "{name}: boot variant, {alg}");
        assert_ne!(merged, bootable, "{name}: the boot variant differs");
        eprintln!("{name} {alg}: merged {merged} bootable {bootable}");
    }
}

#[test]
fn one_layer_with_hard_links_and_xattrs() {
    check("one layer", vec![base_layer()]);
}

#[test]
fn whiteouts_and_opaque_directories() {
    check("whiteouts", vec![base_layer(), whiteout_layer()]);
}

/// `file_contexts` in the style of the reference policy: the last match wins, type-specific
/// lines, `<<none>>`, character classes, alternatives.
const FILE_CONTEXTS: &str = r"# interop test policy
/.*					system_u:object_r:default_t:s0
/			-d	system_u:object_r:root_t:s0
/[^/]+			--	system_u:object_r:etc_runtime_t:s0
/usr(/.*)?				system_u:object_r:usr_t:s0
/usr/bin(/.*)?				system_u:object_r:bin_t:s0
/usr/sbin(/.*)?				system_u:object_r:bin_t:s0
/usr/bin/tool			--	system_u:object_r:tool_exec_t:s0
/usr/bin/(ba)?sh		--	system_u:object_r:shell_exec_t:s0
/usr/bin/sh			-l	system_u:object_r:bin_t:s0
/usr/lib(/.*)?				system_u:object_r:lib_t:s0
/usr/lib/modules(/.*)?			system_u:object_r:modules_object_t:s0
/usr/libexec(/.*)?			system_u:object_r:bin_t:s0
/usr/share(/.*)?			system_u:object_r:usr_t:s0
/usr/share/doc/[^/]+/copyright	--	system_u:object_r:doc_license_t:s0
/usr/share/selinux(/.*)?		system_u:object_r:policy_src_t:s0
/etc(/.*)?				system_u:object_r:etc_t:s0
/etc/hostname			--	system_u:object_r:net_conf_t:s0
/etc/(helper|other)-link		--	system_u:object_r:helper_conf_t:s0
/etc/selinux(/.*)?			system_u:object_r:selinux_config_t:s0
/etc/selinux/([^/]*/)?contexts(/.*)?	system_u:object_r:default_context_t:s0
/etc/selinux/([^/]*/)?contexts/files(/.*)?	system_u:object_r:file_context_t:s0
/dev(/.*)?				system_u:object_r:device_t:s0
/dev/null			-c	system_u:object_r:null_device_t:s0
/run(/.*)?				system_u:object_r:var_run_t:s0
/run/fifo			-p	system_u:object_r:initctl_t:s0
/tmp				-d	system_u:object_r:tmp_t:s0
/tmp/.*					<<none>>
/boot(/.*)?				system_u:object_r:boot_t:s0
/sysroot(/.*)?				system_u:object_r:root_t:s0
/var(/.*)?				system_u:object_r:var_t:s0
/var/lib(/.*)?				system_u:object_r:var_lib_t:s0
/var/run			-l	system_u:object_r:var_run_t:s0
";

/// A layer shipping an SELinux policy (its config, `file_contexts`, `.local`, `.subs`) and a
/// hard link whose two paths are labelled differently.
fn policy_layer() -> Vec<u8> {
    use Entry::*;
    tar(
        &[
            Dir("etc", 0o755),
            Dir("etc/selinux", 0o755),
            File(
                "etc/selinux/config",
                0o644,
                b"# SELINUXTYPE=ignored\nSELINUX=enforcing\n SELINUXTYPE = default \n".to_vec(),
            ),
            Dir("etc/selinux/default", 0o755),
            Dir("etc/selinux/default/contexts", 0o755),
            Dir("etc/selinux/default/contexts/files", 0o755),
            File(
                "etc/selinux/default/contexts/files/file_contexts",
                0o644,
                FILE_CONTEXTS.as_bytes().to_vec(),
            ),
            File(
                "etc/selinux/default/contexts/files/file_contexts.local",
                0o644,
                b"/etc/hostname -- system_u:object_r:local_hostname_t:s0\n".to_vec(),
            ),
            File(
                "etc/selinux/default/contexts/files/file_contexts.subs",
                0o644,
                b"/opt /usr\n".to_vec(),
            ),
            Dir("usr", 0o755),
            Dir("usr/libexec", 0o755),
            File("usr/libexec/helper", 0o755, common::content(3000, 8)),
            Link("etc/helper-link", "usr/libexec/helper"),
            Link("usr/libexec/helper-again", "usr/libexec/helper"),
            Dir("opt", 0o755),
            Dir("opt/bin", 0o755),
            File("opt/bin/tool", 0o755, common::content(100, 9)),
            Symlink("var/run", "../run"),
            Dir("var", 0o755),
        ],
        &[("usr/libexec/helper", "security.selinux", b"build_host_t\0")],
    )
}

#[test]
fn an_image_with_an_selinux_policy_is_labelled_as_composefs_rs_labels_it() {
    // Real package content: bash (its /bin files are aliased to /usr/bin by the policy
    // package's file_contexts.subs_dist) and selinux-policy-default itself.
    let Some(debs) = ociimage::deb_tars(&["bash", "selinux-policy-default"]) else {
        return;
    };
    let mut layers = vec![base_layer()];
    layers.extend(debs);
    layers.push(policy_layer());
    check("selinux policy", layers);
}
