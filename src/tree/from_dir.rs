//! Reading a directory on disk into a [`Tree`](super::Tree).
