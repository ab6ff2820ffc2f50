//! Policies, the writing step, `diff`, and hostile upper directories.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use super::fixture::{Entry, Fx, Kind, Spec, big, mknod, set_xattr, xattrs};
use super::{Upper, base, listing, merge_and_view};
use crate::deploy::etc::ConflictPolicy::{self, KeepLocal, Refuse, TakeNew};
use crate::deploy::etc::{ImageEtc, apply, diff};

#[test]
fn policies_parse_and_print() {
    for (s, p) in [
        ("refuse", Refuse),
        ("keep-local", KeepLocal),
        ("take-new", TakeNew),
    ] {
        assert_eq!(s.parse::<ConflictPolicy>().unwrap(), p);
        assert_eq!(p.to_string(), s);
        assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{s}\""));
    }
    let e = "keep".parse::<ConflictPolicy>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown /etc conflict policy 'keep' (expected refuse, keep-local or take-new)"
    );
    assert_eq!(ConflictPolicy::default(), Refuse);
}

#[test]
fn the_destination_must_not_exist_and_stale_temporaries_go() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let up = Upper::new(&fx, &base);
    up.file("x", "x\n");
    let dest = fx.path("upper-new");
    // Ours (same pid) and a dead process's are stale; a live process's is left alone.
    let ours = fx.path(&format!("upper-new.tmp-{}", std::process::id()));
    let dead = fx.path("upper-new.tmp-2147483646");
    let live = fx.path("upper-new.tmp-1");
    for d in [&ours, &dead, &live] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("junk"), "j").unwrap();
    }
    let before = Spec::read_from(&up.root);
    let report = fx.merge(&base, &base, &up.root, Refuse, &dest).unwrap();
    assert_eq!(
        Spec::read_from(&up.root),
        before,
        "the upper directory is only read"
    );
    assert_eq!((report.copied, report.directories), (1, 1));
    assert!(!ours.exists() && !dead.exists() && live.exists());
    assert_eq!(listing(&dest), ["x"]);
    // The top directory is 0755 root, like the upper cfs-setup-root creates.
    let meta = std::fs::symlink_metadata(&dest).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o755, 0, 0)
    );
    let err = fx.merge(&base, &base, &up.root, Refuse, &dest).unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err:#}");
}

#[test]
fn overlay_bookkeeping_is_ignored_and_never_copied() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let up = Upper::new(&fx, &base);
    up.file("d/a", "changed\n");
    for (p, x) in [
        ("d", "trusted.overlay.impure"),
        ("d/a", "trusted.overlay.origin"),
        ("d/a", "trusted.overlay.nlink"),
    ] {
        set_xattr(&up.path(p), x, b"y");
    }
    set_xattr(&up.path("d/a"), "user.kept", b"1");
    let expected = base
        .clone()
        .file("d/a", "changed\n")
        .xattr("d/a", "user.kept", b"1");
    let dest = fx.path("dest");
    fx.merge(&base, &base, &up.root, Refuse, &dest).unwrap();
    // Checked before mounting: overlayfs adds its own bookkeeping to an upper it uses.
    for p in ["d", "d/a"] {
        let names: Vec<Vec<u8>> = xattrs(&dest.join(p)).into_keys().collect();
        let want: Vec<Vec<u8>> = if p == "d" {
            vec![]
        } else {
            vec![b"user.kept".to_vec()]
        };
        assert_eq!(names, want, "{p}");
    }
    assert_eq!(fx.merged_view(&base, &dest), expected);
}

#[test]
fn redirect_dir_and_metacopy_uppers_are_refused() {
    if !super::fixture::root() {
        return;
    }
    for (path, xattr) in [
        ("d", "trusted.overlay.redirect"),
        ("d/a", "trusted.overlay.metacopy"),
    ] {
        let fx = Fx::new();
        let base = base();
        let up = Upper::new(&fx, &base);
        up.copy_up("d/a");
        set_xattr(&up.path(path), xattr, b"/x");
        let tree = base.tree(&fx.repo);
        let image = ImageEtc::new(&tree, &fx.repo).unwrap();
        let err = crate::deploy::etc::plan(&image, &up.root, &image).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&format!("/etc/{path}: has {xattr}")), "{msg}");
    }
}

#[test]
fn hostile_names_and_symlinks_are_never_followed() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let outside = fx.path("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), "secret\n").unwrap();
    let up = Upper::new(&fx, &base);
    // ssh becomes a symlink out of the upper; d/sub a symlink to /; odd names; a fifo
    // (opening it for reading would block).
    up.put(
        "ssh",
        Entry::new(Kind::Link(outside.as_os_str().as_bytes().to_vec())),
    )
    .put("d/sub", Entry::new(Kind::Link(b"/".to_vec())))
    .file("new\nline", "n\n")
    .put("-rf", Entry::new(Kind::File(b"dash\n".to_vec())));
    std::fs::write(
        up.root.join(std::ffi::OsStr::from_bytes(b"\xff\\x")),
        "bytes\n",
    )
    .unwrap();
    mknod(&up.path("pipe"), rustix::fs::FileType::Fifo, 0);
    let tree = base.tree(&fx.repo);
    let image = ImageEtc::new(&tree, &fx.repo).unwrap();
    let changes: Vec<String> = diff(&image, &up.root)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        changes,
        [
            "/etc/-rf added",
            "/etc/d/sub modified (type)",
            "/etc/new\\x0aline added",
            "/etc/pipe added",
            "/etc/ssh modified (type)",
            "/etc/\\xff\\\\x added",
        ]
    );
    let new = base.clone().file("big.conf", big("new"));
    let expected = new
        .clone()
        .remove("ssh")
        .link("ssh", outside.as_os_str().as_bytes())
        .remove("d/sub")
        .link("d/sub", "/")
        .file("new\nline", "n\n")
        .file("-rf", "dash\n")
        .file(b"\xff\\x", "bytes\n")
        .put("pipe", Kind::Fifo);
    merge_and_view(&fx, &base, &new, &up.root, Refuse, &expected);
    let names: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing was written through the symlink");
}

#[test]
fn diff_lists_local_changes_sorted_as_json() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let up = Upper::new(&fx, &base);
    up.copy_up("hosts") // equal: not listed
        .chmod("d/a", 0o600)
        .file("d/b", "short\n")
        .whiteout("ssh")
        .file("z/new", "n\n")
        .put("localtime", Entry::new(Kind::Link(b"/elsewhere".to_vec())));
    rustix::fs::chmod(&up.root, rustix::fs::Mode::from_raw_mode(0o700)).unwrap();
    let tree = base.tree(&fx.repo);
    let image = ImageEtc::new(&tree, &fx.repo).unwrap();
    let changes = diff(&image, &up.root).unwrap();
    let json = serde_json::to_value(&changes).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"path": "/etc", "kind": "modified", "what": ["mode"]},
            {"path": "/etc/d/a", "kind": "modified", "what": ["mode"]},
            {"path": "/etc/d/b", "kind": "modified", "what": ["content"]},
            {"path": "/etc/localtime", "kind": "modified", "what": ["target"]},
            {"path": "/etc/ssh", "kind": "deleted"},
            {"path": "/etc/z", "kind": "added"},
            {"path": "/etc/z/new", "kind": "added"},
        ])
    );
}

#[test]
fn too_deep_an_upper_is_an_error_not_a_crash() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let up = Upper::new(&fx, &base);
    let mut p = up.root.clone();
    for _ in 0..=crate::deploy::etc::MAX_UPPER_DEPTH + 1 {
        p.push("n");
    }
    std::fs::create_dir_all(&p).unwrap();
    let tree = base.tree(&fx.repo);
    let image = ImageEtc::new(&tree, &fx.repo).unwrap();
    let err = diff(&image, &up.root).unwrap_err();
    assert!(format!("{err:#}").contains("nested deeper than"), "{err:#}");
}

#[test]
fn a_symlink_swapped_in_after_planning_is_not_followed() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let outside = fx.path("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("sub/c"), "secret\n").unwrap();
    let up = Upper::new(&fx, &base);
    up.file("d/sub/c", "local\n");
    let dest = fx.path("dest");
    fx.plan_with(&base, &base, &up.root, |plan| {
        // The host replaces d with a symlink between planning and writing.
        std::fs::rename(up.path("d"), fx.path("old-d")).unwrap();
        std::os::unix::fs::symlink(&outside, up.path("d")).unwrap();
        let err = apply(plan, Refuse, &up.root, &dest).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("/etc/d/sub/c: opening /etc/d/sub in the upper"),
            "{msg}"
        );
    });
    assert!(!dest.exists());
    let tmp = fx.path(&format!("dest.tmp-{}", std::process::id()));
    assert!(
        !tmp.exists(),
        "the temporary directory is removed on failure"
    );
}
