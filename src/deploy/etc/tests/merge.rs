//! The merge rules without conflicts, on hand-made upper directories.

use super::fixture::{Entry, Fx, Kind, Spec, big, set_xattr};
use super::{Upper, base, kinds, listing, merge_and_view};
use crate::deploy::etc::ConflictPolicy::{KeepLocal, Refuse, TakeNew};

#[test]
fn unchanged_paths_take_the_new_version() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base
        .clone()
        .file("hosts", "10.0.0.1 new\n")
        .file("d/a", "new a\n")
        .file("big.conf", big("new"))
        .file("added-by-new", "n\n");
    // Copied up but equal to the base (origin xattrs, the directory's impure flag).
    let up = Upper::new(&fx, &base);
    up.copy_up("hosts").copy_up("d/a").copy_up("big.conf");
    set_xattr(&up.path("d"), "trusted.overlay.impure", b"y");
    fx.plan_with(&base, &new, &up.root, |p| {
        assert!(p.conflicts().is_empty(), "{:?}", p.conflicts());
    });
    let dest = merge_and_view(&fx, &base, &new, &up.root, Refuse, &new);
    assert!(listing(&dest).is_empty(), "{:?}", listing(&dest));
}

#[test]
fn local_changes_are_kept_when_the_new_image_left_them_alone() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base
        .clone()
        .file("big.conf", big("new"))
        .file("n.conf", "from new\n");
    let up = Upper::new(&fx, &base);
    up.file("hosts", "127.0.0.1 local\n") // content
        .chmod("d/a", 0o600) // mode
        .copy_up("ssh/moduli");
    rustix::fs::chownat(
        rustix::fs::CWD,
        up.path("ssh/moduli"),
        Some(rustix::fs::Uid::from_raw(1000)),
        Some(rustix::fs::Gid::from_raw(1000)),
        rustix::fs::AtFlags::empty(),
    )
    .unwrap(); // owner
    up.copy_up("d/b");
    set_xattr(&up.path("d/b"), "user.note", b"local"); // xattrs
    up.file("localtime", "not a symlink any more\n") // type
        .file("added.conf", "added\n")
        .file("newdir/inner/x", "x\n") // added directories
        .whiteout("d/sub/c"); // deleted
    let expected = new
        .clone()
        .file("hosts", "127.0.0.1 local\n")
        .perms("d/a", 0o600)
        .owner("ssh/moduli", 1000, 1000)
        .xattr("d/b", "user.note", b"local")
        .file("localtime", "not a symlink any more\n")
        .file("added.conf", "added\n")
        .dir("newdir")
        .dir("newdir/inner")
        .file("newdir/inner/x", "x\n")
        .remove("d/sub/c");
    let dest = merge_and_view(&fx, &base, &new, &up.root, Refuse, &expected);
    assert_eq!(
        listing(&dest),
        [
            "added.conf",
            "d",
            "d/a",
            "d/b",
            "d/sub",
            "d/sub/c (wh)",
            "hosts",
            "localtime",
            "newdir",
            "newdir/inner",
            "newdir/inner/x",
            "ssh",
            "ssh/moduli",
        ]
    );
}

#[test]
fn the_same_change_on_both_sides_carries_nothing() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base
        .clone()
        .file("hosts", "same\n")
        .file("same.conf", big("same"))
        .remove("d/a")
        .perms("ssh", 0o700);
    let up = Upper::new(&fx, &base);
    up.file("hosts", "same\n")
        .file("same.conf", big("same"))
        .whiteout("d/a")
        .chmod("ssh", 0o700);
    let dest = merge_and_view(&fx, &base, &new, &up.root, Refuse, &new);
    assert!(listing(&dest).is_empty(), "{:?}", listing(&dest));
}

#[test]
fn large_files_compare_by_size_and_digest() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base.clone().file("d/b", big("new b"));
    let mut flipped = big("base");
    flipped[100] ^= 1;
    let up = Upper::new(&fx, &base);
    // Same size, one bit different: a local change (found by digest).
    up.file("big.conf", &flipped)
        // Equal content, rewritten (new inode, new mtime): unchanged.
        .file("d/b", big("b"))
        .file("ssh/sshd_config", big("sshd"));
    let expected = new.clone().file("big.conf", &flipped);
    let dest = merge_and_view(&fx, &base, &new, &up.root, Refuse, &expected);
    assert_eq!(listing(&dest), ["big.conf"]);
}

#[test]
fn directory_metadata_follows_the_new_image_unless_the_host_changed_it() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base
        .clone()
        .perms("d", 0o750)
        .owner("d", 0, 4)
        .xattr("d", "user.from", b"new");
    let up = Upper::new(&fx, &base);
    // d is copied up with the base's metadata to hold a new file.
    up.file("d/new", "x\n").chmod("ssh", 0o700);
    let expected = new.clone().file("d/new", "x\n").perms("ssh", 0o700);
    let dest = merge_and_view(&fx, &base, &new, &up.root, Refuse, &expected);
    assert_eq!(listing(&dest), ["d", "d/new", "ssh"]);
}

#[test]
fn an_opaque_directory_becomes_whiteouts_so_new_files_still_show() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base.clone().file("d/from-new", "n\n");
    let up = Upper::new(&fx, &base);
    up.opaque_dir("d").file("d/mine", "m\n");
    let expected = new
        .clone()
        .remove("d/a")
        .remove("d/b")
        .remove("d/sub")
        .file("d/mine", "m\n");
    let dest = merge_and_view(&fx, &base, &new, &up.root, Refuse, &expected);
    assert_eq!(
        listing(&dest),
        ["d", "d/a (wh)", "d/b (wh)", "d/mine", "d/sub (wh)"]
    );
}

#[test]
fn a_local_directory_over_an_unchanged_file_is_carried_opaque() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base.clone().file("big.conf", big("new"));
    let up = Upper::new(&fx, &base);
    up.opaque_dir("hosts")
        .file("hosts/inner", "i\n")
        .put("ssh/moduli", Entry::new(Kind::Link(b"/dev/null".to_vec())));
    let expected = new
        .clone()
        .dir("hosts")
        .file("hosts/inner", "i\n")
        .link("ssh/moduli", "/dev/null");
    let dest = merge_and_view(&fx, &base, &new, &up.root, Refuse, &expected);
    assert_eq!(
        listing(&dest),
        ["hosts (opaque)", "hosts/inner", "ssh", "ssh/moduli"]
    );
}

#[test]
fn etc_itself_gets_the_new_metadata_unless_the_host_changed_it() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base().xattr("", "user.etc", b"base");
    let new = base.clone().xattr("", "user.etc", b"new");
    // The upper as cfs-setup-root made it (0755, no xattrs) is not a change.
    let up = Upper::new(&fx, &base);
    up.file("x", "x\n");
    let expected = new.clone().file("x", "x\n");
    merge_and_view(&fx, &base, &new, &up.root, Refuse, &expected);

    let fx = Fx::new();
    let up = Upper::new(&fx, &base);
    rustix::fs::chmod(&up.root, rustix::fs::Mode::from_raw_mode(0o750)).unwrap();
    let new = base.clone().file("hosts", "new\n");
    // The host changed /etc (and so it lost the image's xattr, the upper has none).
    let mut expected = new.clone().perms("", 0o750);
    expected.get_mut("").xattrs.clear();
    merge_and_view(&fx, &base, &new, &up.root, Refuse, &expected);

    // Both changed /etc: a conflict at /etc itself.
    let new = base.clone().perms("", 0o700);
    fx.plan_with(&base, &new, &up.root, |p| {
        assert_eq!(
            kinds(p.conflicts()),
            [("/etc".into(), "bothChanged".into())]
        );
    });
    let dest = fx.path("root-keep");
    fx.merge(&base, &new, &up.root, KeepLocal, &dest).unwrap();
    let meta = std::fs::symlink_metadata(&dest).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o750
    );
    let dest = fx.path("root-take");
    fx.merge(&base, &new, &up.root, TakeNew, &dest).unwrap();
    let meta = std::fs::symlink_metadata(&dest).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
        0o700
    );
}

#[test]
fn images_without_etc_have_an_empty_etc() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = Spec {
        no_etc: true,
        ..Spec::default()
    };
    let new = super::base();
    let up = Upper::new(&fx, &base);
    up.file("local.conf", "l\n").file("hosts", "local hosts\n");
    // The host's hosts and the new image's differ: both "added" it.
    fx.plan_with(&base, &new, &up.root, |p| {
        assert_eq!(
            kinds(p.conflicts()),
            [("/etc/hosts".into(), "bothChanged".into())]
        );
    });
    let expected = new
        .clone()
        .file("local.conf", "l\n")
        .file("hosts", "local hosts\n");
    merge_and_view(&fx, &base, &new, &up.root, KeepLocal, &expected);

    // And a new image without /etc: what the host added stays, in an empty /etc.
    let fx = Fx::new();
    let up = Upper::new(&fx, &new);
    up.file("local.conf", "l\n").file("hosts", "changed\n");
    let none = base.clone();
    let dest = fx.path("dest");
    fx.merge(&new, &none, &up.root, Refuse, &dest)
        .expect_err("hosts: changed locally, deleted in the new image");
    fx.merge(&new, &none, &up.root, KeepLocal, &dest).unwrap();
    assert_eq!(listing(&dest), ["hosts", "local.conf"]);
}
