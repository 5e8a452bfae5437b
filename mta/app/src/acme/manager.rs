//! The certificate's life with ACME on: when to ask the CA (the schedule
//! in [`super::next_attempt`]), one attempt (HTTP-01 first, TLS-ALPN-01
//! when port 80 cannot be reached, names the CA cannot confirm left out
//! but retried later), the new pair kept on disk atomically and swapped
//! into every listener, and what the owner is shown: `<data>/acme/
//! status.json`, read by the admin page and `mta cert status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{Answers, Ca, Challenge, Outcome};
use super::{Http01, Validity, next_attempt, warning};
use crate::config::{Config, Service};
use crate::settings::Live;
use crate::tls::{CertInfo, CertStore};

/// One attempt (account, orders, both challenges) ends within this.
const ATTEMPT_TIME: Duration = Duration::from_secs(900);
/// The plan is looked at again at least this often (a reload may have
/// changed the names or turned ACME on).
const LOOK_AGAIN: Duration = Duration::from_secs(60);
/// Names in one certificate (Let's Encrypt's limit; the host name is first).
const MAX_NAMES: usize = 100;
const _: () = assert!(
    MAX_NAMES <= super::MAX_WAITING,
    "every name's answer can wait"
);

/// Attempts nobody asked for start at least this far apart.
const MIN_GAP: Duration = Duration::from_secs(5);
/// The CA's renewal suggestion (ARI) is asked for this often.
const ARI_EVERY: u64 = 86400;

/// What happened so far, kept across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The directory these attempts went to; another one starts afresh.
    pub directory: String,
    pub last_attempt: Option<u64>,
    pub last_success: Option<u64>,
    /// The directory that issued the certificate kept now.
    pub issued_by: Option<String>,
    /// Failed attempts in a row (the backoff).
    pub failures: u32,
    pub last_error: Option<String>,
    /// The challenge that worked last.
    pub challenge: Option<Challenge>,
    /// Names the CA could not confirm, and why: left out of the
    /// certificate, asked for again after their own, longer backoff.
    pub left_out: Vec<(String, String)>,
    /// Attempts in a row that still left names out.
    pub partial: u32,
    /// When to renew within the window the CA suggests (RFC 9773).
    pub suggested: Option<u64>,
    pub suggestion_asked: Option<u64>,
}

fn status_path(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("acme/status.json")
}

impl Status {
    /// The status kept for `config`'s directory (a fresh one for another).
    pub fn load(config: &Config) -> Status {
        let kept: Status = std::fs::read(status_path(config))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        kept.for_directory(config)
    }

    fn for_directory(self, config: &Config) -> Status {
        match &config.acme {
            Some(acme) if acme.directory != self.directory => Status {
                directory: acme.directory.clone(),
                // The pair on disk stays what it is.
                issued_by: self.issued_by,
                ..Status::default()
            },
            _ => self,
        }
    }

    /// Best effort: the running server keeps its status in memory, so a
    /// full disk cannot make it forget an attempt (and try again at once).
    fn save(&self, config: &Config) {
        let path = status_path(config);
        let saved = mta_store::fsutil::create_dir_synced(path.parent().expect("in a directory"))
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
        Ok(Report::of(
            config,
            CertInfo::of(&key.cert, issued),
            Status::load(config),
            now(),
        ))
    }

    fn of(config: &Config, mut certificate: Option<CertInfo>, status: Status, now: u64) -> Report {
        let wanted = config.certificate_names();
        if let Some(c) = &mut certificate {
            c.in_order_of(&wanted);
        }
        let directory = config.acme.as_ref().map(|a| a.directory.clone());
        let next = directory
            .as_ref()
            .map(|_| plan(certificate.as_ref(), &wanted, &status, now).at);
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

/// The first retry of names the CA refused (their DNS may not be published
/// yet); each further refusal doubles it, up to a week. Let's Encrypt
/// counts failed validations per name, and a new certificate for the
/// same names is limited too: these are asked for rarely.
const LEFT_OUT_FIRST: u64 = 3600;
const LEFT_OUT_MAX: u64 = 7 * 86400;

/// The next attempt and what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    at: u64,
    /// The certificate itself is due (none from this CA, or renewal time):
    /// a new one is issued even if some names are refused again.
    renewal: bool,
    /// The names left out before are asked for again.
    left_out: bool,
}

/// When to try next: at once when there is no certificate from this CA
/// (after the backoff of failures), else on the renewal schedule — or
/// earlier for names the certificate lacks: new ones at once, refused ones
/// after their own backoff.
fn plan(certificate: Option<&CertInfo>, wanted: &[String], status: &Status, now: u64) -> Plan {
    let ours = certificate
        .filter(|c| c.issued && status.issued_by.as_deref() == Some(status.directory.as_str()));
    // A clock that ran ahead must not hold retries back.
    let last = status.last_attempt.map(|at| at.min(now));
    let last_failure = (status.failures > 0).then_some(last).flatten();
    let renewal = next_attempt(
        ours.and_then(CertInfo::validity),
        status.suggested,
        status.failures,
        last_failure,
        now,
    );
    let Some(c) = ours else {
        return Plan {
            at: renewal,
            renewal: true,
            left_out: true,
        };
    };
    let after_failures = last_failure.map_or(0, |at| super::backoff(status.failures, at));
    let refused = |w: &String| status.left_out.iter().any(|(n, _)| n == w);
    let new_names = wanted.iter().any(|w| !c.names.contains(w) && !refused(w));
    let retry_left_out = (!status.left_out.is_empty()).then(|| {
        let wait = LEFT_OUT_FIRST
            .saturating_mul(1u64 << status.partial.saturating_sub(1).min(20))
            .min(LEFT_OUT_MAX);
        last.unwrap_or(0) + wait
    });
    let mut at = renewal;
    if new_names {
        at = at.min(now.max(after_failures));
    }
    if let Some(retry) = retry_left_out {
        at = at.min(retry.max(after_failures));
    }
    Plan {
        at,
        renewal: renewal <= at,
        left_out: retry_left_out.is_some_and(|r| r <= at.max(now)),
    }
}

/// Keeps the certificate from the CA current; one per server.
pub struct Acme {
    live: Live,
    dns: Arc<crate::dns::Dns>,
    answers: Answers,
    wake: tokio::sync::Notify,
    forced: AtomicBool,
    busy: AtomicBool,
    /// The status, loaded once; written to disk after each change.
    status: std::sync::Mutex<Option<Status>>,
}

/// What asking for a certificate now came to.
pub enum Asked {
    Started,
    AlreadyUnderWay,
    Off,
}

impl Acme {
    pub fn new(live: Live, http01: Arc<Http01>, dns: Arc<crate::dns::Dns>) -> Arc<Acme> {
        let certs = live.get().certs.clone();
        Arc::new(Acme {
            live,
            dns,
            answers: Answers { http01, certs },
            wake: tokio::sync::Notify::new(),
            forced: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            status: std::sync::Mutex::new(None),
        })
    }

    /// Asks for an attempt now, whatever the schedule says.
    pub fn renew_now(&self) -> Asked {
        if self.live.get().config.acme.is_none() {
            return Asked::Off;
        }
        if self.busy() {
            return Asked::AlreadyUnderWay;
        }
        self.forced.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        Asked::Started
    }

    /// The HTTP-01 answers the web serves.
    pub fn http01(&self) -> &Http01 {
        &self.answers.http01
    }

    /// Whether an attempt is under way.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    fn status(&self, config: &Config) -> Status {
        let mut kept = self.status.lock().expect("status");
        let status = match kept.take() {
            Some(s) => s.for_directory(config),
            None => Status::load(config),
        };
        *kept = Some(status.clone());
        status
    }

    fn set_status(&self, config: &Config, status: Status) {
        status.save(config);
        *self.status.lock().expect("status") = Some(status);
    }

    /// The report of the running server.
    pub fn report(&self) -> Report {
        let settings = self.live.get();
        let key = settings.certs.current();
        Report::of(
            &settings.config,
            CertInfo::of(&key.cert, settings.certs.issued()),
            self.status(&settings.config),
            now(),
        )
    }

    /// Runs for as long as the server does; a panic in an attempt is
    /// logged and the next one is planned as after any failure.
    pub async fn run(self: Arc<Self>) {
        let mut warned: Option<u64> = None;
        let mut last_start: Option<tokio::time::Instant> = None;
        loop {
            let forced = self.forced.swap(false, Ordering::SeqCst);
            let report = self.report();
            let now = now();
            if let Some(w) = &report.warning
                && warned.is_none_or(|at| now >= at + 86400)
            {
                tracing::warn!("{w}");
                warned = Some(now);
            }
            let settings = self.live.get();
            let plan = settings.config.acme.as_ref().map(|_| {
                plan(
                    report.certificate.as_ref(),
                    &report.wanted,
                    &report.status,
                    now,
                )
            });
            let due = match plan {
                Some(p) if forced || p.at <= now => Some(Plan {
                    renewal: p.renewal || forced,
                    left_out: p.left_out || forced,
                    ..p
                }),
                Some(p) => {
                    self.ask_for_suggestion(&report, now).await;
                    let wait = Duration::from_secs(p.at - now).min(LOOK_AGAIN);
                    let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                    None
                }
                None => {
                    let _ = tokio::time::timeout(LOOK_AGAIN, self.wake.notified()).await;
                    None
                }
            };
            let Some(plan) = due else { continue };
            // Whatever the plan says (a clock jump, a status that cannot
            // be kept), attempts the owner did not ask for are spaced.
            if !forced
                && let Some(at) = last_start
                && at.elapsed() < MIN_GAP
            {
                let _ = tokio::time::timeout(MIN_GAP - at.elapsed(), self.wake.notified()).await;
                continue;
            }
            last_start = Some(tokio::time::Instant::now());
            self.busy.store(true, Ordering::SeqCst);
            let me = self.clone();
            let attempt = tokio::spawn(async move { me.attempt(plan).await });
            if let Err(e) = attempt.await {
                tracing::error!("the certificate request failed unexpectedly: {e}");
                let config = self.live.get().config.clone();
                // (The attempt counted itself as failed when it began.)
                let mut status = self.status(&config);
                status.last_error = Some("the request failed unexpectedly (see the log)".into());
                self.set_status(&config, status);
            }
            self.busy.store(false, Ordering::SeqCst);
        }
    }

    /// Asks the CA when to renew (RFC 9773), once a day, for a certificate
    /// it issued; a time in the window it suggests is picked at random,
    /// as the RFC asks.
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
        if let Ok(Ok(ca)) =
            tokio::time::timeout(ATTEMPT_TIME, Ca::connect(&config, &self.dns)).await
            && let Some((start, end)) = ca.suggested_renewal(&leaf).await
        {
            let not_after = report.certificate.as_ref().map_or(end, |c| c.not_after);
            let end = end.min(not_after).max(start);
            status.suggested = Some(start + rand::random_range(0..=end - start));
        }
        self.set_status(&config, status);
    }

    async fn attempt(&self, plan: Plan) {
        let config = self.live.get().config.clone();
        let Some(acme) = &config.acme else { return };
        let mut status = self.status(&config);
        let now = now();
        // Recorded first: a crash or a power cut during the attempt still
        // counts as one.
        status.last_attempt = Some(now);
        status.failures = status.failures.saturating_add(1);
        self.set_status(&config, status.clone());
        let result =
            match tokio::time::timeout(ATTEMPT_TIME, self.obtain(&config, &status, plan)).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "the request took longer than {} minutes",
                    ATTEMPT_TIME.as_secs() / 60
                )),
            };
        match result {
            Ok(got) => {
                status.failures = 0;
                status.last_error = None;
                if let Some(how) = got.issued {
                    status.last_success = Some(now);
                    status.issued_by = Some(acme.directory.clone());
                    status.challenge = Some(how);
                    status.suggested = None;
                    status.suggestion_asked = None;
                }
                if got.left_out.is_empty() {
                    status.partial = 0;
                } else {
                    status.partial = status.partial.saturating_add(1);
                    for (name, why) in &got.left_out {
                        tracing::warn!("certificate without {name}: {why}");
                    }
                }
                status.left_out = got.left_out;
            }
            Err(e) => {
                status.last_error = Some(format!("{e:#}"));
                let certs = &self.answers.certs;
                let current = CertInfo::of(&certs.current().cert, certs.issued());
                let again = plan_after(&config, current, &status, now);
                tracing::error!(
                    "no certificate from {}: {e:#}; next try {}",
                    acme.directory,
                    when(again)
                );
            }
        }
        self.set_status(&config, status);
    }

    /// Orders the certificate, trying each challenge the listeners can
    /// answer (the one that worked last first); names the CA cannot
    /// confirm are left out, except the host name.
    async fn obtain(&self, config: &Config, status: &Status, plan: Plan) -> anyhow::Result<Got> {
        let mut ca = Ca::connect(config, &self.dns).await?;
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
        let current: Vec<String> = CertInfo::of(
            &self.answers.certs.current().cert,
            self.answers.certs.issued(),
        )
        .map(|c| c.names)
        .unwrap_or_default();
        let mut failed = Vec::new();
        let mut account_renewed = false;
        for how in ways {
            let mut names = config.certificate_names();
            let mut left_out: Vec<(String, String)> = names
                .split_off(names.len().min(MAX_NAMES))
                .into_iter()
                .map(|n| (n, format!("a certificate holds at most {MAX_NAMES} names")))
                .collect();
            if !plan.left_out {
                // Not their time yet: the reason stands.
                for (name, why) in &status.left_out {
                    if names.contains(name) {
                        names.retain(|n| n != name);
                        left_out.push((name.clone(), why.clone()));
                    }
                }
            }
            // Orders until every name left is confirmed (each round drops
            // at least one, or ends).
            let outcome = loop {
                let outcome = match ca.order(&names, how, &self.answers).await {
                    Err(e) if !account_renewed && unknown_account(&e) => {
                        tracing::warn!("the CA no longer knows our account: registering again");
                        Ca::forget(config);
                        ca = Ca::connect(config, &self.dns).await?;
                        account_renewed = true;
                        ca.order(&names, how, &self.answers).await
                    }
                    other => other,
                };
                let refused = match outcome {
                    Ok(Outcome::Refused(refused)) => refused,
                    other => break other,
                };
                // The host name (first, in its ASCII form) cannot be left out.
                if let Some(r) = refused.iter().find(|r| Some(&r.name) == names.first()) {
                    break Ok(Outcome::Refused(vec![r.clone()]));
                }
                let before = names.len();
                names.retain(|n| !refused.iter().any(|r| r.name == *n));
                if names.len() == before {
                    break Err(anyhow::anyhow!(
                        "the CA refused the order without naming a name of it"
                    ));
                }
                left_out.extend(refused.into_iter().map(|r| (r.name, r.why)));
                if !plan.renewal && names.iter().all(|n| current.contains(n)) {
                    // Nothing a new certificate would add: keep the one we
                    // have (the CA limits duplicates).
                    return Ok(Got {
                        issued: None,
                        left_out,
                    });
                }
            };
            match outcome {
                Ok(Outcome::Issued { chain_pem, key_pem }) => {
                    self.keep(config, &chain_pem, &key_pem, how)?;
                    return Ok(Got {
                        issued: Some(how),
                        left_out,
                    });
                }
                Ok(Outcome::Refused(host)) => {
                    let r = &host[0];
                    failed.push(format!(
                        "{}: the CA could not confirm that {} leads here: {}",
                        how.name(),
                        r.name,
                        r.why
                    ));
                    // The other challenge cannot help with the DNS, a CAA
                    // record or a name the CA will not issue for.
                    if r.kind.as_deref().is_some_and(|k| {
                        ["dns", "caa", "rejectedIdentifier", "rateLimited"]
                            .iter()
                            .any(|t| k.ends_with(&format!(":{t}")))
                    }) {
                        break;
                    }
                }
                Err(e) => failed.push(format!("{}: {e:#}", how.name())),
            }
        }
        anyhow::bail!("{}", failed.join("; "))
    }

    /// Keeps the new pair (atomically: old or new after a power cut) and
    /// gives it to every listener.
    fn keep(&self, config: &Config, chain: &str, key: &str, how: Challenge) -> anyhow::Result<()> {
        let info = self.answers.certs.keep(config, chain, key)?;
        if let Some(mut info) = info {
            info.in_order_of(&config.certificate_names());
            tracing::info!(
                "certificate for {} issued by {} over {}, valid until {}",
                info.names.join(", "),
                info.issuer,
                how.name(),
                when(info.not_after)
            );
        }
        Ok(())
    }
}

/// What one attempt got: a new certificate (over this challenge), or
/// none needed; the names left out of it.
struct Got {
    issued: Option<Challenge>,
    left_out: Vec<(String, String)>,
}

/// The next attempt after this one, for the log.
fn plan_after(config: &Config, current: Option<CertInfo>, status: &Status, now: u64) -> u64 {
    plan(current.as_ref(), &config.certificate_names(), status, now).at
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
            fingerprint: String::new(),
        }
    }

    #[test]
    fn a_certificate_missing_names_is_renewed_at_once_after_the_backoff() {
        let wanted = vec![
            "mx.example.org".to_string(),
            "mta-sts.example.org".to_string(),
        ];
        let ours = Status {
            directory: "https://ca/dir".into(),
            issued_by: Some("https://ca/dir".into()),
            ..Status::default()
        };
        let now = 86400;
        let all = info(&["mx.example.org", "mta-sts.example.org"], true);
        let p = plan(Some(&all), &wanted, &ours, now);
        assert_eq!((p.at, p.renewal), (60 * 86400, true));
        // A name added since: at once, without renewing for its own sake.
        let partial = info(&["mx.example.org"], true);
        let p = plan(Some(&partial), &wanted, &ours, now);
        assert_eq!((p.at, p.renewal, p.left_out), (now, false, false));
        // A name the CA refused twice: after its own backoff.
        let refused = Status {
            partial: 2,
            last_attempt: Some(now),
            left_out: vec![("mta-sts.example.org".into(), "NXDOMAIN".into())],
            ..ours.clone()
        };
        let p = plan(Some(&partial), &wanted, &refused, now);
        assert_eq!(
            (p.at, p.renewal, p.left_out),
            (now + 2 * LEFT_OUT_FIRST, false, true)
        );
        // That backoff never delays the renewal itself.
        let short = CertInfo {
            not_after: 9,
            ..partial.clone()
        };
        let p = plan(Some(&short), &wanted, &refused, now);
        assert_eq!((p.at, p.renewal), (6, true));
        // A self-signed certificate, or one from another CA: at once.
        let own = info(&["mx.example.org", "mta-sts.example.org"], false);
        assert_eq!(plan(Some(&own), &wanted, &ours, now).at, now);
        let elsewhere = Status {
            issued_by: Some("https://staging/dir".into()),
            ..ours.clone()
        };
        assert_eq!(plan(Some(&all), &wanted, &elsewhere, now).at, now);
        // A clock that ran ahead does not hold a retry back for long.
        let ahead = Status {
            failures: 1,
            last_attempt: Some(now + 365 * 86400),
            ..ours.clone()
        };
        assert_eq!(
            plan(Some(&own), &wanted, &ahead, now).at,
            now + super::super::RETRY_FIRST
        );
    }
}
