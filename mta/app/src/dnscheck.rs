//! The DNS check: each record a domain needs ([`crate::records`]) looked up
//! through the server's resolver and judged — in place, missing, or wrong
//! (with what was found beside what is expected) — and what to do about
//! it. The DNS page and `mta dns check` show the same verdicts.

use std::net::IpAddr;

use crate::dns::{self, Data, Dns, Kind};
use crate::records::Record;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Not there, and not needed (the AAAA record without IPv6).
    Optional,
    Missing,
    /// Records are there, but not the one needed.
    Wrong,
    /// No answer to judge by (a DNS failure).
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct Checked {
    pub record: Record,
    pub verdict: Verdict,
    /// What the DNS answered, as zone-file values.
    pub found: Vec<String>,
    /// What to do, for a person (empty when all is well).
    pub advice: String,
}

impl Verdict {
    /// Whether the owner has something to do.
    pub fn needs_attention(&self) -> bool {
        !matches!(self, Verdict::Ok | Verdict::Optional)
    }

    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Optional => "optional",
            Verdict::Missing => "missing",
            Verdict::Wrong => "wrong",
            Verdict::Unknown(_) => "unknown",
        }
    }
}

/// Every record of `records` checked, in order. `host` is the server's host
/// name (what CNAMEs and PTRs must name).
pub async fn check(dns: &Dns, host: &str, records: &[Record]) -> Vec<Checked> {
    let mut out = Vec::new();
    // The host's addresses, for the PTR check and for names published as
    // A records instead of CNAMEs.
    let host_ips = ips(dns, host).await;
    for record in records {
        out.push(check_one(dns, host, &host_ips, record).await);
    }
    out
}

async fn ips(dns: &Dns, name: &str) -> Vec<IpAddr> {
    dns.lookup(&dns::absolute(name), Kind::Ip, false)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| match r.data {
            Data::Ip(ip) => Some(ip),
            _ => None,
        })
        .collect()
}

/// Lowercase, without quotes and runs of blanks: how TXT values compare.
fn normal(text: &str) -> String {
    text.replace('"', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

async fn check_one(dns: &Dns, host: &str, host_ips: &[IpAddr], record: &Record) -> Checked {
    let judged = |verdict: Verdict, found: Vec<String>, advice: String| Checked {
        record: record.clone(),
        verdict,
        found,
        advice,
    };
    if record.kind == "PTR" {
        return check_ptr(dns, host, host_ips, record).await;
    }
    // IPv6 is optional: the A record is what mail needs.
    if record.kind == "AAAA" {
        let v6: Vec<String> = host_ips
            .iter()
            .filter(|ip| ip.is_ipv6())
            .map(|ip| ip.to_string())
            .collect();
        let verdict = if v6.is_empty() {
            Verdict::Optional
        } else {
            Verdict::Ok
        };
        let advice = match verdict {
            Verdict::Ok => String::new(),
            _ => "Optional: publish it if your connection has a public IPv6 address.".to_string(),
        };
        return judged(verdict, v6, advice);
    }
    let kind = match record.kind {
        "MX" => Kind::Mx,
        "A" => Kind::Ip,
        "TXT" => Kind::Txt,
        "CNAME" => Kind::Cname,
        "SRV" => Kind::Srv,
        "CAA" => Kind::Caa,
        _ => Kind::Txt,
    };
    let answer = dns.lookup(&dns::absolute(&record.name), kind, false).await;
    let data: Vec<Data> = match answer {
        Ok(records) => records.into_iter().map(|r| r.data).collect(),
        Err(e) if e.is_negative() => Vec::new(),
        Err(e) => {
            return judged(
                Verdict::Unknown(e.to_string()),
                Vec::new(),
                format!("The lookup failed ({e}); check again later."),
            );
        }
    };
    let found: Vec<String> = data.iter().map(show).collect();
    let expected = normal(&record.plain);
    let verdict = match record.kind {
        "MX" => {
            let ours = data
                .iter()
                .any(|d| matches!(d, Data::Mx { exchange, .. } if exchange == host));
            if ours {
                Verdict::Ok
            } else if data.is_empty() {
                Verdict::Missing
            } else {
                Verdict::Wrong
            }
        }
        // The public address cannot be known here: any address will do.
        "A" => {
            if !data.iter().any(|d| matches!(d, Data::Ip(IpAddr::V4(_)))) {
                return judged(
                    Verdict::Missing,
                    found,
                    format!(
                        "Publish an A record for {} with your public IPv4 address.",
                        record.name
                    ),
                );
            }
            Verdict::Ok
        }
        "CNAME" => {
            let named = data.iter().any(|d| matches!(d, Data::Name(n) if n == host));
            // An A record with the host's addresses works as well.
            let theirs = if named {
                Vec::new()
            } else {
                ips(dns, &record.name).await
            };
            let same_ips = !host_ips.is_empty()
                && !theirs.is_empty()
                && theirs.iter().all(|ip| host_ips.contains(ip));
            if named || same_ips {
                Verdict::Ok
            } else if data.is_empty() && theirs.is_empty() {
                Verdict::Missing
            } else {
                Verdict::Wrong
            }
        }
        "TXT" => {
            // Only the records of the same kind (v=spf1, v=DKIM1 …) count.
            let tag = expected.split([';', ' ']).next().unwrap_or("").to_string();
            let same_kind: Vec<String> = found
                .iter()
                .map(|f| normal(f))
                .filter(|f| f.starts_with(&tag))
                .collect();
            if same_kind.is_empty() {
                Verdict::Missing
            } else if same_kind.iter().any(|f| txt_matches(&expected, f)) {
                Verdict::Ok
            } else {
                Verdict::Wrong
            }
        }
        "SRV" | "CAA" => {
            if found.iter().any(|f| normal(f) == expected) {
                Verdict::Ok
            } else if found.is_empty() {
                Verdict::Missing
            } else {
                Verdict::Wrong
            }
        }
        _ => Verdict::Unknown("not checked".into()),
    };
    let advice = match verdict {
        Verdict::Ok | Verdict::Optional => String::new(),
        Verdict::Missing => "Publish this record at your DNS provider.".to_string(),
        Verdict::Wrong => {
            "Change it to the expected value: what is there now does not do the job.".to_string()
        }
        Verdict::Unknown(_) => String::new(),
    };
    judged(verdict, found, advice)
}

/// Whether a TXT value found does what the expected one does: the same
/// policy for DMARC (quarantine or stricter), the same key for DKIM, the
/// same text otherwise.
fn txt_matches(expected: &str, found: &str) -> bool {
    let field = |text: &str, name: &str| {
        text.split(';').map(str::trim).find_map(|f| {
            f.strip_prefix(&format!("{name}="))
                .map(|v| v.replace(' ', ""))
        })
    };
    if expected.starts_with("v=dmarc1") {
        return matches!(field(found, "p").as_deref(), Some("quarantine" | "reject"));
    }
    if expected.starts_with("v=dkim1") {
        return field(found, "p") == field(expected, "p");
    }
    if expected.starts_with("v=stsv1") {
        return field(found, "id").is_some_and(|id| !id.is_empty());
    }
    if expected.starts_with("v=tlsrptv1") {
        return field(found, "rua").is_some();
    }
    expected == found
}

async fn check_ptr(dns: &Dns, host: &str, host_ips: &[IpAddr], record: &Record) -> Checked {
    let mut found = Vec::new();
    let mut ok = false;
    for ip in host_ips {
        let names = dns
            .lookup(&dns::reverse_name(*ip), Kind::Ptr, false)
            .await
            .unwrap_or_default();
        for r in names {
            if let Data::Name(n) = r.data {
                ok |= n == host;
                found.push(format!("{ip} → {n}."));
            }
        }
    }
    let (verdict, advice) = if host_ips.is_empty() {
        (
            Verdict::Unknown("the host name has no address yet".into()),
            "Publish the A record first.".to_string(),
        )
    } else if ok {
        (Verdict::Ok, String::new())
    } else if found.is_empty() {
        (
            Verdict::Missing,
            format!("Ask your Internet provider to set the reverse DNS of your address to {host}."),
        )
    } else {
        (
            Verdict::Wrong,
            format!(
                "Ask your Internet provider to change the reverse DNS of your address to {host}."
            ),
        )
    };
    Checked {
        record: record.clone(),
        verdict,
        found,
        advice,
    }
}

fn show(d: &Data) -> String {
    match d {
        Data::Mx {
            preference,
            exchange,
        } => format!("{preference} {exchange}."),
        Data::Txt(t) => format!("\"{t}\""),
        Data::Ip(ip) => ip.to_string(),
        Data::Name(n) => format!("{n}."),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("{priority} {weight} {port} {target}."),
        Data::Caa(c) => c.clone(),
        Data::Tlsa(_) => "TLSA".into(),
        Data::DnsKey => "DNSKEY".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dns::Error;
    use crate::dns::mock::Zone;
    use crate::records::Purpose;

    fn record(name: &str, kind: &'static str, plain: &str) -> Record {
        Record {
            name: name.into(),
            kind,
            value: plain.into(),
            plain: plain.into(),
            purpose: Purpose::Receive,
            why: "",
            ask_isp: kind == "PTR",
        }
    }

    fn txt(text: &str) -> crate::dns::Record {
        Zone::insecure(Data::Txt(text.into()))
    }

    #[tokio::test]
    async fn each_record_is_ok_missing_or_wrong() {
        let zone = Zone::default()
            .with(
                "example.org",
                Kind::Mx,
                Ok(vec![Zone::insecure(Data::Mx {
                    preference: 10,
                    exchange: "mail.example.org".into(),
                })]),
            )
            .with(
                "mail.example.org",
                Kind::Ip,
                Ok(vec![Zone::insecure(Data::Ip("192.0.2.1".parse().unwrap()))]),
            )
            .with(
                "example.org",
                Kind::Txt,
                Ok(vec![
                    txt("v=spf1 a -all"),
                    txt("google-site-verification=x"),
                ]),
            )
            .with(
                "_dmarc.example.org",
                Kind::Txt,
                Ok(vec![txt("v=DMARC1; p=reject; rua=mailto:x@example.org")]),
            )
            .with(
                "sel._domainkey.example.org",
                Kind::Txt,
                Err(Error::NoSuchName { secure: false }),
            )
            .with(
                "1.2.0.192.in-addr.arpa",
                Kind::Ptr,
                Ok(vec![Zone::insecure(Data::Name("host.isp.example".into()))]),
            )
            .with(
                "autoconfig.example.org",
                Kind::Cname,
                Ok(vec![Zone::insecure(Data::Name("mail.example.org".into()))]),
            )
            .with(
                "_mta-sts.example.org",
                Kind::Txt,
                Err(Error::Failed("SERVFAIL".into())),
            );
        let records = vec![
            record("example.org", "MX", "10 mail.example.org."),
            record("mail.example.org", "A", "(address)"),
            record("example.org", "TXT", "v=spf1 mx -all"),
            record(
                "_dmarc.example.org",
                "TXT",
                "v=DMARC1; p=quarantine; rua=mailto:o@example.org",
            ),
            record(
                "sel._domainkey.example.org",
                "TXT",
                "v=DKIM1; k=ed25519; p=abc",
            ),
            record("(reverse)", "PTR", "mail.example.org."),
            record("autoconfig.example.org", "CNAME", "mail.example.org."),
            record("_mta-sts.example.org", "TXT", "v=STSv1; id=1"),
        ];
        let dns = Dns::new(Arc::new(zone), false);
        let checked = check(&dns, "mail.example.org", &records).await;
        let verdicts: Vec<&str> = checked.iter().map(|c| c.verdict.label()).collect();
        assert_eq!(
            verdicts,
            [
                "ok", "ok", "wrong", "ok", "missing", "wrong", "ok", "unknown"
            ]
        );
        assert_eq!(
            checked[2].found,
            ["\"v=spf1 a -all\"", "\"google-site-verification=x\""]
        );
        assert!(
            checked[2].advice.contains("Change it"),
            "{}",
            checked[2].advice
        );
        assert!(
            checked[4].advice.contains("Publish this record"),
            "{}",
            checked[4].advice
        );
        assert!(
            checked[5].advice.contains("Internet provider"),
            "{}",
            checked[5].advice
        );
        assert_eq!(checked[5].found, ["192.0.2.1 → host.isp.example."]);
    }

    #[test]
    fn txt_values_compare_by_what_they_mean() {
        assert!(txt_matches(
            "v=dkim1; k=ed25519; p=abc",
            "v=dkim1; k=ed25519; p=a bc"
        ));
        assert!(!txt_matches(
            "v=dkim1; k=ed25519; p=abc",
            "v=dkim1; k=ed25519; p=old"
        ));
        assert!(!txt_matches("v=dmarc1; p=quarantine", "v=dmarc1; p=none"));
        assert!(txt_matches("v=spf1 mx -all", "v=spf1 mx -all"));
    }
}
