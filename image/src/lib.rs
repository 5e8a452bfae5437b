//! Formats of the boot media, shared by the build (`xtask`) and the device
//! (updates are written with the same code that wrote the first image).
//!
//! - [`cpio`], [`initramfs`]: the root file system archive the kernel unpacks
//! - [`modules`]: kernel module dependencies and coldplug aliases
//! - [`bls`]: Boot Loader Specification entry names with boot counting
//! - [`disk`]: the GPT disk layout (ESP + data) and its growth on first boot
//! - [`bundle`]: the signed update bundle (format, signing, checking)
//! - [`slot`]: installing a bundle into the inactive boot slot, power-cut safe
//! - [`tryboot`]: the Raspberry Pi's A/B boot (`autoboot.txt`, tryboot, commit)
//! - [`update`]: the hand-off of an update from the mta to init, and its status
//!
//! Parts only the build needs (FAT formatting, compression, ELF reading) are
//! behind the `build` feature.

pub mod bls;
pub mod bundle;
pub mod cpio;
pub mod disk;
pub mod fat;
#[cfg(feature = "build")]
pub mod initramfs;
pub mod modules;
pub mod slot;
pub mod tryboot;
pub mod update;
