//! composefs mounts: EROFS from a file plus overlayfs with the object store as data layer.
