use super::*;

const ROOT_LINE: &str = "/ 4096 40755 2 0 0 0 1633950376.0 - - -\n";

fn ok(body: &str) -> Tree {
    parse(format!("{ROOT_LINE}{body}").as_bytes(), ParseMode::Strict).expect("parses")
}

fn err(body: &str, mode: ParseMode) -> (usize, LineError) {
    let e = parse(format!("{ROOT_LINE}{body}").as_bytes(), mode).expect_err("must fail");
    let (line, error) = e.line_error().expect("line error");
    (line, error.clone())
}

fn err_both(body: &str) -> (usize, LineError) {
    let lenient = err(body, ParseMode::Lenient);
    assert_eq!(lenient, err(body, ParseMode::Strict));
    lenient
}

#[test]
fn escapes() {
    assert_eq!(unescape(br"a\\b\n\r\t\x41\x7e").unwrap(), b"a\\b\n\r\tA~");
    assert!(matches!(unescape(br"a\"), Err(LineError::BadEscape(_))));
    assert!(matches!(unescape(br"\x4"), Err(LineError::BadEscape(_))));
    assert!(matches!(unescape(br"\xzz"), Err(LineError::BadEscape(_))));
    assert!(matches!(unescape(br"\q"), Err(LineError::BadEscape(_))));
    assert_eq!(unescape_optional(b"-").unwrap(), None);
    assert_eq!(unescape_optional(b"").unwrap(), Some(vec![]));
}

#[test]
fn numbers_like_strtoull() {
    assert_eq!(parse_number("x", b"0755", 8).unwrap(), 0o755);
    assert_eq!(parse_number("x", b"+7", 10).unwrap(), 7);
    assert_eq!(parse_number("x", b"-1", 10).unwrap(), u64::MAX);
    assert_eq!(
        parse_number("x", b"99999999999999999999999", 10).unwrap(),
        u64::MAX
    );
    assert!(parse_number("x", b"", 10).is_err());
    assert!(parse_number("x", b"8", 8).is_err());
    assert!(parse_number("x", b"1a", 10).is_err());
}

#[test]
fn basic_tree() {
    let t = ok("/a\\x20b 3 100644 1 1000 1000 0 5.7 - abc -\n\
                /d 4096 40755 2 0 0 0 1.0 - - - user.x=1 trusted.y=\\x00\n\
                /d/l 3 120777 1 0 0 0 1.0 /ab - -\n\
                /d/h 0 @100644 0 0 0 0 0.0 /a\\x20b - -\n\
                /ext 10 100644 1 0 0 0 1.0 ab/cd - 0000000000000000000000000000000000000000000000000000000000000000\n");
    let f = t.lookup(b"/a b").unwrap();
    assert_eq!(t.inodes[f].inline.as_deref(), Some(&b"abc"[..]));
    assert_eq!(t.inodes[f].mtime, Timestamp { sec: 5, nsec: 7 });
    assert_eq!(t.inodes[f].uid, 1000);
    let d = t.lookup(b"/d").unwrap();
    assert_eq!(t.inodes[d].xattr(b"trusted.y"), Some(&b"\0"[..]));
    let h = t.inodes[d].entries.get(&b"h"[..]).unwrap();
    assert!(h.hardlink);
    assert_eq!(h.inode, f);
    let l = t.lookup(b"/d/l").unwrap();
    assert_eq!(t.inodes[l].payload.as_deref(), Some(&b"/ab"[..]));
    let e = t.lookup(b"/ext").unwrap();
    assert!(t.inodes[e].digest.is_some());
    assert_eq!(t.inodes[e].payload.as_deref(), Some(&b"ab/cd"[..]));
}

#[test]
fn hardlink_chain_and_order() {
    // A link to a link resolves to the final inode, whatever the line order.
    let t = ok("/b 0 @100644 0 0 0 0 0.0 /c - -\n\
                /a 0 100644 1 0 0 0 0.0 - - -\n\
                /c 0 @100644 0 0 0 0 0.0 /a - -\n");
    let a = t.lookup(b"/a").unwrap();
    assert_eq!(t.root().entries[&b"b"[..]].inode, a);
    assert_eq!(t.root().entries[&b"c"[..]].inode, a);
}

#[test]
fn rules() {
    use LineError::*;
    assert_eq!(err_both("/x 0 0 1 0 0 0 0.0 - - -\n"), (2, InvalidMode(0)));
    assert!(matches!(
        err_both("/x/y 0 100644 1 0 0 0 0.0 - - -\n"),
        (2, ParentMissing(_))
    ));
    assert!(matches!(
        err_both("/f 0 100644 1 0 0 0 0.0 - - -\n/f/y 0 100644 1 0 0 0 0.0 - - -\n"),
        (3, ParentNotDirectory(_))
    ));
    assert!(matches!(
        err_both("/. 0 100644 1 0 0 0 0.0 - - -\n"),
        (2, DotName(_))
    ));
    assert!(matches!(
        err_both("// 0 40755 1 0 0 0 0.0 - - -\n"),
        (2, EmptyName(_))
    ));
    assert!(matches!(
        err_both("/d/ 0 40755 1 0 0 0 0.0 - - -\n"),
        (2, ParentMissing(_))
    ));
    let long = "n".repeat(256);
    assert_eq!(
        err_both(&format!("/{long} 0 100644 1 0 0 0 0.0 - - -\n")),
        (2, NameTooLong { len: 256 })
    );
    assert!(matches!(
        err_both("/a 0 100644 1 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n"),
        (3, AlreadyExists(_))
    ));
    assert_eq!(
        err_both("/a 0 @40755 1 0 0 0 0.0 / - -\n"),
        (2, DirectoryHardlink)
    );
    assert!(matches!(
        err_both("/d 0 40755 1 0 0 0 0.0 - - -\n/a 0 @100644 1 0 0 0 0.0 /d - -\n"),
        (3, HardlinkToDirectory(_))
    ));
    assert!(matches!(
        err_both("/a 0 @100644 1 0 0 0 0.0 /a - -\n"),
        (2, SelfHardlink(_))
    ));
    assert!(matches!(
        err_both("/a 0 @100644 1 0 0 0 0.0 /b - -\n/b 0 @100644 1 0 0 0 0.0 /a - -\n"),
        (_, HardlinkCycle(_))
    ));
    assert!(matches!(
        err_both("/a 0 @100644 1 0 0 0 0.0 /zz - -\n"),
        (2, HardlinkTargetMissing(_))
    ));
    assert_eq!(
        err_both("/a 0 @100644 1 0 0 0 0.0 - - -\n"),
        (2, HardlinkNoTarget)
    );
    assert_eq!(
        err_both("/a 4 100644 1 0 0 0 0.0 - abc -\n"),
        (
            2,
            ContentSizeMismatch {
                content: 3,
                size: 4
            }
        )
    );
    let big = "x".repeat(5001);
    assert_eq!(
        err_both(&format!("/a 5001 100644 1 0 0 0 0.0 - {big} -\n")),
        (2, InlineTooLarge(5001))
    );
    assert_eq!(
        err_both("/l 0 120777 1 0 0 0 0.0 - - -\n"),
        (2, EmptySymlink)
    );
    let target = "t".repeat(4096);
    assert_eq!(
        err_both(&format!("/l 4096 120777 1 0 0 0 0.0 {target} - -\n")),
        (2, PayloadTooLong(4096))
    );
    assert!(matches!(
        err_both("/a 1 100644 1 0 0 0 0.0 - - 12\n"),
        (2, InvalidDigest(_))
    ));
    assert_eq!(
        err_both("/a 9500000000000000 100644 1 0 0 0 0.0 - - -\n"),
        (2, FileTooBig(9500000000000000))
    );
    assert_eq!(
        err_both("/a 0 100644 1 0 0 0 0.0 - - - novalue\n"),
        (2, XattrMissingEquals)
    );
    assert_eq!(
        err_both("/a 0 100644 1 0 0 0 0.0 - - - =v\n"),
        (2, XattrNameLength(0))
    );
    let key = "k".repeat(256);
    assert_eq!(
        err_both(&format!("/a 0 100644 1 0 0 0 0.0 - - - {key}=v\n")),
        (2, XattrNameLength(256))
    );
    let value = "v".repeat(40000);
    assert_eq!(
        err_both(&format!("/a 0 100644 1 0 0 0 0.0 - - - k={value}\n")),
        (2, XattrsTooLarge)
    );
    assert_eq!(
        err_both("/a 0 100644 1 0 0 0 0\n"),
        (
            2,
            InvalidNumber {
                field: "mtime",
                value: String::new()
            }
        )
    );
    assert_eq!(
        err_both("/a\0 0 100644 1 0 0 0 0.0 - - -\n"),
        (2, EmbeddedNul(2))
    );
    assert_eq!(err_both("\n"), (2, EmptyPath));
    let e = parse(b"/a 0 100644 1 0 0 0 0.0 - - -\n", ParseMode::Lenient).unwrap_err();
    assert_eq!(e.line_error(), Some((1, &RootNotFirst)));
    assert!(matches!(
        parse(b"", ParseMode::Lenient),
        Err(DumpError::NoRoot)
    ));
}

#[test]
fn strict_only_rules() {
    use LineError::*;
    let cases = [
        ("/a 0 100644 1 0 0 5 0.0 - - -\n", RdevOnNonDevice),
        (
            "/l 9 120777 1 0 0 0 0.0 abc - -\n",
            SymlinkSizeMismatch { size: 9, target: 3 },
        ),
        ("/l 3 120777 1 0 0 0 0.0 abc abc -\n", SymlinkContent),
        ("/a 0 100644 1 0 0 0 0.0 - - -", MissingTrailingNewline),
    ];
    for (body, rule) in cases {
        assert_eq!(err(body, ParseMode::Strict), (2, rule));
        parse(format!("{ROOT_LINE}{body}").as_bytes(), ParseMode::Lenient)
            .expect("lenient accepts");
    }
}

#[test]
fn replaced_xattr_keeps_budget() {
    let t = ok("/a 0 100644 1 0 0 0 0.0 - - - user.a=1 user.a=22\n");
    let a = t.lookup(b"/a").unwrap();
    assert_eq!(t.inodes[a].xattrs.len(), 1);
    assert_eq!(t.inodes[a].xattr(b"user.a"), Some(&b"22"[..]));
}
