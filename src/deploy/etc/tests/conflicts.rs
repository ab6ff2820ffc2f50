//! Every kind of conflict, under every policy.

use std::path::Path;

use super::fixture::{Entry, Fx, Kind, Spec, big};
use super::{Upper, base, kinds, listing, merge_and_view};
use crate::deploy::etc::ConflictPolicy::{KeepLocal, Refuse, TakeNew};
use crate::deploy::etc::{ChangeKind, ConflictError, ConflictKind, Difference, EntryType};

/// Checks the conflicts found, that refusing writes nothing, and what `/etc` shows under
/// each of the other policies.
fn check(
    fx: &Fx,
    base: &Spec,
    new: &Spec,
    upper: &Path,
    conflicts: &[(&str, &str)],
    keep_local: &Spec,
    take_new: &Spec,
) {
    let expected: Vec<(String, String)> = conflicts
        .iter()
        .map(|(p, k)| (p.to_string(), k.to_string()))
        .collect();
    fx.plan_with(base, new, upper, |p| {
        assert_eq!(kinds(p.conflicts()), expected)
    });
    let dest = fx.path("refused");
    let err = fx.merge(base, new, upper, Refuse, &dest).unwrap_err();
    let err = err
        .downcast_ref::<ConflictError>()
        .expect("a ConflictError");
    assert_eq!(kinds(&err.conflicts), expected);
    assert!(!dest.exists());
    merge_and_view(fx, base, new, upper, KeepLocal, keep_local);
    merge_and_view(fx, base, new, upper, TakeNew, take_new);
}

#[test]
fn both_changed() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base.clone().file("hosts", "new\n");
    let up = Upper::new(&fx, &base);
    up.file("hosts", "local\n");
    let keep = new.clone().file("hosts", "local\n");
    check(
        &fx,
        &base,
        &new,
        &up.root,
        &[("/etc/hosts", "bothChanged")],
        &keep,
        &new,
    );
}

#[test]
fn changed_locally_deleted_in_new() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base.clone().remove("d/a").remove("big.conf");
    let up = Upper::new(&fx, &base);
    up.file("d/a", "local\n").chmod("big.conf", 0o600);
    let keep = new
        .clone()
        .file("d/a", "local\n")
        .file("big.conf", big("base"))
        .perms("big.conf", 0o600);
    let conflicts = [
        ("/etc/big.conf", "changedLocallyDeletedInNew"),
        ("/etc/d/a", "changedLocallyDeletedInNew"),
    ];
    check(&fx, &base, &new, &up.root, &conflicts, &keep, &new);
}

#[test]
fn deleted_locally_changed_in_new() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base
        .clone()
        .file("hosts", "new\n")
        .file("d/sub/c", "new c\n");
    let up = Upper::new(&fx, &base);
    // A file, and a directory the new image changed something beneath.
    up.whiteout("hosts").whiteout("d");
    let keep = new.clone().remove("hosts").remove("d");
    let conflicts = [
        ("/etc/d", "deletedLocallyChangedInNew"),
        ("/etc/hosts", "deletedLocallyChangedInNew"),
    ];
    check(&fx, &base, &new, &up.root, &conflicts, &keep, &new);
}

#[test]
fn type_changed() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base
        .clone()
        .link("localtime", "../usr/share/zoneinfo/Europe/Paris")
        .remove("hosts")
        .dir("hosts")
        .file("hosts/x", "x\n")
        .dir("both");
    let up = Upper::new(&fx, &base);
    up.file("localtime", "a file now\n")
        .file("hosts", "local\n")
        .file("both", "a file here\n");
    let keep = new
        .clone()
        .file("localtime", "a file now\n")
        .remove("hosts")
        .file("hosts", "local\n")
        .file("both", "a file here\n");
    let conflicts = [
        ("/etc/both", "typeChanged"),
        ("/etc/hosts", "typeChanged"),
        ("/etc/localtime", "typeChanged"),
    ];
    check(&fx, &base, &new, &up.root, &conflicts, &keep, &new);
    fx.plan_with(&base, &new, &up.root, |p| {
        let ConflictKind::TypeChanged { base, local, new } = &p.conflicts()[1].kind else {
            panic!("{:?}", p.conflicts()[1]);
        };
        assert_eq!(
            (*base, *local, *new),
            (Some(EntryType::File), Some(EntryType::File), Some(EntryType::Directory))
        );
        assert_eq!(
            p.conflicts()[2].to_string(),
            "/etc/localtime: file type conflict (booted image: symlink, local: file, new image: symlink)"
        );
    });
}

#[test]
fn directory_deleted_in_new_with_local_changes_beneath() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base.clone().remove("d");
    let up = Upper::new(&fx, &base);
    up.file("d/a", "local a\n")
        .whiteout("d/b")
        .file("d/sub/new", "n\n");
    // Kept: the directory chain and what the host changed, not what it left alone.
    let keep = new
        .clone()
        .dir("d")
        .file("d/a", "local a\n")
        .dir("d/sub")
        .file("d/sub/new", "n\n");
    check(
        &fx,
        &base,
        &new,
        &up.root,
        &[("/etc/d", "directoryRemoved")],
        &keep,
        &new,
    );
    fx.plan_with(&base, &new, &up.root, |p| {
        let ConflictKind::DirectoryRemoved {
            replaced_by,
            local_changes,
        } = &p.conflicts()[0].kind
        else {
            panic!("{:?}", p.conflicts());
        };
        assert_eq!(*replaced_by, None);
        let got: Vec<(String, ChangeKind)> = local_changes
            .iter()
            .map(|c| (c.path.to_string(), c.kind.clone()))
            .collect();
        let modified = ChangeKind::Modified {
            what: vec![Difference::Content],
        };
        assert_eq!(
            got,
            [
                ("/etc/d/a".to_string(), modified),
                ("/etc/d/b".to_string(), ChangeKind::Deleted),
                ("/etc/d/sub/new".to_string(), ChangeKind::Added),
            ]
        );
        assert_eq!(
            p.conflicts()[0].to_string(),
            "/etc/d: directory deleted in the new image but changed locally beneath it: \
             /etc/d/a modified (content), /etc/d/b deleted, /etc/d/sub/new added"
        );
    });
}

#[test]
fn directory_replaced_in_new_with_local_changes_beneath() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base.clone().remove("d").file("d", "now a file\n");
    let up = Upper::new(&fx, &base);
    up.file("d/a", "local a\n");
    // Kept whole, as the host saw it: its file, and the booted image's others (d/b is an
    // external object, copied from the repository).
    let keep = new
        .clone()
        .remove("d")
        .dir("d")
        .file("d/a", "local a\n")
        .file("d/b", big("b"))
        .dir("d/sub")
        .file("d/sub/c", "c\n");
    check(
        &fx,
        &base,
        &new,
        &up.root,
        &[("/etc/d", "directoryRemoved")],
        &keep,
        &new,
    );
    let dest = fx.path(&format!("dest-{KeepLocal}"));
    assert_eq!(
        listing(&dest),
        ["d (opaque)", "d/a", "d/b", "d/sub", "d/sub/c"]
    );
    let report = fx
        .merge(&base, &new, &up.root, KeepLocal, &fx.path("report"))
        .unwrap();
    assert_eq!(report.policy, KeepLocal);
    assert_eq!(report.resolved.len(), 1);
    let counts = (
        report.directories,
        report.copied,
        report.from_image,
        report.whiteouts,
    );
    assert_eq!(counts, (3, 1, 2, 0), "{report:?}");
}

#[test]
fn directory_metadata_only() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    // Only directory metadata changed locally: ssh (deleted in the new image), d/sub
    // (mode changed in the new image too), conf.d (a symlink in the new image).
    let base = base
        .dir("conf.d")
        .file("conf.d/x", "x\n")
        .perms("conf.d", 0o700);
    let new = base
        .clone()
        .remove("ssh")
        .perms("d/sub", 0o750)
        .file("d/sub/c", "new c\n")
        .remove("conf.d")
        .link("conf.d", "/usr/etc/conf.d");
    let up = Upper::new(&fx, &base);
    up.chmod("ssh", 0o700)
        .chmod("d/sub", 0o700)
        .file("d/sub/mine", "m\n")
        .chmod("conf.d", 0o755);
    let keep = new
        .clone()
        .dir("ssh")
        .perms("ssh", 0o700)
        .perms("d/sub", 0o700)
        .file("d/sub/mine", "m\n")
        .remove("conf.d")
        .dir("conf.d")
        .file("conf.d/x", "x\n");
    let take = new.clone().file("d/sub/mine", "m\n");
    let conflicts = [
        ("/etc/conf.d", "typeChanged"),
        ("/etc/d/sub", "bothChanged"),
        ("/etc/ssh", "changedLocallyDeletedInNew"),
    ];
    check(&fx, &base, &new, &up.root, &conflicts, &keep, &take);
}

#[test]
fn refusing_lists_every_conflict_one_per_line_and_writes_nothing() {
    if !super::fixture::root() {
        return;
    }
    let fx = Fx::new();
    let base = base();
    let new = base
        .clone()
        .file("hosts", "new\n")
        .remove("d")
        .file("ssh/moduli", "new\n")
        .file("fine", "no conflict\n");
    let up = Upper::new(&fx, &base);
    up.file("hosts", "local\n")
        .file("d/sub/c", "local c\n")
        .whiteout("ssh/moduli")
        .file("also-fine", "x\n")
        .put("new\nline", Entry::new(Kind::File(b"x".to_vec())));
    let dest = fx.path("dest");
    let err = fx.merge(&base, &new, &up.root, Refuse, &dest).unwrap_err();
    assert_eq!(
        err.to_string(),
        "3 conflicting changes in /etc (resolve them, or merge with the keep-local or take-new policy):\n\
         /etc/d: directory deleted in the new image but changed locally beneath it: /etc/d/sub/c modified (content)\n\
         /etc/hosts: changed locally and in the new image\n\
         /etc/ssh/moduli: deleted locally, changed in the new image"
    );
    assert!(!dest.exists());
    let leftovers: Vec<_> = std::fs::read_dir(fx.td.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dest"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
