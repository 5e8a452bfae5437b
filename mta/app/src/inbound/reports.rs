//! DMARC aggregate reports (RFC 7489 §7.2) for the domains we receive
//! mail from, as every large receiver sends them: each message from a
//! stranger whose From domain publishes a DMARC record with `rua`
//! addresses adds a row (source address, what SPF and DKIM said, what the
//! policy made of it) to that domain's report of the day (UTC); identical
//! rows are counted, not repeated. After the day, one report per domain —
//! XML, gzip-compressed, in a message from our postmaster, DKIM-signed —
//! goes to the `rua` addresses that may receive it (an address outside the
//! domain must be authorised by the `<domain>._report._dmarc.<its domain>`
//! record, §7.1; a report larger than an address's `!size` is not sent
//! there). The XML and the message are mail-auth's.
//!
//! Rows are gathered in memory and written to `inbound.redb` every minute
//! and at shutdown (a crash loses at most a minute of counts: a report is
//! a statistic, not mail). Memory is bounded: at most [`MAX_DOMAINS`]
//! domains a day and [`MAX_ROWS`] distinct rows a domain (more are counted
//! as omitted); days that could not be sent for a week are dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use mail_auth::report::{PolicyPublished, Record, Report};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub const MAX_DOMAINS: usize = 500;
pub const MAX_ROWS: usize = 50;
/// Days a report waits to be sent before it is dropped.
pub const KEEP_DAYS: u32 = 7;
const DAY: u64 = 86_400;

const TABLE: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new("dmarc_reports");

/// What one message adds to the report of its From domain.
#[derive(Debug, Clone)]
pub struct Row {
    /// The domain whose policy applied (the report's domain).
    pub domain: String,
    pub policy: PolicyPublished,
    /// Its `rua` addresses, each with its size limit (0: none).
    pub rua: Vec<(String, usize)>,
    /// The row, its count left at 0.
    pub record: Record,
}

/// One domain's report of one day, as gathered so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DomainDay {
    policy: PolicyPublished,
    rua: Vec<(String, usize)>,
    rows: Vec<(Record, u32)>,
    /// Rows past [`MAX_ROWS`], counted only.
    omitted: u32,
    /// Changed since it was last written.
    #[serde(skip)]
    dirty: bool,
}

/// A report ready to go: its message and where.
pub struct Outgoing {
    pub day: u32,
    pub domain: String,
    /// The policy's `rua` addresses with their size limits.
    pub rua: Vec<(String, usize)>,
    pub report: Report,
    /// Rows past the limit, left out of the report.
    pub omitted: u32,
}

pub struct Reports {
    db: Arc<Database>,
    days: Mutex<BTreeMap<(u32, String), DomainDay>>,
}

fn day_of(now: u64) -> u32 {
    (now / DAY) as u32
}

impl Reports {
    /// The reports not sent yet, as `inbound.redb` keeps them.
    pub fn open(db: Arc<Database>) -> anyhow::Result<Reports> {
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?;
        tx.commit()?;
        let mut days = BTreeMap::new();
        let tx = db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (day, domain) = key.value();
            match serde_json::from_slice::<DomainDay>(value.value()) {
                Ok(d) => {
                    days.insert((day, domain.to_string()), d);
                }
                Err(e) => tracing::warn!("a stored DMARC report of {domain} is unreadable: {e}"),
            }
        }
        Ok(Reports {
            db,
            days: Mutex::new(days),
        })
    }

    /// Counts `row` in its domain's report of the day of `now`.
    pub fn add(&self, row: Row, now: u64) {
        let day = day_of(now);
        let mut days = self.days.lock().expect("reports");
        let key = (day, row.domain);
        if !days.contains_key(&key) {
            let today = days.range((day, String::new())..).count();
            if today >= MAX_DOMAINS {
                tracing::debug!(
                    "DMARC report of {} not kept: {MAX_DOMAINS} domains today",
                    key.1
                );
                return;
            }
        }
        let entry = days.entry(key).or_insert_with(|| DomainDay {
            policy: row.policy.clone(),
            rua: row.rua.clone(),
            rows: Vec::new(),
            omitted: 0,
            dirty: true,
        });
        // The policy as it was last seen.
        entry.policy = row.policy;
        entry.rua = row.rua;
        entry.dirty = true;
        let full = entry.rows.len() >= MAX_ROWS;
        match entry.rows.iter_mut().find(|(r, _)| *r == row.record) {
            Some((_, n)) => *n = n.saturating_add(1),
            None if !full => entry.rows.push((row.record, 1)),
            None => entry.omitted = entry.omitted.saturating_add(1),
        }
    }

    /// Writes what changed since the last time.
    pub fn flush(&self) -> anyhow::Result<()> {
        let changed: Vec<((u32, String), Vec<u8>)> = {
            let mut days = self.days.lock().expect("reports");
            days.iter_mut()
                .filter(|(_, d)| d.dirty)
                .map(|(k, d)| {
                    d.dirty = false;
                    Ok((k.clone(), serde_json::to_vec(d)?))
                })
                .collect::<anyhow::Result<_>>()?
        };
        if changed.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(TABLE)?;
            for ((day, domain), bytes) in &changed {
                table.insert((*day, domain.as_str()), bytes.as_slice())?;
            }
        }
        tx.commit().context("writing the DMARC reports")?;
        Ok(())
    }

    /// Puts back a report that could not be sent now (the DNS did not
    /// answer): it is tried again later, as long as it is kept.
    pub fn restore(&self, out: Outgoing) {
        let d = DomainDay {
            policy: out.report.policy_published.clone(),
            rua: out.rua,
            rows: out
                .report
                .records()
                .iter()
                .map(|r| (r.clone().with_count(0), r.count()))
                .collect(),
            omitted: out.omitted,
            dirty: true,
        };
        self.days
            .lock()
            .expect("reports")
            .insert((out.day, out.domain), d);
    }

    /// The reports of the days before `through` (or of every day, today's
    /// too, with `through` past today), taken out of the store: the
    /// caller sends them. Reports older than [`KEEP_DAYS`] are dropped.
    pub fn take_due(&self, now: u64, include_today: bool) -> anyhow::Result<Vec<Outgoing>> {
        let today = day_of(now);
        let through = if include_today { today + 1 } else { today };
        let taken: Vec<((u32, String), DomainDay)> = {
            let mut days = self.days.lock().expect("reports");
            let keys: Vec<(u32, String)> = days
                .keys()
                .filter(|(day, _)| *day < through)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| days.remove(&k).map(|d| (k, d)))
                .collect()
        };
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(TABLE)?;
            for ((day, domain), _) in &taken {
                table.remove((*day, domain.as_str()))?;
            }
        }
        tx.commit().context("removing the DMARC reports taken")?;
        Ok(taken
            .into_iter()
            .filter(|((day, domain), _)| {
                let fresh = day + KEEP_DAYS >= today;
                if !fresh {
                    tracing::warn!("the DMARC report of {domain} for day {day} was not sent in {KEEP_DAYS} days: dropped");
                }
                fresh
            })
            .map(|((day, domain), d)| Outgoing {
                day,
                report: report_of(&domain, day, &d),
                domain,
                rua: d.rua,
                omitted: d.omitted,
            })
            .collect())
    }
}

/// The report; `org_name`, `email` and the report id are the sender's
/// and are filled in by [`Outgoing::message`].
fn report_of(domain: &str, day: u32, d: &DomainDay) -> Report {
    let begin = u64::from(day) * DAY;
    let mut report = Report::new()
        .with_domain(domain)
        .with_date_range_begin(begin)
        .with_date_range_end(begin + DAY - 1)
        .with_policy_published(d.policy.clone());
    for (record, n) in &d.rows {
        report = report.with_record(record.clone().with_count(*n));
    }
    if d.omitted > 0 {
        report = report.with_error(format!(
            "{} messages in more than {MAX_ROWS} distinct rows are not listed",
            d.omitted
        ));
    }
    report
}

impl Outgoing {
    /// The message (RFC 7489 §7.2.1.1), from `from` of `hostname`, to
    /// `to`: the report gzip-compressed as an attachment.
    pub fn message(&self, hostname: &str, from: &str, to: &[&str]) -> anyhow::Result<Vec<u8>> {
        let report = self
            .report
            .clone()
            .with_org_name(hostname)
            .with_email(from)
            .with_report_id(format!("{}.{}@{hostname}", self.day, self.domain));
        let mut out = Vec::new();
        report
            .write_rfc5322(
                hostname,
                ("Mailbox DMARC reports", from),
                to.iter().copied(),
                &mut out,
            )
            .context("writing the report")?;
        Ok(out)
    }

    /// Messages it counts.
    pub fn messages(&self) -> u64 {
        self.report
            .records()
            .iter()
            .map(|r| u64::from(r.count()))
            .sum::<u64>()
            + u64::from(self.omitted)
    }
}

/// What sends the reports: the store, and the queue they go through.
pub struct Reporter {
    pub reports: Arc<Reports>,
    pub queue: mta_store::queue::Queue,
    pub live: crate::settings::Live,
    pub dns: Arc<crate::dns::Dns>,
    /// The reports received (for `mta reports list`).
    pub received: Option<Arc<super::received::Received>>,
}

/// How often the gathered rows are written, and the due reports sent.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const SEND_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl Reporter {
    /// Writes the rows every minute and sends each day's reports once the
    /// day is over (checked every ten minutes), until the server stops.
    pub async fn run(self: Arc<Self>) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut send = tokio::time::interval(SEND_EVERY);
        loop {
            tokio::select! {
                _ = flush.tick() => self.flush().await,
                _ = send.tick() => {
                    if let Err(e) = self.send(false).await {
                        tracing::warn!("DMARC reports not sent: {e:#}");
                    }
                }
            }
        }
    }

    /// The reports received, newest first, a line each.
    pub fn list_received(&self) -> anyhow::Result<String> {
        let Some(received) = &self.received else {
            anyhow::bail!(
                "received reports are not kept: inbound.redb could not be opened (see the log)"
            );
        };
        let list = received.list()?;
        if list.is_empty() {
            return Ok("no report received yet\n".into());
        }
        Ok(list.iter().map(|(_, s)| s.line() + "\n").collect())
    }

    /// Writes the rows gathered (off the runtime's threads).
    pub async fn flush(&self) {
        let reports = self.reports.clone();
        match tokio::task::spawn_blocking(move || reports.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("DMARC report rows not written: {e:#}"),
            Err(e) => tracing::warn!("DMARC report rows not written: {e}"),
        }
    }

    /// Sends the reports due (with `include_today`, today's too: `mta
    /// reports send`), from our postmaster (the first domain), DKIM-signed;
    /// one line per report for the log and the command.
    pub async fn send(&self, include_today: bool) -> anyhow::Result<Vec<String>> {
        let reports = self.reports.clone();
        let now = mta_store::envelope::now_secs();
        let due =
            tokio::task::spawn_blocking(move || reports.take_due(now, include_today)).await??;
        send(due, &self.reports, &self.queue, &self.live, &self.dns).await
    }
}

async fn send(
    due: Vec<Outgoing>,
    reports: &Reports,
    queue: &mta_store::queue::Queue,
    live: &crate::settings::Live,
    dns: &crate::dns::Dns,
) -> anyhow::Result<Vec<String>> {
    use mta_store::envelope::{Envelope, QueueId, now_micros};
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let settings = live.get();
    let hostname = &settings.config.hostname;
    let Some(ours) = settings.directory.primary_domain().map(str::to_string) else {
        anyhow::bail!("no domain to send DMARC reports from");
    };
    let from = format!("postmaster@{ours}");
    let authenticator = dns.authenticator();
    let no_cache: Option<&mail_auth::common::cache::NoCache<Box<str>, mail_auth::Txt>> = None;
    let mut lines = Vec::new();
    for out in due {
        let date = super::received::day(u64::from(out.day) * DAY);
        let what = format!(
            "the DMARC report of {} for {date} ({} messages)",
            out.domain,
            out.messages()
        );
        let addresses: Vec<&str> = out.rua.iter().map(|(a, _)| a.as_str()).collect();
        // An address outside the domain must accept its reports (§7.1).
        let allowed = match &authenticator {
            Some(a) => {
                a.verify_dmarc_report_address(&out.domain, &addresses, no_cache)
                    .await
            }
            None => None,
        };
        let Some(allowed) = allowed else {
            lines.push(format!("{what} not sent yet: the DNS did not answer"));
            reports.restore(out);
            continue;
        };
        let allowed: Vec<&str> = allowed.into_iter().copied().collect();
        let message = out.message(hostname, &from, &allowed)?;
        let to: Vec<&str> = out
            .rua
            .iter()
            .filter(|(a, max)| {
                allowed.contains(&a.as_str()) && (*max == 0 || message.len() <= *max)
            })
            .map(|(a, _)| a.as_str())
            .collect();
        if to.is_empty() {
            lines.push(format!(
                "{what} not sent: none of its addresses ({}) takes it (outside the domain without its authorisation, or a size limit)",
                addresses.join(", ")
            ));
            continue;
        }
        let message = match settings.dkim.signed(&ours, &message) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::warn!("{what}: not DKIM-signed: {e:#}");
                message
            }
        };
        let recipients = to
            .iter()
            .map(|a| {
                let target = crate::directory::Target::Remote {
                    address: a.to_string(),
                };
                (a.to_string(), target)
            })
            .collect();
        let id = QueueId::generate();
        let size = message.len() as u64;
        let envelope = Envelope::new(
            id,
            from.clone(),
            now_micros(),
            "dmarc-report".into(),
            None,
            recipients,
            size,
        );
        match queue
            .intake(envelope, mta_store::body::Body::inline(message))
            .await
        {
            Ok(()) => lines.push(format!("{id}: {what} sent to {}", to.join(", "))),
            Err(e) => lines.push(format!("{what} not sent: the queue refused it ({e:?})")),
        }
    }
    for line in &lines {
        tracing::info!("{line}");
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::report::{ActionDisposition, Disposition};

    fn row(domain: &str, ip: &str, disposition: ActionDisposition) -> Row {
        Row {
            domain: domain.into(),
            policy: PolicyPublished {
                domain: domain.into(),
                p: Disposition::Reject,
                ..Default::default()
            },
            rua: vec![(format!("dmarc@{domain}"), 0)],
            record: Record::new()
                .with_source_ip(ip.parse().unwrap())
                .with_action_disposition(disposition)
                .with_header_from(domain)
                .with_envelope_from(domain),
        }
    }

    const NOW: u64 = 1_764_460_800; // a day's start

    #[test]
    fn rows_are_counted_per_domain_and_day_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::inbound::open_db(&dir.path().join("inbound.redb")).unwrap();
        let reports = Reports::open(db.clone()).unwrap();
        for _ in 0..3 {
            reports.add(
                row("a.example", "192.0.2.1", ActionDisposition::Pass),
                NOW + 10,
            );
        }
        reports.add(
            row("a.example", "192.0.2.9", ActionDisposition::Reject),
            NOW + 20,
        );
        reports.add(
            row("b.example", "192.0.2.1", ActionDisposition::Pass),
            NOW + 30,
        );
        reports.add(
            row("a.example", "192.0.2.1", ActionDisposition::Pass),
            NOW + DAY,
        );
        reports.flush().unwrap();
        drop(reports);
        let reports = Reports::open(db).unwrap();
        // Nothing is due during the day...
        assert!(reports.take_due(NOW + 100, false).unwrap().is_empty());
        // ...the day after, yesterday's two reports are.
        let due = reports.take_due(NOW + DAY + 100, false).unwrap();
        assert_eq!(due.len(), 2);
        let a = due.iter().find(|o| o.domain == "a.example").unwrap();
        assert_eq!(a.messages(), 4);
        assert_eq!(a.report.records().len(), 2);
        assert_eq!(a.report.date_range_begin(), NOW);
        assert_eq!(a.report.date_range_end(), NOW + DAY - 1);
        // Taken once: not again; today's when asked for.
        assert!(reports.take_due(NOW + DAY + 100, false).unwrap().is_empty());
        let today = reports.take_due(NOW + DAY + 100, true).unwrap();
        assert_eq!(today.len(), 1);
        let message = today[0]
            .message(
                "mx.example.org",
                "postmaster@example.org",
                &["dmarc@a.example"],
            )
            .unwrap();
        let text = String::from_utf8_lossy(&message);
        assert!(text.contains("Report Domain: a.example"), "{text}");
        assert!(text.contains("application/gzip"), "{text}");
        // One put back (the DNS did not answer) is due again, as it was.
        let again = today.into_iter().next().unwrap();
        reports.restore(again);
        let due = reports.take_due(NOW + DAY + 100, true).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].messages(), 1);
        assert_eq!(due[0].report.records()[0].count(), 1);
    }

    #[test]
    fn rows_and_domains_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::inbound::open_db(&dir.path().join("inbound.redb")).unwrap();
        let reports = Reports::open(db).unwrap();
        for n in 0..MAX_ROWS + 5 {
            let ip = format!("192.0.2.{n}");
            reports.add(row("a.example", &ip, ActionDisposition::Pass), NOW);
        }
        for n in 0..MAX_DOMAINS + 5 {
            reports.add(
                row(
                    &format!("d{n}.example"),
                    "192.0.2.1",
                    ActionDisposition::Pass,
                ),
                NOW,
            );
        }
        let due = reports.take_due(NOW, true).unwrap();
        assert_eq!(due.len(), MAX_DOMAINS);
        let a = due.iter().find(|o| o.domain == "a.example").unwrap();
        assert_eq!(a.report.records().len(), MAX_ROWS);
        assert_eq!(a.omitted, 5);
        assert_eq!(a.messages(), MAX_ROWS as u64 + 5);
        assert!(a.report.error()[0].contains("5 messages"));
    }
}
