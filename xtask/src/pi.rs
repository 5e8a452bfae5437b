//! Checks of a built Raspberry Pi image, made by opening the image file
//! (no loop devices, no mounts): the MBR, `autoboot.txt`, `config.txt`,
//! `cmdline.txt`, and every firmware, device tree, kernel and initramfs
//! file where the Pi's boot ROM and firmware will look for it. The build
//! runs them on every image it writes, so a Pi image that would not boot
//! for a reason visible in the file is never handed out.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, bail, ensure};
use image::disk::{PI_PARTITIONS, fat_label, fat_list, fat_read};
use image::tryboot::{AUTOBOOT, CMDLINE, CONFIG, SELECTOR_LABEL, committed, slot_label};

/// Opens the image at `path` and checks what a Pi needs to boot it;
/// returns how many files slot A holds.
pub fn check_image(path: &Path, pi: &board::PiFirmware) -> anyhow::Result<usize> {
    let layout = image::disk::read_pi_layout(path)
        .with_context(|| format!("{}: partition table", path.display()))?;
    let size = std::fs::metadata(path)?.len();
    let part = |n: usize| -> anyhow::Result<Vec<u8>> {
        let (offset, len) = layout.parts[n];
        ensure!(
            offset + len <= size,
            "partition {} ends after the image",
            n + 1
        );
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::new();
        f.take(len).read_to_end(&mut out)?;
        Ok(out)
    };
    // The partition types: FAT32 (LBA) for the three boot partitions,
    // Linux for the data.
    ensure!(
        layout.types == PI_PARTITIONS,
        "partition types {:02x?}, expected {PI_PARTITIONS:02x?}",
        layout.types
    );
    for (n, (offset, len)) in layout.parts.iter().enumerate() {
        ensure!(
            offset % (1 << 20) == 0 && *len > 0,
            "partition {} at {offset} ({len} bytes) is not on a 1 MiB boundary",
            n + 1
        );
    }

    // p1: the boot selector.
    let selector = &part(0)?;
    ensure!(
        fat_label(selector)? == SELECTOR_LABEL,
        "partition 1 is labelled {:?}",
        fat_label(selector)?
    );
    let autoboot = String::from_utf8(fat_read(selector, AUTOBOOT)?)?;
    ensure!(
        autoboot.lines().any(|l| l.trim() == "tryboot_a_b=1"),
        "autoboot.txt does not turn on tryboot_a_b:\n{autoboot}"
    );
    ensure!(
        committed(&autoboot) == Some("a"),
        "autoboot.txt does not boot slot a (partition 2):\n{autoboot}"
    );
    ensure!(
        autoboot.contains("[tryboot]\nboot_partition=3"),
        "autoboot.txt does not try slot b (partition 3):\n{autoboot}"
    );

    // p2: slot A, everything the firmware loads.
    let a = &part(1)?;
    ensure!(fat_label(a)? == slot_label("a").unwrap_or_default());
    let config = String::from_utf8(fat_read(a, CONFIG)?)?;
    for line in [
        "arm_64bit=1",
        "enable_uart=1",
        "upstream_kernel=1",
        "kernel=vmlinuz",
        "initramfs initrd.zst followkernel",
    ] {
        ensure!(
            config.lines().any(|l| l.trim() == line),
            "config.txt lacks {line:?}:\n{config}"
        );
    }
    let cmdline = String::from_utf8(fat_read(a, CMDLINE)?)?;
    ensure!(
        cmdline.trim_end().lines().count() == 1,
        "cmdline.txt must be one line:\n{cmdline}"
    );
    for word in ["mailbox.slot=a", "panic=10", "console=ttyS1,115200"] {
        ensure!(
            cmdline.split_whitespace().any(|w| w == word),
            "cmdline.txt lacks {word}: {cmdline}"
        );
    }
    let kernel = fat_read(a, "vmlinuz")?;
    // The arm64 Image header: "ARM\x64" at 0x38.
    ensure!(
        kernel.get(0x38..0x3c) == Some(b"ARM\x64"),
        "vmlinuz is not an arm64 kernel Image"
    );
    let initrd = fat_read(a, "initrd.zst")?;
    ensure!(
        initrd.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "initrd.zst is not zstd"
    );
    for dtb in pi.dtbs {
        let bytes = fat_read(a, dtb).with_context(|| format!("slot a has no {dtb}"))?;
        ensure!(
            bytes.starts_with(&[0xd0, 0x0d, 0xfe, 0xed]),
            "{dtb} is not a device tree blob"
        );
    }
    for file in pi.files {
        let bytes = fat_read(a, file).with_context(|| format!("slot a has no {file}"))?;
        ensure!(bytes.len() > 1024, "{file} is only {} bytes", bytes.len());
    }
    let files_in_slot_a = fat_list(a, "/")?.len();

    // p3: slot B, empty until the first update.
    let b = &part(2)?;
    ensure!(fat_label(b)? == slot_label("b").unwrap_or_default());
    let in_b = fat_list(b, "/")?;
    ensure!(in_b.is_empty(), "slot b is not empty: {in_b:?}");

    // p4: the data partition's ext4 and its label.
    let data = {
        let (offset, _) = layout.parts[3];
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut head = vec![0u8; 2048];
        f.read_exact(&mut head)?;
        head
    };
    if image::disk::fs_label(&data).as_deref() != Some(image::disk::DATA_NAME) {
        bail!(
            "partition 4 is not the ext4 file system {}",
            image::disk::DATA_NAME
        );
    }
    // Each FAT as dosfstools sees it.
    let dir = tempfile::tempdir()?;
    for n in 0..3 {
        let file = dir.path().join(format!("p{}.fat", n + 1));
        std::fs::write(&file, part(n)?)?;
        let out = std::process::Command::new("fsck.fat")
            .arg("-n")
            .arg(&file)
            .output()
            .context("fsck.fat (dosfstools)")?;
        ensure!(
            out.status.success(),
            "fsck.fat -n on partition {}:\n{}",
            n + 1,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(files_in_slot_a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::SlotFiles;

    const PI: board::PiFirmware = match board::RPI4.boot {
        board::BootMethod::PiTryboot(pi) => pi,
        _ => panic!("rpi4 boots with tryboot"),
    };

    /// A Pi image as the build writes it, with small stand-ins for the
    /// kernel, initramfs, firmware and device trees; `change` alters slot
    /// A's files first.
    fn image(change: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> anyhow::Result<usize> {
        let mut kernel = vec![0u8; 4096];
        kernel[0x38..0x3c].copy_from_slice(b"ARM\x64");
        let mut firmware: Vec<(String, Vec<u8>)> = PI
            .files
            .iter()
            .map(|f| (f.to_string(), vec![7u8; 4096]))
            .collect();
        for dtb in PI.dtbs {
            firmware.push((dtb.to_string(), vec![0xd0, 0x0d, 0xfe, 0xed, 0, 0]));
        }
        firmware.push((
            CONFIG.into(),
            format!(
                "{}kernel=vmlinuz\ninitramfs initrd.zst followkernel\n",
                PI.config
            )
            .into_bytes(),
        ));
        change(&mut firmware);
        let slot = SlotFiles {
            vmlinuz: kernel,
            initrd: vec![0x28, 0xb5, 0x2f, 0xfd, 0],
            firmware,
            entry_template: "console=tty0 console=ttyS1,115200 panic=10 mailbox.slot=@SLOT@\n"
                .into(),
        };
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data.ext4");
        crate::check(
            std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F", "-L", image::disk::DATA_NAME])
                .arg(&data)
                .arg("8M"),
        )?;
        let img = dir.path().join("pi.img");
        image::disk::write_pi_image(&img, &crate::image::pi_partitions(&slot)?, &data)?;
        check_image(&img, &PI)
    }

    #[test]
    fn a_whole_pi_image_passes_and_a_missing_or_wrong_file_is_named() {
        assert_eq!(image(|_| {}).unwrap(), 9);
        let err = image(|f| f.retain(|(n, _)| n != "bcm2711-rpi-400.dtb")).unwrap_err();
        assert!(
            format!("{err:#}").contains("bcm2711-rpi-400.dtb"),
            "{err:#}"
        );
        let err = image(|f| f.retain(|(n, _)| n != "start4.elf")).unwrap_err();
        assert!(format!("{err:#}").contains("start4.elf"), "{err:#}");
        let err = image(|f| {
            for (n, bytes) in f.iter_mut() {
                if n == CONFIG {
                    *bytes = b"kernel=vmlinuz\n".to_vec();
                }
            }
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("arm_64bit=1"), "{err:#}");
    }
}
