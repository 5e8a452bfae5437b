//! Delivery: a scheduler that knows when each queued message is due, and a
//! pool of worker threads that deliver it and report the results to the
//! queue.
//!
//! Local recipients go to their Maildir; everything else is handed to
//! [`crate::outbound`] (one connection per route and message). Temporary
//! failures are retried with backoff; permanent ones bounce.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::directory::Target;
use crate::envelope::{Envelope, QueueId, now_micros, now_secs};
use crate::maildir::{Delivered, Maildirs, stored_size};
use crate::outbound::{self, Outbound, Route};
use crate::queue::{Outcome, Queue, Schedule};

/// Messages one worker delivers before syncing the Maildirs it wrote to.
const WORKER_BATCH: usize = 16;

/// Bodies kept in memory between intake and delivery, at most.
const FRESH_CACHE_BYTES: usize = 64 << 20;

struct Job {
    id: QueueId,
    fresh: Option<(Arc<Envelope>, Arc<Vec<u8>>)>,
}

/// Starts the scheduler and `workers` delivery threads. Returns the sender
/// the queue reports to (pass it to [`Queue::open`] before calling this, via
/// the pair from [`channel`]).
pub fn start(
    queue: Queue,
    maildirs: Maildirs,
    outbound: Arc<Outbound>,
    runtime: tokio::runtime::Handle,
    workers: usize,
    schedule_rx: Receiver<Schedule>,
) -> anyhow::Result<()> {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    for n in 0..workers {
        let queue = queue.clone();
        let maildirs = maildirs.clone();
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
                        outbound: &outbound,
                        runtime: &runtime,
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
    fresh: HashMap<QueueId, (Arc<Envelope>, Arc<Vec<u8>>)>,
    fresh_bytes: usize,
}

impl Scheduler {
    fn run(mut self, rx: Receiver<Schedule>, jobs: Sender<Job>, initial: Vec<(QueueId, u64)>) {
        for (id, due) in initial {
            self.set(id, due);
        }
        loop {
            let now = now_secs();
            while let Some(&(due, id)) = self.due.first() {
                if due > now {
                    break;
                }
                self.due.pop_first();
                self.when.remove(&id);
                let fresh = self.fresh.remove(&id);
                if let Some((_, body)) = &fresh {
                    self.fresh_bytes -= body.len();
                }
                if jobs.send(Job { id, fresh }).is_err() {
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

    fn handle(&mut self, msg: Schedule) {
        match msg {
            Schedule::Due { id, due, fresh } => {
                if let Some((env, body)) = fresh
                    && self.fresh_bytes + body.len() <= FRESH_CACHE_BYTES
                {
                    self.fresh_bytes += body.len();
                    self.fresh.insert(id, (env, body));
                }
                self.set(id, due);
            }
            Schedule::Forget(id) => {
                if let Some(due) = self.when.remove(&id) {
                    self.due.remove(&(due, id));
                }
                if let Some((_, body)) = self.fresh.remove(&id) {
                    self.fresh_bytes -= body.len();
                }
            }
            Schedule::Flush => {
                let all: Vec<QueueId> = self.when.keys().copied().collect();
                for id in all {
                    self.set(id, 0);
                }
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
    outbound: &'a Outbound,
    runtime: &'a tokio::runtime::Handle,
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
    let mut accounts: Vec<&str> = done
        .iter()
        .flat_map(|(_, attempts)| attempts.iter())
        .filter(|a| matches!(a.outcome, Outcome::Delivered))
        .filter_map(|a| a.account.as_deref())
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    let unsynced: Vec<(String, String)> = accounts
        .into_iter()
        .filter_map(|account| {
            maildirs
                .sync_new(account)
                .err()
                .map(|e| (account.to_string(), e.to_string()))
        })
        .collect();
    for (envelope, attempts) in done {
        let mut results = Vec::with_capacity(attempts.len());
        let handed_over = attempts
            .iter()
            .any(|a| a.account.is_none() && matches!(a.outcome, Outcome::Delivered));
        for mut a in attempts {
            if let (Some(account), Outcome::Delivered) = (&a.account, &a.outcome)
                && let Some((_, why)) = unsynced.iter().find(|(acc, _)| acc == account)
            {
                a.outcome =
                    Outcome::Deferred(format!("cannot sync the maildir of {account}: {why}"));
            }
            log_attempt(&envelope, &a);
            results.push((a.index, a.outcome));
        }
        if handed_over {
            queue.record_durably(envelope.id, results);
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
    relay: String,
    started: u64,
    outcome: Outcome,
    /// What the next hop said, for the log.
    detail: String,
}

/// Delivers one message's pending recipients (Maildirs are not synced
/// here; remote recipients are handed over, one connection per route).
fn deliver(ctx: &Context, job: Job) -> Option<(Arc<Envelope>, Vec<Attempt>)> {
    let (queue, maildirs) = (ctx.queue, ctx.maildirs);
    // A message handed over at intake cannot have been delivered before; one
    // read back from disk may have been, just before a crash.
    let check_previous = job.fresh.is_none();
    let (envelope, body) = match job.fresh {
        Some((e, b)) => (e, b),
        None => match (queue.envelope(job.id), queue.body(job.id)) {
            (Ok(Some(e)), Ok(Some(b))) => (Arc::new(e), Arc::new(b)),
            (Ok(None), _) | (_, Ok(None)) => return None, // deleted meanwhile
            (Err(e), _) | (_, Err(e)) => {
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
    let mut remote: Vec<(Route, Vec<(usize, String)>)> = Vec::new();
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
                        let size = stored_size(head.as_bytes(), &body);
                        let name = maildirs.file_name(
                            envelope.arrival,
                            &envelope.id.to_string(),
                            index,
                            size,
                        );
                        let outcome = match maildirs.deliver(
                            account,
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
                        Attempt {
                            index,
                            account: Some(account.clone()),
                            relay: "local".into(),
                            started,
                            outcome,
                            detail: "delivered to maildir".into(),
                        }
                    }
                    Target::Remote { address } => Attempt {
                        index,
                        account: None,
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
            route => match remote.iter_mut().find(|(r, _)| *r == route) {
                Some((_, list)) => list.push((index, address.to_string())),
                None => remote.push((route, vec![(index, address.to_string())])),
            },
        }
    }
    for (route, recipients) in remote {
        let started = now_micros();
        let addresses: Vec<String> = recipients.iter().map(|(_, a)| a.clone()).collect();
        let results =
            ctx.runtime.block_on(
                ctx.outbound
                    .deliver(&route, &envelope.from, &addresses, &body),
            );
        for ((index, _), result) in recipients.into_iter().zip(results) {
            let (outcome, detail) = match result {
                outbound::Result::Delivered(text) => (Outcome::Delivered, text),
                outbound::Result::Deferred(why) => (Outcome::Deferred(why), String::new()),
                outbound::Result::Failed(why) => (Outcome::Failed(why), String::new()),
            };
            attempts.push(Attempt {
                index,
                account: None,
                relay: route.relay_name(),
                started,
                outcome,
                detail,
            });
        }
    }
    Some((envelope, attempts))
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
        format!(", orig_to=<{}>", rcpt.original)
    };
    let delay = a.started.saturating_sub(envelope.arrival) as f64 / 1e6;
    let (id, from, relay) = (envelope.id, &envelope.from, &a.relay);
    let detail = &a.detail;
    match &a.outcome {
        Outcome::Delivered => tracing::info!(
            "{id}: from=<{from}>, to=<{shown_to}>{orig}, relay={relay}, delay={delay:.3}, status=sent ({detail})"
        ),
        Outcome::Deferred(why) => tracing::warn!(
            "{id}: from=<{from}>, to=<{shown_to}>{orig}, relay={relay}, delay={delay:.3}, status=deferred ({why})"
        ),
        Outcome::Failed(why) => tracing::warn!(
            "{id}: from=<{from}>, to=<{shown_to}>{orig}, relay={relay}, delay={delay:.3}, status=bounced ({why})"
        ),
    }
}
