//! Raspberry Pi A/B boot with the firmware's `tryboot`, the way Raspberry
//! Pi documents it for the 4 and 5: the SD card (or eMMC, or USB disk)
//! holds an MBR with
//!
//! 1. a small FAT partition whose only job is `autoboot.txt`:
//!    `tryboot_a_b=1` and `boot_partition=N` (the committed slot) in
//!    `[all]`, the other slot in `[tryboot]`;
//! 2. boot slot A and 3. boot slot B, each a FAT partition with the
//!    firmware, `config.txt`, `cmdline.txt`, the kernel, the initramfs and
//!    the device trees;
//! 4. the data partition (ext4, label `mailbox-data`).
//!
//! An update is written into the other slot's partition; then the machine
//! reboots with `reboot "0 tryboot"`, which makes the firmware take the
//! `[tryboot]` section once. The firmware says so in the device tree
//! (`/proc/device-tree/chosen/bootloader/tryboot` = 1). Once the trial is
//! healthy, [`commit`] rewrites `autoboot.txt` to name the new slot
//! (written aside and synced, then renamed over the old one). A trial that
//! hangs or panics is reset (the watchdog, `panic=10`) and the next boot,
//! without the tryboot flag, takes the committed slot again: nothing has
//! to be undone.

use std::io;
use std::path::Path;

use crate::bundle::{BundleError, ENTRY, Manifest, copy_file, entry_for};

/// The boot selector's file.
pub const AUTOBOOT: &str = "autoboot.txt";
/// FAT labels of the boot selector and the two slots (also how init finds
/// them: MBR partitions have no names).
pub const SELECTOR_LABEL: &str = "MBXBOOT";
pub const SLOT_LABELS: [(&str, &str); 2] = [("a", "MBXSLOTA"), ("b", "MBXSLOTB")];
/// The file in a slot that carries the kernel command line; the bundle's
/// entry becomes it.
pub const CMDLINE: &str = "cmdline.txt";
/// Written last into a slot: without it the firmware does not start the
/// slot's kernel.
pub const CONFIG: &str = "config.txt";
/// The kernel module (built with the image, `board/rpi/`) whose loading
/// asks the firmware for a tryboot at the next reboot: what the Raspberry
/// Pi kernel does for `reboot "0 tryboot"`, and Debian's does not.
pub const MODULE: &str = "/lib/mailbox/mailbox_tryboot.ko";

/// The MBR partition number of a slot.
pub fn partition_of(slot: &str) -> Option<u32> {
    match slot {
        "a" => Some(2),
        "b" => Some(3),
        _ => None,
    }
}

/// The slot in MBR partition `number`.
pub fn slot_of(number: u32) -> Option<&'static str> {
    match number {
        2 => Some("a"),
        3 => Some("b"),
        _ => None,
    }
}

/// The FAT label of a slot's partition.
pub fn slot_label(slot: &str) -> Option<&'static str> {
    SLOT_LABELS
        .iter()
        .find(|(s, _)| *s == slot)
        .map(|(_, label)| *label)
}

/// `autoboot.txt` with `committed` as the slot booted normally and the
/// other one taken by a tryboot.
pub fn autoboot(committed: &str) -> Option<String> {
    let normal = partition_of(committed)?;
    let trial = partition_of(crate::slot::other(committed))?;
    Some(format!(
        "# Mailbox: A/B boot slots (written by the appliance; see tryboot_a_b)\n\
         [all]\ntryboot_a_b=1\nboot_partition={normal}\n[tryboot]\nboot_partition={trial}\n"
    ))
}

/// The slot `autoboot.txt` boots normally (its `[all]` section's
/// `boot_partition`).
pub fn committed(text: &str) -> Option<&'static str> {
    let mut section = "all".to_string();
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_ascii_lowercase();
        } else if section == "all"
            && let Some(value) = line.strip_prefix("boot_partition=")
        {
            found = value.trim().parse().ok().and_then(slot_of);
        }
    }
    found
}

/// What the Pi firmware says of this boot in the device tree (`None`: not
/// booted by the Pi firmware, or it says nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booted {
    /// Booted with the tryboot flag: a trial.
    pub trial: bool,
    /// The partition the firmware loaded from.
    pub partition: Option<u32>,
}

/// Reads `chosen/bootloader` under `device_tree` (`/proc/device-tree`):
/// properties are big-endian 32-bit cells.
pub fn booted(device_tree: &Path) -> Option<Booted> {
    let node = device_tree.join("chosen/bootloader");
    let cell = |name: &str| -> Option<u32> {
        let raw = std::fs::read(node.join(name)).ok()?;
        Some(u32::from_be_bytes(raw.get(..4)?.try_into().ok()?))
    };
    if !node.is_dir() {
        return None;
    }
    Some(Booted {
        trial: cell("tryboot").is_some_and(|v| v == 1),
        partition: cell("partition"),
    })
}

/// The few file operations a commit needs, so that it runs the same on the
/// mounted partition (init) and on a FAT image (tests, checks of a built
/// image).
pub trait BootFiles {
    fn read(&mut self, name: &str) -> io::Result<Vec<u8>>;
    /// Writes `name` whole and makes it durable.
    fn write_synced(&mut self, name: &str, data: &[u8]) -> io::Result<()>;
    /// Renames `from` over `to` and makes the change durable.
    fn replace(&mut self, from: &str, to: &str) -> io::Result<()>;
}

/// A mounted directory.
pub struct MountedDir<'a>(pub &'a Path);

impl BootFiles for MountedDir<'_> {
    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.0.join(name))
    }

    fn write_synced(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join(name))?;
        f.write_all(data)?;
        f.sync_all()
    }

    fn replace(&mut self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.0.join(from), self.0.join(to))?;
        std::fs::File::open(self.0)?.sync_all()
    }
}

/// Makes `slot` the one booted normally: `autoboot.txt` written aside,
/// synced, renamed over the old one. Returns whether anything changed (it
/// was already committed: no write at all).
pub fn commit(files: &mut impl BootFiles, slot: &str) -> io::Result<bool> {
    let text = autoboot(slot)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such slot"))?;
    let current = files.read(AUTOBOOT)?;
    if committed(&String::from_utf8_lossy(&current)) == Some(slot) {
        return Ok(false);
    }
    let aside = "autoboot.new";
    files.write_synced(aside, text.as_bytes())?;
    files.replace(aside, AUTOBOOT)?;
    Ok(true)
}

/// Installs the bundle `r` (positioned after its checked `manifest`) into
/// the inactive slot's partition mounted at `dir`, telling `step` what it
/// does next. The bundle's entry becomes `cmdline.txt` (with the slot's
/// letter), every other file keeps its name; `config.txt` comes last:
/// until it is there, the slot boots nothing. Nothing else needs to be
/// undone after a cut: only a `tryboot` reboot, made once everything is
/// written, ever boots this partition before it is committed.
pub fn install(
    dir: &Path,
    slot: &str,
    r: &mut impl std::io::Read,
    manifest: &Manifest,
    step: &mut dyn FnMut(String),
) -> Result<(), BundleError> {
    use std::io::Write;
    if !manifest.files.iter().any(|f| f.name == CONFIG) {
        return Err(BundleError::Manifest(format!(
            "no {CONFIG}: the bundle is not for a Raspberry Pi"
        )));
    }
    let sync_dir = || std::fs::File::open(dir)?.sync_all();
    // 1. The slot stops being bootable.
    match std::fs::remove_file(dir.join(CONFIG)) {
        Ok(()) => sync_dir()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let target = |name: &str| if name == ENTRY { CMDLINE } else { name }.to_string();
    // What the manifest does not name goes (an older version's files).
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if e.file_type()?.is_file() && !manifest.files.iter().any(|f| target(&f.name) == name) {
            std::fs::remove_file(e.path())?;
        }
    }
    // 2. Every file, checked against its signed hash and synced; the
    // command line gets the slot's letter; config.txt is kept for last.
    let mut config = Vec::new();
    for f in &manifest.files {
        if f.name == CONFIG || f.name == ENTRY {
            if f.size > 64 * 1024 {
                return Err(BundleError::Manifest(format!("{} is too large", f.name)));
            }
            let mut text = Vec::new();
            copy_file(r, f, &mut text)?;
            if f.name == CONFIG {
                config = text;
                continue;
            }
            let text = String::from_utf8(text)
                .map_err(|_| BundleError::Manifest(format!("{ENTRY} is not UTF-8")))?;
            let mut out = std::fs::File::create(dir.join(CMDLINE))?;
            out.write_all(entry_for(&text, slot).as_bytes())?;
            out.sync_all()?;
            continue;
        }
        step(format!("writing {} into slot {slot}", f.name));
        let mut out = std::fs::File::create(dir.join(&f.name))?;
        if let Err(e) = copy_file(r, f, &mut out) {
            drop(out);
            let _ = std::fs::remove_file(dir.join(&f.name));
            return Err(e);
        }
        out.flush()?;
        out.sync_all()?;
    }
    sync_dir()?;
    // 3. config.txt: written aside, renamed into place.
    let aside = dir.join("config.new");
    {
        let mut out = std::fs::File::create(&aside)?;
        out.write_all(&config)?;
        out.sync_all()?;
    }
    std::fs::rename(&aside, dir.join(CONFIG))?;
    sync_dir()?;
    Ok(())
}

#[cfg(all(test, feature = "build"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A FAT image opened with fatfs, as the build writes it.
    struct FatImage(Vec<u8>);

    impl FatImage {
        fn fs(&mut self) -> fatfs::FileSystem<std::io::Cursor<&mut Vec<u8>>> {
            fatfs::FileSystem::new(std::io::Cursor::new(&mut self.0), fatfs::FsOptions::new())
                .unwrap()
        }
    }

    impl BootFiles for FatImage {
        fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
            let fs = self.fs();
            let mut out = Vec::new();
            fs.root_dir().open_file(name)?.read_to_end(&mut out)?;
            Ok(out)
        }

        fn write_synced(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
            let fs = self.fs();
            let mut f = fs.root_dir().create_file(name)?;
            f.truncate()?;
            f.write_all(data)?;
            f.flush()
        }

        fn replace(&mut self, from: &str, to: &str) -> io::Result<()> {
            let fs = self.fs();
            let root = fs.root_dir();
            if root.open_file(to).is_ok() {
                root.remove(to)?;
            }
            root.rename(from, &root, to)
        }
    }

    #[test]
    fn autoboot_names_the_committed_slot_and_the_trial() {
        let a = autoboot("a").unwrap();
        assert!(
            a.contains("[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n")
        );
        assert_eq!(committed(&a), Some("a"));
        assert_eq!(committed(&autoboot("b").unwrap()), Some("b"));
        assert_eq!(autoboot("c"), None);
        // A [tryboot] section does not count; unknown partitions are none.
        assert_eq!(committed("[tryboot]\nboot_partition=3\n"), None);
        assert_eq!(committed("[all]\nboot_partition=7\n"), None);
    }

    fn fake_tree(tryboot: Option<u32>, partition: u32) -> tempfile::TempDir {
        let dt = tempfile::tempdir().unwrap();
        let node = dt.path().join("chosen/bootloader");
        std::fs::create_dir_all(&node).unwrap();
        if let Some(t) = tryboot {
            std::fs::write(node.join("tryboot"), t.to_be_bytes()).unwrap();
        }
        std::fs::write(node.join("partition"), partition.to_be_bytes()).unwrap();
        dt
    }

    #[test]
    fn a_trial_boot_is_told_from_the_device_tree() {
        let trial = fake_tree(Some(1), 3);
        assert_eq!(
            booted(trial.path()),
            Some(Booted {
                trial: true,
                partition: Some(3)
            })
        );
        let normal = fake_tree(Some(0), 2);
        assert_eq!(booted(normal.path()).map(|b| b.trial), Some(false));
        // Older firmware writes no tryboot property: not a trial.
        let old = fake_tree(None, 2);
        assert_eq!(booted(old.path()).map(|b| b.trial), Some(false));
        // Not a Pi (UEFI, or no device tree at all).
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(booted(empty.path()), None);
    }

    #[test]
    fn committing_rewrites_autoboot_on_a_fat_image() {
        let image = crate::disk::fat_image(
            64 << 20,
            SELECTOR_LABEL,
            &[(AUTOBOOT.into(), autoboot("a").unwrap().into_bytes())],
        )
        .unwrap();
        let mut fat = FatImage(image);
        // Booted into b as a trial, healthy: b is committed.
        assert!(commit(&mut fat, "b").unwrap());
        let text = String::from_utf8(fat.read(AUTOBOOT).unwrap()).unwrap();
        assert_eq!(committed(&text), Some("b"));
        assert!(text.contains("[tryboot]\nboot_partition=2\n"));
        // Nothing left aside, and the FAT is clean.
        assert_eq!(
            crate::disk::fat_list(&fat.0, "/").unwrap(),
            [AUTOBOOT.to_string()]
        );
        assert_eq!(crate::disk::tests::fsck(&fat.0), None);
        // Committing what is committed writes nothing.
        let before = fat.0.clone();
        assert!(!commit(&mut fat, "b").unwrap());
        assert!(fat.0 == before);
        assert!(commit(&mut fat, "x").is_err());
    }

    fn pi_bundle(key: &[u8], kernel: &[u8]) -> Vec<u8> {
        let files = vec![
            ("vmlinuz".to_string(), kernel.to_vec()),
            ("initrd.zst".to_string(), vec![1u8; 70_000]),
            ("start4.elf".to_string(), vec![2u8; 5_000]),
            (
                CONFIG.to_string(),
                b"arm_64bit=1\nkernel=vmlinuz\n".to_vec(),
            ),
            (
                ENTRY.to_string(),
                b"console=ttyS1,115200 mailbox.slot=@SLOT@\n".to_vec(),
            ),
        ];
        let mut out = Vec::new();
        crate::bundle::write(&mut out, key, "rpi4", "0.2.0", &files).unwrap();
        out
    }

    #[test]
    fn a_pi_slot_gets_every_file_then_its_config() {
        let key = crate::bundle::generate_key().unwrap();
        let public = crate::bundle::public_key(&key).unwrap();
        let slot = tempfile::tempdir().unwrap();
        // What an older version left there.
        std::fs::write(slot.path().join(CONFIG), "old").unwrap();
        std::fs::write(slot.path().join("bcm-old.dtb"), "old").unwrap();
        let bytes = pi_bundle(&key, b"new kernel");
        let mut r = &bytes[..];
        let manifest = crate::bundle::read_manifest(&mut r, &public).unwrap();
        let mut steps = Vec::new();
        install(slot.path(), "b", &mut r, &manifest, &mut |s| steps.push(s)).unwrap();
        assert_eq!(
            crate::slot::tests::listing(slot.path()),
            [CMDLINE, CONFIG, "initrd.zst", "start4.elf", "vmlinuz"]
        );
        assert_eq!(
            std::fs::read_to_string(slot.path().join(CMDLINE)).unwrap(),
            "console=ttyS1,115200 mailbox.slot=b\n"
        );
        assert_eq!(
            std::fs::read_to_string(slot.path().join(CONFIG)).unwrap(),
            "arm_64bit=1\nkernel=vmlinuz\n"
        );
        assert_eq!(steps[0], "writing vmlinuz into slot b");

        // A damaged file: refused, and the slot is left without config.txt
        // (nothing boots it) and without the damaged file.
        let mut bad = pi_bundle(&key, b"NEW kernel");
        // Inside the initramfs (before the firmware and the two texts).
        let at = bad.len() - 5_100 - 35_000;
        bad[at] ^= 1;
        let mut r = &bad[..];
        let manifest = crate::bundle::read_manifest(&mut r, &public).unwrap();
        let err = install(slot.path(), "b", &mut r, &manifest, &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, BundleError::BadHash(ref f) if f == "initrd.zst"),
            "{err}"
        );
        assert!(!slot.path().join(CONFIG).exists());
        assert!(!slot.path().join("initrd.zst").exists());

        // A bundle for a UEFI board has no config.txt: refused untouched.
        let mut efi = Vec::new();
        crate::bundle::write(
            &mut efi,
            &key,
            "rpi4",
            "0.2.0",
            &[(ENTRY.to_string(), b"linux /x\n".to_vec())],
        )
        .unwrap();
        let mut r = &efi[..];
        let manifest = crate::bundle::read_manifest(&mut r, &public).unwrap();
        assert!(install(slot.path(), "b", &mut r, &manifest, &mut |_| {}).is_err());
        assert!(slot.path().join("vmlinuz").exists());
    }

    #[test]
    fn committing_in_a_mounted_directory_leaves_one_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(AUTOBOOT), autoboot("b").unwrap()).unwrap();
        assert!(commit(&mut MountedDir(dir.path()), "a").unwrap());
        let text = std::fs::read_to_string(dir.path().join(AUTOBOOT)).unwrap();
        assert_eq!(committed(&text), Some("a"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [AUTOBOOT]);
    }
}
