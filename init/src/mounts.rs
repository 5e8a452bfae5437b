//! The virtual file systems every Linux userland expects.

use nix::mount::{MsFlags, mount};

use crate::console::log;

fn fs(source: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    let _ = std::fs::create_dir_all(target);
    if let Err(e) = mount(Some(source), target, Some(fstype), flags, data) {
        // EBUSY: already mounted (the kernel may have mounted devtmpfs).
        if e != nix::errno::Errno::EBUSY {
            log!("mount {fstype} on {target}: {e}");
        }
    }
}

/// /proc, /sys, /dev and friends, /run, /tmp, cgroup2.
pub fn early() {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    fs("proc", "/proc", "proc", nosuid, None);
    fs("sysfs", "/sys", "sysfs", nosuid, None);
    fs(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    );
    fs(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("gid=5,mode=620,ptmxmode=000"),
    );
    fs(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    );
    fs(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    );
    fs(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    );
    fs("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid, None);
}

/// efivarfs, on UEFI machines (after its module is loaded).
pub fn efivars() {
    if std::path::Path::new("/sys/firmware/efi").exists() {
        let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        fs(
            "efivarfs",
            "/sys/firmware/efi/efivars",
            "efivarfs",
            nosuid,
            None,
        );
    }
}
