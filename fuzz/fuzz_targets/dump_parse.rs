//! composefs-dump(5) parser: any input is parsed or refused without a panic, and a tree it
//! accepts is written as an image the reader reads back (nothing written that cannot be read).
#![no_main]

use cfsctl::dumpfile::{ParseMode, parse};
use cfsctl::erofs::{reader::read_image, writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mode in [ParseMode::Lenient, ParseMode::Strict] {
        let Ok(tree) = parse(data, mode) else {
            continue;
        };
        // The writer may still refuse a tree (rules the parser leaves to it, as mkcomposefs
        // does); what it writes must read back.
        let Ok(image) = writer::image_bytes(&tree, &writer::WriteOptions::default()) else {
            continue;
        };
        if let Err(e) = read_image(&image) {
            panic!("the reader refuses an image the writer wrote: {e}");
        }
    }
});
