use super::*;

#[test]
fn pax_times() {
    let t = |s: &str| parse_pax_time(s.as_bytes());
    assert_eq!(
        t("1700000000"),
        Some(Timestamp {
            sec: 1_700_000_000,
            nsec: 0
        })
    );
    assert_eq!(
        t("1.5"),
        Some(Timestamp {
            sec: 1,
            nsec: 500_000_000
        })
    );
    assert_eq!(
        t("12.1234567891234"),
        Some(Timestamp {
            sec: 12,
            nsec: 123_456_789
        })
    );
    assert_eq!(
        t("-1.25"),
        Some(Timestamp {
            sec: -2,
            nsec: 750_000_000
        })
    );
    assert_eq!(t("-3"), Some(Timestamp { sec: -3, nsec: 0 }));
    for bad in ["", ".5", "1.x", "abc", "1e9", "--1"] {
        assert_eq!(t(bad), None, "{bad}");
    }
}
