//! Delivery: a scheduler that knows when each queued message is due, and a
//! pool of worker threads that deliver it and report the results to the
//! queue.
//!
//! Local recipients go to their Maildir, on the worker threads. Everything
//! else is handed to [`crate::outbound`] (one connection per route and
//! message) in a task on the runtime, so a slow or hostile server never
//! holds a thread that local delivery needs; how many remote deliveries run
//! at once, in all and per destination, is bounded there. Each hand-over is
//! recorded as soon as the next hop has taken it. Temporary failures are
//! retried with backoff; permanent ones bounce.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::directory::Target;
use crate::outbound::{self, Outbound, Route};
use mta_store::body::Body;
use mta_store::envelope::{Envelope, QueueId, now_micros, now_secs};
use mta_store::maildir::{Delivered, Maildirs, stored_size};
use mta_store::queue::{Outcome, Queue, Schedule};

/// Messages one worker delivers before syncing the Maildirs it wrote to.
const WORKER_BATCH: usize = 16;

/// Message contents kept in memory between intake and delivery, at most
/// (spooled messages cost only their first part).
const FRESH_CACHE_BYTES: usize = 8 << 20;

/// The longest one remote delivery attempt (connection, TLS, every reply,
/// the message) may take, however the server paces its answers.
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Messages whose remote deliveries are under way. A worker leaves their
/// remote recipients alone; the task reports last and schedules what is
/// still pending.
#[derive(Default)]
struct InFlight(Mutex<HashSet<QueueId>>);

impl InFlight {
    /// Marks `id` as under way; `None` when it already was.
    fn start(self: &Arc<Self>, id: QueueId, queue: &Queue) -> Option<InFlightGuard> {
        let fresh = self.0.lock().expect("in-flight set").insert(id);
        fresh.then(|| InFlightGuard {
            set: self.clone(),
            queue: queue.clone(),
            id,
        })
    }

    fn contains(&self, id: QueueId) -> bool {
        self.0.lock().expect("in-flight set").contains(&id)
    }
}

/// Ends the mark when dropped, then has the queue schedule what is still
/// pending: after the task's last results are committed, or when the task
/// failed (so the message cannot be forgotten).
struct InFlightGuard {
    set: Arc<InFlight>,
    queue: Queue,
    id: QueueId,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.set.0.lock().expect("in-flight set").remove(&self.id);
        self.queue.record(self.id, Vec::new());
    }
}

struct Job {
    id: QueueId,
    fresh: Option<(Arc<Envelope>, Arc<Body>)>,
}

/// Starts the scheduler and `workers` delivery threads. Returns the sender
/// the queue reports to (pass it to [`Queue::open`] before calling this, via
/// the pair from [`channel`]).
pub fn start(
    queue: Queue,
    settings: crate::settings::Live,
    outbound: Arc<Outbound>,
    runtime: tokio::runtime::Handle,
    workers: usize,
    schedule_rx: Receiver<Schedule>,
) -> anyhow::Result<()> {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let in_flight = Arc::new(InFlight::default());
    // Shared by every settings snapshot.
    let maildirs = settings.get().maildirs.clone();
    for n in 0..workers {
        let in_flight = in_flight.clone();
        let queue = queue.clone();
        let maildirs = maildirs.clone();
        let settings = settings.clone();
        let job_rx = job_rx.clone();
        let outbound = outbound.clone();
        let runtime = runtime.clone();
        std::thread::Builder::new()
            .name(format!("delivery-{n}"))
            .spawn(move || {
                loop {
                    // Take what is waiting (up to a batch) so that one fsync of
                    // a Maildir's new/ covers several deliveries.
                    let jobs = match job_rx.lock() {
                        Ok(rx) => {
                            let Ok(first) = rx.recv() else { return };
                            let mut jobs = vec![first];
                            while jobs.len() < WORKER_BATCH {
                                match rx.try_recv() {
                                    Ok(job) => jobs.push(job),
                                    Err(_) => break,
                                }
                            }
                            jobs
                        }
                        Err(_) => return,
                    };
                    let ctx = Context {
                        queue: &queue,
                        maildirs: &maildirs,
                        settings: &settings,
                        outbound: &outbound,
                        runtime: &runtime,
                        in_flight: &in_flight,
                    };
                    deliver_batch(&ctx, jobs);
                }
            })?;
    }
    let initial = queue.startup_schedule()?;
    std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || Scheduler::default().run(schedule_rx, job_tx, initial))?;
    Ok(())
}

/// The channel between the queue and the scheduler.
pub fn channel() -> (Sender<Schedule>, Receiver<Schedule>) {
    mpsc::channel()
}

#[derive(Default)]
struct Scheduler {
    due: BTreeSet<(u64, QueueId)>,
    when: HashMap<QueueId, u64>,
    fresh: HashMap<QueueId, (Arc<Envelope>, Arc<Body>)>,
    fresh_bytes: usize,
    /// Messages handed to a worker whose results the queue has not yet
    /// scheduled (at most every message in the queue: each leaves with its
    /// next `Due` or `Forget`).
    working: HashSet<QueueId>,
    /// Messages that were being worked on when a flush came: their next
    /// attempt is now, whatever the backoff says, or the flush would miss
    /// exactly the messages whose attempt had just failed.
    flushed: HashSet<QueueId>,
}

impl Scheduler {
    fn run(mut self, rx: Receiver<Schedule>, jobs: Sender<Job>, initial: Vec<(QueueId, u64)>) {
        for (id, due) in initial {
            self.set(id, due);
        }
        loop {
            let now = now_secs();
            while let Some(job) = self.next_due(now) {
                if jobs.send(job).is_err() {
                    return;
                }
            }
            let wait = self
                .due
                .first()
                .map(|&(due, _)| {
                    Duration::from_secs(due.saturating_sub(now)).max(Duration::from_millis(50))
                })
                .unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(wait) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Take everything else that is waiting before dispatching.
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg);
            }
        }
    }

    /// The next message due at `now`, taken off the schedule.
    fn next_due(&mut self, now: u64) -> Option<Job> {
        let &(due, id) = self.due.first()?;
        if due > now {
            return None;
        }
        self.due.pop_first();
        self.when.remove(&id);
        let fresh = self.fresh.remove(&id);
        if let Some((_, body)) = &fresh {
            self.fresh_bytes -= body.memory();
        }
        self.working.insert(id);
        Some(Job { id, fresh })
    }

    fn handle(&mut self, msg: Schedule) {
        match msg {
            Schedule::Due { id, due, fresh } => {
                if let Some((env, body)) = fresh
                    && self.fresh_bytes + body.memory() <= FRESH_CACHE_BYTES
                {
                    self.fresh_bytes += body.memory();
                    self.fresh.insert(id, (env, body));
                }
                self.working.remove(&id);
                let due = if self.flushed.remove(&id) { 0 } else { due };
                self.set(id, due);
            }
            Schedule::Forget(id) => {
                self.working.remove(&id);
                self.flushed.remove(&id);
                if let Some(due) = self.when.remove(&id) {
                    self.due.remove(&(due, id));
                }
                if let Some((_, body)) = self.fresh.remove(&id) {
                    self.fresh_bytes -= body.memory();
                }
            }
            Schedule::Flush => {
                let all: Vec<QueueId> = self.when.keys().copied().collect();
                for id in all {
                    self.set(id, 0);
                }
                self.flushed.extend(self.working.iter().copied());
            }
        }
    }

    fn set(&mut self, id: QueueId, due: u64) {
        if let Some(old) = self.when.insert(id, due) {
            self.due.remove(&(old, id));
        }
        self.due.insert((due, id));
    }
}

/// What a delivery worker works with.
struct Context<'a> {
    queue: &'a Queue,
    maildirs: &'a Maildirs,
    /// The accounts' allow-lists (Junk filing) as they are now.
    settings: &'a crate::settings::Live,
    outbound: &'a Arc<Outbound>,
    runtime: &'a tokio::runtime::Handle,
    in_flight: &'a Arc<InFlight>,
}

fn deliver_batch(ctx: &Context, jobs: Vec<Job>) {
    let (queue, maildirs) = (ctx.queue, ctx.maildirs);
    let mut done = Vec::new();
    for job in jobs {
        if let Some(message) = deliver(ctx, job) {
            done.push(message);
        }
    }
    // Nothing counts as delivered before its directory entry is durable.
    let mut folders: Vec<(&str, Option<&str>)> = done
        .iter()
        .flat_map(|(_, attempts, _)| attempts.iter())
        .filter(|a| matches!(a.outcome, Outcome::Delivered))
        .filter_map(|a| a.account.as_deref().map(|account| (account, a.folder)))
        .collect();
    folders.sort_unstable();
    folders.dedup();
    let unsynced: Vec<(String, Option<&str>, String)> = folders
        .into_iter()
        .filter_map(|(account, folder)| {
            maildirs
                .sync_new(account, folder)
                .err()
                .map(|e| (account.to_string(), folder, e.to_string()))
        })
        .collect();
    for (envelope, attempts, remote_under_way) in done {
        let mut results = Vec::with_capacity(attempts.len());
        for mut a in attempts {
            if let (Some(account), Outcome::Delivered) = (&a.account, &a.outcome)
                && let Some((_, _, why)) = unsynced
                    .iter()
                    .find(|(acc, folder, _)| acc == account && *folder == a.folder)
            {
                a.outcome =
                    Outcome::Deferred(format!("cannot sync the maildir of {account}: {why}"));
            }
            log_attempt(&envelope, &a);
            results.push((a.index, a.outcome));
        }
        if remote_under_way {
            queue.record_partial(envelope.id, results);
        } else {
            queue.record(envelope.id, results);
        }
    }
}

/// One delivery attempt to one recipient.
struct Attempt {
    index: usize,
    /// The account whose Maildir was written, for local deliveries.
    account: Option<String>,
    /// The folder written, when not the INBOX.
    folder: Option<&'static str>,
    relay: String,
    started: u64,
    outcome: Outcome,
    /// What the next hop said, for the log.
    detail: String,
}

/// Delivers one message's pending local recipients (Maildirs are not
/// synced here) and starts the remote deliveries (one connection per
/// route) in a task. Returns the local attempts and whether a remote task
/// was started (it records its own results and reschedules the message).
fn deliver(ctx: &Context, job: Job) -> Option<(Arc<Envelope>, Vec<Attempt>, bool)> {
    let (queue, maildirs) = (ctx.queue, ctx.maildirs);
    if ctx.in_flight.contains(job.id) {
        // Scheduled again (by the administrator, say) while its remote
        // deliveries are under way: the task schedules it when it is done.
        return None;
    }
    // A message handed over at intake cannot have been delivered before; one
    // read back from disk may have been, just before a crash.
    let check_previous = job.fresh.is_none();
    // The content is read only for a local delivery: remote tasks read it
    // themselves when their turn comes.
    let (envelope, mut body) = match job.fresh {
        Some((e, b)) => (e, Some(b)),
        None => match queue.envelope(job.id) {
            Ok(Some(e)) => (Arc::new(e), None),
            Ok(None) => return None, // deleted meanwhile
            Err(e) => {
                tracing::error!("{}: cannot read from the queue: {e:#}", job.id);
                // Not a hot loop: the queue reschedules it at once.
                std::thread::sleep(Duration::from_secs(1));
                queue.record(job.id, vec![]);
                return None;
            }
        },
    };
    if envelope.held {
        return None;
    }
    let mut attempts = Vec::new();
    let mut remote: Vec<Remote> = Vec::new();
    // Mail from a stranger marked for Junk, read once (local copies only).
    let mut filing: Option<crate::inbound::junk::Filing> = None;
    for (index, rcpt) in envelope.pending() {
        let started = now_micros();
        let (address, local) = match &rcpt.target {
            Target::Local { account, .. } => (account.as_str(), true),
            Target::Remote { address } => (address.as_str(), false),
        };
        match ctx.outbound.route(&envelope.from, address, local) {
            Route::Local => {
                let attempt = match &rcpt.target {
                    Target::Local {
                        account,
                        delivered_to,
                    } => {
                        let head = format!(
                            "Return-Path: <{}>\nDelivered-To: {}\n",
                            envelope.from, delivered_to
                        );
                        let body = match &body {
                            Some(b) => b.clone(),
                            None => match queue.body(envelope.id) {
                                Ok(Some(b)) => body.insert(Arc::new(b)).clone(),
                                Ok(None) => return None, // deleted meanwhile
                                Err(e) => {
                                    tracing::error!(
                                        "{}: cannot read from the queue: {e:#}",
                                        envelope.id
                                    );
                                    std::thread::sleep(Duration::from_secs(1));
                                    queue.record(envelope.id, vec![]);
                                    return None;
                                }
                            },
                        };
                        let size = match stored_size(head.as_bytes(), &body) {
                            Ok(size) => size,
                            Err(e) => {
                                tracing::error!(
                                    "{}: the queued message cannot be read: {e}",
                                    envelope.id
                                );
                                Default::default()
                            }
                        };
                        let name = maildirs.file_name(
                            envelope.arrival,
                            &envelope.id.to_string(),
                            index,
                            size,
                        );
                        let filing = filing.get_or_insert_with(|| filing_of(&envelope, &body));
                        let folder = junk_folder(ctx, account, &envelope.from, filing);
                        let outcome = match maildirs.deliver(
                            account,
                            folder,
                            &name,
                            head.as_bytes(),
                            &body,
                            check_previous,
                        ) {
                            Ok(Delivered::New(_) | Delivered::AlreadyThere(_)) => {
                                Outcome::Delivered
                            }
                            Err(e) => Outcome::Deferred(format!(
                                "cannot write to the maildir of {account}: {e}"
                            )),
                        };
                        let detail = match (folder, &filing.junk) {
                            (Some(folder), Some(why)) => {
                                format!("delivered to maildir, folder {folder}: {why}")
                            }
                            _ => "delivered to maildir".into(),
                        };
                        Attempt {
                            index,
                            account: Some(account.clone()),
                            folder,
                            relay: "local".into(),
                            started,
                            outcome,
                            detail,
                        }
                    }
                    Target::Remote { address } => Attempt {
                        index,
                        account: None,
                        folder: None,
                        relay: "local".into(),
                        started,
                        outcome: Outcome::Deferred(format!(
                            "{address} has no mailbox here but a transport says local"
                        )),
                        detail: String::new(),
                    },
                };
                attempts.push(attempt);
            }
            route => {
                let from = sender_for(ctx, &envelope, &rcpt.original, address);
                match remote
                    .iter_mut()
                    .find(|r| r.route == route && r.from == from)
                {
                    Some(r) => r.recipients.push((index, address.to_string())),
                    None => remote.push(Remote {
                        route,
                        from,
                        recipients: vec![(index, address.to_string())],
                    }),
                }
            }
        }
    }
    if remote.is_empty() {
        return Some((envelope, attempts, false));
    }
    let Some(guard) = ctx.in_flight.start(envelope.id, ctx.queue) else {
        // Already under way (scheduled again by its local results or by
        // the administrator): that task reports.
        return Some((envelope, attempts, false));
    };
    // The task reads the message only when its turn comes: thousands of
    // messages waiting for a slow destination cost their envelopes, not
    // their contents.
    drop(body);
    ctx.runtime.spawn(deliver_remote(
        ctx.queue.clone(),
        ctx.outbound.clone(),
        envelope.clone(),
        remote,
        guard,
    ));
    Some((envelope, attempts, true))
}

/// The recipients of one message that go over one connection, from one
/// envelope sender.
struct Remote {
    route: Route,
    /// The envelope sender (rewritten when the copy is forwarded).
    from: String,
    /// Each recipient's index in the envelope, and its address.
    recipients: Vec<(usize, String)>,
}

/// The envelope sender of the copy for `address`: the message's own, or,
/// for a stranger's mail that an alias (`original`, one of ours) forwards
/// to another domain, the sender rewritten into the alias's domain (SRS),
/// so that it passes SPF where it arrives and bounces come back here.
fn sender_for(ctx: &Context, envelope: &Envelope, original: &str, address: &str) -> String {
    let from = &envelope.from;
    let settings = ctx.settings.get();
    // Ours (or none, the null sender) passes SPF as it is.
    let sender_ours = from
        .rsplit_once('@')
        .is_none_or(|(_, d)| settings.directory.is_local_domain(&d.to_ascii_lowercase()));
    match settings.directory.forwarding_domain(original, address) {
        Some(alias) if envelope.auth.is_none() && !sender_ours => settings
            .srs
            .forward(from, &alias, mta_store::envelope::now_secs())
            .unwrap_or_else(|| from.clone()),
        _ => from.clone(),
    }
}

/// The remote part of one message: each route's hand-over is recorded
/// durably as soon as it is done (a crash after a remote `250` must not
/// send the message again); the last record schedules what is pending.
async fn deliver_remote(
    queue: Queue,
    outbound: Arc<Outbound>,
    envelope: Arc<Envelope>,
    routes: Vec<Remote>,
    guard: InFlightGuard,
) {
    let count = routes.len();
    let mut guard = Some(guard);
    for (
        n,
        Remote {
            route,
            from,
            recipients,
        },
    ) in routes.into_iter().enumerate()
    {
        let addresses: Vec<String> = recipients.iter().map(|(_, a)| a.clone()).collect();
        if from != envelope.from {
            tracing::info!(
                "{}: forwarded to {} from <{}> (sender <{}> rewritten)",
                envelope.id,
                addresses.join(", "),
                mta_proto::logsafe::escape(&from),
                mta_proto::logsafe::escape(&envelope.from),
            );
        }
        let turn = outbound.turn(&route).await;
        let started = now_micros();
        let results = match read_body(&queue, envelope.id).await {
            Ok(body) => tokio::time::timeout(
                ATTEMPT_DEADLINE,
                outbound.deliver(&turn, &route, &from, &addresses, &body),
            )
            .await
            .unwrap_or_else(|_| {
                let why = format!(
                    "the delivery attempt took longer than {}",
                    humantime::format_duration(ATTEMPT_DEADLINE)
                );
                vec![outbound::Result::Deferred(why); addresses.len()]
            }),
            Err(why) => vec![outbound::Result::Deferred(why); addresses.len()],
        };
        drop(turn);
        let mut recorded = Vec::with_capacity(results.len());
        for ((index, _), result) in recipients.into_iter().zip(results) {
            let (outcome, detail) = match result {
                outbound::Result::Delivered(text) => (Outcome::Delivered, text),
                outbound::Result::Deferred(why) => (Outcome::Deferred(why), String::new()),
                outbound::Result::Failed(why) => (Outcome::Failed(why), String::new()),
            };
            let attempt = Attempt {
                index,
                account: None,
                folder: None,
                relay: route.relay_name(),
                started,
                outcome,
                detail,
            };
            log_attempt(&envelope, &attempt);
            recorded.push((index, attempt.outcome));
        }
        if n + 1 == count {
            // The last results committed, then off the list (the guard has
            // the queue schedule what is pending): a worker that picks the
            // message up after that reads these results.
            queue.record_committed(envelope.id, recorded).await;
            drop(guard.take());
        } else {
            queue.record_durably(envelope.id, recorded);
        }
    }
}

/// The message's content from the queue (off the runtime's threads).
async fn read_body(queue: &Queue, id: QueueId) -> Result<Body, String> {
    let queue = queue.clone();
    match tokio::task::spawn_blocking(move || queue.body(id)).await {
        Ok(Ok(Some(body))) => Ok(body),
        Ok(Ok(None)) => Err("the message is no longer in the queue".into()),
        Ok(Err(e)) => Err(format!("cannot read the message from the queue: {e:#}")),
        Err(e) => Err(format!("cannot read the message from the queue: {e}")),
    }
}

/// What the intake's checks said of a message from a stranger (its Junk
/// mark, read from its start) and who it says it is from; nothing for
/// submitted mail and notices, which are not checked.
fn filing_of(envelope: &Envelope, body: &Body) -> crate::inbound::junk::Filing {
    if envelope.auth.is_some() {
        return Default::default();
    }
    match body.start() {
        Ok(start) => crate::inbound::junk::Filing::of(&start),
        Err(e) => {
            tracing::warn!(
                "{}: cannot read the message's header section: {e}",
                envelope.id
            );
            Default::default()
        }
    }
}

/// `Junk` for a marked message, unless `account` allows its sender (the
/// envelope's or the `From:` field's address); `None` is the INBOX.
fn junk_folder(
    ctx: &Context,
    account: &str,
    mail_from: &str,
    filing: &crate::inbound::junk::Filing,
) -> Option<&'static str> {
    filing.junk.as_ref()?;
    let mut senders = vec![mail_from];
    senders.extend(filing.from.as_deref());
    let allowed = ctx.settings.get().directory.allows(account, &senders);
    (!allowed).then_some(crate::inbound::junk::FOLDER)
}

/// The one log line per recipient, in Postfix's shape.
fn log_attempt(envelope: &Envelope, a: &Attempt) {
    let rcpt = &envelope.recipients[a.index];
    let shown_to = match &rcpt.target {
        Target::Local { delivered_to, .. } => delivered_to.as_str(),
        Target::Remote { address } => address.as_str(),
    };
    let orig = if rcpt.original.eq_ignore_ascii_case(shown_to) {
        String::new()
    } else {
        format!(", orig_to=<{}>", mta_proto::logsafe::escape(&rcpt.original))
    };
    let delay = a.started.saturating_sub(envelope.arrival) as f64 / 1e6;
    let (id, relay) = (envelope.id, &a.relay);
    let from = mta_proto::logsafe::escape(&envelope.from);
    let shown_to = mta_proto::logsafe::escape(shown_to);
    let detail = mta_proto::logsafe::escape(&a.detail);
    let (status, why) = match &a.outcome {
        Outcome::Delivered => ("sent", detail),
        Outcome::Deferred(why) => ("deferred", mta_proto::logsafe::escape(why)),
        Outcome::Failed(why) => ("bounced", mta_proto::logsafe::escape(why)),
    };
    macro_rules! summary {
        ($level:ident) => {
            tracing::$level!(
                queue_id = %id,
                from = %from,
                to = %shown_to,
                relay = %relay,
                delay,
                status,
                "{id}: from=<{from}>, to=<{shown_to}>{orig}, relay={relay}, delay={delay:.3}, status={status} ({why})"
            )
        };
    }
    use crate::stats::{Event, stats};
    match &a.outcome {
        Outcome::Delivered => {
            stats().count(Event::Sent);
            summary!(info)
        }
        Outcome::Deferred(_) => {
            stats().count(Event::Deferred);
            summary!(warn)
        }
        Outcome::Failed(_) => {
            stats().count(Event::Bounced);
            summary!(warn)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(id: u64, due: u64) -> Schedule {
        Schedule::Due {
            id: QueueId(id),
            due,
            fresh: None,
        }
    }

    fn ids(s: &mut Scheduler, now: u64) -> Vec<u64> {
        std::iter::from_fn(|| s.next_due(now))
            .map(|j| j.id.0)
            .collect()
    }

    #[test]
    fn a_flush_also_covers_the_messages_being_attempted_when_it_comes() {
        let mut s = Scheduler::default();
        s.handle(due(1, 100));
        s.handle(due(2, 100));
        s.handle(due(3, 5000));
        assert_eq!(ids(&mut s, 100), [1, 2], "due at 100");
        // 1's attempt fails and is rescheduled before the flush; 2's
        // attempt is still under way when the flush comes.
        s.handle(due(1, 3700));
        s.handle(Schedule::Flush);
        s.handle(due(2, 3700));
        assert_eq!(ids(&mut s, 101), [1, 2, 3], "all at once after the flush");
        // Once only: the next failure waits its backoff again.
        s.handle(due(2, 3800));
        assert_eq!(ids(&mut s, 102), Vec::<u64>::new());
        assert!(s.flushed.is_empty());
        // A message forgotten while being attempted leaves nothing behind.
        s.handle(Schedule::Flush);
        s.handle(Schedule::Forget(QueueId(1)));
        s.handle(Schedule::Forget(QueueId(3)));
        assert!(s.working.is_empty() && s.flushed.is_empty());
    }
}
