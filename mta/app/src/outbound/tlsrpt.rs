//! TLS reports (RFC 8460) of the mail we send: each delivery to a domain
//! with an MTA-STS policy in enforce mode or a DANE policy counts, per UTC
//! day, a successful TLS
//! session or a failure with its RFC 8460 result type
//! (`certificate-expired`, `certificate-host-mismatch`,
//! `certificate-not-trusted`, `starttls-not-supported`,
//! `validation-failure`) and the MX host. After the day, a domain whose
//! `_smtp._tls` record names `mailto:` addresses gets the JSON report,
//! gzip-compressed in mail-auth's message (the sending is
//! `crate::reporter`'s, with the DMARC reports). Deliveries without a
//! policy are not counted, nor those under a policy in testing mode (the
//! certificate is then not checked, so a success would say nothing). Bounded as the DMARC reports are
//! (`crate::daily`), and at most [`MAX_DETAILS`] kinds of failure per
//! domain and day.

use std::net::IpAddr;
use std::sync::Arc;

use mail_auth::report::tlsrpt::{
    DateRange, FailureDetails, Policy, PolicyDetails, PolicyType, ResultType, Summary, TlsReport,
};
use redb::Database;
use serde::{Deserialize, Serialize};

use crate::daily::{DAY, Daily};

pub const MAX_DETAILS: usize = 50;

/// One domain's sessions of one day, per policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TlsDay {
    policies: Vec<Policy>,
}

/// What one delivery attempt to one MX host came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Success,
    Failure {
        result: ResultType,
        mx: String,
        ip: Option<IpAddr>,
        why: String,
    },
}

/// The policy a delivery was under, for the report.
pub fn sts_policy(domain: &str, mode: &str, mx: &[String], max_age: u64) -> PolicyDetails {
    let mut lines = vec!["version: STSv1".to_string(), format!("mode: {mode}")];
    lines.extend(mx.iter().map(|m| format!("mx: {m}")));
    lines.push(format!("max_age: {max_age}"));
    PolicyDetails {
        policy_type: PolicyType::Sts,
        policy_string: lines,
        policy_domain: domain.to_string(),
        mx_host: mx.to_vec(),
    }
}

/// A DANE (TLSA) policy of `domain`'s MX `host`.
pub fn tlsa_policy(domain: &str, host: &str, records: Vec<String>) -> PolicyDetails {
    PolicyDetails {
        policy_type: PolicyType::Tlsa,
        policy_string: records,
        policy_domain: domain.to_string(),
        mx_host: vec![host.to_string()],
    }
}

impl crate::daily::Merge for TlsDay {
    fn merge(&mut self, other: TlsDay) {
        for p in other.policies {
            match self.policies.iter_mut().find(|q| q.policy == p.policy) {
                Some(q) => {
                    q.summary.total_success = q
                        .summary
                        .total_success
                        .saturating_add(p.summary.total_success);
                    q.summary.total_failure = q
                        .summary
                        .total_failure
                        .saturating_add(p.summary.total_failure);
                    for f in p.failure_details {
                        if q.failure_details.len() < MAX_DETAILS {
                            q.failure_details.push(f);
                        }
                    }
                }
                None => self.policies.push(p),
            }
        }
    }
}

pub struct TlsReports {
    daily: Daily<TlsDay>,
}

impl TlsReports {
    pub fn open(db: Arc<Database>) -> anyhow::Result<TlsReports> {
        Ok(TlsReports {
            daily: Daily::open(db, "tls_reports")?,
        })
    }

    /// Counts one session to `domain` under `policy` at `now`.
    pub fn record(&self, now: u64, domain: &str, policy: PolicyDetails, outcome: Outcome) {
        self.daily
            .update(now, domain.to_lowercase(), TlsDay::default, |day| {
                let at = match day.policies.iter().position(|p| p.policy == policy) {
                    Some(at) => at,
                    None => {
                        day.policies.push(Policy {
                            policy,
                            summary: Summary {
                                total_success: 0,
                                total_failure: 0,
                            },
                            failure_details: Vec::new(),
                        });
                        day.policies.len() - 1
                    }
                };
                let p = &mut day.policies[at];
                match outcome {
                    Outcome::Success => {
                        p.summary.total_success = p.summary.total_success.saturating_add(1)
                    }
                    Outcome::Failure {
                        result,
                        mx,
                        ip,
                        why,
                    } => {
                        p.summary.total_failure = p.summary.total_failure.saturating_add(1);
                        let same = |f: &&mut FailureDetails| {
                            f.result_type == result
                                && f.receiving_mx_hostname.as_deref() == Some(mx.as_str())
                                && f.receiving_ip == ip
                        };
                        let full = p.failure_details.len() >= MAX_DETAILS;
                        match p.failure_details.iter_mut().find(same) {
                            Some(f) => {
                                f.failed_session_count = f.failed_session_count.saturating_add(1)
                            }
                            None if !full => p.failure_details.push(FailureDetails {
                                result_type: result,
                                sending_mta_ip: None,
                                receiving_mx_hostname: Some(mx),
                                receiving_mx_helo: None,
                                receiving_ip: ip,
                                failed_session_count: 1,
                                additional_information: None,
                                failure_reason_code: Some(why),
                            }),
                            None => {}
                        }
                    }
                }
            });
    }

    pub fn flush(&self) -> anyhow::Result<()> {
        self.daily.flush()
    }

    /// The days due, taken out (see `Daily::take_due`).
    pub fn take_due(
        &self,
        now: u64,
        include_today: bool,
    ) -> anyhow::Result<Vec<(u32, String, TlsDay)>> {
        self.daily.take_due(now, include_today)
    }

    pub fn restore(&self, day: u32, domain: String, data: TlsDay) {
        self.daily.restore(day, domain, data);
    }
}

impl TlsDay {
    /// Sessions counted.
    pub fn sessions(&self) -> u64 {
        self.policies
            .iter()
            .map(|p| u64::from(p.summary.total_success) + u64::from(p.summary.total_failure))
            .sum()
    }

    /// The report of `day`, from `hostname` (`contact` answers for it).
    pub fn report(&self, day: u32, domain: &str, hostname: &str, contact: &str) -> TlsReport {
        let begin = u64::from(day) * DAY;
        TlsReport {
            organization_name: Some(hostname.to_string()),
            date_range: DateRange {
                start_datetime: mail_parser::DateTime::from_timestamp(begin as i64),
                end_datetime: mail_parser::DateTime::from_timestamp((begin + DAY - 1) as i64),
            },
            contact_info: Some(contact.to_string()),
            // Unique even when a day is sent in parts (`mta reports send`).
            report_id: format!(
                "{day}.{domain}.{}@{hostname}",
                mta_store::envelope::now_secs()
            ),
            policies: self.policies.clone(),
        }
    }
}

/// The RFC 8460 result type of a TLS handshake that failed with `e`.
pub fn result_of(e: &rustls::Error) -> ResultType {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => ResultType::CertificateExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                ResultType::CertificateHostMismatch
            }
            C::UnknownIssuer => ResultType::CertificateNotTrusted,
            _ => ResultType::ValidationFailure,
        },
        _ => ResultType::ValidationFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_460_800;

    #[test]
    fn sessions_are_counted_per_policy_and_failures_per_kind_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::inbound::open_db(&dir.path().join("inbound.redb")).unwrap();
        let reports = TlsReports::open(db).unwrap();
        let policy = sts_policy("example.net", "enforce", &["mx.example.net".into()], 86400);
        for _ in 0..3 {
            reports.record(NOW, "Example.NET", policy.clone(), Outcome::Success);
        }
        let expired = || Outcome::Failure {
            result: ResultType::CertificateExpired,
            mx: "mx.example.net".into(),
            ip: Some("192.0.2.1".parse().unwrap()),
            why: "certificate expired".into(),
        };
        reports.record(NOW, "example.net", policy.clone(), expired());
        reports.record(NOW, "example.net", policy.clone(), expired());
        let due = reports.take_due(NOW + DAY, false).unwrap();
        assert_eq!(due.len(), 1);
        let (day, domain, data) = &due[0];
        assert_eq!(domain, "example.net");
        assert_eq!(data.sessions(), 5);
        let report = data.report(*day, domain, "mx.example.org", "postmaster@example.org");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let p = &json["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["summary"]["total-successful-session-count"], 3);
        assert_eq!(p["summary"]["total-failure-session-count"], 2);
        assert_eq!(
            p["failure-details"][0]["result-type"],
            "certificate-expired"
        );
        assert_eq!(p["failure-details"][0]["failed-session-count"], 2);
        assert_eq!(json["date-range"]["start-datetime"], "2025-11-30T00:00:00Z");
    }

    #[test]
    fn handshake_errors_have_their_result_types() {
        use rustls::CertificateError as C;
        let r = |c| result_of(&rustls::Error::InvalidCertificate(c));
        assert_eq!(r(C::Expired), ResultType::CertificateExpired);
        assert_eq!(r(C::NotValidForName), ResultType::CertificateHostMismatch);
        assert_eq!(r(C::UnknownIssuer), ResultType::CertificateNotTrusted);
        assert_eq!(r(C::BadSignature), ResultType::ValidationFailure);
    }
}
