//! The durable queue: envelopes and message bodies in one redb database
//! (`<data>/queue/queue.redb`); large messages, spooled to files while they
//! arrived, are moved into `<data>/queue/bodies/<id>` and the database holds
//! only their first part (our trace fields). See [`crate::body`].
//!
//! One writer thread owns every write transaction. Sessions hand it messages
//! and wait; the writer takes everything that is waiting, writes it in one
//! transaction and commits it with immediate durability, then answers all of
//! them. That is group commit: under load one fsync covers many messages, and
//! no session is told `250` before its message is on disk.
//!
//! Delivery results are written by the same thread without forcing a sync of
//! their own (`Durability::None`); the next durable commit, or a periodic one,
//! makes them permanent. Losing one to a crash only means delivering again,
//! which Maildir delivery makes idempotent.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use anyhow::{Context, bail};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::body::Body;
use crate::envelope::{Envelope, QueueId, Status, now_secs};

const ENVELOPES: TableDefinition<u64, &[u8]> = TableDefinition::new("envelopes");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
/// Messages whose content continues in `bodies/<id>`: the file's length.
const SPOOLED: TableDefinition<u64, u64> = TableDefinition::new("spooled");
/// Envelope records that could not be decoded, moved out of the way (their
/// bodies stay in BODIES): kept for inspection, shown by `mta queue list`.
const DAMAGED: TableDefinition<u64, &[u8]> = TableDefinition::new("damaged");

/// redb's page cache for the queue.
const QUEUE_CACHE: usize = 32 << 20;

/// Why the queue could not take a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// No room on the data partition.
    DiskFull,
    /// Any other storage failure.
    Failed,
}

/// How long non-durable delivery results may wait for a durable commit.
const LAZY_SYNC: Duration = Duration::from_millis(500);
/// At most this many operations share one transaction.
const MAX_BATCH: usize = 1024;

/// The result of one delivery attempt for one recipient.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered,
    /// Try again later.
    Deferred(String),
    /// Permanently refused: the sender gets a bounce.
    Failed(String),
}

/// What a notification to the sender says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// These recipients failed for good.
    Failed,
    /// These recipients are still being retried (sent once per message).
    Delayed,
}

/// Makes the notification about some recipients (their indices), given the
/// envelope and the stored message's start ([`Body::start`], which holds its
/// header section); `None` when none is due.
pub type Bouncer =
    Arc<dyn Fn(&Envelope, &[usize], &[u8], Notice) -> Option<(Envelope, Vec<u8>)> + Send + Sync>;

/// Sent to the scheduler when a message needs (another) delivery attempt or
/// no longer does.
#[derive(Debug)]
pub enum Schedule {
    /// Attempt delivery at `due` (unix seconds). `fresh` carries the message
    /// when it has just been received, to spare a read.
    Due {
        id: QueueId,
        due: u64,
        fresh: Option<(Arc<Envelope>, Arc<Body>)>,
    },
    /// Forget the message (delivered, held or deleted).
    Forget(QueueId),
    /// Attempt every scheduled message now.
    Flush,
}

enum Op {
    Intake {
        envelope: Envelope,
        body: Body,
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
    Results {
        id: QueueId,
        results: Vec<(usize, Outcome)>,
        /// Sync at once: a lost result would mean sending again to a
        /// remote server (a duplicate), where Maildir redelivery is harmless.
        durable: bool,
        /// Schedule the next attempt of what is still pending; false while
        /// other deliveries of the message are still under way (they
        /// report last).
        reschedule: bool,
        /// Told once the transaction is committed (or failed).
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    Admin {
        action: Admin,
        done: mpsc::Sender<anyhow::Result<String>>,
    },
    /// Answered after the next commit: the writer is alive and the
    /// database takes writes (the health check).
    Ping(mpsc::Sender<()>),
    /// Answered after a durable commit: everything before is on disk.
    Sync(mpsc::Sender<()>),
}

#[derive(Debug, Clone, Copy)]
enum Admin {
    Hold(QueueId),
    Release(QueueId),
    Delete(QueueId),
}

/// Retry policy used when results are written.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub min: Duration,
    pub max: Duration,
    pub max_age: Duration,
    pub delay_warning: Duration,
}

impl RetryPolicy {
    /// Exponential backoff: min, 2·min, 4·min … capped at max.
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// A handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    db: Arc<Database>,
    dir: std::path::PathBuf,
    ops: Sender<Op>,
}

impl Queue {
    /// Opens (or creates) the queue under `dir` and starts its writer thread.
    /// `schedule` receives every change that matters to delivery.
    pub fn open(
        dir: &Path,
        min_free_space: u64,
        retry: RetryPolicy,
        schedule: Option<Sender<Schedule>>,
        bouncer: Option<Bouncer>,
    ) -> anyhow::Result<Queue> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the queue directory {}", dir.display()))?;
        let (db, replaced) = crate::fsutil::open_database(
            &dir.join("queue.redb"),
            "the messages queued in it stay in the kept file (their large bodies in the kept bodies directory), undelivered",
            QUEUE_CACHE,
            |db| {
                let txn = db.begin_write()?;
                txn.open_table(ENVELOPES)?;
                txn.open_table(BODIES)?;
                txn.open_table(SPOOLED)?;
                txn.open_table(DAMAGED)?;
                txn.commit()?;
                Ok(())
            },
        )?;
        set_aside_damaged(&db)?;
        if replaced {
            // The bodies belong to the messages in the kept database.
            let bodies = dir.join("bodies");
            let aside = dir.join(format!("bodies.damaged-{}", now_secs()));
            if bodies.exists() {
                std::fs::rename(&bodies, &aside).with_context(|| {
                    format!("moving {} to {}", bodies.display(), aside.display())
                })?;
            }
        }
        clean_files(&db, dir)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            unlink_after_sync: std::cell::RefCell::new(Vec::new()),
            db: db.clone(),
            dir: dir.to_path_buf(),
            min_free_space,
            retry,
            schedule,
            bouncer,
        };
        std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Queue {
            db,
            dir: dir.to_path_buf(),
            ops: tx,
        })
    }

    /// Stores a message durably; resolves once it is on disk (or failed).
    /// A spooled body's file must be in [`Queue::spool_dir`] and synced.
    pub async fn intake(&self, envelope: Envelope, body: Body) -> Result<(), StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let op = Op::Intake {
            envelope,
            body,
            done,
        };
        if self.ops.send(op).is_err() {
            return Err(StoreError::Failed);
        }
        wait.await.unwrap_or(Err(StoreError::Failed))
    }

    /// Records delivery results for some recipients of a message, and
    /// schedules what is still pending.
    pub fn record(&self, id: QueueId, results: Vec<(usize, Outcome)>) {
        self.record_with(id, results, false, true);
    }

    /// Records results that must not be lost (remote hand-overs) while
    /// other attempts for the message are under way: the last of them
    /// schedules what is still pending ([`Queue::record_committed`]).
    pub fn record_durably(&self, id: QueueId, results: Vec<(usize, Outcome)>) {
        self.record_with(id, results, true, false);
    }

    /// Records results without scheduling anything (see [`Queue::record_durably`]).
    pub fn record_partial(&self, id: QueueId, results: Vec<(usize, Outcome)>) {
        self.record_with(id, results, false, false);
    }

    /// Records results durably without scheduling anything, and returns
    /// once they are committed.
    pub async fn record_committed(&self, id: QueueId, results: Vec<(usize, Outcome)>) {
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = self.ops.send(Op::Results {
            id,
            results,
            durable: true,
            reschedule: false,
            done: Some(done),
        });
        if sent.is_ok() {
            let _ = wait.await;
        }
    }

    fn record_with(
        &self,
        id: QueueId,
        results: Vec<(usize, Outcome)>,
        durable: bool,
        reschedule: bool,
    ) {
        let _ = self.ops.send(Op::Results {
            id,
            results,
            durable,
            reschedule,
            done: None,
        });
    }

    /// Every message now in the queue, in arrival order. A record that
    /// cannot be decoded is skipped (and logged); the writer moves it aside
    /// when it next touches it, and at every start.
    pub fn list(&self) -> anyhow::Result<Vec<Envelope>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENVELOPES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            match Envelope::decode(value.value()) {
                Ok(env) => out.push(env),
                Err(e) => tracing::error!("{}: damaged queue record: {e}", QueueId(key.value())),
            }
        }
        Ok(out)
    }

    /// Records set aside because they could not be decoded: (id, size).
    pub fn damaged(&self) -> anyhow::Result<Vec<(QueueId, usize)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DAMAGED)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push((QueueId(key.value()), value.value().len()));
        }
        Ok(out)
    }

    pub fn envelope(&self, id: QueueId) -> anyhow::Result<Option<Envelope>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENVELOPES)?;
        Ok(match table.get(id.0)? {
            Some(v) => {
                Some(Envelope::decode(v.value()).with_context(|| format!("{id}: damaged record"))?)
            }
            None => None,
        })
    }

    pub fn body(&self, id: QueueId) -> anyhow::Result<Option<Body>> {
        let txn = self.db.begin_read()?;
        let bodies = txn.open_table(BODIES)?;
        let spooled = txn.open_table(SPOOLED)?;
        let Some(head) = bodies.get(id.0)? else {
            return Ok(None);
        };
        Ok(Some(match spooled.get(id.0)? {
            Some(len) => {
                Body::spooled(head.value().to_vec(), body_file(&self.dir, id), len.value())
            }
            None => Body::inline(head.value().to_vec()),
        }))
    }

    /// Where a message being received is spooled before [`Queue::intake`].
    pub fn spool_dir(&self) -> std::path::PathBuf {
        self.dir.join("spool")
    }

    pub fn hold(&self, id: QueueId) -> anyhow::Result<String> {
        self.admin(Admin::Hold(id))
    }

    pub fn release(&self, id: QueueId) -> anyhow::Result<String> {
        self.admin(Admin::Release(id))
    }

    pub fn delete(&self, id: QueueId) -> anyhow::Result<String> {
        self.admin(Admin::Delete(id))
    }

    /// Whether the writer commits a transaction within `limit`.
    pub fn ping(&self, limit: Duration) -> bool {
        let (done, wait) = mpsc::channel();
        self.ops.send(Op::Ping(done)).is_ok() && wait.recv_timeout(limit).is_ok()
    }

    /// Makes everything written so far durable (the delivery results
    /// that wait for a lazy commit), within `limit`; whether it did. Called
    /// when the server stops, so an orderly stop never delivers twice.
    pub fn sync(&self, limit: Duration) -> bool {
        let (done, wait) = mpsc::channel();
        self.ops.send(Op::Sync(done)).is_ok() && wait.recv_timeout(limit).is_ok()
    }

    fn admin(&self, action: Admin) -> anyhow::Result<String> {
        let (done, wait) = mpsc::channel();
        self.ops
            .send(Op::Admin { action, done })
            .map_err(|_| anyhow::anyhow!("the queue writer has stopped"))?;
        wait.recv()
            .map_err(|_| anyhow::anyhow!("the queue writer has stopped"))?
    }

    /// Messages to attempt at startup: everything pending and not held.
    pub fn startup_schedule(&self) -> anyhow::Result<Vec<(QueueId, u64)>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|e| !e.held)
            .filter_map(|e| e.next_attempt().map(|due| (e.id, due)))
            .collect())
    }
}

struct Writer {
    /// Body files of messages removed by commits that are not durable yet:
    /// removed only after the next durable commit (a crash before it brings
    /// the messages back, and they need their files).
    unlink_after_sync: std::cell::RefCell<Vec<std::path::PathBuf>>,
    db: Arc<Database>,
    dir: std::path::PathBuf,
    min_free_space: u64,
    retry: RetryPolicy,
    schedule: Option<Sender<Schedule>>,
    bouncer: Option<Bouncer>,
}

impl Writer {
    fn run(self, rx: Receiver<Op>) {
        let mut unsynced = false;
        loop {
            let first = if unsynced {
                match rx.recv_timeout(LAZY_SYNC) {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = self.sync() {
                            tracing::error!("queue: periodic commit failed: {e:#}");
                        }
                        unsynced = false;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let durable = self.commit(batch);
            unsynced = !durable;
        }
        if unsynced {
            let _ = self.sync();
        }
    }

    fn sync(&self) -> anyhow::Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        self.unlink_synced();
        Ok(())
    }

    /// Everything committed is durable now: its removed body files go.
    fn unlink_synced(&self) {
        for path in self.unlink_after_sync.borrow_mut().drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Applies a batch in one transaction; returns whether it was durable.
    fn commit(&self, batch: Vec<Op>) -> bool {
        // A health check's ping needs a commit, not a sync.
        let durable = batch
            .iter()
            .any(|op| !matches!(op, Op::Results { durable: false, .. } | Op::Ping(_)));
        // Refuse intake before the disk is full, not after: a message must
        // never be half-accepted, and redb needs room to commit anything.
        let incoming: u64 = batch
            .iter()
            .map(|op| match op {
                // A spooled body is on the disk already.
                Op::Intake { body, .. } => body.memory() as u64 * 2 + 4096,
                _ => 0,
            })
            .sum();
        let room = incoming == 0
            || free_space(&self.dir).is_none_or(|free| free >= self.min_free_space + incoming);

        let mut replies: Vec<(
            tokio::sync::oneshot::Sender<Result<(), StoreError>>,
            QueueId,
        )> = Vec::new();
        let mut refused = Vec::new();
        let mut admin_replies = Vec::new();
        let mut result_replies = Vec::new();
        let mut pings = Vec::new();
        let mut schedule = Vec::new();
        let mut results_applied = Vec::new();
        let mut unlink = Vec::new();
        let mut moved = Vec::new();

        let outcome = (|| -> anyhow::Result<()> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            {
                let mut envelopes = txn.open_table(ENVELOPES)?;
                let mut store = Store {
                    dir: &self.dir,
                    bodies: txn.open_table(BODIES)?,
                    spooled: txn.open_table(SPOOLED)?,
                    moved: &mut moved,
                    unlink: &mut unlink,
                };
                let mut damaged = txn.open_table(DAMAGED)?;
                for op in batch {
                    match op {
                        Op::Intake {
                            envelope,
                            body,
                            done,
                        } => {
                            if !room {
                                refused.push(done);
                                continue;
                            }
                            replies.push((done, envelope.id));
                            schedule.push(enqueue(&mut envelopes, &mut store, envelope, body)?);
                        }
                        Op::Results {
                            id,
                            results,
                            reschedule,
                            done,
                            ..
                        } => {
                            result_replies.extend(done);
                            let Some(mut env) = read_envelope(&mut envelopes, &mut damaged, id)?
                            else {
                                continue;
                            };
                            let failed = self.apply_results(&mut env, &results);
                            let delayed: Vec<usize> = if !env.warned
                                && crate::envelope::now_micros().saturating_sub(env.arrival)
                                    > self.retry.delay_warning.as_micros() as u64
                            {
                                env.pending().map(|(i, _)| i).collect()
                            } else {
                                Vec::new()
                            };
                            if !env.from.is_empty() {
                                // A notice is queued in the same transaction
                                // that records what it reports: both or neither.
                                // It quotes only the header section: read the
                                // start once, not the whole body per notice.
                                let mut original: Option<Vec<u8>> = None;
                                for (indices, notice) in
                                    [(&failed, Notice::Failed), (&delayed, Notice::Delayed)]
                                {
                                    if indices.is_empty() {
                                        continue;
                                    }
                                    let Some(bounce) = &self.bouncer else {
                                        continue;
                                    };
                                    if original.is_none() {
                                        original = Some(match store.body(id)? {
                                            Some(body) => body.start().unwrap_or_else(|e| {
                                                tracing::warn!("{id}: the message cannot be read for the notice: {e}");
                                                Vec::new()
                                            }),
                                            None => Vec::new(),
                                        });
                                    }
                                    let original = original.as_deref().unwrap_or_default();
                                    if let Some((benv, bbody)) =
                                        bounce(&env, indices, original, notice)
                                    {
                                        tracing::info!(
                                            "{id}: sender {notice:?} notification: {}",
                                            benv.id
                                        );
                                        schedule.push(enqueue(
                                            &mut envelopes,
                                            &mut store,
                                            benv,
                                            Body::inline(bbody),
                                        )?);
                                    }
                                }
                            }
                            if !delayed.is_empty() {
                                env.warned = true;
                            }
                            if env.is_done() {
                                envelopes.remove(id.0)?;
                                store.remove(id)?;
                                schedule.push(Schedule::Forget(id));
                            } else {
                                put(&mut envelopes, &env)?;
                                if env.held {
                                    schedule.push(Schedule::Forget(id));
                                } else if reschedule && let Some(due) = env.next_attempt() {
                                    schedule.push(Schedule::Due {
                                        id,
                                        due,
                                        fresh: None,
                                    });
                                }
                            }
                            if reschedule {
                                results_applied.push(id);
                            }
                        }
                        Op::Ping(done) | Op::Sync(done) => pings.push(done),
                        Op::Admin { action, done } => {
                            let r = self.apply_admin(
                                action,
                                &mut envelopes,
                                &mut store,
                                &mut damaged,
                                &mut schedule,
                            );
                            admin_replies.push((done, r));
                        }
                    }
                }
                store.sync()?;
            }
            txn.commit()?;
            Ok(())
        })();
        match &outcome {
            // Removed only once the commit that forgot them is durable.
            Ok(()) => {
                self.unlink_after_sync.borrow_mut().extend(unlink);
                if durable {
                    self.unlink_synced();
                }
            }
            // Intakes that failed: their files are not the queue's.
            Err(_) => moved.iter().for_each(|p| {
                let _ = std::fs::remove_file(p);
            }),
        }

        for done in refused {
            let _ = done.send(Err(StoreError::DiskFull));
        }
        for done in result_replies {
            let _ = done.send(());
        }
        match outcome {
            Ok(()) => {
                for done in pings {
                    let _ = done.send(());
                }
                for (done, _) in replies {
                    let _ = done.send(Ok(()));
                }
                for (done, r) in admin_replies {
                    let _ = done.send(r);
                }
                if let Some(s) = &self.schedule {
                    for item in schedule {
                        let _ = s.send(item);
                    }
                }
            }
            Err(e) => {
                let full = is_disk_full(&e);
                tracing::error!("queue: commit failed: {e:#}");
                for (done, _) in replies {
                    let _ = done.send(Err(if full {
                        StoreError::DiskFull
                    } else {
                        StoreError::Failed
                    }));
                }
                for (done, _) in admin_replies {
                    let _ = done.send(Err(anyhow::anyhow!(
                        "the queue could not be written: {e:#}"
                    )));
                }
                // Results that were not recorded are simply attempted again.
                if let Some(s) = &self.schedule {
                    for id in results_applied {
                        let due = now_secs() + self.retry.min.as_secs();
                        let _ = s.send(Schedule::Due {
                            id,
                            due,
                            fresh: None,
                        });
                    }
                }
                if matches!(
                    e.downcast_ref::<redb::StorageError>(),
                    Some(redb::StorageError::PreviousIo)
                ) || e
                    .chain()
                    .any(|c| c.to_string().contains("previous I/O error"))
                {
                    // redb refuses all further writes after an I/O error; a
                    // restart (init restarts us) reopens the database.
                    tracing::error!(
                        "queue: the database must be reopened after an I/O error; exiting"
                    );
                    std::process::exit(75);
                }
            }
        }
        durable
    }

    /// Applies results; returns the recipients that failed now.
    fn apply_results(&self, env: &mut Envelope, results: &[(usize, Outcome)]) -> Vec<usize> {
        let now = now_secs();
        let mut failed = Vec::new();
        for (index, outcome) in results {
            let Some(r) = env.recipients.get_mut(*index) else {
                continue;
            };
            if r.status != Status::Pending {
                continue;
            }
            r.attempts += 1;
            match outcome {
                Outcome::Delivered => {
                    r.status = Status::Delivered;
                    r.last_error = None;
                }
                Outcome::Deferred(why)
                    if now.saturating_sub(env.arrival / 1_000_000)
                        > self.retry.max_age.as_secs() =>
                {
                    let age = humantime::format_duration(self.retry.max_age);
                    r.status = Status::Failed;
                    r.last_error = Some(format!(
                        "gave up after {age} in the queue (4.4.7); last error: {why}"
                    ));
                    failed.push(*index);
                }
                Outcome::Deferred(why) => {
                    r.next_attempt = now + self.retry.delay(r.attempts).as_secs();
                    r.last_error = Some(why.clone());
                }
                Outcome::Failed(why) => {
                    r.status = Status::Failed;
                    r.last_error = Some(why.clone());
                    failed.push(*index);
                }
            }
        }
        failed
    }

    fn apply_admin(
        &self,
        action: Admin,
        envelopes: &mut redb::Table<u64, &[u8]>,
        store: &mut Store,
        damaged: &mut redb::Table<u64, &[u8]>,
        schedule: &mut Vec<Schedule>,
    ) -> anyhow::Result<String> {
        let id = match action {
            Admin::Hold(id) | Admin::Release(id) | Admin::Delete(id) => id,
        };
        if let Admin::Delete(_) = action
            && damaged.remove(id.0)?.is_some()
        {
            store.remove(id)?;
            tracing::info!("{id}: damaged record removed by the administrator");
            return Ok(format!("{id}: deleted"));
        }
        let Some(mut env) = read_envelope(envelopes, damaged, id)? else {
            bail!("no message {id} in the queue");
        };
        match action {
            Admin::Hold(_) => {
                env.held = true;
                put(envelopes, &env)?;
                schedule.push(Schedule::Forget(id));
                Ok(format!("{id}: held"))
            }
            Admin::Release(_) => {
                env.held = false;
                for r in env
                    .recipients
                    .iter_mut()
                    .filter(|r| r.status == Status::Pending)
                {
                    r.next_attempt = 0;
                }
                put(envelopes, &env)?;
                schedule.push(Schedule::Due {
                    id,
                    due: 0,
                    fresh: None,
                });
                Ok(format!("{id}: released"))
            }
            Admin::Delete(_) => {
                envelopes.remove(id.0)?;
                store.remove(id)?;
                schedule.push(Schedule::Forget(id));
                tracing::info!("{id}: removed by the administrator");
                Ok(format!("{id}: deleted"))
            }
        }
    }
}

/// Stores a new message and says it is due at once.
fn enqueue(
    envelopes: &mut redb::Table<u64, &[u8]>,
    store: &mut Store,
    envelope: Envelope,
    body: Body,
) -> anyhow::Result<Schedule> {
    put(envelopes, &envelope)?;
    let body = store.insert(envelope.id, body)?;
    Ok(Schedule::Due {
        id: envelope.id,
        due: 0,
        fresh: Some((Arc::new(envelope), Arc::new(body))),
    })
}

fn put(envelopes: &mut redb::Table<u64, &[u8]>, envelope: &Envelope) -> anyhow::Result<()> {
    envelopes.insert(envelope.id.0, envelope.encode()?.as_slice())?;
    Ok(())
}

/// The envelope `id`, or `None` when there is none, or when its record
/// cannot be decoded: then it is moved to DAMAGED (in the caller's
/// transaction) and logged, and the rest of the batch goes on.
fn read_envelope(
    envelopes: &mut redb::Table<u64, &[u8]>,
    damaged: &mut redb::Table<u64, &[u8]>,
    id: QueueId,
) -> anyhow::Result<Option<Envelope>> {
    let raw = match envelopes.get(id.0)? {
        None => return Ok(None),
        Some(v) => match Envelope::decode(v.value()) {
            Ok(env) => return Ok(Some(env)),
            Err(e) => {
                tracing::error!("{id}: damaged queue record set aside ({e})");
                v.value().to_vec()
            }
        },
    };
    damaged.insert(id.0, raw.as_slice())?;
    envelopes.remove(id.0)?;
    Ok(None)
}

/// Moves every envelope record that cannot be decoded to DAMAGED, so that
/// one bad record cannot stop the queue at start.
fn set_aside_damaged(db: &Database) -> anyhow::Result<()> {
    let bad: Vec<(u64, Vec<u8>)> = {
        let txn = db.begin_read()?;
        let table = txn.open_table(ENVELOPES)?;
        let mut bad = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            if let Err(e) = Envelope::decode(value.value()) {
                tracing::error!(
                    "{}: damaged queue record set aside ({e}); `mta queue list` shows it",
                    QueueId(key.value())
                );
                bad.push((key.value(), value.value().to_vec()));
            }
        }
        bad
    };
    if bad.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write()?;
    {
        let mut envelopes = txn.open_table(ENVELOPES)?;
        let mut damaged = txn.open_table(DAMAGED)?;
        for (id, raw) in bad {
            damaged.insert(id, raw.as_slice())?;
            envelopes.remove(id)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Bytes available to us on the file system holding `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(nix::libc::ENOSPC))
            || c.downcast_ref::<redb::StorageError>().is_some_and(|s| {
                matches!(s, redb::StorageError::Io(io) if io.raw_os_error() == Some(nix::libc::ENOSPC))
            })
    })
}

mod bodies;

use bodies::{Store, body_file, clean_files};

#[cfg(test)]
mod tests;
