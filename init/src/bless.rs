//! Blessing the boot, as `systemd-bless-boot` does: once the appliance is
//! healthy, the boot entry systemd-boot is counting down is renamed without
//! its `+LEFT-DONE` counter, so this slot is the default from now on. On a
//! Raspberry Pi, a trial (a `tryboot`) is committed instead: `autoboot.txt`
//! names this slot from now on (`image::tryboot`).

use std::path::{Path, PathBuf};

use image::tryboot::{Booted, MountedDir, SELECTOR_LABEL};

use crate::console::log;

const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The entry being counted (`LoaderBootCountPath`, set by systemd-boot), as
/// a path relative to the ESP.
pub fn counted_entry() -> Option<PathBuf> {
    let var = format!("/sys/firmware/efi/efivars/LoaderBootCountPath-{LOADER_GUID}");
    let raw = std::fs::read(var).ok()?;
    // 4 bytes of attributes, then a NUL-terminated UTF-16LE string.
    let units: Vec<u16> = raw
        .get(4..)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let text = String::from_utf16(&units).ok()?;
    Some(PathBuf::from(
        text.replace('\\', "/").trim_start_matches('/'),
    ))
}

/// What the Raspberry Pi firmware says of this boot (`None`: not a Pi).
pub fn pi_boot() -> Option<Booted> {
    image::tryboot::booted(Path::new("/proc/device-tree"))
}

/// Whether this boot is a trial: systemd-boot counting its tries, or the
/// Pi firmware's tryboot.
pub fn is_trial() -> bool {
    match pi_boot() {
        Some(pi) => pi.trial,
        None => counted_entry().is_some(),
    }
}

/// Blesses the boot, and says it is committed.
pub fn bless_boot() {
    if bless() {
        let _ = std::fs::write(crate::COMMITTED, b"committed\n");
    }
}

/// Whether the boot is committed now.
fn bless() -> bool {
    if let Some(pi) = pi_boot() {
        return commit_tryboot(pi);
    }
    let Some(entry) = counted_entry() else {
        log!("boot entry needs no blessing (no boot counting in progress)");
        return true;
    };
    let Some(file_name) = entry.file_name().map(|f| f.to_string_lossy().to_string()) else {
        return false;
    };
    let Some(blessed) = image::bls::blessed(&file_name) else {
        log!("boot entry {file_name} has no counter");
        return true;
    };
    let Some(esp) = crate::storage::mount_esp() else {
        return false;
    };
    let from = esp.join(&entry);
    let to = from.with_file_name(&blessed);
    let done = match std::fs::rename(&from, &to) {
        Ok(()) => {
            if let Some(dir) = to.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            log!("boot blessed: {file_name} is now {blessed}");
            true
        }
        Err(e) => {
            log!("cannot bless {}: {e}", from.display());
            false
        }
    };
    crate::storage::unmount("/boot");
    done
}

/// A Pi: a healthy trial becomes the slot `autoboot.txt` boots.
fn commit_tryboot(pi: Booted) -> bool {
    if !pi.trial {
        log!("boot needs no blessing (not a tryboot)");
        return true;
    }
    let Some(slot) = crate::settings::slot() else {
        log!("cannot commit this tryboot: the command line names no slot");
        return false;
    };
    let Some(boot) = crate::storage::mount_boot(SELECTOR_LABEL) else {
        return false;
    };
    let done = match image::tryboot::commit(&mut MountedDir(&boot), &slot) {
        Ok(true) => {
            log!("boot committed: autoboot.txt now boots slot {slot}");
            true
        }
        Ok(false) => {
            log!("boot committed: autoboot.txt already boots slot {slot}");
            true
        }
        Err(e) => {
            log!("cannot commit slot {slot} in autoboot.txt: {e}");
            false
        }
    };
    crate::storage::unmount("/boot");
    done
}
