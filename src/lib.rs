//! cfsctl: a host OS updater built on composefs.
//!
//! Data flows one way: bytes in (dump files, directories, OCI layers) -> [`tree::Tree`] ->
//! EROFS image ([`erofs`]) -> object store ([`repo`]) -> mounts ([`mount`]). Shared types live
//! low ([`fsverity`], [`tree`]); policy lives high (`cli`).
//!
//! `unsafe` is denied everywhere except [`sys`], which holds the raw ioctls.

pub mod atomic;
pub mod boot;
pub mod bounded;
pub mod cli;
pub mod deploy;
pub mod dumpfile;
pub mod erofs;
pub mod fsverity;
pub mod image;
pub mod mount;
pub mod oci;
pub mod repo;
pub mod scan;
pub mod setup_root;
pub mod sys;
pub mod tree;
