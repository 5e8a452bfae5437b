//! Installing the update the mta handed over (`image::update` describes
//! the hand-off): the bundle is checked again here — signature with the
//! key this image trusts, board, version, every hash as it is written —
//! installed into the inactive slot (`image::slot`, power-cut safe: the
//! running slot is never touched), and the machine reboots into it as a
//! trial. After a boot, the status of the last update is settled: the new
//! version runs (updated) or the old one again (failed).

use std::path::Path;

use image::update::{FORCE, MAX_ATTEMPTS, READY, STATUS, Status};

use crate::console::log;

/// The public key updates must be signed with (written by the build).
const UPDATE_KEY: &str = "/etc/mailbox/update-key.pub";

fn data(path: &str) -> std::path::PathBuf {
    Path::new(crate::DATA).join(path)
}

fn trusted_key() -> Option<[u8; 32]> {
    image::bundle::parse_public_key(&std::fs::read_to_string(UPDATE_KEY).ok()?)
}

/// This board's name (os-release's VARIANT_ID).
fn board() -> String {
    image::update::os_release("VARIANT_ID").unwrap_or_default()
}

/// Records `status` and says it.
fn record(status: &Status) {
    log!("update: {}", status.describe());
    write(status);
}

fn write(status: &Status) {
    if let Err(e) = crate::supervise::write_synced(&data(STATUS), status.line().as_bytes()) {
        log!("update: cannot record the status: {e}");
    }
}

/// The status of the last update, if any.
pub fn status() -> Option<Status> {
    Status::parse(&std::fs::read_to_string(data(STATUS)).ok()?)
}

/// The hand-off is used up.
fn consume() {
    let _ = std::fs::remove_file(data(READY));
    let _ = std::fs::remove_file(data(FORCE));
}

/// Once the running system is healthy: settles a trial (the new version
/// runs: updated; the old one again: failed, and says so). An
/// installation cut off before it recorded itself as done may already
/// run: then its hand-off, left behind, is used up.
pub fn settle(version: &str, slot: &str) {
    let Some(last) = status() else { return };
    if let Some(next) = last.after_healthy_boot(version, slot) {
        if matches!(last, Status::Installing { .. }) {
            consume();
        }
        record(&next);
    } else if let Status::Installing {
        version: found,
        slot: target,
        ..
    } = &last
        && !pending()
    {
        // Nothing left to resume with.
        record(&Status::Failed {
            version: found.clone(),
            reason: format!("its installation into slot {target} was cut off; send it again"),
        });
    }
}

/// Whether the mta has handed over an update.
pub fn pending() -> bool {
    data(READY).exists()
}

/// Installs the update handed over; whether the machine should now reboot
/// into it. The hand-off is removed whatever happens.
pub fn install(version: &str, slot: &str) -> bool {
    let force = data(FORCE).exists();
    // An installation cut off (power cut, crash) is begun again, a few
    // times at most.
    let (attempt, found) = match status() {
        Some(Status::Installing {
            attempt, version, ..
        }) => (attempt + 1, version),
        _ => (1, "?".to_string()),
    };
    let result = if attempt > MAX_ATTEMPTS {
        Err((
            found,
            format!(
                "its installation was cut off {MAX_ATTEMPTS} times (power cuts or crashes); send it again"
            ),
        ))
    } else {
        install_bundle(&data(READY), version, slot, force, attempt)
    };
    consume();
    match result {
        Ok(status) => {
            record(&status);
            true
        }
        Err((found, why)) => {
            record(&Status::Failed {
                version: found,
                reason: why,
            });
            false
        }
    }
}

/// The installation; on failure, the version found (or "?") and why.
fn install_bundle(
    path: &Path,
    running: &str,
    slot: &str,
    force: bool,
    attempt: u32,
) -> Result<Status, (String, String)> {
    let unknown = |why: String| ("?".to_string(), why);
    let key =
        trusted_key().ok_or_else(|| unknown(format!("this image has no usable {UPDATE_KEY}")))?;
    let file =
        std::fs::File::open(path).map_err(|e| unknown(format!("{}: {e}", path.display())))?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, file);
    let manifest =
        image::bundle::read_manifest(&mut r, &key).map_err(|e| unknown(e.to_string()))?;
    let found = manifest.version.clone();
    manifest
        .check(&board(), running, force)
        .map_err(|e| (found.clone(), e.to_string()))?;
    let target = image::slot::other(slot);
    let again = if attempt > 1 {
        format!("; attempt {attempt}: the last one was cut off")
    } else {
        String::new()
    };
    log!(
        "update: installing version {found} into slot {target} (running {running} from slot {slot}{again})"
    );
    // Written before the first byte of the slot: a cut-off installation
    // is known at the next boot.
    write(&Status::Installing {
        version: found.clone(),
        slot: target.to_string(),
        attempt,
    });
    let mut step = |step: String| log!("update: {step}");
    let installed = if crate::bless::pi_boot().is_some() {
        // A Pi: the slot is a partition of its own.
        let label = image::tryboot::slot_label(target).unwrap_or_default();
        let dir = crate::storage::mount_boot(label).ok_or_else(|| {
            (
                found.clone(),
                format!("the partition of slot {target} ({label}) cannot be mounted"),
            )
        })?;
        image::tryboot::install(&dir, target, &mut r, &manifest, &mut step).and_then(|()| {
            // The firmware must know the next boot is a trial, or it boots
            // this slot again and the update is never tried.
            crate::kmod::load_file(Path::new(image::tryboot::MODULE)).map_err(|e| {
                image::bundle::BundleError::Io(std::io::Error::other(format!(
                    "the Pi firmware cannot be asked for a tryboot ({}: {e})",
                    image::tryboot::MODULE
                )))
            })
        })
    } else {
        let esp = crate::storage::mount_esp().ok_or_else(|| {
            (
                found.clone(),
                "the EFI system partition cannot be mounted".to_string(),
            )
        })?;
        image::slot::install(&esp, target, &mut r, &manifest, &mut step).map(drop)
    };
    crate::storage::unmount("/boot");
    installed.map_err(|e| (found.clone(), e.to_string()))?;
    Ok(Status::Installed {
        version: found,
        slot: target.to_string(),
    })
}
