//! composefs-dump(5): parser and printer.
