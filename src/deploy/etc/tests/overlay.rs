//! Changes made through a real overlay mount (so the upper directory holds what overlayfs
//! really writes: copy-ups, whiteouts, opaque directories, origin xattrs), merged, and the
//! new image's `/etc` mounted under the result.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::fixture::{Fx, Mounted, Spec, big, set_xattr, xattrs};
use super::{base, kinds, listing, merge_and_view};
use crate::deploy::etc::ConflictPolicy::{KeepLocal, Refuse, TakeNew};
use crate::deploy::etc::{ImageEtc, diff};

/// Boots `base` (as a lower directory), lets `change` edit `/etc` through the overlay,
/// unmounts, and returns the upper directory.
fn through_overlay(fx: &Fx, base: &Spec, change: impl FnOnce(&Path)) -> PathBuf {
    let lower = fx.path("booted-lower");
    std::fs::create_dir(&lower).unwrap();
    base.write_to(&lower);
    let upper = fx.upper("upper");
    let m = Mounted::overlay(&lower, &upper, &fx.path("work"), &fx.path("mnt"));
    change(&m.0);
    drop(m);
    upper
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn diff_strings(fx: &Fx, base: &Spec, upper: &Path) -> Vec<String> {
    let tree = base.tree(&fx.repo);
    let image = ImageEtc::new(&tree, &fx.repo).unwrap();
    diff(&image, upper)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn changes_made_through_overlayfs_are_carried() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let mut sshd = big("sshd");
    sshd.extend_from_slice(b"PermitRootLogin no\n");
    let upper = through_overlay(&fx, &base, |etc| {
        std::fs::write(etc.join("ssh/sshd_config"), &sshd).unwrap();
        chmod(&etc.join("hosts"), 0o600);
        std::os::unix::fs::chown(etc.join("d/a"), Some(1000), Some(1000)).unwrap();
        set_xattr(&etc.join("d/sub/c"), "user.note", b"mine");
        std::fs::remove_file(etc.join("d/b")).unwrap();
        std::fs::create_dir(etc.join("conf.d")).unwrap();
        std::fs::write(etc.join("conf.d/new.conf"), "new\n").unwrap();
        std::fs::remove_file(etc.join("localtime")).unwrap();
        symlink("../usr/share/zoneinfo/Europe/Berlin", etc.join("localtime")).unwrap();
        std::fs::remove_file(etc.join("ssh/moduli")).unwrap();
        std::fs::create_dir(etc.join("ssh/moduli")).unwrap();
        std::fs::write(etc.join("ssh/moduli/x"), "x\n").unwrap();
    });
    assert_eq!(
        diff_strings(&fx, &base, &upper),
        [
            "/etc/conf.d added",
            "/etc/conf.d/new.conf added",
            "/etc/d/a modified (owner)",
            "/etc/d/b deleted",
            "/etc/d/sub/c modified (xattrs)",
            "/etc/hosts modified (mode)",
            "/etc/localtime modified (target)",
            "/etc/ssh/moduli modified (type)",
            "/etc/ssh/moduli/x added",
            "/etc/ssh/sshd_config modified (content)",
        ]
    );
    // The new image changes other paths, and d's own metadata.
    let new = base
        .clone()
        .file("big.conf", big("new"))
        .file("n.conf", "n\n")
        .perms("d", 0o750)
        .file("d/sub/other", "o\n");
    fx.plan_with(&base, &new, &upper, |p| assert!(p.conflicts().is_empty()));
    let expected = new
        .clone()
        .file("ssh/sshd_config", &sshd)
        .perms("hosts", 0o600)
        .owner("d/a", 1000, 1000)
        .xattr("d/sub/c", "user.note", b"mine")
        .remove("d/b")
        .dir("conf.d")
        .file("conf.d/new.conf", "new\n")
        .link("localtime", "../usr/share/zoneinfo/Europe/Berlin")
        .dir("ssh/moduli")
        .file("ssh/moduli/x", "x\n");
    let dest = merge_and_view(&fx, &base, &new, &upper, Refuse, &expected);
    assert!(listing(&dest).contains(&"d/b (wh)".to_string()));
    assert!(listing(&dest).contains(&"ssh/moduli (opaque)".to_string()));
}

#[test]
fn chmod_and_back_through_overlayfs_is_unchanged() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let upper = through_overlay(&fx, &base, |etc| {
        chmod(&etc.join("hosts"), 0o600);
        chmod(&etc.join("hosts"), 0o644);
        chmod(&etc.join("d/sub"), 0o700);
        chmod(&etc.join("d/sub"), 0o755);
    });
    // overlayfs copied both up, with its bookkeeping.
    assert!(upper.join("hosts").exists() && upper.join("d/sub").is_dir());
    assert!(diff_strings(&fx, &base, &upper).is_empty());
    let new = base
        .clone()
        .file("hosts", "new hosts\n")
        .perms("d/sub", 0o750);
    let dest = merge_and_view(&fx, &base, &new, &upper, Refuse, &new);
    assert!(listing(&dest).is_empty(), "{:?}", listing(&dest));
}

#[test]
fn rm_r_and_mkdir_through_overlayfs_keeps_what_the_new_image_adds() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let upper = through_overlay(&fx, &base, |etc| {
        std::fs::remove_dir_all(etc.join("d")).unwrap();
        std::fs::create_dir(etc.join("d")).unwrap();
        std::fs::write(etc.join("d/mine"), "m\n").unwrap();
        std::fs::remove_dir_all(etc.join("ssh")).unwrap();
    });
    assert_eq!(
        xattrs(&upper.join("d")).get(&b"trusted.overlay.opaque"[..]),
        Some(&b"y".to_vec())
    );
    let new = base.clone().file("d/from-new", "n\n");
    let expected = new
        .clone()
        .remove("d/a")
        .remove("d/b")
        .remove("d/sub")
        .file("d/mine", "m\n")
        .remove("ssh");
    let dest = merge_and_view(&fx, &base, &new, &upper, Refuse, &expected);
    assert_eq!(
        listing(&dest),
        [
            "d",
            "d/a (wh)",
            "d/b (wh)",
            "d/mine",
            "d/sub (wh)",
            "ssh (wh)"
        ]
    );
}

#[test]
fn conflicts_through_overlayfs_under_each_policy() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let upper = through_overlay(&fx, &base, |etc| {
        std::fs::write(etc.join("hosts"), "local\n").unwrap();
        std::fs::write(etc.join("d/a"), "local a\n").unwrap();
        std::fs::remove_file(etc.join("ssh/moduli")).unwrap();
        std::fs::remove_file(etc.join("localtime")).unwrap();
        std::fs::write(etc.join("localtime"), "file\n").unwrap();
        std::fs::write(etc.join("fine"), "no conflict\n").unwrap();
    });
    let new = base
        .clone()
        .file("hosts", "new\n")
        .remove("d")
        .file("ssh/moduli", "new moduli\n")
        .link("localtime", "../usr/share/zoneinfo/Asia/Tokyo");
    fx.plan_with(&base, &new, &upper, |p| {
        assert_eq!(
            kinds(p.conflicts()),
            [
                ("/etc/d".into(), "directoryRemoved".into()),
                ("/etc/hosts".into(), "bothChanged".into()),
                ("/etc/localtime".into(), "typeChanged".into()),
                (
                    "/etc/ssh/moduli".into(),
                    "deletedLocallyChangedInNew".into()
                ),
            ]
        )
    });
    let keep = new
        .clone()
        .file("hosts", "local\n")
        .dir("d")
        .file("d/a", "local a\n")
        .remove("ssh/moduli")
        .file("localtime", "file\n")
        .file("fine", "no conflict\n");
    merge_and_view(&fx, &base, &new, &upper, KeepLocal, &keep);
    let take = new.clone().file("fine", "no conflict\n");
    merge_and_view(&fx, &base, &new, &upper, TakeNew, &take);
}
