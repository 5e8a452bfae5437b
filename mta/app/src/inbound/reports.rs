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
//! there; `crate::reporter` sends). The XML and the message are
//! mail-auth's.
//!
//! Rows are gathered in `crate::daily`'s store (in memory, written to
//! `inbound.redb` every minute); at most [`MAX_ROWS`] distinct rows a
//! domain and day (more are counted as omitted).

use std::sync::Arc;

use anyhow::Context;
use mail_auth::report::{PolicyPublished, Record, Report};
use redb::Database;
use serde::{Deserialize, Serialize};

use crate::daily::{DAY, Daily};

pub const MAX_ROWS: usize = 50;

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
pub struct DomainDay {
    policy: PolicyPublished,
    rua: Vec<(String, usize)>,
    rows: Vec<(Record, u32)>,
    /// Rows past [`MAX_ROWS`], counted only.
    omitted: u32,
}

impl crate::daily::Merge for DomainDay {
    fn merge(&mut self, other: DomainDay) {
        for (record, n) in other.rows {
            let full = self.rows.len() >= MAX_ROWS;
            match self.rows.iter_mut().find(|(r, _)| *r == record) {
                Some((_, m)) => *m = m.saturating_add(n),
                None if !full => self.rows.push((record, n)),
                None => self.omitted = self.omitted.saturating_add(n),
            }
        }
        self.omitted = self.omitted.saturating_add(other.omitted);
    }
}

/// A report ready to go: its day, its domain, what was gathered.
pub struct Outgoing {
    pub day: u32,
    pub domain: String,
    pub data: DomainDay,
}

/// The DMARC aggregate reports being gathered.
pub struct Reports {
    daily: Daily<DomainDay>,
}

impl Reports {
    /// The reports not sent yet, as `inbound.redb` keeps them.
    pub fn open(db: Arc<Database>) -> anyhow::Result<Reports> {
        Ok(Reports {
            daily: Daily::open(db, "dmarc_reports")?,
        })
    }

    /// Counts `row` in its domain's report of the day of `now`.
    pub fn add(&self, row: Row, now: u64) {
        let Row {
            domain,
            policy,
            rua,
            record,
        } = row;
        let new = {
            let (policy, rua) = (policy.clone(), rua.clone());
            || DomainDay {
                policy,
                rua,
                rows: Vec::new(),
                omitted: 0,
            }
        };
        let kept = self.daily.update(now, domain, new, |d| {
            // The policy as it was last seen.
            d.policy = policy;
            d.rua = rua;
            let full = d.rows.len() >= MAX_ROWS;
            match d.rows.iter_mut().find(|(r, _)| *r == record) {
                Some((_, n)) => *n = n.saturating_add(1),
                None if !full => d.rows.push((record, 1)),
                None => d.omitted = d.omitted.saturating_add(1),
            }
        });
        if !kept {
            tracing::debug!("a DMARC report row not kept: too many domains today");
        }
    }

    /// Writes what changed since the last time.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.daily.flush()
    }

    /// The reports of the days before today (and today's with
    /// `include_today`), taken out of the store: the caller sends them.
    pub fn take_due(&self, now: u64, include_today: bool) -> anyhow::Result<Vec<Outgoing>> {
        Ok(self
            .daily
            .take_due(now, include_today)?
            .into_iter()
            .map(|(day, domain, data)| Outgoing { day, domain, data })
            .collect())
    }

    /// Puts back a report that could not be sent now.
    pub fn restore(&self, out: Outgoing) {
        self.daily.restore(out.day, out.domain, out.data);
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
            .report()
            .with_org_name(hostname)
            .with_email(from)
            // Unique even when a day is sent in parts (`mta reports send`).
            .with_report_id(format!(
                "{}.{}.{}@{hostname}",
                self.day,
                self.domain,
                mta_store::envelope::now_secs()
            ));
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

    /// The report (without the sender's name, address and report id).
    pub fn report(&self) -> Report {
        report_of(&self.domain, self.day, &self.data)
    }

    /// The policy's `rua` addresses with their size limits.
    pub fn rua(&self) -> &[(String, usize)] {
        &self.data.rua
    }

    /// Messages it counts.
    pub fn messages(&self) -> u64 {
        self.data
            .rows
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum::<u64>()
            + u64::from(self.data.omitted)
    }
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
        assert_eq!(a.report().records().len(), 2);
        assert_eq!(a.report().date_range_begin(), NOW);
        assert_eq!(a.report().date_range_end(), NOW + DAY - 1);
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
        assert_eq!(due[0].report().records()[0].count(), 1);
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
        for n in 0..crate::daily::MAX_DOMAINS + 5 {
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
        assert_eq!(due.len(), crate::daily::MAX_DOMAINS);
        let a = due.iter().find(|o| o.domain == "a.example").unwrap();
        assert_eq!(a.report().records().len(), MAX_ROWS);
        assert_eq!(a.data.omitted, 5);
        assert_eq!(a.messages(), MAX_ROWS as u64 + 5);
        assert!(a.report().error()[0].contains("5 messages"));
    }
}
