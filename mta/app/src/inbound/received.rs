//! Reports that other receivers send about our domains: DMARC aggregate
//! reports (RFC 7489 §7.2; XML, gzip or zip) and TLS reports (RFC 8460;
//! JSON, gzip), which arrive at the `rua` address our DNS records name. A
//! stranger's message that looks like one (its subject, or its
//! `TLS-Report-Domain` field) is read with mail-auth's parsers; a report
//! about one of our domains is summed up and kept for the admin's Reports
//! page. The message itself is delivered as any other.
//!
//! Bounded: messages over [`MAX_MESSAGE`] are not read, a report may
//! uncompress to [`MAX_REPORT`] at most, a summary lists at most
//! [`MAX_SOURCES`] sources, and the store keeps the last [`MAX_KEPT`]
//! reports of at most [`KEEP_DAYS`] days.

use std::sync::Arc;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

pub const MAX_MESSAGE: usize = 10 << 20;
pub const MAX_REPORT: usize = 50 << 20;
pub const MAX_SOURCES: usize = 10;
pub const MAX_KEPT: u64 = 1_000;
pub const KEEP_DAYS: u64 = 90;

/// Received time (µs) → the summary (JSON).
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("received_reports");

/// What the page shows of one report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub kind: Kind,
    /// Who sent it (`org_name`, `organization-name`).
    pub org: String,
    pub report_id: String,
    /// Our domain it is about.
    pub domain: String,
    /// The period, unix seconds.
    pub begin: u64,
    pub end: u64,
    /// DMARC: messages that passed and failed it; TLS: sessions that
    /// succeeded and failed.
    pub passed: u64,
    pub failed: u64,
    /// DMARC: the sources of failing mail, `ip: n (disposition)`; TLS: the
    /// failures, `result-type at mx: n`. The largest first.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Dmarc,
    Tls,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dmarc => "DMARC",
            Kind::Tls => "TLS",
        }
    }
}

/// Whether the header section `head` is a report's (cheap: read before
/// the whole message is parsed).
pub fn looks_like_a_report(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&head[..head.len().min(16 * 1024)]).to_lowercase();
    head.lines()
        .any(|l| l.starts_with("subject: report domain:") || l.starts_with("tls-report-domain:"))
}

/// The report in `message`, summed up, if it is one about a domain
/// `ours` says is ours; `Err` says why a report-looking message is not
/// read.
pub fn read(message: &[u8], ours: impl Fn(&str) -> bool) -> anyhow::Result<Option<Summary>> {
    use mail_auth::report::{ActionDisposition, DmarcResult, Report, tlsrpt::TlsReport};
    anyhow::ensure!(
        message.len() <= MAX_MESSAGE,
        "the message is larger than {} MB",
        MAX_MESSAGE >> 20
    );
    if let Ok(r) = Report::parse_rfc5322(message, MAX_REPORT) {
        let domain = r.domain().to_lowercase();
        if !ours(&domain) {
            return Ok(None);
        }
        let (mut passed, mut failed) = (0u64, 0u64);
        let mut sources: Vec<(String, u64)> = Vec::new();
        for record in r.records() {
            let n = u64::from(record.count());
            let pass = record.dmarc_dkim_result() == DmarcResult::Pass
                || record.dmarc_spf_result() == DmarcResult::Pass;
            if pass {
                passed += n;
                continue;
            }
            failed += n;
            let ip = record
                .source_ip()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let disposition = match record.action_disposition() {
                ActionDisposition::Reject => "rejected",
                ActionDisposition::Quarantine => "quarantined",
                _ => "delivered",
            };
            let key = format!("{ip} ({disposition})");
            match sources.iter_mut().find(|(k, _)| *k == key) {
                Some((_, c)) => *c += n,
                None => sources.push((key, n)),
            }
        }
        return Ok(Some(Summary {
            kind: Kind::Dmarc,
            org: r.org_name().to_string(),
            report_id: r.report_id().to_string(),
            domain,
            begin: r.date_range_begin(),
            end: r.date_range_end(),
            passed,
            failed,
            problems: largest(sources),
        }));
    }
    let r = TlsReport::parse_rfc5322(message, MAX_REPORT)
        .map_err(|e| anyhow::anyhow!("neither a DMARC nor a TLS report: {e:?}"))?;
    let ours_policies: Vec<_> = r
        .policies
        .iter()
        .filter(|p| ours(&p.policy.policy_domain.to_lowercase()))
        .collect();
    let Some(first) = ours_policies.first() else {
        return Ok(None);
    };
    let mut problems: Vec<(String, u64)> = Vec::new();
    for p in &ours_policies {
        for f in &p.failure_details {
            let key = format!(
                "{} at {}",
                serde_json::to_value(f.result_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| format!("{:?}", f.result_type)),
                f.receiving_mx_hostname.as_deref().unwrap_or("?")
            );
            let n = u64::from(f.failed_session_count);
            match problems.iter_mut().find(|(k, _)| *k == key) {
                Some((_, c)) => *c += n,
                None => problems.push((key, n)),
            }
        }
    }
    Ok(Some(Summary {
        kind: Kind::Tls,
        org: r.organization_name.clone().unwrap_or_default(),
        report_id: r.report_id.clone(),
        domain: first.policy.policy_domain.to_lowercase(),
        begin: r.date_range.start_datetime.to_timestamp().max(0) as u64,
        end: r.date_range.end_datetime.to_timestamp().max(0) as u64,
        passed: ours_policies
            .iter()
            .map(|p| u64::from(p.summary.total_success))
            .sum(),
        failed: ours_policies
            .iter()
            .map(|p| u64::from(p.summary.total_failure))
            .sum(),
        problems: largest(problems),
    }))
}

impl Summary {
    /// One line for a person: `2025-11-30 google.com DMARC example.org: 7
    /// passed, 3 failed (203.0.113.5 (quarantined): 3)`.
    pub fn line(&self) -> String {
        use mta_proto::logsafe::escape;
        let date = day(self.begin);
        // The sender's words, escaped: this goes to a terminal and a log.
        let mut line = format!(
            "{date} {} {} {}: {} passed, {} failed",
            escape(&self.org),
            self.kind.name(),
            escape(&self.domain),
            self.passed,
            self.failed
        );
        if !self.problems.is_empty() {
            line.push_str(&format!(" ({})", escape(&self.problems.join("; "))));
        }
        line
    }
}

/// The UTC date of `secs`, `2025-11-30`.
pub fn day(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs.min(i64::MAX as u64) as i64, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `n` counts as text, the largest [`MAX_SOURCES`] first.
fn largest(mut counts: Vec<(String, u64)>) -> Vec<String> {
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let more = counts.len().saturating_sub(MAX_SOURCES);
    let mut out: Vec<String> = counts
        .into_iter()
        .take(MAX_SOURCES)
        .map(|(k, n)| format!("{k}: {n}"))
        .collect();
    if more > 0 {
        out.push(format!("and {more} more"));
    }
    out
}

/// The reports received, in `inbound.redb`.
pub struct Received {
    db: Arc<Database>,
}

impl Received {
    pub fn open(db: Arc<Database>) -> anyhow::Result<Received> {
        let tx = db.begin_write()?;
        tx.open_table(TABLE)?;
        tx.commit()?;
        Ok(Received { db })
    }

    /// Keeps `summary`, received at `at` (µs), unless the same report
    /// (its kind, sender, id and domain) is kept already (false); the
    /// oldest go past the limits.
    pub fn keep(&self, summary: &Summary, at: u64) -> anyhow::Result<bool> {
        let bytes = serde_json::to_vec(summary)?;
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(TABLE)?;
            for entry in table.iter()? {
                let (_, v) = entry?;
                if let Ok(s) = serde_json::from_slice::<Summary>(v.value())
                    && (s.kind, &s.org, &s.report_id, &s.domain)
                        == (
                            summary.kind,
                            &summary.org,
                            &summary.report_id,
                            &summary.domain,
                        )
                {
                    return Ok(false);
                }
            }
            let mut key = at;
            while table.get(key)?.is_some() {
                key += 1;
            }
            table.insert(key, bytes.as_slice())?;
            let oldest = at.saturating_sub(KEEP_DAYS * 86_400 * 1_000_000);
            let excess = table.len()?.saturating_sub(MAX_KEPT);
            let mut gone: Vec<u64> = Vec::new();
            for (n, entry) in table.iter()?.enumerate() {
                let k = entry?.0.value();
                if (n as u64) < excess || k < oldest {
                    gone.push(k);
                } else {
                    break;
                }
            }
            for k in gone {
                table.remove(k)?;
            }
        }
        tx.commit().context("keeping a received report")?;
        Ok(true)
    }

    /// The reports kept, newest first, with when they came (µs).
    pub fn list(&self) -> anyhow::Result<Vec<(u64, Summary)>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let mut out = Vec::new();
        for entry in table.iter()?.rev() {
            let (k, v) = entry?;
            if let Ok(s) = serde_json::from_slice(v.value()) {
                out.push((k.value(), s));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DMARC_XML: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <report_id>1234567890</report_id>
    <date_range><begin>1764460800</begin><end>1764547199</end></date_range>
  </report_metadata>
  <policy_published><domain>example.org</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p><sp>quarantine</sp><pct>100</pct></policy_published>
  <record>
    <row><source_ip>192.0.2.10</source_ip><count>7</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>example.org</header_from></identifiers>
    <auth_results><dkim><domain>example.org</domain><result>pass</result></dkim><spf><domain>example.org</domain><result>pass</result></spf></auth_results>
  </record>
  <record>
    <row><source_ip>203.0.113.5</source_ip><count>3</count>
      <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>example.org</header_from></identifiers>
    <auth_results><spf><domain>spoof.example</domain><result>fail</result></spf></auth_results>
  </record>
</feedback>"#;

    fn dmarc_message(xml: &str) -> Vec<u8> {
        format!(
            "From: noreply-dmarc-support@google.com\r\nTo: owner@example.org\r\n\
             Subject: Report domain: example.org Submitter: google.com Report-ID: 1234567890\r\n\
             MIME-Version: 1.0\r\nContent-Type: application/xml\r\n\
             Content-Disposition: attachment; filename=\"google.com!example.org!1764460800!1764547199.xml\"\r\n\r\n{xml}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_dmarc_report_about_our_domain_is_summed_up() {
        let message = dmarc_message(DMARC_XML);
        assert!(looks_like_a_report(&message));
        let s = read(&message, |d| d == "example.org").unwrap().unwrap();
        assert_eq!(s.kind, Kind::Dmarc);
        assert_eq!(s.org, "google.com");
        assert_eq!((s.passed, s.failed), (7, 3));
        assert_eq!(s.problems, ["203.0.113.5 (quarantined): 3"]);
        assert_eq!((s.begin, s.end), (1764460800, 1764547199));
        // About someone else's domain: not kept.
        assert_eq!(read(&message, |d| d == "example.net").unwrap(), None);
    }

    #[test]
    fn what_is_no_report_is_said_and_the_store_keeps_the_newest() {
        assert!(!looks_like_a_report(b"Subject: hello\r\n\r\nhi\r\n"));
        let err = read(b"Subject: Report Domain: x\r\n\r\nnothing\r\n", |_| true).unwrap_err();
        assert!(
            err.to_string().contains("neither a DMARC nor a TLS report"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let db = crate::inbound::open_db(&dir.path().join("inbound.redb")).unwrap();
        let store = Received::open(db).unwrap();
        let s = read(&dmarc_message(DMARC_XML), |_| true).unwrap().unwrap();
        let now = 1_764_547_200_000_000u64;
        let numbered = |n: u64| Summary {
            report_id: format!("r{n}"),
            ..s.clone()
        };
        for n in 0..MAX_KEPT + 3 {
            assert!(store.keep(&numbered(n), now + n).unwrap());
        }
        // The same report again (a sender's retry): kept once.
        assert!(
            !store
                .keep(&numbered(MAX_KEPT + 2), now + MAX_KEPT + 9)
                .unwrap()
        );
        let list = store.list().unwrap();
        assert_eq!(list.len() as u64, MAX_KEPT);
        assert_eq!(list[0].0, now + MAX_KEPT + 2);
        // Too old by then: goes with the next one kept.
        store
            .keep(
                &numbered(0),
                now + KEEP_DAYS * 86_400 * 1_000_000 + 10_000_000,
            )
            .unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
    }
}
