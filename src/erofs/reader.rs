//! EROFS reader.
