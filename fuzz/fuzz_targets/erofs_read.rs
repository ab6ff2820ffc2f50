//! EROFS reader: any bytes are read or refused without a panic, and what is read prints as a
//! dump (what `cfsctl dump` does with an image).
#![no_main]

use cfsctl::dumpfile::print;
use cfsctl::erofs::reader::{read_image, referenced_objects};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = read_image(data) {
        let mut out = Vec::new();
        print::print(&tree, &mut out).expect("printing to memory");
    }
    let _ = referenced_objects(data);
});
