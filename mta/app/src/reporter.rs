//! Sends the daily reports — DMARC aggregate reports of the mail we
//! receive (`inbound::reports`), TLS reports of the mail we send
//! (`outbound::tlsrpt`) — from our postmaster (the first domain),
//! DKIM-signed, through the queue like any mail; and lists the reports
//! received (`inbound::received`) for `mta reports list`.

use std::sync::Arc;
use std::time::Duration;

use mta_store::envelope::{Envelope, QueueId, now_micros, now_secs};

use crate::daily::DAY;
use crate::inbound::received::{Received, day};
use crate::inbound::reports::{Outgoing, Reports};
use crate::outbound::tlsrpt::{TlsDay, TlsReports};
use crate::settings::Settings;

/// What sends the reports: the stores, and the queue they go through.
pub struct Reporter {
    pub reports: Arc<Reports>,
    /// The TLS reports of our deliveries (none: not gathered).
    pub tls: Option<Arc<TlsReports>>,
    pub queue: mta_store::queue::Queue,
    pub live: crate::settings::Live,
    pub dns: Arc<crate::dns::Dns>,
    /// The reports received (for `mta reports list`).
    pub received: Option<Arc<Received>>,
}

/// How often the gathered counts are written, and the due reports sent.
const FLUSH_EVERY: Duration = Duration::from_secs(60);
const SEND_EVERY: Duration = Duration::from_secs(600);

impl Reporter {
    /// Writes the counts every minute and sends each day's reports once
    /// the day is over (checked every ten minutes), until the server stops.
    pub async fn run(self: Arc<Self>) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut send = tokio::time::interval(SEND_EVERY);
        loop {
            tokio::select! {
                _ = flush.tick() => self.flush().await,
                _ = send.tick() => {
                    if let Err(e) = self.send(false).await {
                        tracing::warn!("reports not sent: {e:#}");
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

    /// Writes the counts gathered (off the runtime's threads).
    pub async fn flush(&self) {
        let (reports, tls) = (self.reports.clone(), self.tls.clone());
        let written = tokio::task::spawn_blocking(move || {
            reports.flush()?;
            tls.map_or(Ok(()), |t| t.flush())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("report counts not written: {e:#}"),
            Err(e) => tracing::warn!("report counts not written: {e}"),
        }
    }

    /// Sends the reports due (with `include_today`, today's too: `mta
    /// reports send`); one line per report for the log and the command.
    pub async fn send(&self, include_today: bool) -> anyhow::Result<Vec<String>> {
        let (reports, tls) = (self.reports.clone(), self.tls.clone());
        let now = now_secs();
        let (dmarc, tls_due) = tokio::task::spawn_blocking(move || {
            let dmarc = reports.take_due(now, include_today)?;
            let tls = match tls {
                Some(t) => t.take_due(now, include_today)?,
                None => Vec::new(),
            };
            anyhow::Ok((dmarc, tls))
        })
        .await??;
        let mut lines = Vec::new();
        if dmarc.is_empty() && tls_due.is_empty() {
            return Ok(lines);
        }
        let settings = self.live.get();
        let Some(ours) = settings.directory.primary_domain().map(str::to_string) else {
            for out in dmarc {
                self.reports.restore(out);
            }
            if let Some(tls) = &self.tls {
                for (d, domain, data) in tls_due {
                    tls.restore(d, domain, data);
                }
            }
            anyhow::bail!("no domain to send reports from (no account yet)");
        };
        let from = format!("postmaster@{ours}");
        let sender = Sender {
            settings: &settings,
            queue: &self.queue,
            from: &from,
            ours: &ours,
        };
        // Each on its own: one that fails is put back, the others go.
        for out in dmarc {
            lines.push(self.send_dmarc(&sender, out).await);
        }
        for (d, domain, data) in tls_due {
            lines.push(self.send_tls(&sender, d, domain, data).await);
        }
        for line in &lines {
            tracing::info!("{line}");
        }
        Ok(lines)
    }

    async fn send_dmarc(&self, sender: &Sender<'_>, out: Outgoing) -> String {
        let what = format!(
            "the DMARC report of {} for {} ({} messages)",
            out.domain,
            day(u64::from(out.day) * DAY),
            out.messages()
        );
        let addresses = valid(out.rua().iter().map(|(a, _)| a.as_str()));
        if addresses.is_empty() {
            return format!("{what} not sent: its policy names no address to send it to");
        }
        // An address outside the domain must accept its reports (§7.1).
        let no_cache: Option<&mail_auth::common::cache::NoCache<Box<str>, mail_auth::Txt>> = None;
        let allowed = match self.dns.authenticator() {
            Some(a) => {
                a.verify_dmarc_report_address(&out.domain, &addresses, no_cache)
                    .await
            }
            None => None,
        };
        let Some(allowed) = allowed else {
            self.reports.restore(out);
            return format!("{what} not sent yet: the DNS did not answer");
        };
        let allowed: Vec<&str> = allowed.into_iter().copied().collect();
        let message = match out.message(&sender.settings.config.hostname, sender.from, &allowed) {
            Ok(m) => m,
            Err(e) => {
                self.reports.restore(out);
                return format!("{what} not sent yet: {e:#}");
            }
        };
        let to: Vec<&str> = out
            .rua()
            .iter()
            .filter(|(a, max)| {
                allowed.contains(&a.as_str()) && (*max == 0 || message.len() <= *max)
            })
            .map(|(a, _)| a.as_str())
            .collect();
        if to.is_empty() {
            return format!(
                "{what} not sent: none of its addresses ({}) takes it (outside the domain without its authorisation, or a size limit)",
                addresses.join(", ")
            );
        }
        sender.enqueue(&what, &to, message, "dmarc-report").await
    }

    async fn send_tls(&self, sender: &Sender<'_>, d: u32, domain: String, data: TlsDay) -> String {
        use mail_auth::common::parse::TxtRecordParser;
        use mail_auth::mta_sts::{ReportUri, TlsRpt};
        let what = format!(
            "the TLS report of {domain} for {} ({} sessions)",
            day(u64::from(d) * DAY),
            data.sessions()
        );
        let name = format!("_smtp._tls.{}", crate::dns::absolute(&domain));
        let records = match self.dns.lookup(&name, crate::dns::Kind::Txt, false).await {
            Ok(records) => records,
            Err(e) if e.is_negative() => Vec::new(),
            Err(e) => {
                if let Some(tls) = &self.tls {
                    tls.restore(d, domain, data);
                }
                return format!("{what} not sent yet: the DNS did not answer ({e})");
            }
        };
        let rua: Vec<String> = records
            .into_iter()
            .filter_map(|r| match r.data {
                crate::dns::Data::Txt(text) => TlsRpt::parse(text.as_bytes()).ok(),
                _ => None,
            })
            .flat_map(|r| r.rua)
            .filter_map(|u| match u {
                ReportUri::Mail(address) => Some(address),
                // Reports by HTTPS are not sent (yet): said below.
                ReportUri::Http(_) => None,
            })
            .collect();
        let to = valid(rua.iter().map(String::as_str));
        if to.is_empty() {
            return format!(
                "{what} not sent: {domain} publishes no mailto: address for TLS reports"
            );
        }
        let hostname = &sender.settings.config.hostname;
        let report = data.report(d, &domain, hostname, sender.from);
        let mut message = Vec::new();
        if let Err(e) = report.write_rfc5322(
            &domain,
            hostname,
            ("Mailbox TLS reports", sender.from),
            to.iter().copied(),
            &mut message,
        ) {
            return format!("{what} not sent: {e}");
        }
        sender.enqueue(&what, &to, message, "tls-report").await
    }
}

/// Report addresses at most (RFC 7489 §7.1 asks for two at least).
const MAX_ADDRESSES: usize = 5;

/// The addresses of `list` that are addresses: a DNS record is anyone's
/// text, and an address with a line end (a `=0D=0A` in a TLS-RPT record
/// reads as one) must not become part of an SMTP command or a header.
fn valid<'a>(list: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for a in list {
        let ok = !a.chars().any(char::is_control)
            && mta_proto::address::Address::parse(a, false).is_ok();
        if ok && !out.contains(&a) && out.len() < MAX_ADDRESSES {
            out.push(a);
        }
    }
    out
}

/// Where the reports come from.
struct Sender<'a> {
    settings: &'a Settings,
    queue: &'a mta_store::queue::Queue,
    from: &'a str,
    /// The domain of `from` (its DKIM key signs).
    ours: &'a str,
}

impl Sender<'_> {
    /// Signs `message` and queues it for `to`; the line that says so.
    async fn enqueue(&self, what: &str, to: &[&str], message: Vec<u8>, client: &str) -> String {
        let message = match self.settings.dkim.signed(self.ours, &message) {
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
            self.from.to_string(),
            now_micros(),
            client.into(),
            None,
            recipients,
            size,
        );
        match self
            .queue
            .intake(envelope, mta_store::body::Body::inline(message))
            .await
        {
            Ok(()) => format!("{id}: {what} sent to {}", to.join(", ")),
            Err(e) => format!("{what} not sent: the queue refused it ({e:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_become_recipients() {
        let list = [
            "dmarc@example.net",
            "a\r\nRSET\r\nMAIL FROM:<ceo@example.org>\r\nRCPT TO:<x@example.com",
            "no at sign",
            "dmarc@example.net",
            "b@example.net",
            "c@example.net",
            "d@example.net",
            "e@example.net",
            "f@example.net",
        ];
        assert_eq!(
            valid(list.into_iter()),
            [
                "dmarc@example.net",
                "b@example.net",
                "c@example.net",
                "d@example.net",
                "e@example.net"
            ]
        );
    }
}
