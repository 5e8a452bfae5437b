//! Formats of the boot media, shared by the build (`xtask`) and the device
//! (updates are written with the same code that wrote the first image).
//!
//! So far: the initramfs archive (cpio "newc"). Partition tables, FAT and
//! the boot-slot layout come with the image build.

pub mod cpio;
