//! The content-addressed repository: object store, images, refs.
