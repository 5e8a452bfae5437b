//! The data partition's format number (`<data>/format`): which on-disk
//! formats (queue records, the IMAP index, Maildir names, the
//! configuration) the data is in, so that no version works on data it
//! does not understand.
//!
//! - A version refuses, before it opens anything, data in a newer format
//!   than it knows (an older version booted after a newer one migrated):
//!   it says so and changes nothing.
//! - A version that knows a newer format migrates older data forward, one
//!   [`Migration`] at a time, the number written (atomically) after each —
//!   but only once its boot is committed (blessed, or not a trial): until
//!   then the old version may come back, and must find its data as it
//!   left it. A version must therefore run on the previous format until
//!   it migrates; what a migration may not do is be undone by a rollback.
//!
//! Data written before formats were numbered is format 1.

use std::fs;
use std::path::{Path, PathBuf};

/// The format this version writes.
pub const CURRENT: u32 = 1;
/// The file under the data directory that holds the number.
pub const FILE: &str = "format";

/// One step forward, from `from` to `from + 1`, on the data directory.
/// It must be safe to run again after a crash part-way (the number is
/// written only after it).
pub struct Migration {
    pub from: u32,
    pub what: &'static str,
    pub run: fn(&Path) -> anyhow::Result<()>,
}

/// The format changes since numbering began: none yet (format 1 is the
/// first numbered one).
pub const MIGRATIONS: &[Migration] = &[];

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "the data in {dir} is in format {found}, written by a newer version of Mailbox; this version understands formats up to {known}, so it changes nothing there. Install the newer version again, or restore a backup made by this one"
    )]
    Newer {
        dir: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("{file}: {text:?} is not a data format number")]
    Unreadable { file: PathBuf, text: String },
    #[error("no migration from data format {0} is known")]
    NoMigration(u32),
    #[error("the migration from data format {from} ({what}) failed: {cause:#}")]
    Failed {
        from: u32,
        what: &'static str,
        cause: anyhow::Error,
    },
    #[error("{0:#}")]
    Io(anyhow::Error),
}

/// What to do with the data found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// It is in this version's format.
    Current,
    /// It is older; migrate it once this boot is committed.
    WaitForCommit { stored: u32 },
    /// It is older and the boot is committed: migrate now.
    Migrate { stored: u32 },
}

/// The format of the data in `dir` (1 when not numbered yet).
pub fn stored(dir: &Path) -> Result<u32, FormatError> {
    let file = dir.join(FILE);
    match fs::read_to_string(&file) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| FormatError::Unreadable { file, text }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(FormatError::Io(
            anyhow::Error::new(e).context(file.display().to_string()),
        )),
    }
}

/// What a version knowing formats up to `known` does with data in format
/// `stored`, `committed` or not.
pub fn plan(dir: &Path, stored: u32, known: u32, committed: bool) -> Result<Plan, FormatError> {
    Ok(if stored > known {
        return Err(FormatError::Newer {
            dir: dir.to_path_buf(),
            found: stored,
            known,
        });
    } else if stored == known {
        Plan::Current
    } else if committed {
        Plan::Migrate { stored }
    } else {
        Plan::WaitForCommit { stored }
    })
}

fn write(dir: &Path, format: u32) -> Result<(), FormatError> {
    crate::fsutil::write_atomically(&dir.join(FILE), format!("{format}\n").as_bytes(), 0o644)
        .map_err(FormatError::Io)
}

/// Runs `migrations` from `stored` up to `known`, writing the number after
/// each step.
pub fn migrate(
    dir: &Path,
    stored: u32,
    known: u32,
    migrations: &[Migration],
) -> Result<(), FormatError> {
    for from in stored..known {
        let step = migrations
            .iter()
            .find(|m| m.from == from)
            .ok_or(FormatError::NoMigration(from))?;
        tracing::info!(
            "migrating the data from format {from} to {}: {}",
            from + 1,
            step.what
        );
        (step.run)(dir).map_err(|cause| FormatError::Failed {
            from,
            what: step.what,
            cause,
        })?;
        write(dir, from + 1)?;
    }
    Ok(())
}

/// At start, before any store is opened: refuses newer data, migrates
/// older data if the boot is `committed`, numbers data not numbered yet.
/// The plan followed.
pub fn prepare(dir: &Path, committed: bool) -> Result<Plan, FormatError> {
    let numbered = dir.join(FILE).exists();
    let stored = stored(dir)?;
    let plan = plan(dir, stored, CURRENT, committed)?;
    match plan {
        Plan::Current if !numbered => write(dir, CURRENT)?,
        Plan::Migrate { stored } => migrate(dir, stored, CURRENT, MIGRATIONS)?,
        _ => {}
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_line(dir: &Path) -> anyhow::Result<()> {
        let path = dir.join("records");
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str("migrated\n");
        fs::write(path, text)?;
        Ok(())
    }

    fn broken(_: &Path) -> anyhow::Result<()> {
        anyhow::bail!("disk full")
    }

    #[test]
    fn newer_data_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), "7\n").unwrap();
        let e = prepare(dir.path(), true).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("is in format 7, written by a newer version of Mailbox")
                && text.contains("understands formats up to 1"),
            "{text}"
        );
        assert_eq!(fs::read_to_string(dir.path().join(FILE)).unwrap(), "7\n");
        fs::write(dir.path().join(FILE), "seven").unwrap();
        assert!(matches!(
            prepare(dir.path(), true),
            Err(FormatError::Unreadable { .. })
        ));
    }

    #[test]
    fn data_not_numbered_yet_is_format_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(prepare(dir.path(), false).unwrap(), Plan::Current);
        assert_eq!(fs::read_to_string(dir.path().join(FILE)).unwrap(), "1\n");
    }

    #[test]
    fn older_data_is_migrated_only_once_the_boot_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            plan(d, 1, 3, false).unwrap(),
            Plan::WaitForCommit { stored: 1 }
        );
        assert_eq!(plan(d, 1, 3, true).unwrap(), Plan::Migrate { stored: 1 });
        assert_eq!(plan(d, 3, 3, false).unwrap(), Plan::Current);
        let steps = [
            Migration {
                from: 2,
                what: "second",
                run: add_line,
            },
            Migration {
                from: 1,
                what: "first",
                run: add_line,
            },
        ];
        migrate(d, 1, 3, &steps).unwrap();
        assert_eq!(
            fs::read_to_string(d.join("records")).unwrap(),
            "migrated\nmigrated\n"
        );
        assert_eq!(stored(d).unwrap(), 3);
    }

    #[test]
    fn a_failed_migration_keeps_the_number_of_the_last_step_done() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let steps = [
            Migration {
                from: 1,
                what: "first",
                run: add_line,
            },
            Migration {
                from: 2,
                what: "index rebuild",
                run: broken,
            },
        ];
        let e = migrate(d, 1, 3, &steps).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the migration from data format 2 (index rebuild) failed: disk full"
        );
        assert_eq!(stored(d).unwrap(), 2);
        assert!(matches!(
            migrate(d, 2, 4, &steps[..1]),
            Err(FormatError::NoMigration(2))
        ));
    }
}
