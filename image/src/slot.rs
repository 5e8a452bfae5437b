//! Installing a bundle into the inactive boot slot of the EFI system
//! partition, so that a power cut at any moment leaves a machine that
//! boots (FAT has no journal, so the order is the safety):
//!
//! 1. the inactive slot's boot entry goes first (synced): from then on
//!    nothing boots that slot, whatever state its files are in;
//! 2. its files are written, each checked against the signed hash and
//!    synced (a file that does not match: everything written is removed
//!    and the bundle refused);
//! 3. the trial entry that names them comes last (`mailbox-<slot>+3.conf`,
//!    written aside and renamed): the commit point.
//!
//! The running slot and its entry are never touched, so the last
//! known-good version always boots; systemd-boot's boot counting tries the
//! new one three times before falling back to it.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::bundle::{BundleError, ENTRY, Manifest, copy_file, entry_for};

/// The slots a UEFI board has.
pub const SLOTS: [&str; 2] = ["a", "b"];

/// The slot that is not `running`.
pub fn other(running: &str) -> &'static str {
    if running == "b" { "a" } else { "b" }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The entry files of `slot` in `entries` (counted or blessed).
fn entries_of(entries: &Path, slot: &str) -> io::Result<Vec<String>> {
    let prefix = format!("mailbox-{slot}");
    let mut found = Vec::new();
    for e in fs::read_dir(entries)? {
        let name = e?.file_name().to_string_lossy().to_string();
        let stem = name.strip_suffix(".conf").unwrap_or("");
        let ours = stem == prefix
            || stem
                .strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with('+'));
        if ours || name == format!("{prefix}.conf.new") {
            found.push(name);
        }
    }
    Ok(found)
}

/// Installs the bundle `r` (positioned after its checked `manifest`) as
/// `slot` on the ESP mounted at `esp`, telling `step` what it does next;
/// the trial entry's file name.
pub fn install(
    esp: &Path,
    slot: &str,
    r: &mut impl Read,
    manifest: &Manifest,
    step: &mut dyn FnMut(String),
) -> Result<String, BundleError> {
    let entries = esp.join("loader/entries");
    let dir = esp.join("mailbox").join(slot);
    fs::create_dir_all(&entries)?;
    // 1. Nothing boots this slot any more.
    for name in entries_of(&entries, slot)? {
        fs::remove_file(entries.join(name))?;
    }
    sync_dir(&entries)?;
    // 2. Its files, each checked; what the manifest does not name goes.
    fs::create_dir_all(&dir)?;
    for e in fs::read_dir(&dir)? {
        let e = e?;
        if !manifest.files.iter().any(|f| *f.name == *e.file_name()) {
            fs::remove_file(e.path())?;
        }
    }
    let mut template = Vec::new();
    let mut written = Vec::new();
    let result = (|| -> Result<(), BundleError> {
        for f in &manifest.files {
            if f.name == ENTRY {
                if f.size > 64 * 1024 {
                    return Err(BundleError::Manifest(format!("{ENTRY} is too large")));
                }
                copy_file(r, f, &mut template)?;
                continue;
            }
            step(format!("writing {} into slot {slot}", f.name));
            let path = dir.join(&f.name);
            written.push(path.clone());
            let mut out = fs::File::create(&path)?;
            copy_file(r, f, &mut out)?;
            out.flush()?;
            out.sync_all()?;
        }
        sync_dir(&dir)?;
        Ok(())
    })();
    if let Err(e) = result {
        for path in written {
            let _ = fs::remove_file(path);
        }
        let _ = sync_dir(&dir);
        return Err(e);
    }
    // 3. The entry that names them: the commit point.
    let template = String::from_utf8(template)
        .map_err(|_| BundleError::Manifest(format!("{ENTRY} is not UTF-8")))?;
    let name = crate::bls::fresh_entry(&format!("mailbox-{slot}"));
    let aside = entries.join(format!("mailbox-{slot}.conf.new"));
    {
        let mut f = fs::File::create(&aside)?;
        f.write_all(entry_for(&template, slot).as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&aside, entries.join(&name))?;
    sync_dir(&entries)?;
    Ok(name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bundle::{generate_key, public_key, read_manifest, write};

    fn esp_with_slot_a() -> tempfile::TempDir {
        let esp = tempfile::tempdir().unwrap();
        fs::create_dir_all(esp.path().join("loader/entries")).unwrap();
        fs::create_dir_all(esp.path().join("mailbox/a")).unwrap();
        fs::write(esp.path().join("loader/entries/mailbox-a.conf"), "a entry").unwrap();
        fs::write(esp.path().join("mailbox/a/vmlinuz"), "old kernel").unwrap();
        // What an earlier update left in slot b.
        fs::create_dir_all(esp.path().join("mailbox/b")).unwrap();
        fs::write(
            esp.path().join("loader/entries/mailbox-b+0-3.conf"),
            "b entry",
        )
        .unwrap();
        fs::write(esp.path().join("mailbox/b/stale"), "x").unwrap();
        esp
    }

    fn bundle(key: &[u8]) -> Vec<u8> {
        let files = vec![
            ("vmlinuz".to_string(), b"new kernel".to_vec()),
            ("initrd.zst".to_string(), vec![1u8; 70_000]),
            (
                ENTRY.to_string(),
                b"linux /mailbox/@SLOT@/vmlinuz\n".to_vec(),
            ),
        ];
        let mut out = Vec::new();
        write(&mut out, key, "pc-x86_64", "0.2.0", &files).unwrap();
        out
    }

    /// The names in `dir`, sorted.
    pub(crate) fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_inactive_slot_gets_the_files_then_a_trial_entry() {
        let esp = esp_with_slot_a();
        let key = generate_key().unwrap();
        let bytes = bundle(&key);
        let mut r = bytes.as_slice();
        let m = read_manifest(&mut r, &public_key(&key).unwrap()).unwrap();
        let entry = install(esp.path(), other("a"), &mut r, &m, &mut |_| {}).unwrap();
        assert_eq!(entry, "mailbox-b+3.conf");
        assert_eq!(
            listing(&esp.path().join("loader/entries")),
            ["mailbox-a.conf", "mailbox-b+3.conf"]
        );
        assert_eq!(
            fs::read_to_string(esp.path().join("loader/entries/mailbox-b+3.conf")).unwrap(),
            "linux /mailbox/b/vmlinuz\n"
        );
        assert_eq!(
            listing(&esp.path().join("mailbox/b")),
            ["initrd.zst", "vmlinuz"]
        );
        // The running slot is untouched.
        assert_eq!(
            fs::read_to_string(esp.path().join("mailbox/a/vmlinuz")).unwrap(),
            "old kernel"
        );
    }

    #[test]
    fn a_bundle_cut_off_anywhere_leaves_the_running_slot_and_no_trial_entry() {
        let key = generate_key().unwrap();
        let bytes = bundle(&key);
        let public = public_key(&key).unwrap();
        let head = {
            let mut r = bytes.as_slice();
            read_manifest(&mut r, &public).unwrap();
            bytes.len() - r.len()
        };
        // Cut inside the kernel, between files, inside the initramfs, and
        // one byte before the end (as a failing disk or upload would).
        for cut in [head + 3, head + 10, head + 10 + 35_000, bytes.len() - 1] {
            let esp = esp_with_slot_a();
            let mut r = &bytes[..cut];
            let m = read_manifest(&mut r, &public).unwrap();
            let e = install(esp.path(), "b", &mut r, &m, &mut |_| {}).unwrap_err();
            assert!(matches!(e, BundleError::Truncated(_)), "cut at {cut}: {e}");
            assert_eq!(
                listing(&esp.path().join("loader/entries")),
                ["mailbox-a.conf"],
                "cut at {cut}"
            );
            assert_eq!(
                fs::read_to_string(esp.path().join("mailbox/a/vmlinuz")).unwrap(),
                "old kernel"
            );
        }
    }

    #[test]
    fn a_damaged_bundle_leaves_no_entry_and_no_files() {
        let esp = esp_with_slot_a();
        let key = generate_key().unwrap();
        let mut bytes = bundle(&key);
        let last = bytes.len() - 100;
        bytes[last] ^= 1;
        let mut r = bytes.as_slice();
        let m = read_manifest(&mut r, &public_key(&key).unwrap()).unwrap();
        let e = install(esp.path(), "b", &mut r, &m, &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, BundleError::BadHash(ref f) if f == "initrd.zst"),
            "{e}"
        );
        // Slot b boots no more (its old entry went first), and nothing of
        // the bundle stays; slot a is as it was.
        assert_eq!(
            listing(&esp.path().join("loader/entries")),
            ["mailbox-a.conf"]
        );
        assert!(listing(&esp.path().join("mailbox/b")).is_empty());
        assert_eq!(listing(&esp.path().join("mailbox/a")), ["vmlinuz"]);
    }
}
