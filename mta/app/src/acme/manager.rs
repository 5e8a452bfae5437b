//! The certificate's life with ACME on: when to ask the CA (the schedule
//! in [`super::next_attempt`]), one attempt (HTTP-01 first, TLS-ALPN-01
//! when port 80 cannot be reached, names the CA cannot confirm left out
//! but retried later), the new pair kept on disk atomically and swapped
//! into every listener, and what the owner is shown: `<data>/acme/
//! status.json`, read by the admin page and `mta cert status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::client::{Answers, Ca, Challenge, Outcome};
use super::{Http01, Validity, next_attempt, warning};
use crate::config::{Config, Service};
use crate::settings::Live;
use crate::tls::{CertInfo, CertStore};

/// One attempt (account, orders, both challenges) ends within this.
const ATTEMPT_TIME: Duration = Duration::from_secs(600);
/// The plan is looked at again at least this often (a reload may have
/// changed the names or turned ACME on).
const LOOK_AGAIN: Duration = Duration::from_secs(60);
/// Names in one certificate (Let's Encrypt's limit; the host name is first).
const MAX_NAMES: usize = 100;
/// The CA's renewal suggestion (ARI) is asked for this often.
const ARI_EVERY: u64 = 86400;

/// What happened so far, kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The directory these attempts went to; another one starts afresh.
    pub directory: String,
    pub last_attempt: Option<u64>,
    pub last_success: Option<u64>,
    /// Failed attempts in a row (the backoff).
    pub failures: u32,
    /// Attempts in a row that got a certificate without some names (their
    /// own backoff: the DNS may take a while to be published).
    #[serde(default)]
    pub partial: u32,
    pub last_error: Option<String>,
    /// The challenge that worked last.
    pub challenge: Option<Challenge>,
    /// Names the CA could not confirm at the last success, and why.
    pub left_out: Vec<(String, String)>,
    /// The start of the renewal window the CA suggests (RFC 9773).
    pub suggested_start: Option<u64>,
    pub suggestion_asked: Option<u64>,
}

fn status_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("acme/status.json")
}

impl Status {
    pub fn load(config: &Config) -> Status {
        std::fs::read(status_path(config))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, config: &Config) {
        let path = status_path(config);
        let saved = std::fs::create_dir_all(path.parent().expect("in a directory"))
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                mta_store::fsutil::write_atomically(&path, &serde_json::to_vec(self)?, 0o600)
            });
        if let Err(e) = saved {
            tracing::warn!("ACME status not saved in {}: {e:#}", path.display());
        }
    }
}

/// What the owner is told about the certificate.
#[derive(Debug, Clone)]
pub struct Report {
    /// The ACME directory, when ACME is on.
    pub directory: Option<String>,
    /// The certificate the listeners present.
    pub certificate: Option<CertInfo>,
    /// The names it should cover.
    pub wanted: Vec<String>,
    pub status: Status,
    /// When the next attempt is planned (unix seconds), with ACME on.
    pub next: Option<u64>,
    pub warning: Option<String>,
}

impl Report {
    /// The report for `config` from what is on disk (the certificate the
    /// configuration names, and the status the server keeps).
    pub fn read(config: &Config) -> anyhow::Result<Report> {
        let (key, issued) = CertStore::load(config)?;
        Ok(Report::of(config, CertInfo::of(&key.cert, issued), now()))
    }

    fn of(config: &Config, mut certificate: Option<CertInfo>, now: u64) -> Report {
        let mut status = Status::load(config);
        let wanted = config.certificate_names();
        if let Some(c) = &mut certificate {
            c.in_order_of(&wanted);
        }
        let directory = config.acme.as_ref().map(|a| a.directory.clone());
        if directory.as_ref().is_some_and(|d| *d != status.directory) {
            status = Status::default();
        }
        let next = directory
            .as_ref()
            .map(|_| plan(certificate.as_ref(), &wanted, &status, now));
        let warning = warning(certificate.as_ref().and_then(CertInfo::validity), now);
        Report {
            directory,
            certificate,
            wanted,
            status,
            next,
            warning,
        }
    }

    /// For `mta cert status`.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        match &self.certificate {
            Some(c) => {
                let _ = writeln!(out, "certificate: {}", c.names.join(", "));
                if c.issued {
                    let _ = writeln!(out, "issuer:      {}", c.issuer);
                } else {
                    out.push_str("issuer:      this appliance (self-signed: clients warn)\n");
                }
                let _ = writeln!(
                    out,
                    "valid:       {} to {}",
                    when(c.not_before),
                    when(c.not_after)
                );
            }
            None => out.push_str("certificate: unreadable\n"),
        }
        match &self.directory {
            None => out.push_str("acme:        off (set [acme] in the configuration, or answer the wizard's certificate step)\n"),
            Some(d) => {
                let _ = writeln!(out, "acme:        {d}");
                let s = &self.status;
                let _ = writeln!(
                    out,
                    "last try:    {}",
                    s.last_attempt.map_or("never".into(), when)
                );
                if let Some(at) = s.last_success {
                    let _ = writeln!(
                        out,
                        "last issued: {} over {}",
                        when(at),
                        s.challenge.map_or("?", Challenge::name)
                    );
                }
                if let Some(e) = &s.last_error {
                    let _ = writeln!(out, "last error:  {e}");
                }
                for (name, why) in &s.left_out {
                    let _ = writeln!(out, "left out:    {name}: {why}");
                }
                if let Some(next) = self.next {
                    let _ = writeln!(out, "next try:    {}", when(next));
                }
            }
        }
        if let Some(w) = &self.warning {
            let _ = writeln!(out, "warning:     {w}");
        }
        out
    }
}

/// A unix time as the owner reads it (UTC).
pub fn when(at: u64) -> String {
    chrono::DateTime::from_timestamp(at as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| at.to_string())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When to try next: at once when the certificate is not a CA's (after
/// the backoff of earlier failures), else on the renewal schedule — or
/// earlier when it lacks names, after their own backoff.
fn plan(certificate: Option<&CertInfo>, wanted: &[String], status: &Status, now: u64) -> u64 {
    let issued = certificate.filter(|c| c.issued);
    let last_failure = (status.failures > 0)
        .then_some(status.last_attempt)
        .flatten();
    let renewal = next_attempt(
        issued.and_then(CertInfo::validity),
        status.suggested_start,
        status.failures,
        last_failure,
        now,
    );
    match issued {
        Some(c) if !wanted.iter().all(|w| c.names.contains(w)) => {
            // A name just added: at once; names the CA refused: after
            // their backoff; either way not before a failure's backoff.
            let last = status.last_attempt.unwrap_or(0);
            let retry = match status.partial {
                0 => now,
                n => super::backoff(n, last),
            };
            let after_failures = last_failure.map_or(0, |at| super::backoff(status.failures, at));
            renewal.min(retry.max(after_failures))
        }
        _ => renewal,
    }
}

/// Keeps the certificate from the CA current; one per server.
pub struct Acme {
    live: Live,
    answers: Answers,
    wake: tokio::sync::Notify,
    forced: AtomicBool,
    busy: AtomicBool,
}

impl Acme {
    pub fn new(live: Live, http01: Arc<Http01>) -> Arc<Acme> {
        let certs = live.get().certs.clone();
        Arc::new(Acme {
            live,
            answers: Answers { http01, certs },
            wake: tokio::sync::Notify::new(),
            forced: AtomicBool::new(false),
            busy: AtomicBool::new(false),
        })
    }

    /// Asks for an attempt now, whatever the schedule says.
    pub fn renew_now(&self) {
        self.forced.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The HTTP-01 answers the web serves.
    pub fn http01(&self) -> &Http01 {
        &self.answers.http01
    }

    /// Whether an attempt is under way.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// The report of the running server.
    pub fn report(&self) -> Report {
        let settings = self.live.get();
        let key = settings.certs.current();
        Report::of(
            &settings.config,
            CertInfo::of(&key.cert, settings.certs.issued()),
            now(),
        )
    }

    /// Runs for as long as the server does.
    pub async fn run(self: Arc<Self>) {
        let mut warned: Option<u64> = None;
        loop {
            let report = self.report();
            let forced = self.forced.swap(false, Ordering::SeqCst);
            let now = now();
            if let Some(w) = &report.warning
                && warned.is_none_or(|at| now >= at + 86400)
            {
                tracing::warn!("{w}");
                warned = Some(now);
            }
            let due = match report.next {
                Some(next) if forced || next <= now => true,
                Some(next) => {
                    self.ask_for_suggestion(&report, now).await;
                    let wait = Duration::from_secs(next - now).min(LOOK_AGAIN);
                    let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                    false
                }
                None => {
                    if forced {
                        tracing::warn!("no certificate requested: ACME is off");
                    }
                    let _ = tokio::time::timeout(LOOK_AGAIN, self.wake.notified()).await;
                    false
                }
            };
            if due {
                self.busy.store(true, Ordering::SeqCst);
                self.attempt(report.status).await;
                self.busy.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Asks the CA when to renew (RFC 9773), once a day, for a certificate
    /// it issued.
    async fn ask_for_suggestion(&self, report: &Report, now: u64) {
        let config = self.live.get().config.clone();
        let issued = report.certificate.as_ref().is_some_and(|c| c.issued);
        if !issued
            || report.directory.is_none()
            || report
                .status
                .suggestion_asked
                .is_some_and(|at| now < at + ARI_EVERY)
        {
            return;
        }
        let mut status = report.status.clone();
        status.suggestion_asked = Some(now);
        let leaf = self.answers.certs.current().cert[0].clone();
        if let Ok(Ok(ca)) = tokio::time::timeout(ATTEMPT_TIME, Ca::connect(&config)).await {
            status.suggested_start = ca.suggested_renewal(&leaf).await;
        }
        status.save(&config);
    }

    async fn attempt(&self, mut status: Status) {
        let config = self.live.get().config.clone();
        let Some(acme) = &config.acme else { return };
        if status.directory != acme.directory {
            status = Status {
                directory: acme.directory.clone(),
                ..Status::default()
            };
        }
        let now = now();
        status.last_attempt = Some(now);
        let result = match tokio::time::timeout(ATTEMPT_TIME, self.obtain(&config, &status)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "the attempt took longer than {} minutes",
                ATTEMPT_TIME.as_secs() / 60
            )),
        };
        match result {
            Ok((how, left_out)) => {
                status.last_success = Some(now);
                status.challenge = Some(how);
                status.last_error = None;
                status.suggested_start = None;
                status.suggestion_asked = None;
                status.failures = 0;
                if left_out.is_empty() {
                    status.partial = 0;
                } else {
                    // Retried with the backoff until every name is in.
                    status.partial = status.partial.saturating_add(1);
                    for (name, why) in &left_out {
                        tracing::warn!("certificate without {name}: {why}");
                    }
                }
                status.left_out = left_out;
            }
            Err(e) => {
                status.failures = status.failures.saturating_add(1);
                status.last_error = Some(format!("{e:#}"));
                let report = Report::of(&config, None, now);
                let again = plan(None, &report.wanted, &status, now);
                tracing::error!(
                    "no certificate from {}: {e:#}; next try {}",
                    acme.directory,
                    when(again)
                );
            }
        }
        status.save(&config);
    }

    /// Orders the certificate, trying each challenge the listeners can
    /// answer (the one that worked last first); names the CA cannot
    /// confirm are left out, except the host name.
    async fn obtain(
        &self,
        config: &Config,
        status: &Status,
    ) -> anyhow::Result<(Challenge, Vec<(String, String)>)> {
        let mut ca = Ca::connect(config).await?;
        let mut ways: Vec<Challenge> = Vec::new();
        let serves = |s| config.listeners.iter().any(|l| l.service == s);
        if serves(Service::Http) {
            ways.push(Challenge::Http01);
        }
        if serves(Service::Https) {
            ways.push(Challenge::TlsAlpn01);
        }
        if ways.is_empty() {
            anyhow::bail!("no HTTP (80) or HTTPS (443) listener can answer the CA's challenges");
        }
        if let Some(last) = status.challenge {
            ways.sort_by_key(|w| *w != last);
        }
        let mut failed = Vec::new();
        let mut account_renewed = false;
        for how in ways {
            let mut names = config.certificate_names();
            let mut left_out: Vec<(String, String)> = names
                .split_off(names.len().min(MAX_NAMES))
                .into_iter()
                .map(|n| (n, format!("a certificate holds at most {MAX_NAMES} names")))
                .collect();
            // Once with every name, once more without those refused.
            for _ in 0..2 {
                let outcome = match ca.order(&names, how, &self.answers).await {
                    Err(e) if !account_renewed && unknown_account(&e) => {
                        tracing::warn!("the CA no longer knows our account: registering again");
                        Ca::forget(config);
                        ca = Ca::connect(config).await?;
                        account_renewed = true;
                        ca.order(&names, how, &self.answers).await?
                    }
                    other => other?,
                };
                match outcome {
                    Outcome::Issued { chain_pem, key_pem } => {
                        self.keep(config, &chain_pem, &key_pem, how)?;
                        return Ok((how, left_out));
                    }
                    Outcome::Refused(refused) => {
                        if let Some((_, why)) =
                            refused.iter().find(|(name, _)| *name == config.hostname)
                        {
                            failed.push(format!("{}: {why}", how.name()));
                            break;
                        }
                        names.retain(|n| !refused.iter().any(|(r, _)| r == n));
                        left_out.extend(refused);
                    }
                }
            }
        }
        anyhow::bail!(
            "the CA could not confirm that {} leads here — {}",
            config.hostname,
            failed.join("; ")
        )
    }

    /// Keeps the new pair (atomically: old or new after a power cut) and
    /// gives it to every listener.
    fn keep(&self, config: &Config, chain: &str, key: &str, how: Challenge) -> anyhow::Result<()> {
        let dir = crate::tls::acme_dir(config);
        crate::tls::store_pair(&dir, chain, key)
            .with_context(|| format!("keeping the certificate in {}", dir.display()))?;
        let (certified, issued) = CertStore::load(config)?;
        if let Some(mut info) = CertInfo::of(&certified.cert, issued) {
            info.in_order_of(&config.certificate_names());
            tracing::info!(
                "certificate for {} issued by {} over {}, valid until {}",
                info.names.join(", "),
                info.issuer,
                how.name(),
                when(info.not_after)
            );
        }
        self.answers.certs.swap(certified, issued);
        Ok(())
    }
}

fn unknown_account(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<instant_acme::Error>().is_some_and(|e| {
            matches!(e, instant_acme::Error::Api(p)
                if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
        })
    })
}

impl CertInfo {
    /// Its names in the order of `wanted` (the CA's order is its own).
    fn in_order_of(&mut self, wanted: &[String]) {
        self.names
            .sort_by_key(|n| wanted.iter().position(|w| w == n).unwrap_or(usize::MAX));
    }

    pub fn validity(&self) -> Option<Validity> {
        Some(Validity {
            not_before: self.not_before,
            not_after: self.not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str], issued: bool) -> CertInfo {
        CertInfo {
            names: names.iter().map(|n| n.to_string()).collect(),
            issuer: "Test CA".into(),
            issued,
            not_before: 0,
            not_after: 90 * 86400,
        }
    }

    #[test]
    fn a_certificate_missing_names_is_renewed_at_once_after_the_backoff() {
        let wanted = vec![
            "mx.example.org".to_string(),
            "mta-sts.example.org".to_string(),
        ];
        let status = Status::default();
        let now = 86400;
        let all = info(&["mx.example.org", "mta-sts.example.org"], true);
        assert_eq!(plan(Some(&all), &wanted, &status, now), 60 * 86400);
        let partial = info(&["mx.example.org"], true);
        assert_eq!(plan(Some(&partial), &wanted, &status, now), now);
        let partly = Status {
            partial: 2,
            last_attempt: Some(now),
            ..Status::default()
        };
        assert_eq!(
            plan(Some(&partial), &wanted, &partly, now),
            now + 2 * super::super::RETRY_FIRST
        );
        // The missing names' backoff never delays the renewal itself.
        let short = CertInfo {
            not_after: 9,
            ..partial.clone()
        };
        assert_eq!(plan(Some(&short), &wanted, &partly, now), 6);
        // A self-signed certificate is replaced at once.
        let own = info(&["mx.example.org", "mta-sts.example.org"], false);
        assert_eq!(plan(Some(&own), &wanted, &status, now), now);
    }
}
