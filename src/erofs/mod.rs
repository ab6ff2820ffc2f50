//! EROFS images with the composefs conventions: on-disk format, writer, reader.

pub mod format;
pub mod limits;
pub mod reader;
pub mod writer;
