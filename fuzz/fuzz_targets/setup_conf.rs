//! `setup-root.conf`: any text is parsed or refused (naming a line) without a panic, and the
//! paths it accepts stay relative, without `..`.
#![no_main]

use cfsctl::deploy::setup_conf::SetupConf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SetupConf::parse(text) {
        Ok(conf) => {
            for p in [&conf.repo, &conf.state] {
                assert!(p.is_relative(), "{}", p.display());
                assert!(
                    !p.components().any(|c| c.as_os_str() == ".."),
                    "{}",
                    p.display()
                );
            }
        }
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count().max(1)),
    }
});
