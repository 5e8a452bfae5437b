//! The hardware watchdog, the power button, and the end: power-off or
//! reboot.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::reboot::{RebootMode, reboot, set_cad_enabled};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::console::log;

#[derive(Debug, Clone, Copy)]
pub enum Action {
    PowerOff,
    Reboot,
    /// A Raspberry Pi reboot into the other slot, once (`reboot "0 tryboot"`:
    /// the firmware takes `autoboot.txt`'s `[tryboot]` section).
    Tryboot,
}

/// ctrl-alt-del sends SIGINT to PID 1 instead of resetting the machine.
pub fn disable_ctrl_alt_del_reboot() {
    let _ = set_cad_enabled(false);
}

/// The last step of an orderly shutdown.
pub fn finish(action: Action) -> ! {
    nix::unistd::sync();
    match action {
        Action::PowerOff => log!("powering off"),
        Action::Reboot => log!("rebooting"),
        Action::Tryboot => log!("rebooting into the other slot once (tryboot)"),
    }
    match action {
        Action::PowerOff => drop(reboot(RebootMode::RB_POWER_OFF)),
        Action::Reboot => drop(reboot(RebootMode::RB_AUTOBOOT)),
        Action::Tryboot => {
            // LINUX_REBOOT_CMD_RESTART2 with an argument the Pi's firmware
            // driver passes on: partition 0 (the selector) and the flag.
            let arg = c"0 tryboot";
            // SAFETY: the reboot syscall with its magic numbers and a
            // NUL-terminated argument; it only returns on failure.
            unsafe {
                libc::syscall(
                    libc::SYS_reboot,
                    libc::LINUX_REBOOT_MAGIC1,
                    libc::LINUX_REBOOT_MAGIC2,
                    libc::LINUX_REBOOT_CMD_RESTART2,
                    arg.as_ptr(),
                );
            }
            let _ = reboot(RebootMode::RB_AUTOBOOT);
        }
    }
    // reboot(2) only returns on error; PID 1 must not exit.
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// After a panic: save what can be saved and start over.
pub fn emergency_reboot() -> ! {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_secs(1));
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// /dev/watchdog: if init stops petting it, the board resets.
pub struct Watchdog {
    file: Option<File>,
}

const WATCHDOG_TIMEOUT_SECS: libc::c_int = 60;

impl Watchdog {
    pub fn open() -> Watchdog {
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/watchdog")
        {
            Ok(f) => f,
            Err(e) => {
                log!("no hardware watchdog ({e})");
                return Watchdog { file: None };
            }
        };
        // WDIOC_SETTIMEOUT = _IOWR('W', 6, int)
        const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;
        let mut timeout = WATCHDOG_TIMEOUT_SECS;
        // SAFETY: the ioctl reads and writes one int.
        unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut timeout) };
        log!("hardware watchdog armed ({timeout} s)");
        Watchdog { file: Some(file) }
    }

    pub fn pet(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.write_all(b"\0");
        }
    }

    /// The magic close: an orderly shutdown must not be cut short.
    pub fn disarm(&mut self) {
        if let Some(mut f) = self.file.take() {
            let _ = f.write_all(b"V");
        }
    }
}

/// Watches input devices named "Power Button" (ACPI; QEMU's
/// system_powerdown) and asks init to power off.
pub fn watch_power_button() {
    let Ok(entries) = std::fs::read_dir("/sys/class/input") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("event") {
            continue;
        }
        let device_name =
            std::fs::read_to_string(entry.path().join("device/name")).unwrap_or_default();
        if !device_name.contains("Power Button") {
            continue;
        }
        let Ok(mut dev) = File::open(format!("/dev/input/{name}")) else {
            continue;
        };
        let _ = std::thread::Builder::new()
            .name("power-button".into())
            .spawn(move || {
                // struct input_event on 64-bit: timeval (16), type u16, code u16, value i32.
                let mut ev = [0u8; 24];
                while dev.read_exact(&mut ev).is_ok() {
                    let kind = u16::from_ne_bytes([ev[16], ev[17]]);
                    let code = u16::from_ne_bytes([ev[18], ev[19]]);
                    let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
                    const EV_KEY: u16 = 1;
                    const KEY_POWER: u16 = 116;
                    if kind == EV_KEY && code == KEY_POWER && value == 1 {
                        log!("power button pressed");
                        let _ = kill(Pid::this(), Signal::SIGUSR2);
                    }
                }
            });
    }
}
