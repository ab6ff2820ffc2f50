//! composefs-dump(5): the line-based text form of a composefs tree, read and written so any
//! tree can be exchanged with the C tools (`mkcomposefs --from-file`, `composefs-info dump`)
//! and with composefs-rs.
//!
//! This module owns the text format only; the tree it produces or consumes is
//! [`crate::tree::Tree`].

pub mod parse;
pub mod print;

pub use parse::{DumpError, LineError, ParseMode, parse, parse_reader};
pub use print::print;
