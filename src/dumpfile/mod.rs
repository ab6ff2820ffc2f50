//! composefs-dump(5): parser and printer.

pub mod print;
