//! HELO and sender sanity, as Postfix's `reject_invalid_helo_hostname`,
//! `reject_non_fqdn_helo_hostname` and `reject_unknown_sender_domain` do:
//! a stranger must name itself with a fully-qualified host name (or an
//! address literal) that is not ours, and its sender domain must exist and
//! be able to receive the bounces we may owe it (an MX, or an address;
//! RFC 7505's null MX says it cannot). Decided at the end of DATA with the
//! other checks; clients of the trusted networks are not asked.

use crate::dns::{Data, Dns, Error, Kind};

/// What the sender's domain is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Domain {
    /// It can receive mail.
    Exists,
    /// Refuse (`550`), and why.
    Unknown(String),
    /// The DNS did not answer: come back later (`450`), and why.
    Unsure(String),
}

/// Why the HELO name `helo` of a stranger is refused, if it is: not a host
/// name or address literal, not fully qualified, or one of `ours` (our
/// host name and domains).
pub fn helo_problem(helo: &str, ours: &[&str]) -> Option<String> {
    let name = helo.trim_end_matches('.');
    if let Some(literal) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let address = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return match address.parse::<std::net::IpAddr>() {
            Ok(_) => None,
            Err(_) => Some(format!(
                "the HELO name {helo} is not a valid address literal"
            )),
        };
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Some(format!("the HELO name {helo} is not a valid host name"));
    }
    if !name.contains('.') {
        return Some(format!(
            "the HELO name {helo} is not a fully-qualified host name"
        ));
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!(
            "the HELO name {helo} is an address; write it as a literal ([{helo}])"
        ));
    }
    if ours.iter().any(|o| o.eq_ignore_ascii_case(name)) {
        return Some(format!("the HELO name {helo} is ours; you are not us"));
    }
    None
}

/// How long the sender domain's lookups may take in all; past it, the
/// DNS did not answer.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the sender domain `domain` can receive mail: an MX that is not
/// the null MX, or (without MX) an address; within [`DEADLINE`].
pub async fn sender_domain(dns: &Dns, domain: &str) -> Domain {
    match tokio::time::timeout(DEADLINE, lookups(dns, domain)).await {
        Ok(found) => found,
        Err(_) => Domain::Unsure(format!(
            "the DNS did not answer for the sender domain {domain} within {} s; please try again later",
            DEADLINE.as_secs()
        )),
    }
}

async fn lookups(dns: &Dns, domain: &str) -> Domain {
    let name = crate::dns::absolute(domain);
    let unsure = |e: &Error| {
        Domain::Unsure(format!(
            "the DNS did not answer for the sender domain {domain} ({e}); please try again later"
        ))
    };
    match dns.lookup(&name, Kind::Mx, false).await {
        Ok(records) => {
            let null = records.iter().all(|r| {
                matches!(&r.data, Data::Mx { exchange, .. } if exchange.trim_end_matches('.').is_empty())
            });
            if records.is_empty() || !null {
                return Domain::Exists;
            }
            Domain::Unknown(format!(
                "the sender domain {domain} accepts no mail (null MX), so it could not receive a bounce"
            ))
        }
        // No MX: an address will do. The address is asked after a "no such
        // name" too: some servers answer that for a name with no MX.
        Err(Error::NoSuchName { .. } | Error::NoRecords { .. }) => {
            match dns.lookup(&name, Kind::Ip, false).await {
                Ok(records) if !records.is_empty() => Domain::Exists,
                Err(Error::NoSuchName { .. }) => {
                    Domain::Unknown(format!("the sender domain {domain} does not exist"))
                }
                Ok(_) | Err(Error::NoRecords { .. }) => Domain::Unknown(format!(
                    "the sender domain {domain} has no mail server (no MX and no address)"
                )),
                Err(e) => unsure(&e),
            }
        }
        Err(e) => unsure(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::mock::Zone;
    use std::sync::Arc;

    #[test]
    fn helo_names_are_checked_as_postfix_does() {
        let ours = ["mx.example.org", "example.org"];
        for good in [
            "mail.sender.example",
            "MAIL.Sender.Example.",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "a_b.example.net",
        ] {
            assert_eq!(helo_problem(good, &ours), None, "{good}");
        }
        let said = |h: &str| helo_problem(h, &ours).unwrap();
        assert!(said("localhost").contains("not a fully-qualified host name"));
        assert!(said("bad..name.example").contains("not a valid host name"));
        assert!(said("-x.example").contains("not a valid host name"));
        assert!(said("JUMPIN' JUPITER").contains("not a valid host name"));
        assert!(said("[300.1.1.1]").contains("not a valid address literal"));
        assert!(said("192.0.2.1").contains("write it as a literal"));
        assert!(said("MX.example.org").contains("is ours"));
        assert!(said("example.org").contains("is ours"));
    }

    #[tokio::test]
    async fn a_sender_domain_must_be_able_to_receive_mail() {
        let mx = |exchange: &str| {
            Ok(vec![Zone::insecure(Data::Mx {
                preference: 0,
                exchange: exchange.into(),
            })])
        };
        let none = Err(Error::NoRecords { secure: false });
        let zone = Zone::default()
            .with("mx.example", Kind::Mx, mx("mail.mx.example"))
            .with("a-only.example", Kind::Mx, none.clone())
            .with(
                "a-only.example",
                Kind::Ip,
                Ok(vec![Zone::insecure(Data::Ip("192.0.2.1".parse().unwrap()))]),
            )
            .with("nothing.example", Kind::Mx, none.clone())
            .with("nothing.example", Kind::Ip, none)
            .with("null.example", Kind::Mx, mx(""))
            .with(
                "gone.example",
                Kind::Mx,
                Err(Error::NoSuchName { secure: false }),
            )
            .with(
                "gone.example",
                Kind::Ip,
                Err(Error::NoSuchName { secure: false }),
            )
            // A server that says "no such name" for a name without MX.
            .with(
                "mx-nxdomain.example",
                Kind::Mx,
                Err(Error::NoSuchName { secure: false }),
            )
            .with(
                "mx-nxdomain.example",
                Kind::Ip,
                Ok(vec![Zone::insecure(Data::Ip("192.0.2.2".parse().unwrap()))]),
            )
            .with(
                "broken.example",
                Kind::Mx,
                Err(Error::Failed("SERVFAIL".into())),
            );
        let dns = Dns::new(Arc::new(zone), false);
        assert_eq!(sender_domain(&dns, "mx.example").await, Domain::Exists);
        assert_eq!(sender_domain(&dns, "a-only.example").await, Domain::Exists);
        assert_eq!(
            sender_domain(&dns, "mx-nxdomain.example").await,
            Domain::Exists
        );
        let unknown = |d: Domain| match d {
            Domain::Unknown(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(unknown(sender_domain(&dns, "nothing.example").await).contains("no mail server"));
        assert!(unknown(sender_domain(&dns, "null.example").await).contains("null MX"));
        assert!(unknown(sender_domain(&dns, "gone.example").await).contains("does not exist"));
        assert!(matches!(
            sender_domain(&dns, "broken.example").await,
            Domain::Unsure(_)
        ));
    }
}
