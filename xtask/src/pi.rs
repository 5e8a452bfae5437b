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
    // The three FATs, read once (each is checked, then handed to fsck.fat).
    let fats = [part(0)?, part(1)?, part(2)?];
    let selector = &fats[0];
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
    let a = &fats[1];
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
    // What init needs from the initramfs: itself, the server, and the
    // module that asks the firmware for a tryboot.
    let archive = zstd::decode_all(&initrd[..]).context("initrd.zst does not decompress")?;
    for path in [
        "init",
        "bin/mta",
        image::tryboot::MODULE.trim_start_matches('/'),
    ] {
        let mut name = path.as_bytes().to_vec();
        name.push(0);
        ensure!(
            archive.windows(name.len()).any(|w| w == name),
            "the initramfs has no /{path}"
        );
    }
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
    let b = &fats[2];
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
    for (n, fat) in fats.iter().enumerate() {
        let file = dir.path().join(format!("p{}.fat", n + 1));
        std::fs::write(&file, fat)?;
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

/// Builds the small kernel module (`board/rpi/mailbox_tryboot.c`) that
/// asks the Pi firmware for a tryboot at the next reboot — what the
/// Raspberry Pi kernel does for `reboot "0 tryboot"` and Debian's does not —
/// against the kernel package's headers, with Debian's cross gcc (the one
/// the kernel was built with) and the host's kbuild tools; returns the
/// module, stripped of debug information.
pub fn tryboot_module(
    archive: &crate::debs::Archive,
    kernel_version: &str,
) -> anyhow::Result<Vec<u8>> {
    let (base, _flavour) = kernel_version
        .rsplit_once('-')
        .with_context(|| format!("kernel version {kernel_version}"))?;
    let series: Vec<&str> = kernel_version.split('.').take(2).collect();
    let kbuild = format!("linux-kbuild-{}", series.join("."));
    let root = crate::root().join(format!("target/cache/kbuild-{kernel_version}"));
    if !root.join(".complete").exists() {
        let debs = vec![
            archive.deb(&format!("linux-headers-{kernel_version}"))?,
            archive.deb(&format!("linux-headers-{base}-common"))?,
            // Its programs (fixdep, modpost) run here.
            crate::debs::Archive::host().deb(&kbuild)?,
        ];
        crate::debs::unpack(&debs, &root)?;
    }
    let headers = root.join(format!("usr/src/linux-headers-{kernel_version}"));
    // The flavour's Makefile includes the common one by its installed path.
    let common = root.join(format!("usr/src/linux-headers-{base}-common/Makefile"));
    std::fs::write(
        headers.join("Makefile"),
        format!(
            "include {}
",
            common.display()
        ),
    )?;
    let work = tempfile::tempdir_in(crate::root().join("target"))?;
    for file in ["mailbox_tryboot.c", "Kbuild"] {
        std::fs::copy(
            crate::root().join("board/rpi").join(file),
            work.path().join(file),
        )?;
    }
    crate::check(
        std::process::Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(&headers)
            .arg(format!("M={}", work.path().display()))
            .args(["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"])
            // No BTF: it needs the kernel's vmlinux, which Debian does not ship.
            .args(["CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"]),
    )?;
    let module = work.path().join("mailbox_tryboot.ko");
    crate::check(
        std::process::Command::new(crate::tools::strip_program(crate::ARM_TARGET))
            .arg("--strip-debug")
            .arg(&module),
    )?;
    let bytes = std::fs::read(&module)?;
    ensure!(
        bytes
            .windows(kernel_version.len())
            .any(|w| w == kernel_version.as_bytes()),
        "the tryboot module was not built for {kernel_version}"
    );
    Ok(bytes)
}

/// QEMU cannot emulate a Pi 4, nor the firmware's tryboot; its Pi 3
/// (`-M raspi3b`) has the same firmware mailbox. Boots Debian's arm64
/// kernel there with a two-file initramfs (a static program that loads
/// the module, and the module) and checks that the kernel takes the module
/// and that the module's request reached the firmware with the tryboot
/// tag (QEMU's firmware logs it as one it does not implement).
pub fn module_reaches_the_firmware() -> anyhow::Result<()> {
    let (archive, kernel_root, kernel_version) = crate::debs::kernel(&board::RPI4)?;
    let module = tryboot_module(&archive, &kernel_version)?;
    let dir = tempfile::tempdir_in(crate::root().join("target"))?;
    const LOADER: &str = r#"
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
int main(void) {
    int fd = open("/mailbox_tryboot.ko", O_RDONLY);
    long r = syscall(SYS_finit_module, fd, "", 0);
    printf("loader: finit_module %s\n", r == 0 ? "ok" : strerror(errno));
    fflush(stdout);
    reboot(RB_POWER_OFF);
    return 0;
}
"#;
    let loader = dir.path().join("init");
    let mut cc = std::process::Command::new("aarch64-linux-gnu-gcc");
    cc.args(["-static", "-O2", "-x", "c", "-o"])
        .arg(&loader)
        .arg("-")
        .stdin(std::process::Stdio::piped());
    let mut child = cc.spawn().context("aarch64-linux-gnu-gcc")?;
    std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, LOADER.as_bytes())?;
    ensure!(child.wait()?.success(), "the loader did not compile");
    let mut rootfs = image::initramfs::Initramfs::new();
    rootfs.file("/init", 0o755, std::fs::read(&loader)?);
    rootfs.file("/mailbox_tryboot.ko", 0o644, module);
    let initrd = dir.path().join("initrd.zst");
    std::fs::write(&initrd, rootfs.compressed(3)?)?;
    let console = dir.path().join("console.txt");
    let unimplemented = dir.path().join("unimplemented.txt");
    // The Pi 3 cannot power off (it halts): QEMU is stopped once the
    // loader has said what happened, or after three minutes.
    let mut qemu = std::process::Command::new("qemu-system-aarch64")
        .args(["-M", "raspi3b", "-m", "1G", "-kernel"])
        .arg(kernel_root.join(format!("boot/vmlinuz-{kernel_version}")))
        .arg("-dtb")
        .arg(kernel_root.join(format!(
            "usr/lib/linux-image-{kernel_version}/broadcom/bcm2837-rpi-3-b.dtb"
        )))
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyAMA0,115200 rdinit=/init panic=-1"])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-serial",
        ])
        .arg(format!("file:{}", console.display()))
        .args(["-d", "unimp", "-D"])
        .arg(&unimplemented)
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("qemu-system-aarch64")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let status = loop {
        let said = std::fs::read(&console).unwrap_or_default();
        if said.windows(19).any(|w| w == b"loader: finit_modul") {
            // Its last lines reach the file a moment later.
            std::thread::sleep(std::time::Duration::from_millis(500));
            break "stopped after the loader spoke".to_string();
        }
        if let Some(status) = qemu.try_wait()? {
            break format!("exited: {status}");
        }
        if std::time::Instant::now() > deadline {
            break "stopped after 180 s".to_string();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    let said = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).to_string();
    let tail: Vec<&str> = said.lines().rev().take(15).collect();
    ensure!(
        said.contains("loader: finit_module ok")
            && said.contains("mailbox_tryboot: the next reboot is a tryboot"),
        "the kernel did not take the tryboot module (QEMU {status}):\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    let asked = std::fs::read_to_string(&unimplemented).unwrap_or_default();
    ensure!(
        asked.contains("unhandled tag 0x00038064"),
        "the firmware was not sent the tryboot tag 0x00038064"
    );
    println!(
        "rpi4: the tryboot module loads into Debian's {kernel_version} kernel and reaches the firmware mailbox (QEMU raspi3b)"
    );
    Ok(())
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
            initrd: {
                let mut rootfs = image::initramfs::Initramfs::new();
                for path in ["/init", "/bin/mta", image::tryboot::MODULE] {
                    rootfs.file(path, 0o755, vec![1u8; 100]);
                }
                rootfs.compressed(3)?
            },
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
