//! What the DNS says about a destination: its MX hosts in order with their
//! addresses (RFC 5321 §5.1, RFC 7505 null MX), whether that answer is
//! DNSSEC-secure, DANE's TLSA records for a host (RFC 7672 §2.2) and the
//! MTA-STS TXT id (RFC 8461 §3.1). Answers come from the one [`Dns`].

use std::net::IpAddr;

use rand::seq::SliceRandom;

use super::client::Failure;
use super::dane::Tlsa;
use super::policy::Dane;
use super::sts;
use crate::dns::{self, Data, Dns, Kind, Proof};

/// MX hosts in preference order (random among equals), each with its
/// addresses. No MX: the domain itself (RFC 5321 §5.1). A null MX
/// (RFC 7505) or a domain that does not exist is a permanent failure.
/// With DNSSEC working, the MX lookup is validated: `secure` says the
/// MX set is DNSSEC-secure (so DANE applies to its hosts), and a bogus
/// answer is a temporary failure rather than a fallback.
pub async fn hosts(dns: &Dns, domain: &str) -> Result<(Vec<(String, Vec<IpAddr>)>, bool), Failure> {
    let fqdn = dns::absolute(domain);
    let dnssec = dns.dnssec().await;
    let mut secure;
    let mut mx: Vec<(u16, String)> = match dns.lookup(&fqdn, Kind::Mx, dnssec).await {
        Ok(records) => {
            let mut mx = Vec::new();
            secure = dnssec;
            for r in records {
                let Data::Mx {
                    preference,
                    exchange,
                } = r.data
                else {
                    continue;
                };
                match r.proof {
                    Proof::Secure => {}
                    Proof::Bogus if dnssec => {
                        return Err(Failure::temporary(format!(
                            "the MX records of {domain} fail DNSSEC validation"
                        )));
                    }
                    _ => secure = false,
                }
                mx.push((preference, exchange));
            }
            mx
        }
        Err(dns::Error::NoSuchName { .. }) => {
            return Err(Failure::permanent(format!(
                "the domain {domain} does not exist (5.1.2)"
            )));
        }
        // No MX: the domain is its own host, and DANE applies to it when
        // the absence is proven (RFC 7672 §2.2.1).
        Err(dns::Error::NoRecords { secure: denied }) => {
            secure = dnssec && denied;
            Vec::new()
        }
        Err(e) => {
            return Err(Failure::temporary(format!(
                "looking up the MX of {domain}: {e}"
            )));
        }
    };
    if mx.len() == 1 && mx[0].1.is_empty() {
        return Err(Failure::permanent(format!(
            "{domain} accepts no mail: null MX (RFC 7505, 5.1.10)"
        )));
    }
    if mx.is_empty() {
        mx.push((0, domain.to_string()));
    }
    mx.sort_by_key(|(p, _)| *p);
    let mut ordered = Vec::new();
    {
        // The thread's generator must not live across an await.
        let mut rng = rand::rng();
        for group in mx.chunk_by(|a, b| a.0 == b.0) {
            let mut g: Vec<String> = group.iter().map(|(_, h)| h.clone()).collect();
            g.shuffle(&mut rng);
            ordered.extend(g);
        }
    }
    let mut out = Vec::new();
    for host in ordered {
        match addresses(dns, &host).await {
            Ok(a) => out.push((host, a)),
            Err(f) => tracing::debug!("{host}: {}", f.message),
        }
    }
    Ok((out, secure))
}

/// DANE for one MX host (RFC 7672 §2.2): the TLSA records at
/// `_PORT._tcp.HOST`, if DNSSEC-secure. A bogus or failed lookup makes the
/// host unusable for now.
pub async fn dane(dns: &Dns, port: u16, host: &str) -> Result<Dane, Failure> {
    let name = format!("_{port}._tcp.{}", dns::absolute(host));
    match dns.lookup(&name, Kind::Tlsa, true).await {
        Ok(answer) => {
            let mut records = Vec::new();
            for r in answer {
                let Data::Tlsa(t) = r.data else { continue };
                match r.proof {
                    Proof::Secure => records.push(t),
                    Proof::Bogus => {
                        return Err(Failure::temporary(format!(
                            "the TLSA records of {host} fail DNSSEC validation"
                        )));
                    }
                    Proof::Insecure => return Ok(Dane::None),
                }
            }
            let usable: Vec<Tlsa> = records.iter().filter(|t| t.usable()).cloned().collect();
            Ok(if !usable.is_empty() {
                Dane::Required(usable)
            } else if records.is_empty() {
                Dane::None
            } else {
                Dane::Unusable
            })
        }
        Err(e) if e.is_negative() => Ok(Dane::None),
        Err(e) => Err(Failure::temporary(format!(
            "looking up the TLSA records of {host}: {e}"
        ))),
    }
}

/// The id of the domain's MTA-STS policy, from its `_mta-sts` TXT record;
/// `None` when there is none (or no answer).
pub async fn sts_id(dns: &Dns, domain: &str) -> Option<String> {
    let name = format!("_mta-sts.{}", dns::absolute(domain));
    let records: Vec<String> = dns
        .lookup(&name, Kind::Txt, false)
        .await
        .ok()?
        .into_iter()
        .filter_map(|r| match r.data {
            Data::Txt(text) => Some(text),
            _ => None,
        })
        .collect();
    sts::txt_id(&records)
}

/// The addresses of a host (or the address it is written as).
pub async fn addresses(dns: &Dns, host: &str) -> Result<Vec<IpAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    match dns.lookup(&dns::absolute(host), Kind::Ip, false).await {
        Ok(records) => Ok(records
            .into_iter()
            .filter_map(|r| match r.data {
                Data::Ip(ip) => Some(ip),
                _ => None,
            })
            .collect()),
        Err(e) => Err(Failure::temporary(format!("no address for {host}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dns::mock::Zone;
    use crate::dns::{Error, Record};

    fn ip(text: &str) -> Record {
        Zone::insecure(Data::Ip(text.parse().unwrap()))
    }

    fn mx(preference: u16, exchange: &str, proof: Proof) -> Record {
        Record {
            data: Data::Mx {
                preference,
                exchange: exchange.into(),
            },
            proof,
        }
    }

    /// A zone where DNSSEC works (the root keys validate).
    fn signed() -> Zone {
        Zone::default().with(".", Kind::DnsKey, Ok(vec![Zone::secure(Data::DnsKey)]))
    }

    fn dns(zone: Zone) -> Dns {
        Dns::new(Arc::new(zone), true)
    }

    #[tokio::test]
    async fn mx_hosts_come_in_preference_order_with_their_addresses() {
        let zone = Zone::default()
            .with(
                "example.net",
                Kind::Mx,
                Ok(vec![
                    mx(20, "backup.example.net", Proof::Insecure),
                    mx(10, "mx.example.net", Proof::Insecure),
                ]),
            )
            .with("mx.example.net", Kind::Ip, Ok(vec![ip("192.0.2.1")]))
            .with("backup.example.net", Kind::Ip, Ok(vec![ip("192.0.2.2")]));
        let (hosts, secure) = hosts(&dns(zone), "example.net").await.unwrap();
        assert_eq!(
            hosts,
            vec![
                (
                    "mx.example.net".to_string(),
                    vec!["192.0.2.1".parse().unwrap()]
                ),
                (
                    "backup.example.net".to_string(),
                    vec!["192.0.2.2".parse().unwrap()]
                ),
            ]
        );
        assert!(!secure, "no DNSSEC here");
    }

    #[tokio::test]
    async fn without_mx_the_domain_is_its_own_host() {
        let zone = Zone::default()
            .with(
                "example.net",
                Kind::Mx,
                Err(Error::NoRecords { secure: false }),
            )
            .with("example.net", Kind::Ip, Ok(vec![ip("192.0.2.9")]));
        let (hosts, _) = hosts(&dns(zone), "example.net").await.unwrap();
        assert_eq!(
            hosts,
            vec![(
                "example.net".to_string(),
                vec!["192.0.2.9".parse().unwrap()]
            )]
        );
    }

    #[tokio::test]
    async fn a_null_mx_or_a_missing_domain_fails_for_good_and_a_dns_failure_does_not() {
        let zone = Zone::default()
            .with(
                "null.example",
                Kind::Mx,
                Ok(vec![mx(0, "", Proof::Insecure)]),
            )
            .with(
                "gone.example",
                Kind::Mx,
                Err(Error::NoSuchName { secure: false }),
            )
            .with(
                "down.example",
                Kind::Mx,
                Err(Error::Failed("timed out".into())),
            );
        let dns = dns(zone);
        let null = hosts(&dns, "null.example").await.unwrap_err();
        assert!(
            null.permanent && null.message.contains("null MX"),
            "{null:?}"
        );
        let gone = hosts(&dns, "gone.example").await.unwrap_err();
        assert!(
            gone.permanent && gone.message.contains("does not exist"),
            "{gone:?}"
        );
        let down = hosts(&dns, "down.example").await.unwrap_err();
        assert!(!down.permanent, "{down:?}");
    }

    #[tokio::test]
    async fn a_validated_mx_set_is_secure_and_a_bogus_one_is_not_used() {
        let zone = signed()
            .with(
                "signed.example",
                Kind::Mx,
                Ok(vec![mx(10, "mx.signed.example", Proof::Secure)]),
            )
            .with("mx.signed.example", Kind::Ip, Ok(vec![ip("192.0.2.3")]))
            .with(
                "bogus.example",
                Kind::Mx,
                Ok(vec![mx(10, "evil.example", Proof::Bogus)]),
            )
            .with("evil.example", Kind::Ip, Ok(vec![ip("192.0.2.66")]));
        let dns = dns(zone);
        let (_, secure) = hosts(&dns, "signed.example").await.unwrap();
        assert!(secure);
        let bogus = hosts(&dns, "bogus.example").await.unwrap_err();
        assert!(
            !bogus.permanent && bogus.message.contains("DNSSEC"),
            "{bogus:?}"
        );
    }

    #[tokio::test]
    async fn without_dnssec_a_signed_mx_set_is_not_secure() {
        // The resolver strips signatures: the root keys do not validate.
        let zone = Zone::default()
            .with(".", Kind::DnsKey, Ok(vec![Zone::insecure(Data::DnsKey)]))
            .with(
                "signed.example",
                Kind::Mx,
                Ok(vec![mx(10, "mx.signed.example", Proof::Secure)]),
            )
            .with("mx.signed.example", Kind::Ip, Ok(vec![ip("192.0.2.3")]));
        let (_, secure) = hosts(&dns(zone), "signed.example").await.unwrap();
        assert!(!secure);
    }

    fn tlsa(usage: u8, proof: Proof) -> Record {
        Record {
            data: Data::Tlsa(Tlsa {
                usage,
                selector: 1,
                matching: 1,
                data: vec![7; 32],
            }),
            proof,
        }
    }

    #[tokio::test]
    async fn dane_needs_secure_usable_tlsa_records() {
        let zone = signed()
            .with(
                "_25._tcp.a.example",
                Kind::Tlsa,
                Ok(vec![tlsa(3, Proof::Secure)]),
            )
            .with(
                "_25._tcp.b.example",
                Kind::Tlsa,
                Ok(vec![tlsa(1, Proof::Secure)]),
            )
            .with(
                "_25._tcp.c.example",
                Kind::Tlsa,
                Ok(vec![tlsa(3, Proof::Insecure)]),
            )
            .with(
                "_25._tcp.d.example",
                Kind::Tlsa,
                Err(Error::NoRecords { secure: true }),
            )
            .with(
                "_25._tcp.e.example",
                Kind::Tlsa,
                Ok(vec![tlsa(3, Proof::Bogus)]),
            )
            .with(
                "_25._tcp.f.example",
                Kind::Tlsa,
                Err(Error::Failed("SERVFAIL".into())),
            );
        let dns = dns(zone);
        assert!(matches!(dane(&dns, 25, "a.example").await, Ok(Dane::Required(r)) if r.len() == 1));
        assert!(matches!(
            dane(&dns, 25, "b.example").await,
            Ok(Dane::Unusable)
        ));
        assert!(matches!(dane(&dns, 25, "c.example").await, Ok(Dane::None)));
        assert!(matches!(dane(&dns, 25, "d.example").await, Ok(Dane::None)));
        assert!(matches!(dane(&dns, 25, "e.example").await, Err(f) if !f.permanent));
        assert!(matches!(dane(&dns, 25, "f.example").await, Err(f) if !f.permanent));
    }

    #[tokio::test]
    async fn the_mta_sts_id_comes_from_the_txt_record() {
        let zone = Zone::default().with(
            "_mta-sts.example.net",
            Kind::Txt,
            Ok(vec![Zone::insecure(Data::Txt(
                "v=STSv1; id=20261129;".into(),
            ))]),
        );
        let dns = dns(zone);
        assert_eq!(
            sts_id(&dns, "example.net").await.as_deref(),
            Some("20261129")
        );
        assert_eq!(sts_id(&dns, "other.example").await, None);
    }
}
