//! Board definitions: everything that differs between the machines Mailbox
//! runs on, as data. Adding a board means adding a definition here, not
//! editing the build.
//!
//! This crate only describes boards; `xtask` builds images from the
//! descriptions and `init` reads nothing from here at run time.

/// How the firmware finds and chooses a boot slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMethod {
    /// UEFI + systemd-boot with Boot Loader Specification entries and boot
    /// counting (A/B by `+N-M` entry names); a GPT with the ESP.
    SystemdBoot {
        /// Where the firmware looks for the boot loader on the ESP.
        efi_boot_path: &'static str,
        /// systemd-boot's file name in Debian's `systemd-boot-efi`.
        binary: &'static str,
    },
    /// Raspberry Pi firmware with `autoboot.txt` and `tryboot`; an MBR
    /// with the boot selector, two slot partitions and the data.
    PiTryboot(PiFirmware),
}

/// What a Raspberry Pi slot carries besides kernel and initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiFirmware {
    /// Debian package (in `non-free-firmware`) with the firmware files,
    /// under `usr/lib/raspi-firmware`.
    pub package: &'static str,
    /// The firmware files this board's boot ROM / EEPROM loads.
    pub files: &'static [&'static str],
    /// Device trees from the kernel package (`usr/lib/linux-image-*/broadcom`):
    /// one per model the board covers; the firmware picks its own.
    pub dtbs: &'static [&'static str],
    /// `config.txt` (the firmware's settings) before the kernel and
    /// initramfs lines.
    pub config: &'static str,
}

/// One kind of machine.
#[derive(Debug, Clone)]
pub struct Board {
    /// Name used on the command line (`--board`).
    pub name: &'static str,
    /// Debian architecture name.
    pub debian_arch: &'static str,
    /// Rust target the userland is built for (static musl).
    pub rust_target: &'static str,
    /// Debian kernel package.
    pub kernel_package: &'static str,
    /// Drivers the image carries for hardware the board may have; they
    /// load by coldplug when the device is present.
    pub modules: &'static [&'static str],
    /// Modules no device asks for (file systems, crypto the file systems
    /// request at mount, input handlers): also carried, and loaded by init
    /// at boot. Dependencies of both lists are added by the image build.
    pub boot_modules: &'static [&'static str],
    pub boot: BootMethod,
    /// Kernel console argument.
    pub console: &'static str,
    /// How the board can be emulated, if it can.
    pub qemu: Option<Qemu>,
}

/// Emulating a board in QEMU.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub program: &'static str,
    /// Debian packages providing the emulator and firmware.
    pub packages: &'static [&'static str],
    pub machine: &'static [&'static str],
    /// UEFI firmware code and variable-store template (copied per VM).
    pub firmware_code: &'static str,
    pub firmware_vars: &'static str,
    /// Devices besides disk and network: entropy and the watchdog.
    pub devices: &'static [&'static str],
}

pub const PC_X86_64: Board = Board {
    name: "pc-x86_64",
    debian_arch: "amd64",
    rust_target: "x86_64-unknown-linux-musl",
    kernel_package: "linux-image-amd64",
    modules: &[
        "virtio_pci",
        "virtio_blk",
        "virtio_net",
        "virtio_rng",
        "ahci",
        "nvme",
        "usb_storage",
        "uas",
        "xhci_pci",
        "e1000",
        "e1000e",
        "igb",
        "r8169",
        "i6300esb",
        "iTCO_wdt",
        "button",
    ],
    boot_modules: &[
        "crc32c_intel",
        "crc32c_generic",
        "ext4",
        "vfat",
        "nls_cp437",
        "nls_ascii",
        "efivarfs",
        "evdev",
    ],
    boot: BootMethod::SystemdBoot {
        efi_boot_path: "EFI/BOOT/BOOTX64.EFI",
        binary: "systemd-bootx64.efi",
    },
    console: "ttyS0,115200",
    qemu: Some(Qemu {
        program: "qemu-system-x86_64",
        packages: &["qemu-system-x86", "ovmf"],
        // -nodefaults: no emulated CD-ROM, VGA or parallel port to probe.
        machine: &["-nodefaults", "-machine", "q35", "-m", "512", "-smp", "2"],
        firmware_code: "/usr/share/OVMF/OVMF_CODE_4M.fd",
        firmware_vars: "/usr/share/OVMF/OVMF_VARS_4M.fd",
        devices: &["-device", "virtio-rng-pci", "-device", "i6300esb"],
    }),
};

/// Any 64-bit ARM machine with UEFI firmware (servers, some single-board
/// computers with EDK2 or U-Boot's UEFI, and QEMU's `virt` machine with
/// AAVMF), booting like `pc-x86_64`.
pub const EFI_ARM64: Board = Board {
    name: "efi-arm64",
    debian_arch: "arm64",
    rust_target: "aarch64-unknown-linux-musl",
    kernel_package: "linux-image-arm64",
    modules: &[
        "virtio_pci",
        "virtio_mmio",
        "virtio_blk",
        "virtio_net",
        "virtio_rng",
        "ahci",
        "nvme",
        "usb_storage",
        "uas",
        "xhci_pci",
        "igb",
        "r8169",
        "i6300esb",
        "sbsa_gwdt",
    ],
    boot_modules: &[
        "crc32c_generic",
        "ext4",
        "vfat",
        "nls_cp437",
        "nls_ascii",
        "efivarfs",
        "evdev",
    ],
    boot: BootMethod::SystemdBoot {
        efi_boot_path: "EFI/BOOT/BOOTAA64.EFI",
        binary: "systemd-bootaa64.efi",
    },
    console: "ttyAMA0,115200",
    qemu: Some(Qemu {
        program: "qemu-system-aarch64",
        packages: &["qemu-system-arm", "qemu-efi-aarch64"],
        // The Pi 4's core; `max` would emulate pointer authentication,
        // which costs much under TCG.
        machine: &[
            "-nodefaults",
            "-machine",
            "virt",
            "-cpu",
            "cortex-a72",
            "-m",
            "512",
            "-smp",
            "2",
        ],
        firmware_code: "/usr/share/AAVMF/AAVMF_CODE.fd",
        firmware_vars: "/usr/share/AAVMF/AAVMF_VARS.fd",
        devices: &["-device", "virtio-rng-pci", "-device", "i6300esb"],
    }),
};

/// Raspberry Pi 4 Model B, Pi 400 and Compute Module 4, with Debian's
/// arm64 kernel (upstream device trees) and the Pi firmware's tryboot A/B.
/// The Pi 5 is not a board yet: Debian's kernel (6.1) has no device tree
/// or drivers for its BCM2712.
pub const RPI4: Board = Board {
    name: "rpi4",
    debian_arch: "arm64",
    rust_target: "aarch64-unknown-linux-musl",
    kernel_package: "linux-image-arm64",
    modules: &[
        // SD card / eMMC (the card's own block driver is built in).
        "sdhci_iproc",
        "bcm2835",
        // Gigabit Ethernet and its PHY.
        "genet",
        "broadcom",
        // USB 3 (VL805 behind PCIe) and USB 2 (CM4), USB disks.
        "xhci_pci",
        "dwc2",
        "usb_storage",
        "uas",
        // Watchdog and hardware random numbers.
        "bcm2835_wdt",
        "iproc_rng200",
        "bcm2835_rng",
        "reset_raspberrypi",
        "raspberrypi_cpufreq",
        "bcm2711_thermal",
    ],
    boot_modules: &[
        "crc32c_generic",
        "ext4",
        "vfat",
        "nls_cp437",
        "nls_ascii",
        "evdev",
    ],
    boot: BootMethod::PiTryboot(PiFirmware {
        package: "raspi-firmware",
        files: &["start4.elf", "fixup4.dat"],
        dtbs: &[
            "bcm2711-rpi-4-b.dtb",
            "bcm2711-rpi-400.dtb",
            "bcm2711-rpi-cm4-io.dtb",
        ],
        // As Debian's raspi-firmware writes it for arm64: 64-bit kernel,
        // the serial console on the header, upstream device trees.
        config: "arm_64bit=1\nenable_uart=1\nupstream_kernel=1\ndisable_overscan=1\n",
    }),
    // The mini UART on the 40-pin header (GPIO 14/15) with upstream trees.
    console: "ttyS1,115200",
    qemu: None,
};

/// Every known board.
pub const BOARDS: &[Board] = &[PC_X86_64, EFI_ARM64, RPI4];

/// Looks a board up by name.
pub fn by_name(name: &str) -> Option<&'static Board> {
    BOARDS.iter().find(|b| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boards_are_found_by_name_and_names_are_unique() {
        assert_eq!(
            by_name("pc-x86_64").unwrap().rust_target,
            "x86_64-unknown-linux-musl"
        );
        assert!(by_name("toaster").is_none());
        let mut names: Vec<_> = BOARDS.iter().map(|b| b.name).collect();
        names.dedup();
        assert_eq!(names.len(), BOARDS.len());
    }
}
