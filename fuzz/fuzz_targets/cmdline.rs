//! The kernel command line: splitting and finding the composefs argument never panic, and an
//! accepted image argument, written back in its plain form, parses to the same image.
#![no_main]

use cfsctl::boot::cmdline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args = cmdline::split(text);
    assert!(
        args.iter()
            .all(|a| !a.contains(|c: char| c.is_ascii_whitespace()) || text.contains('"'))
    );
    if let Ok(Some(image)) = cmdline::parse(text) {
        let q = if image.insecure { "?" } else { "" };
        let again = format!("composefs={q}{}", image.digest.to_hex());
        assert_eq!(cmdline::parse(&again), Ok(Some(image)), "{again}");
    }
});
