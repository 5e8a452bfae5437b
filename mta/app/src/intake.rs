//! Intake: what a finished SMTP transaction becomes. Its content is spooled
//! as it arrives ([`Intake::incoming`]); at the end the message is DKIM-signed
//! when an account submitted it, its envelope built, and it is stored
//! durably in the queue — only then may the session say `250`.

use std::net::SocketAddr;
use std::sync::Arc;

use mta_proto::smtp::session::{Clock, IntakeError, Submission};
use mta_store::body::Body;
use mta_store::envelope::{Envelope, QueueId};
use mta_store::queue::{Queue, StoreError};
use mta_store::spool::{Budget, Incoming, MEMORY_BUDGET, Place};

use crate::directory::Target;
use crate::settings::Settings;

/// The host's clock and queue ids for the sessions (local time in the
/// trace fields, as Postfix writes them).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::Local::now().fixed_offset()
    }

    fn queue_id(&self) -> u64 {
        QueueId::generate().0
    }
}

/// Where finished messages go, shared by every listener.
pub struct Intake {
    pub queue: Queue,
    /// Message content held in memory by all sessions.
    budget: Arc<Budget>,
    spool: Arc<Place>,
    /// DKIM signings at once.
    signings: tokio::sync::Semaphore,
    /// The resolver the checks of mail from strangers ask.
    dns: Option<Arc<crate::dns::Dns>>,
    /// Greylisting's triplets (none: no greylisting).
    greylist: Option<Arc<crate::inbound::greylist::Greylist>>,
    /// The DMARC aggregate reports gathered (none: none are).
    reports: Option<Arc<crate::inbound::reports::Reports>>,
    /// The reports received about our domains (none: not kept).
    received: Option<Arc<crate::inbound::received::Received>>,
    /// Permits to read received reports ([`REPORT_READS`]).
    report_reads: Arc<tokio::sync::Semaphore>,
    /// When the checks last ran out of time (the DNS not answering).
    checks_timed_out: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Intake {
    pub fn new(queue: Queue, min_free_space: u64) -> Intake {
        Intake {
            budget: Arc::new(Budget::new(MEMORY_BUDGET)),
            spool: Arc::new(Place {
                dir: queue.spool_dir(),
                min_free_space,
            }),
            signings: tokio::sync::Semaphore::new(2),
            queue,
            dns: None,
            checks_timed_out: std::sync::Mutex::new(None),
            greylist: None,
            reports: None,
            received: None,
            report_reads: Arc::new(tokio::sync::Semaphore::new(REPORT_READS)),
        }
    }

    /// Mail from strangers is checked (`crate::inbound`) through `dns`.
    pub fn with_checks(mut self, dns: Arc<crate::dns::Dns>) -> Intake {
        self.dns = Some(dns);
        self
    }

    /// Mail from strangers is greylisted with `greylist` (when
    /// `[inbound] greylist` is not zero).
    pub fn with_greylist(mut self, greylist: Arc<crate::inbound::greylist::Greylist>) -> Intake {
        self.greylist = Some(greylist);
        self
    }

    /// The checks' results go into the DMARC aggregate reports of the
    /// senders' domains that ask for them.
    pub fn with_reports(mut self, reports: Arc<crate::inbound::reports::Reports>) -> Intake {
        self.reports = Some(reports);
        self
    }

    /// DMARC and TLS reports that strangers send about our domains are
    /// read and kept in `received`.
    pub fn with_received(mut self, received: Arc<crate::inbound::received::Received>) -> Intake {
        self.received = Some(received);
        self
    }

    /// A place for the content of a new transaction, in memory within the
    /// shared budget, else in a spool file.
    pub fn incoming(&self) -> Incoming {
        Incoming::new(self.budget.clone(), self.spool.clone())
    }

    /// Signs and stores a finished message; `Ok` only once it is durable.
    pub async fn store(
        &self,
        settings: &Settings,
        peer: SocketAddr,
        submission: Submission<Target>,
        content: Incoming,
    ) -> Result<(), IntakeError> {
        let Submission {
            id,
            arrival,
            from,
            client,
            helo,
            auth,
            recipients,
            size,
            prefix,
            rest,
            transaction: _,
            author_domain,
        } = submission;
        let id = QueueId(id);
        let ours = prefix.len();
        let envelope = Envelope::new(id, from, arrival, client, auth, recipients, size);
        // What the checks found, for once the message is queued.
        let mut checked: Option<Checked> = None;
        let outcome = match content.finish(prefix, rest).await {
            Ok(body) => {
                let body = if envelope.auth.is_some() {
                    self.sign(settings, id, author_domain, body).await
                } else {
                    let client = crate::inbound::auth::Client {
                        ip: peer.ip(),
                        helo: &helo,
                        mail_from: &envelope.from,
                    };
                    if let Err(e) = self.sanity(settings, id, &client).await {
                        count(crate::stats::Event::Sanity);
                        discard(&body);
                        return Err(e);
                    }
                    let forwarded_from = forwarded_from(&envelope, settings);
                    let (body, c) = self
                        .check(settings, id, &client, ours, forwarded_from.as_deref(), body)
                        .await?;
                    let authenticated = c.authenticated.clone();
                    checked = Some(c);
                    let recipients: Vec<&str> = envelope
                        .recipients
                        .iter()
                        .map(|r| r.original.as_str())
                        .collect();
                    if let Err(e) = self
                        .greylist(settings, id, &client, &recipients, authenticated)
                        .await
                    {
                        count(crate::stats::Event::Greylisted);
                        discard(&body);
                        return Err(e);
                    }
                    if forwarded_from.is_some() {
                        count(crate::stats::Event::Forwarded);
                    }
                    body
                };
                let from = mta_proto::logsafe::escape(&envelope.from).into_owned();
                let size = body.len();
                let nrcpt = envelope.recipients.len();
                let spooled = body.file().map(|p| p.to_path_buf());
                let outcome = self.queue.intake(envelope, body).await;
                if outcome.is_ok() {
                    count(crate::stats::Event::Received);
                    if let Some(checked) = checked.take() {
                        self.after_queued(settings, id, checked).await;
                    }
                }
                match &outcome {
                    Ok(()) => tracing::info!(
                        queue_id = %id,
                        client = %peer,
                        from = %from,
                        size,
                        nrcpt,
                        status = "queued",
                        "{id}: client={peer}, from=<{from}>, size={size}, nrcpt={nrcpt} (queued)"
                    ),
                    Err(e) => {
                        if let Some(path) = spooled {
                            let _ = std::fs::remove_file(path);
                        }
                        tracing::warn!("{id}: client={peer}, from=<{from}>: not queued: {e:?}")
                    }
                }
                outcome
            }
            Err(e) => {
                tracing::warn!("{id}: client={peer}: not queued: {e:?}");
                Err(e)
            }
        };
        outcome.map_err(|e| match e {
            StoreError::DiskFull => IntakeError::DiskFull,
            StoreError::Failed => IntakeError::Failed,
        })
    }

    /// HELO and sender sanity (`crate::inbound::sanity`) of a message from
    /// a stranger: `Rejected` for a bad HELO name or a sender domain that
    /// cannot receive mail, `Deferred` when the DNS does not say.
    async fn sanity(
        &self,
        settings: &Settings,
        id: QueueId,
        client: &crate::inbound::auth::Client<'_>,
    ) -> Result<(), IntakeError> {
        use crate::inbound::sanity::{Domain, helo_problem, sender_domain};
        let config = &settings.config;
        if !config.inbound.sender_sanity || config.inbound.trusts(client.ip) {
            return Ok(());
        }
        let from = mta_proto::logsafe::escape(client.mail_from);
        let ip = client.ip;
        let mut ours = vec![config.hostname.as_str()];
        ours.extend(config.domains.iter().map(String::as_str));
        if let Some(why) = helo_problem(client.helo, &ours) {
            let helo = mta_proto::logsafe::escape(client.helo);
            tracing::info!("{id}: from=<{from}>, ip={ip}, helo={helo}: rejected: {why}");
            return Err(IntakeError::Rejected(why));
        }
        let (Some((_, domain)), Some(dns)) = (client.mail_from.rsplit_once('@'), &self.dns) else {
            return Ok(()); // the null sender (a bounce), or no resolver yet
        };
        match sender_domain(dns, domain).await {
            Domain::Exists => Ok(()),
            Domain::Unknown(why) => {
                tracing::info!("{id}: from=<{from}>, ip={ip}: rejected: {why}");
                Err(IntakeError::Rejected(why))
            }
            Domain::Unsure(why) => {
                tracing::info!("{id}: from=<{from}>, ip={ip}: deferred: {why}");
                Err(IntakeError::Deferred(why))
            }
        }
    }

    /// Greylisting (`crate::inbound::greylist`) of a message from a
    /// stranger: `Err(Deferred)` for a triplet not seen long enough ago.
    /// Trusted networks are not greylisted; a database that fails lets the
    /// mail through (logged).
    async fn greylist(
        &self,
        settings: &Settings,
        id: QueueId,
        client: &crate::inbound::auth::Client<'_>,
        recipients: &[&str],
        authenticated: Option<String>,
    ) -> Result<(), IntakeError> {
        let inbound = &settings.config.inbound;
        let Some(greylist) = &self.greylist else {
            return Ok(());
        };
        if inbound.greylist.is_zero() || inbound.trusts(client.ip) {
            return Ok(());
        }
        let policy = crate::inbound::greylist::Policy {
            delay: inbound.greylist,
            ..Default::default()
        };
        let (greylist, ip) = (greylist.clone(), client.ip);
        let sender = client.mail_from.to_string();
        let rcpts: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
        let decided = tokio::task::spawn_blocking(move || {
            let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
            greylist.check(
                &policy,
                ip,
                &sender,
                &rcpts,
                authenticated.as_deref(),
                mta_store::envelope::now_secs(),
            )
        })
        .await;
        let from = mta_proto::logsafe::escape(client.mail_from);
        match decided {
            Ok(Ok(crate::inbound::greylist::Decision::Pass(why))) => {
                tracing::debug!("{id}: greylist: {why}");
                Ok(())
            }
            Ok(Ok(crate::inbound::greylist::Decision::Wait(wait))) => {
                tracing::info!(
                    "{id}: from=<{from}>, ip={ip}: greylisted for {} s (nrcpt={})",
                    wait.as_secs(),
                    recipients.len()
                );
                Err(IntakeError::Deferred(format!(
                    "Greylisted: mail from this network, sender and recipient is new here; please try again in {}",
                    crate::inbound::greylist::in_words(wait)
                )))
            }
            Ok(Err(e)) => {
                tracing::error!("{id}: greylist: {e:#}; the message passes");
                Ok(())
            }
            Err(e) => {
                tracing::error!("{id}: greylist: {e}; the message passes");
                Ok(())
            }
        }
    }

    /// Checks mail from a stranger (SPF, DKIM, ARC, DMARC) and puts the
    /// results in front of it, having removed fields that claim to be our
    /// results; `Err` (`Rejected`, with the reason) when the sender's
    /// domain asks for such mail to be refused (the message is then gone:
    /// it was never acknowledged). `ours` is the length of our own fields
    /// in front of the message as received. With the body, the domain SPF
    /// or DKIM vouched for.
    async fn check(
        &self,
        settings: &Settings,
        id: QueueId,
        client: &crate::inbound::auth::Client<'_>,
        ours: usize,
        forwarded_from: Option<&str>,
        mut body: Body,
    ) -> Result<(Body, Checked), IntakeError> {
        if !settings.config.inbound.authenticate {
            return Ok((body, Checked::default()));
        }
        let Some(dns) = &self.dns else {
            return Ok((body, Checked::default()));
        };
        let authenticator = dns.authenticator();
        let hostname = &settings.config.hostname;
        let report_mail;
        let verdict = {
            let mapped = match body.mapped() {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("{id}: the message cannot be read for its checks: {e}");
                    return Ok((body, Checked::default()));
                }
            };
            let chunks = mapped.chunks();
            let message = match chunks.as_slice() {
                [_, file] => *file,
                [head] => head.get(ours..).unwrap_or_default(),
                _ => &[],
            };
            // A report about our domains, read once the message is queued.
            report_mail = (self.received.is_some()
                && message.len() <= crate::inbound::received::MAX_MESSAGE
                && crate::inbound::received::looks_like_a_report(message))
            .then(|| message.to_vec());
            match authenticator {
                // No resolver yet (no DNS server known).
                None => crate::inbound::auth::unchecked(hostname, message, "no DNS resolver"),
                Some(authenticator) => {
                    let sealer = forwarded_from.map(|domain| crate::inbound::auth::Sealer {
                        domain,
                        keys: &settings.dkim,
                    });
                    self.timed_check(&authenticator, hostname, client, message, sealer)
                        .await
                }
            }
        };
        let from = mta_proto::logsafe::escape(client.mail_from);
        // The row of the sender domain's DMARC report: now for a message
        // refused here, once queued for the others.
        let row = verdict
            .report
            .clone()
            .filter(|row| !settings.directory.is_local_domain(&row.domain));
        match verdict.action {
            crate::inbound::Action::Deliver | crate::inbound::Action::Junk(_) => {
                let junk = match &verdict.action {
                    crate::inbound::Action::Junk(why) => {
                        tracing::info!(
                            "{id}: from=<{from}>, ip={}: {}: for Junk ({why})",
                            client.ip,
                            verdict.summary
                        );
                        count(crate::stats::Event::Junk);
                        crate::inbound::junk::mark(why)
                    }
                    _ => {
                        tracing::info!(
                            "{id}: from=<{from}>, ip={}: {}",
                            client.ip,
                            verdict.summary
                        );
                        String::new()
                    }
                };
                if !verdict.forged.is_empty() {
                    let cut: Vec<_> = verdict
                        .forged
                        .iter()
                        .map(|r| (r.start + ours) as u64..(r.end + ours) as u64)
                        .collect();
                    tracing::info!(
                        "{id}: removed {} field(s) that claimed to be ours (Authentication-Results, Junk marks)",
                        cut.len()
                    );
                    if let Err(e) = body.cut(&cut) {
                        // Not safe to deliver as it is, and not acknowledged yet.
                        tracing::error!("{id}: cannot remove forged fields: {e}");
                        discard(&body);
                        return Err(IntakeError::Failed);
                    }
                }
                body.prepend(junk.as_bytes());
                body.prepend(verdict.header.as_bytes());
                let checked = Checked {
                    authenticated: verdict.authenticated,
                    row,
                    report_mail,
                };
                Ok((body, checked))
            }
            crate::inbound::Action::Reject(why) => {
                tracing::warn!(
                    "{id}: from=<{from}>, ip={}: rejected: {} ({why})",
                    client.ip,
                    verdict.summary
                );
                count(crate::stats::Event::DmarcReject);
                if let (Some(reports), Some(row)) = (&self.reports, row) {
                    reports.add(row, mta_store::envelope::now_secs());
                }
                discard(&body);
                Err(IntakeError::Rejected(why))
            }
        }
    }

    /// What the checks of a queued message add: its DMARC report row, and
    /// the report it carries about our domains (read in the background, at
    /// most [`REPORT_READS`] at once; only when SPF or DKIM vouched for
    /// the sender: anyone can write a report).
    async fn after_queued(&self, settings: &Settings, id: QueueId, checked: Checked) {
        if let (Some(reports), Some(row)) = (&self.reports, checked.row) {
            reports.add(row, mta_store::envelope::now_secs());
        }
        let (Some(received), Some(message)) = (&self.received, checked.report_mail) else {
            return;
        };
        if checked.authenticated.is_none() {
            tracing::info!(
                "{id}: looks like a report, but its sender is not authenticated: not read"
            );
            return;
        }
        use crate::inbound::received::read;
        let Ok(permit) = self.report_reads.clone().acquire_owned().await else {
            return;
        };
        let received = received.clone();
        let directory = settings.directory.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            match read(&message, |d| directory.is_local_domain(d)) {
                Ok(Some(s)) => {
                    tracing::info!(
                        "{id}: a {} report from {} about {}: {} passed, {} failed",
                        s.kind.name(),
                        mta_proto::logsafe::escape(&s.org),
                        s.domain,
                        s.passed,
                        s.failed
                    );
                    let at = mta_store::envelope::now_micros();
                    match received.keep(&s, at) {
                        Ok(true) => {}
                        Ok(false) => tracing::info!("{id}: the same report was received before"),
                        Err(e) => tracing::warn!("{id}: the report is not kept: {e:#}"),
                    }
                }
                Ok(None) => {
                    tracing::info!("{id}: a report about a domain that is not ours: not kept")
                }
                Err(e) => tracing::info!("{id}: looks like a report but is not read: {e:#}"),
            }
        });
    }

    /// The checks under their deadline: the full one, or the short one
    /// while the DNS is not answering (the last check ran out of time less
    /// than a minute ago).
    async fn timed_check(
        &self,
        authenticator: &mail_auth::MessageAuthenticator,
        hostname: &str,
        client: &crate::inbound::auth::Client<'_>,
        message: &[u8],
        sealer: Option<crate::inbound::auth::Sealer<'_>>,
    ) -> crate::inbound::Verdict {
        use crate::inbound::auth::{DEADLINE, SHORT_DEADLINE, SLOW_FOR};
        let slow = self
            .checks_timed_out
            .lock()
            .expect("checks")
            .is_some_and(|at| at.elapsed() < SLOW_FOR);
        let deadline = if slow { SHORT_DEADLINE } else { DEADLINE };
        let started = std::time::Instant::now();
        let verdict =
            crate::inbound::auth::check(authenticator, hostname, client, message, deadline, sealer)
                .await;
        let mut timed_out = self.checks_timed_out.lock().expect("checks");
        if started.elapsed() >= deadline {
            if !slow {
                tracing::warn!(
                    "the DNS did not answer the sender checks within {} s; until it does, they get {} s",
                    DEADLINE.as_secs(),
                    SHORT_DEADLINE.as_secs()
                );
            }
            *timed_out = Some(std::time::Instant::now());
        } else {
            *timed_out = None;
        }
        verdict
    }

    /// DKIM-signs submitted mail whose From domain (checked by the session
    /// to belong to the account) is ours; the signatures go in front of the
    /// message. A failure to sign is logged and the message still goes
    /// (unsigned is better than lost).
    async fn sign(
        &self,
        settings: &Settings,
        id: QueueId,
        domain: Option<String>,
        body: Body,
    ) -> Body {
        let Some(domain) = domain.filter(|d| settings.directory.is_local_domain(d)) else {
            return body;
        };
        let keys = settings.dkim.clone();
        // Signing reads the whole message (a large one through a memory
        // map): a few at a time.
        let Ok(_permit) = self.signings.acquire().await else {
            return body;
        };
        tokio::task::spawn_blocking(move || {
            let signature = body
                .mapped()
                .map_err(anyhow::Error::from)
                .and_then(|m| keys.sign(&domain, &m.chunks()));
            let mut body = body;
            match signature {
                Ok(fields) => body.prepend(&fields),
                Err(e) => tracing::error!("{id}: not DKIM-signed: {e:#}"),
            }
            body
        })
        .await
        .expect("the signing task does not panic")
    }
}

/// Parses of received reports at once (each may hold 10 MB of message and
/// 50 MB uncompressed).
const REPORT_READS: usize = 2;

/// What the checks of a stranger's message found that counts once it is
/// queued.
#[derive(Default)]
struct Checked {
    /// The domain SPF or DKIM vouched for.
    authenticated: Option<String>,
    /// Its row in the sender domain's DMARC report.
    row: Option<crate::inbound::reports::Row>,
    /// The message, when it looks like a report about our domains.
    report_mail: Option<Vec<u8>>,
}

/// The domain of the first alias that forwards this message to another
/// domain (it ARC-seals the message), if one does.
fn forwarded_from(envelope: &Envelope, settings: &Settings) -> Option<String> {
    envelope.recipients.iter().find_map(|r| match &r.target {
        Target::Remote { address } => settings.directory.forwarding_domain(&r.original, address),
        Target::Local { .. } => None,
    })
}

fn count(event: crate::stats::Event) {
    crate::stats::stats().count(event);
}

/// Removes the spool file of a message that will not be queued (refused,
/// deferred, or not safe to keep); one in memory just goes.
fn discard(body: &Body) {
    if let Some(path) = body.file() {
        let _ = std::fs::remove_file(path);
    }
}
