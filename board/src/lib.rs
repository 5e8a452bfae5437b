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
    /// counting (A/B by `+N-M` entry names).
    SystemdBoot,
    /// Raspberry Pi firmware with `autoboot.txt` and `tryboot`.
    PiTryboot,
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
    /// UEFI: where the firmware looks for the boot loader on the ESP, and
    /// systemd-boot's file name in Debian's `systemd-boot-efi`.
    pub efi_boot_path: &'static str,
    pub systemd_boot_binary: &'static str,
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
    boot: BootMethod::SystemdBoot,
    console: "ttyS0,115200",
    efi_boot_path: "EFI/BOOT/BOOTX64.EFI",
    systemd_boot_binary: "systemd-bootx64.efi",
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

/// Every known board.
pub const BOARDS: &[Board] = &[PC_X86_64];

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
