//! EROFS format.
