//! The one way the configuration file is changed (`mta user` today; the
//! wizard and the admin web next): the file is edited in place, comments
//! and layout kept (toml_edit), the result is checked as a whole by the same
//! [`Config::parse`] that loads it, and only then does it replace the file
//! atomically (temporary file, fsync, rename), keeping its permissions. A
//! change that would make the configuration invalid is refused and changes
//! nothing; a power cut leaves the old file or the new one.

use std::path::Path;

use anyhow::Context;
use toml_edit::DocumentMut;

use super::Config;

/// Applies `change` to the document at `path`; returns what `change` says
/// it did, once the new file is durable.
pub fn edit(
    path: &Path,
    change: impl FnOnce(&mut DocumentMut) -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    // One edit at a time in this process (two browsers, the wizard and a
    // page): each reads what the one before wrote, none is lost.
    static EDITS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = EDITS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let done = change(&mut doc)?;
    let new_text = doc.to_string();
    // The whole file must still be valid (an alias may point to a deleted
    // account, a new address may be outside the domains…).
    Config::parse(path, &new_text)
        .map_err(|e| anyhow::anyhow!("the change was not saved:\n{e}"))?;
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path)?.permissions()) & 0o777;
    mta_store::fsutil::write_atomically(path, new_text.as_bytes(), mode)?;
    Ok(done)
}
