//! Durable file updates: the temp-file, fsync, rename, directory-fsync
//! sequence every persistent write of ours goes through.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// Makes a directory's entries (new, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and its missing parents) so that it survives a power
/// cut: each new directory's entry is synced in its parent.
pub fn create_dir_synced(dir: &Path) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent).with_context(|| format!("syncing {}", parent.display()))?;
        }
    }
    Ok(())
}

/// Replaces `path` with `data` atomically: readers see the old or the new
/// file, never a mix, and the new one survives a power cut once this returns.
pub fn write_atomically(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no directory")?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Opens (or creates) the redb database at `path` and runs `prepare` on it
/// (creating its tables). A file that is not a readable database — damaged
/// by a failing disk, or written by an incompatible version — is renamed to
/// `<name>.damaged-<unix time>` (kept for inspection, logged loudly) and a
/// new, empty one is made, so one bad file cannot stop the server: `what`
/// says in the log what was lost from service. Errors that a new file would
/// not cure (another process has it open, the disk fails) are returned.
/// The flag says whether the file was replaced.
pub fn open_database(
    path: &Path,
    what: &str,
    cache_size: usize,
    prepare: impl Fn(&redb::Database) -> Result<(), redb::Error>,
) -> anyhow::Result<(redb::Database, bool)> {
    let open = || -> Result<redb::Database, redb::Error> {
        let db = redb::Database::builder()
            .set_cache_size(cache_size)
            .create(path)?;
        prepare(&db)?;
        Ok(db)
    };
    let error = match open() {
        Ok(db) => return Ok((db, false)),
        Err(e) if is_damage(&e) => e,
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "opening {} (is another mta using this data directory?)",
                    path.display()
                )
            });
        }
    };
    let aside = path.with_extension(format!("redb.damaged-{}", crate::envelope::now_secs()));
    fs::rename(path, &aside).with_context(|| {
        format!(
            "{} is damaged ({error}) and cannot be moved aside",
            path.display()
        )
    })?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    tracing::error!(
        "{} is damaged ({error}); kept as {} and replaced by an empty one: {what}",
        path.display(),
        aside.display()
    );
    let db = open().with_context(|| format!("creating a new {}", path.display()))?;
    Ok((db, true))
}

/// Whether a redb error means the file itself is bad (not the disk or a
/// lock).
fn is_damage(e: &redb::Error) -> bool {
    matches!(
        e,
        redb::Error::Corrupted(_) | redb::Error::UpgradeRequired(_) | redb::Error::RepairAborted
    ) || matches!(e, redb::Error::Io(io) if io.kind() == io::ErrorKind::InvalidData
        || io.kind() == io::ErrorKind::UnexpectedEof)
}
