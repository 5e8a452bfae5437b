//! The data partition: found by its GPT name (or, on a Pi's MBR, its file
//! system label), grown to fill the disk on first boot (partition entry,
//! then an online ext4 resize), mounted at /data. And the boot partitions
//! (the ESP; a Pi's selector and slots), mounted only while they change.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::console::log;
use crate::kmod::Loader;

/// A block device partition as sysfs shows it.
#[derive(Debug, Clone)]
pub struct Partition {
    /// `/dev/vda2`
    pub device: PathBuf,
    /// `/dev/vda`
    pub disk: PathBuf,
}

/// Finds a partition by its GPT name or file system label, waiting for
/// drivers to show it.
pub fn find_partition(name: &str, wait: Duration) -> Option<Partition> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(p) = scan(name) {
            return Some(p);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn scan(name: &str) -> Option<Partition> {
    for entry in std::fs::read_dir("/sys/class/block").ok()?.flatten() {
        let uevent = std::fs::read_to_string(entry.path().join("uevent")).unwrap_or_default();
        let field = |key: &str| {
            uevent
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(str::to_string)
        };
        if field("DEVTYPE").as_deref() != Some("partition") {
            continue;
        }
        let Some(devname) = field("DEVNAME") else {
            continue;
        };
        if field("PARTNAME").as_deref() != Some(name) && label(&devname).as_deref() != Some(name) {
            continue;
        }
        // The parent directory in sysfs is the whole disk.
        let real = std::fs::canonicalize(entry.path()).ok()?;
        let disk = real.parent()?.file_name()?.to_string_lossy().to_string();
        return Some(Partition {
            device: Path::new("/dev").join(devname),
            disk: Path::new("/dev").join(disk),
        });
    }
    None
}

/// The label of the file system on `/dev/<devname>` (MBR partitions have
/// no names).
fn label(devname: &str) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 2048];
    File::open(Path::new("/dev").join(devname))
        .ok()?
        .read_exact(&mut head)
        .ok()?;
    image::disk::fs_label(&head)
}

/// Mounts the data partition at /data, growing it first if the disk has
/// room. Returns `None` (and says why) when there is no usable partition.
pub fn mount_data(modules: &Loader) -> Option<Partition> {
    let mut part = find_partition(image::disk::DATA_NAME, Duration::from_secs(5));
    if part.is_none() {
        // Late devices (USB storage) may need another coldplug round.
        modules.coldplug();
        part = find_partition(image::disk::DATA_NAME, Duration::from_secs(15));
    }
    let Some(part) = part else {
        log!("no partition named {} found", image::disk::DATA_NAME);
        return None;
    };
    let grown = grow_partition(&part);
    let _ = std::fs::create_dir_all(crate::DATA);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME;
    if let Err(e) = mount(
        Some(&part.device),
        crate::DATA,
        Some("ext4"),
        flags,
        None::<&str>,
    ) {
        log!(
            "cannot mount {} on {}: {e}",
            part.device.display(),
            crate::DATA
        );
        return None;
    }
    if let Some(bytes) = grown {
        resize_fs(bytes);
    }
    let marker = Path::new(crate::DATA).join(".mailbox");
    if marker.exists() {
        let created = std::fs::read_to_string(&marker).unwrap_or_default();
        log!(
            "data partition {} reused (created {}); {}",
            part.device.display(),
            created.trim(),
            space(crate::DATA)
        );
    } else {
        let now = crate::clock::now_secs();
        let _ = crate::supervise::write_synced(&marker, format!("{now}\n").as_bytes());
        log!(
            "data partition {} is new (first boot); {}",
            part.device.display(),
            space(crate::DATA)
        );
    }
    Some(part)
}

fn space(path: &str) -> String {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let total = s.blocks() * s.fragment_size();
            let free = s.blocks_available() * s.fragment_size();
            format!("{} MiB, {} MiB free", total >> 20, free >> 20)
        }
        Err(_) => "size unknown".into(),
    }
}

/// Grows the partition entry and tells the kernel; returns the new size in
/// bytes when it grew.
fn grow_partition(part: &Partition) -> Option<u64> {
    let disk = match File::options().read(true).write(true).open(&part.disk) {
        Ok(f) => f,
        Err(e) => {
            log!("cannot open {} to check its size: {e}", part.disk.display());
            return None;
        }
    };
    let grown = match image::disk::grow_data_partition(disk) {
        Ok(Some(g)) => g,
        Ok(None) => return None,
        Err(e) => {
            log!("cannot grow the data partition: {e}");
            return None;
        }
    };
    let reopened = File::options()
        .read(true)
        .write(true)
        .open(&part.disk)
        .ok()?;
    // BLKPG_RESIZE_PARTITION: the kernel's view of the partition changes
    // without re-reading the whole table (which fails while in use).
    #[repr(C)]
    struct BlkpgPartition {
        start: i64,
        length: i64,
        pno: libc::c_int,
        devname: [libc::c_char; 64],
        volname: [libc::c_char; 64],
    }
    #[repr(C)]
    struct BlkpgIoctlArg {
        op: libc::c_int,
        flags: libc::c_int,
        datalen: libc::c_int,
        data: *mut libc::c_void,
    }
    let mut p = BlkpgPartition {
        start: grown.start_bytes as i64,
        length: grown.new_len_bytes as i64,
        pno: grown.number as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: 3, // BLKPG_RESIZE_PARTITION
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut p as *mut BlkpgPartition).cast(),
    };
    const BLKPG: libc::c_ulong = 0x1269;
    // SAFETY: BLKPG with a properly laid out blkpg_ioctl_arg on an open disk.
    let rc = unsafe { libc::ioctl(reopened.as_raw_fd(), BLKPG as _, &mut arg) };
    if rc != 0 {
        log!(
            "the kernel refused the grown partition: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    log!(
        "data partition grown from {} MiB to {} MiB",
        grown.old_len_bytes >> 20,
        grown.new_len_bytes >> 20
    );
    Some(grown.new_len_bytes)
}

/// Online ext4 resize to `bytes` (EXT4_IOC_RESIZE_FS).
fn resize_fs(bytes: u64) {
    let Ok(dir) = File::open(crate::DATA) else {
        return;
    };
    let block = nix::sys::statvfs::statvfs(crate::DATA)
        .map(|s| s.block_size())
        .unwrap_or(4096);
    let blocks: u64 = bytes / block;
    const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;
    // SAFETY: the ioctl takes a pointer to the new block count (u64).
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS as _, &blocks) };
    if rc != 0 {
        log!(
            "online resize of {} failed: {}",
            crate::DATA,
            std::io::Error::last_os_error()
        );
    } else {
        log!(
            "file system on {} resized to {} MiB",
            crate::DATA,
            bytes >> 20
        );
    }
}

/// Mounts the ESP at /boot (read-write) for a short change.
pub fn mount_esp() -> Option<PathBuf> {
    mount_boot(image::disk::ESP_NAME)
}

/// Mounts the FAT boot partition named (or labelled) `name` at /boot
/// (read-write) for a short change, after checking it.
pub fn mount_boot(name: &str) -> Option<PathBuf> {
    let Some(part) = find_partition(name, Duration::from_secs(2)) else {
        log!("no boot partition {name} found");
        return None;
    };
    check_esp(&part.device);
    let _ = std::fs::create_dir_all("/boot");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(
        Some(&part.device),
        "/boot",
        Some("vfat"),
        flags,
        Some("umask=0077"),
    ) {
        Ok(()) => Some(PathBuf::from("/boot")),
        Err(e) => {
            log!("cannot mount {name} ({}): {e}", part.device.display());
            None
        }
    }
}

/// Puts right what an unclean shutdown left on the ESP (FAT has no
/// journal; a power cut while it was mounted leaves it marked dirty, its
/// free count stale, perhaps clusters of a file cut off), as fsck.fat
/// would, before it is mounted.
fn check_esp(device: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    // O_EXCL on a block device: refused while it is mounted (an unmount
    // that failed), so nothing is written behind the kernel's back.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(device);
    let result = file.map_err(image::fat::FatError::from).and_then(|mut f| {
        let report = image::fat::check(&mut f, true)?;
        f.sync_all()?;
        Ok(report)
    });
    match result {
        Ok(report) if report.found() => log!(
            "ESP {} put right before mounting: {}",
            device.display(),
            report.describe()
        ),
        Ok(_) => {}
        Err(e) => log!("ESP {}: not checked: {e}", device.display()),
    }
}

pub fn unmount(path: &str) {
    nix::unistd::sync();
    if let Err(e) = umount2(path, MntFlags::empty()) {
        log!("unmounting {path}: {e}");
        let _ = mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
    }
}

/// Unmounts the persistent file systems before power-off.
pub fn unmount_all() {
    nix::unistd::sync();
    for path in ["/boot", crate::DATA] {
        if is_mounted(path) {
            unmount(path);
            if !is_mounted(path) {
                log!("{path} unmounted cleanly");
            }
        }
    }
}

fn is_mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(path))
}
