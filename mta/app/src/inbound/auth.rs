//! Sender authentication of mail from strangers, with mail-auth (no RFC
//! written by hand here): SPF for the HELO name and the MAIL FROM domain
//! (RFC 7208; its limit of 10 DNS-querying terms is mail-auth's), DKIM
//! (RFC 6376, Ed25519 RFC 8463), ARC (RFC 8617) and DMARC (RFC 7489; the
//! organizational domain found as RFC 9989 does, by the DNS tree walk).
//! Every lookup goes through the server's one resolver; all of it has one
//! deadline. The result is one `Authentication-Results:` field (RFC 8601)
//! with our host name as authserv-id, and what to do with the message.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::verify::VerifySignature;
use mail_auth::dmarc::Policy;
use mail_auth::report::{ActionDisposition, PolicyPublished, Record, SPFDomainScope};
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult, dmarc::verify::DmarcParameters, spf::verify::SpfParameters,
};

/// All the lookups of one message, at most (a sending server waits 10
/// minutes for its answer to the end of DATA, RFC 5321 §4.5.3.2.6).
pub const DEADLINE: Duration = Duration::from_secs(20);
/// The same while the DNS is not answering (the last check timed out
/// less than [`SLOW_FOR`] ago): mail is not held up by an outage.
pub const SHORT_DEADLINE: Duration = Duration::from_secs(3);
pub const SLOW_FOR: Duration = Duration::from_secs(60);
/// DKIM signatures checked per message (each costs a DNS lookup and a
/// hash of the body); more is not something honest mail carries.
pub const MAX_SIGNATURES: usize = 8;

/// What becomes of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Deliver,
    /// The sender's domain asks for it to be refused (DMARC `p=reject`):
    /// the text after `550 5.7.1`.
    Reject(String),
    /// Delivered into the recipients' Junk folders (unless they allow the
    /// sender): DMARC `p=quarantine`, or an SPF `fail` (the domain lists
    /// its servers and ends with `-all`) that DKIM does not make good.
    Junk(String),
}

/// The checks' outcome.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `Authentication-Results: …\r\n`, to put in front of the message.
    pub header: String,
    pub action: Action,
    /// One line for the log: `spf=pass dkim=pass dmarc=pass …`.
    pub summary: String,
    /// `Authentication-Results:` fields that claim our authserv-id (byte
    /// ranges of the message): to remove.
    pub forged: Vec<std::ops::Range<usize>>,
    /// The domain SPF (for MAIL FROM) or a DKIM signature vouches for.
    pub authenticated: Option<String>,
    /// The row for the From domain's DMARC aggregate report, when its
    /// policy asks for reports (`rua`).
    pub report: Option<super::reports::Row>,
}

/// The identities the client gave.
pub struct Client<'a> {
    pub ip: IpAddr,
    /// The EHLO/HELO argument.
    pub helo: &'a str,
    /// The reverse path; empty for the null sender.
    pub mail_from: &'a str,
}

/// Who seals a message that is forwarded: the alias's domain, with its
/// keys.
pub struct Sealer<'a> {
    pub domain: &'a str,
    pub keys: &'a crate::dkim::Keys,
}

/// Checks `message` (as received, without our fields) from `client`;
/// `hostname` is ours (the authserv-id, and SPF's `%{r}`). With `sealer`,
/// the results are ARC-sealed too (in front of ours in the verdict's
/// header), unless the chain the message came with has failed.
pub async fn check(
    authenticator: &MessageAuthenticator,
    hostname: &str,
    client: &Client<'_>,
    message: &[u8],
    deadline: Duration,
    sealer: Option<Sealer<'_>>,
) -> Verdict {
    let checks = run(authenticator, hostname, client, message, sealer);
    match tokio::time::timeout(deadline, checks).await {
        Ok(verdict) => verdict,
        Err(_) => unchecked(
            hostname,
            message,
            &format!("the DNS did not answer within {} s", deadline.as_secs()),
        ),
    }
}

/// The verdict when the checks cannot run (`why`): every method a
/// temporary error, the message delivered, and fields claiming to be ours
/// still removed.
pub fn unchecked(hostname: &str, message: &[u8], why: &str) -> Verdict {
    Verdict {
        header: format!(
            "Authentication-Results: {hostname}; spf=temperror; dkim=temperror; dmarc=temperror ({why})\r\n"
        ),
        action: Action::Deliver,
        summary: format!("not checked: {why}"),
        forged: forged_results(message, hostname),
        authenticated: None,
        report: None,
    }
}

async fn run(
    ma: &MessageAuthenticator,
    hostname: &str,
    client: &Client<'_>,
    message: &[u8],
    sealer: Option<Sealer<'_>>,
) -> Verdict {
    let Client {
        ip,
        helo,
        mail_from,
    } = *client;
    let helo_spf = ma
        .verify_spf(SpfParameters::verify_ehlo(
            ip.to_canonical(),
            helo,
            hostname,
        ))
        .await;
    let from_spf = spf_of_mail_from(ma, ip, helo, hostname, mail_from).await;
    let mut results = AuthenticationResults::new(hostname)
        .with_spf_ehlo_result(&helo_spf, ip, helo)
        .with_spf_mailfrom_result(&from_spf, ip, mail_from, helo);
    let mut summary = format!(
        "spf(helo)={} spf(mailfrom)={}",
        spf_word(helo_spf.result()),
        spf_word(from_spf.result())
    );
    let Some(parsed) = AuthenticatedMessage::parse(message) else {
        // Not a message mail-auth can read (no header section): SPF only.
        return Verdict {
            header: results.to_header(),
            action: Action::Deliver,
            summary: summary + " (the header section cannot be parsed)",
            forged: forged_results(message, hostname),
            authenticated: None,
            report: None,
        };
    };
    let signatures = parsed.dkim_headers.len();
    let dkim = if signatures > MAX_SIGNATURES {
        Vec::new()
    } else {
        ma.verify_dkim(&parsed).await
    };
    results = results.with_dkim_results(&dkim, parsed.from());
    let arc = ma.verify_arc(&parsed).await;
    results = results.with_arc_result(&arc, ip);
    // DMARC aligns with the MAIL FROM domain (the HELO name's for the null
    // sender, as SPF checks it).
    let mail_from_domain = mail_from.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo);
    let dmarc = ma
        .verify_dmarc(DmarcParameters::new(
            &parsed,
            &dkim,
            mail_from_domain,
            &from_spf,
        ))
        .await;
    results = results.with_dmarc_result(&dmarc);
    let dkim_word = if signatures > MAX_SIGNATURES {
        format!("permerror ({signatures} signatures, at most {MAX_SIGNATURES} are checked)")
    } else if dkim.is_empty() {
        "none".to_string()
    } else if dkim.iter().any(|d| matches!(d.result(), DkimResult::Pass)) {
        "pass".to_string()
    } else {
        "fail".to_string()
    };
    let outcome = dmarc.result();
    summary.push_str(&format!(
        " dkim={dkim_word} arc={} dmarc={}",
        dkim_word_of(arc.result()),
        dmarc_word(&outcome)
    ));
    // A record, and neither an aligned SPF pass nor an aligned DKIM pass.
    let failed = matches!(outcome, DmarcResult::Fail(_));
    let action = if failed && dmarc.policy() == Policy::Reject {
        Action::Reject(format!(
            "the DMARC policy of {} rejects this message: it is neither DKIM-signed nor SPF-authorised for that domain",
            dmarc.domain()
        ))
    } else if failed && dmarc.policy() == Policy::Quarantine {
        Action::Junk(format!(
            "the DMARC policy of {} quarantines this message: it is neither DKIM-signed nor SPF-authorised for that domain",
            dmarc.domain()
        ))
    } else if from_spf.result() == SpfResult::Fail
        && !matches!(outcome, DmarcResult::Pass)
        && !dkim.iter().any(|d| matches!(d.result(), DkimResult::Pass))
    {
        Action::Junk(format!(
            "the SPF record of {mail_from_domain} does not allow {ip} to send its mail, and no DKIM signature vouches for it"
        ))
    } else {
        Action::Deliver
    };
    if failed {
        summary.push_str(&format!(" policy={:?}", dmarc.policy()));
    }
    let authenticated = if from_spf.result() == SpfResult::Pass && mail_from.contains('@') {
        Some(mail_from_domain.to_lowercase())
    } else {
        dkim.iter()
            .filter(|d| matches!(d.result(), DkimResult::Pass))
            .find_map(|d| d.signature())
            .map(|s| s.domain().to_lowercase())
    };
    let mut header = String::new();
    if let Some(Sealer { domain, keys }) = sealer {
        if !arc.can_be_sealed() {
            summary.push_str(" (not ARC-sealed: its ARC chain failed)");
        } else {
            match keys.arc_set(domain, &parsed, &results, &arc) {
                Ok(set) => {
                    header = set;
                    summary.push_str(&format!(" arc-sealed-by={domain}"));
                }
                Err(e) => {
                    tracing::warn!("cannot ARC-seal a message forwarded from {domain}: {e:#}")
                }
            }
        }
    }
    header.push_str(&results.to_header());
    let report = dmarc
        .dmarc_record()
        .filter(|record| !record.rua().is_empty())
        .map(|record| {
            let mut row = Record::new()
                .with_source_ip(ip.to_canonical())
                .with_header_from(
                    parsed
                        .from()
                        .rsplit_once('@')
                        .map_or(parsed.from(), |(_, d)| d)
                        .to_lowercase(),
                )
                .with_envelope_from(mail_from_domain.to_lowercase())
                .with_dkim_output(&dkim)
                .with_spf_output(&from_spf, SPFDomainScope::MailFrom)
                .with_dmarc_output(&dmarc);
            // The policy applied: RFC 7489 knows none, quarantine and
            // reject (a pass is "none").
            if row.action_disposition() == ActionDisposition::Pass {
                row = row.with_action_disposition(ActionDisposition::None);
            }
            (record, row)
        })
        .map(|(record, row)| super::reports::Row {
            domain: dmarc.domain().to_lowercase(),
            policy: PolicyPublished::from_record(dmarc.domain().to_lowercase(), record),
            rua: record
                .rua()
                .iter()
                .map(|u| (u.uri().to_string(), u.max_size()))
                .collect(),
            record: row,
        });
    Verdict {
        header,
        action,
        summary,
        forged: forged_results(message, hostname),
        authenticated,
        report,
    }
}

/// The `Authentication-Results:` fields of `message`'s header section that
/// claim to be ours (authserv-id `hostname`, RFC 8601 §5), and Junk marks
/// (`junk::FIELD`): byte ranges, continuation lines included, to remove
/// before ours are added. A stranger must not be able to say what our
/// checks found.
pub fn forged_results(message: &[u8], hostname: &str) -> Vec<std::ops::Range<usize>> {
    super::junk::fields(message)
        .filter(|range| {
            let field = &message[range.clone()];
            // Our Junk mark is ours alone too.
            super::junk::value_of(field, super::junk::FIELD).is_some()
                || super::junk::value_of(field, "Authentication-Results").is_some_and(|value| {
                    authserv_id(&String::from_utf8_lossy(value))
                        .is_some_and(|id| id.eq_ignore_ascii_case(hostname))
                })
        })
        .collect()
}

/// The authserv-id of an `Authentication-Results:` value: the first word,
/// comments (in parentheses) and folding left out.
fn authserv_id(value: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut start = None;
    for (i, c) in value.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            ';' | ' ' | '\t' | '\r' | '\n' => {
                if let Some(s) = start {
                    return Some(&value[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    start.map(|s| value[s..].trim_end())
}

/// SPF (RFC 7208) for the MAIL FROM identity, `postmaster@<helo>` for the
/// null sender, as every message's checks run it (and the RFC 7208 test
/// suite does, in `mta/tests/it/spf_suite.rs`). `hostname` is ours.
pub async fn spf_of_mail_from(
    ma: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    hostname: &str,
    mail_from: &str,
) -> mail_auth::SpfOutput {
    // An IPv4-mapped IPv6 address (a dual-stack listener's view of an
    // IPv4 client) is IPv4 to SPF (RFC 7208 §5: ip6 mechanisms and AAAA
    // records do not match it).
    ma.verify_spf(SpfParameters::verify_mail_from(
        ip.to_canonical(),
        helo,
        hostname,
        mail_from,
    ))
    .await
}

/// An SPF result as RFC 8601 writes it.
pub fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_word_of(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_that_claim_our_authserv_id_are_found_with_their_continuations() {
        let message =
            b"Authentication-Results: MX.example.org;\r\n\tdkim=pass header.d=bank.example\r\n\
Authentication-Results: other.example; spf=pass\r\n\
Subject: hi\r\n\
authentication-results: (a comment) mx.example.org; spf=pass\r\n\
Authentication-Results: mx.example.org.evil; spf=pass\r\n\
\r\n\
Authentication-Results: mx.example.org; in the body\r\n";
        let found = forged_results(message, "mx.example.org");
        let texts: Vec<String> = found
            .iter()
            .map(|r| String::from_utf8_lossy(&message[r.clone()]).to_string())
            .collect();
        assert_eq!(
            texts,
            [
                "Authentication-Results: MX.example.org;\r\n\tdkim=pass header.d=bank.example\r\n",
                "authentication-results: (a comment) mx.example.org; spf=pass\r\n",
            ]
        );
        assert!(forged_results(b"Subject: x\r\n\r\n", "mx.example.org").is_empty());
    }

    #[test]
    fn without_dns_every_method_is_a_temporary_error_and_forgeries_still_go() {
        let message =
            b"Authentication-Results: mx.example.org; spf=pass\r\nSubject: x\r\n\r\nhi\r\n";
        let v = unchecked("mx.example.org", message, "no DNS resolver");
        assert_eq!(
            v.header,
            "Authentication-Results: mx.example.org; spf=temperror; dkim=temperror; dmarc=temperror (no DNS resolver)\r\n"
        );
        assert_eq!(v.action, Action::Deliver);
        assert_eq!(v.forged.len(), 1);
        assert_eq!(v.forged[0], 0..50);
    }
}
