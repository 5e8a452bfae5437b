//! A message's content while the SMTP adapter receives it: held in memory
//! while it is small and the server-wide budget allows, written to a spool
//! file otherwise, so a thousand clients sending 50 MB each cost disk, not
//! memory. At the end of the message it becomes a [`Body`] for the queue.
//!
//! Not here: the SMTP rules (the session) and where queued bodies live (the
//! queue moves the spool file into place when it commits).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::body::Body;
use crate::queue::StoreError;

/// A message larger than this is spooled to a file.
pub const INLINE_MAX: usize = 64 * 1024;
/// Message content held in memory by all sessions together, at most.
pub const MEMORY_BUDGET: usize = 8 << 20;
/// Bytes collected before a write to the spool file (about one read from
/// the client: content is mostly written as it comes, without copies).
const WRITE_CHUNK: usize = 8 * 1024;
/// How often (in bytes written) the free space is checked.
const ROOM_CHECK: u64 = 1 << 20;
/// Spool writes (each on a blocking thread) under way at once: a thousand
/// clients must not mean a thousand threads.
const WRITERS: usize = 4;

fn writers() -> &'static tokio::sync::Semaphore {
    static WRITERS_AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(WRITERS);
    &WRITERS_AT_ONCE
}

/// The server-wide allowance for message content in memory.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    fn reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.limit).then_some(used + n)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// What the spool needs from the queue: where to write, and whether the
/// disk has room to go on.
pub struct Place {
    pub dir: PathBuf,
    /// Refuse content (452) when writing would leave less free.
    pub min_free_space: u64,
}

/// The content of one message being received.
pub struct Incoming {
    budget: Arc<Budget>,
    place: Arc<Place>,
    /// Content in memory (reserved from the budget: `reserved` bytes).
    mem: Vec<u8>,
    reserved: usize,
    file: Option<(Arc<std::fs::File>, PathBuf)>,
    written: u64,
    /// Writing failed: the rest is read and dropped, then refused.
    failed: Option<StoreError>,
}

impl Incoming {
    pub fn new(budget: Arc<Budget>, place: Arc<Place>) -> Incoming {
        Incoming {
            budget,
            place,
            mem: Vec::new(),
            reserved: 0,
            file: None,
            written: 0,
            failed: None,
        }
    }

    /// More content.
    pub async fn push(&mut self, data: Vec<u8>) {
        if self.failed.is_some() || data.is_empty() {
            return;
        }
        if self.file.is_none() {
            let total = self.mem.len() + data.len();
            if total <= INLINE_MAX && self.budget.reserve(data.len()) {
                self.reserved += data.len();
                if self.mem.is_empty() {
                    self.mem = data;
                } else {
                    self.mem.extend_from_slice(&data);
                }
                return;
            }
            if let Err(e) = self.open().await {
                return self.fail(e);
            }
        }
        if self.mem.is_empty() {
            self.mem = data;
        } else {
            self.mem.extend_from_slice(&data);
        }
        if self.mem.len() >= WRITE_CHUNK {
            self.flush().await;
        }
    }

    async fn open(&mut self) -> Result<(), StoreError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{}.{}.{}",
            std::process::id(),
            crate::envelope::now_micros(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.place.dir.join(name);
        let opened = {
            let path = path.clone();
            blocking(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
            })
            .await
        };
        let file = opened.map_err(|e| {
            tracing::error!(
                "cannot create a spool file in {}: {e}",
                self.place.dir.display()
            );
            StoreError::Failed
        })?;
        self.file = Some((Arc::new(file), path));
        Ok(())
    }

    /// Writes what is held in memory to the spool file.
    async fn flush(&mut self) {
        let Some((file, path)) = &self.file else {
            return;
        };
        // The free space is looked at every MiB, not every write.
        if self.written % ROOM_CHECK < self.mem.len() as u64 || self.written == 0 {
            let room = crate::queue::free_space(&self.place.dir)
                .is_none_or(|free| free >= self.place.min_free_space + ROOM_CHECK);
            if !room {
                return self.fail(StoreError::DiskFull);
            }
        }
        let data = std::mem::take(&mut self.mem);
        let file = file.clone();
        let path = path.clone();
        match blocking(move || (&*file).write_all(&data).map(|()| data)).await {
            Ok(mut data) => {
                self.written += data.len() as u64;
                // The buffer is used again, unless it grew while the
                // message was still small: 500 clients must not each keep
                // 64 KiB for the rest of their message.
                data.clear();
                if data.capacity() <= 2 * WRITE_CHUNK {
                    self.mem = data;
                }
                self.release();
            }
            Err(e) => {
                tracing::error!("writing {}: {e}", path.display());
                let full = e.raw_os_error() == Some(nix::libc::ENOSPC);
                self.fail(if full {
                    StoreError::DiskFull
                } else {
                    StoreError::Failed
                });
            }
        }
    }

    fn fail(&mut self, e: StoreError) {
        self.failed.get_or_insert(e);
        self.mem = Vec::new();
        self.release();
    }

    fn release(&mut self) {
        self.budget.release(std::mem::take(&mut self.reserved));
    }

    /// The end of the message: `prefix` (our fields) and the last content.
    /// A spool file is synced to the disk before this returns.
    pub async fn finish(mut self, prefix: Vec<u8>, rest: Vec<u8>) -> Result<Body, StoreError> {
        self.push(rest).await;
        if self.file.is_some() {
            self.flush().await;
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let Some((file, path)) = self.file.take() else {
            let mut bytes = prefix;
            bytes.extend_from_slice(&self.mem);
            return Ok(Body::inline(bytes));
        };
        // Not one of the few writers: a long fsync must not hold up other
        // sessions' writes (the runtime's blocking threads are bounded).
        let synced = tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match synced {
            Ok(()) => Ok(Body::spooled(prefix, path, self.written)),
            Err(e) => {
                tracing::error!("syncing {}: {e}", path.display());
                let _ = std::fs::remove_file(&path);
                Err(StoreError::Failed)
            }
        }
    }
}

/// Runs file I/O on a blocking thread, a few at a time.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let _turn = writers().acquire().await.expect("never closed");
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

impl Drop for Incoming {
    /// A message that was not finished (refused, reset, connection lost)
    /// leaves nothing behind.
    fn drop(&mut self) {
        self.release();
        if let Some((_, path)) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(dir: &std::path::Path) -> Arc<Place> {
        Arc::new(Place {
            dir: dir.to_path_buf(),
            min_free_space: 0,
        })
    }

    #[tokio::test]
    async fn small_messages_stay_in_memory_large_ones_go_to_a_file() {
        let t = tempfile::tempdir().unwrap();
        let budget = Arc::new(Budget::new(MEMORY_BUDGET));
        let mut small = Incoming::new(budget.clone(), place(t.path()));
        small.push(b"Subject: x\r\n\r\n".to_vec()).await;
        assert_eq!(budget.used(), 14);
        let body = small
            .finish(b"P: 1\r\n".to_vec(), b"hi\r\n".to_vec())
            .await
            .unwrap();
        assert_eq!(body.file(), None);
        assert_eq!(body.to_vec().unwrap(), b"P: 1\r\nSubject: x\r\n\r\nhi\r\n");
        assert_eq!(budget.used(), 0, "released");

        let mut large = Incoming::new(budget.clone(), place(t.path()));
        let chunk = vec![b'a'; 50_000];
        for _ in 0..10 {
            large.push(chunk.clone()).await;
        }
        assert!(budget.used() <= INLINE_MAX);
        let body = large
            .finish(b"P: 1\r\n".to_vec(), b"end".to_vec())
            .await
            .unwrap();
        assert!(body.file().is_some());
        assert_eq!(body.len(), 6 + 500_003);
        assert_eq!(body.memory(), 6);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn an_empty_budget_spools_even_small_messages_and_dropping_cleans_up() {
        let t = tempfile::tempdir().unwrap();
        let budget = Arc::new(Budget::new(0));
        let mut m = Incoming::new(budget, place(t.path()));
        m.push(b"x".to_vec()).await;
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
        drop(m);
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn no_room_on_the_disk_is_disk_full() {
        let t = tempfile::tempdir().unwrap();
        let place = Arc::new(Place {
            dir: t.path().to_path_buf(),
            min_free_space: u64::MAX / 4,
        });
        let mut m = Incoming::new(Arc::new(Budget::new(0)), place);
        m.push(vec![b'x'; 100_000]).await;
        assert_eq!(
            m.finish(Vec::new(), Vec::new()).await.unwrap_err(),
            StoreError::DiskFull
        );
    }
}
