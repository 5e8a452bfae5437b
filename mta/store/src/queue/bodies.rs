//! Message contents inside the queue's write transactions: the first part
//! in the database, a spooled message's rest in `bodies/<id>`; the files
//! cleaned up at start.

use super::*;

/// Message contents inside one write transaction.
pub(super) struct Store<'t, 'a> {
    pub(super) dir: &'a Path,
    pub(super) bodies: redb::Table<'t, u64, &'static [u8]>,
    pub(super) spooled: redb::Table<'t, u64, u64>,
    /// Spool files moved into `bodies/` (sync that directory before the
    /// commit; remove them if it fails).
    pub(super) moved: &'a mut Vec<std::path::PathBuf>,
    /// Files to remove once the transaction is committed.
    pub(super) unlink: &'a mut Vec<std::path::PathBuf>,
}

impl Store<'_, '_> {
    /// Stores a body; a spooled one's file moves into `bodies/<id>`.
    pub(super) fn insert(&mut self, id: QueueId, body: Body) -> anyhow::Result<Body> {
        self.bodies.insert(id.0, body.head())?;
        let Some(spool) = body.file() else {
            return Ok(body);
        };
        let path = body_file(self.dir, id);
        std::fs::rename(spool, &path)
            .with_context(|| format!("moving {} to {}", spool.display(), path.display()))?;
        self.moved.push(path.clone());
        let len = body.len() - body.head().len() as u64;
        self.spooled.insert(id.0, len)?;
        Ok(Body::spooled(body.head().to_vec(), path, len))
    }

    pub(super) fn body(&self, id: QueueId) -> anyhow::Result<Option<Body>> {
        let Some(head) = self.bodies.get(id.0)? else {
            return Ok(None);
        };
        Ok(Some(match self.spooled.get(id.0)? {
            Some(len) => Body::spooled(head.value().to_vec(), body_file(self.dir, id), len.value()),
            None => Body::inline(head.value().to_vec()),
        }))
    }

    pub(super) fn remove(&mut self, id: QueueId) -> anyhow::Result<()> {
        self.bodies.remove(id.0)?;
        if self.spooled.remove(id.0)?.is_some() {
            self.unlink.push(body_file(self.dir, id));
        }
        Ok(())
    }

    /// Makes the moves into `bodies/` durable (once per transaction).
    pub(super) fn sync(&self) -> anyhow::Result<()> {
        if !self.moved.is_empty() {
            crate::fsutil::sync_dir(&self.dir.join("bodies"))
                .context("syncing the queue's bodies directory")?;
        }
        Ok(())
    }
}

pub(super) fn body_file(dir: &Path, id: QueueId) -> std::path::PathBuf {
    dir.join("bodies").join(id.to_string())
}

/// At start: spool files of messages that were never queued are removed,
/// and so are body files whose message is gone (a crash between a commit
/// and the removal, or between a move and a commit).
pub(super) fn clean_files(db: &Database, dir: &Path) -> anyhow::Result<()> {
    for sub in ["spool", "bodies"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    for entry in std::fs::read_dir(dir.join("spool"))? {
        let _ = std::fs::remove_file(entry?.path());
    }
    let txn = db.begin_read()?;
    let spooled = txn.open_table(SPOOLED)?;
    for entry in std::fs::read_dir(dir.join("bodies"))? {
        let entry = entry?;
        let known = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<QueueId>().ok())
            .map(|id| spooled.get(id.0).map(|v| v.is_some()))
            .transpose()?
            .unwrap_or(false);
        if !known {
            tracing::info!(
                "removing {}: no queued message has it",
                entry.path().display()
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
