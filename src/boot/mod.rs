//! Booting deployments: what a bootable image carries (kernel, initramfs, kernel arguments),
//! BLS Type 1 boot entries, and installing an image from a repository onto a root filesystem
//! or a whole disk image. The initramfs side is [`crate::setup_root`]. See docs/boot.md.

pub mod bls;
pub mod disk;
pub mod image;
pub mod install;
pub mod kargs;

pub use bls::BootEntry;
pub use image::BootableImage;
pub use install::{InstallOptions, Installed, install_to_root};
