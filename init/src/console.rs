//! Messages to the console (stamped with the uptime, like the kernel's) and
//! the status banner.

use std::io::Write;

macro_rules! log {
    ($($arg:tt)*) => {
        $crate::console::write_line(&format!($($arg)*))
    };
}
pub(crate) use log;

pub fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|u| u.parse().ok()))
        .unwrap_or(0.0)
}

pub fn write_line(text: &str) {
    let line = format!("[{:>8.3}] mailbox: {text}\n", uptime());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Makes fds 0-2 the console, in case the kernel could not open it before
/// devtmpfs was mounted.
pub fn reopen() {
    use std::os::fd::AsRawFd;
    let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        unsafe {
            libc::dup2(console.as_raw_fd(), fd);
        }
    }
}

/// The status block: version, addresses and what to connect to; while the
/// appliance has no owner, where to set it up and the setup code.
pub fn banner(version: &str, addresses: &[String], slot: Option<&str>, setup_code: Option<&str>) {
    let rule = "=".repeat(60);
    let mut lines = vec![rule.clone()];
    lines.push(format!(
        "  Mailbox {version} (boot slot {})",
        slot.unwrap_or("?")
    ));
    if addresses.is_empty() {
        lines.push("  no network address yet".into());
    }
    for a in addresses {
        lines.push(format!("  address: {a}"));
        lines.push(format!("  mail:    SMTP on {a}:25"));
    }
    lines.push("  name:    mailbox.local (mDNS)".into());
    if let Some(code) = setup_code {
        lines.push(String::new());
        lines.push("  Set up this Mailbox in a web browser:".into());
        for a in addresses {
            lines.push(format!("    http://{a}/"));
        }
        lines.push("    http://mailbox.local/".into());
        lines.push(format!("  setup code: {code}"));
    }
    lines.push(rule);
    let text = lines.join("\n") + "\n";
    let _ = std::io::stderr().write_all(text.as_bytes());
}
