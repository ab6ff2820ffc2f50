//! What booting needs to know, without policy: what a bootable image carries (kernel,
//! initramfs, kernel arguments), BLS Type 1 boot entries with their boot counters, and the
//! kernel command line. The host that uses them is [`crate::deploy`]; the initramfs side is
//! [`crate::setup_root`]. See docs/boot.md.

pub mod bls;
pub mod cmdline;
pub mod image;
pub mod kargs;

pub use bls::{BootEntry, BootState, EntryName};
pub use image::BootableImage;
