//! The one DNS resolver of the server, behind a trait: outbound delivery
//! (MX, DANE, MTA-STS) asks it today; SPF, DMARC, DNSBLs and the owner's
//! DNS check will ask the same one, with the same DNSSEC state.
//!
//! [`Resolver`] is the query interface: records of one kind at one name,
//! each with its DNSSEC [`Proof`] when validation was asked for.
//! [`hickory::System`] implements it over the system's (or the configured)
//! name servers; [`mock::Zone`] answers from memory for tests. [`Dns`] adds
//! what every user shares: whether DNSSEC validation works here at all.
//!
//! Not here: what the answers mean for a protocol (MX ordering, DANE,
//! MTA-STS are `outbound`'s).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod hickory;
pub mod mock;

/// The record types asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Mx,
    Tlsa,
    Txt,
    /// A and AAAA.
    Ip,
    DnsKey,
    Cname,
    Srv,
    Caa,
    /// The name of an address (`Kind::Ptr` at `d.c.b.a.in-addr.arpa`).
    Ptr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Mx {
        preference: u16,
        exchange: String,
    },
    Tlsa(Tlsa),
    /// One TXT record, its strings joined.
    Txt(String),
    Ip(IpAddr),
    DnsKey,
    /// A name (CNAME or PTR target), lower case, without the trailing dot.
    Name(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    /// A CAA record as its zone-file value (`0 issue "letsencrypt.org"`).
    Caa(String),
}

/// One TLSA record (RFC 6698); what DANE makes of it is
/// `outbound::dane`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

/// What DNSSEC says about a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// Validated from the trust anchor.
    Secure,
    /// Not signed (or not validated: the lookup did not ask).
    Insecure,
    /// Signed, and the signatures do not validate.
    Bogus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub data: Data,
    pub proof: Proof,
}

/// A lookup that found nothing, or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The name does not exist (NXDOMAIN); `secure`: the denial is
    /// DNSSEC-validated.
    #[error("no such name")]
    NoSuchName { secure: bool },
    /// The name has no records of this kind (NODATA).
    #[error("no records")]
    NoRecords { secure: bool },
    /// No answer we can use: time-out, server failure, a bogus denial.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// An answer that proves there is nothing (as opposed to a failure).
    pub fn is_negative(&self) -> bool {
        !matches!(self, Error::Failed(_))
    }
}

pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Vec<Record>, Error>> + Send + 'a>>;

pub trait Resolver: Send + Sync {
    /// The records of `kind` at `name` (absolute, with the trailing dot).
    /// With `validate`, DNSSEC is checked and each record carries its
    /// proof; without, every record is [`Proof::Insecure`].
    fn lookup<'a>(&'a self, name: &'a str, kind: Kind, validate: bool) -> Answer<'a>;

    /// The hickory resolver underneath, for code that must be handed one
    /// (mail-auth's sender checks); `None` for a test zone.
    fn hickory(&self) -> Option<Arc<hickory_resolver::TokioResolver>> {
        None
    }
}

/// `name` as an absolute name (one trailing dot).
pub fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// The name whose PTR record names `ip` (RFC 1035 §3.5, RFC 3596 §2.5).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name + "ip6.arpa."
        }
    }
}

/// The last DNSSEC check: when, whether it worked, and whether one ever did.
#[derive(Debug, Default, Clone, Copy)]
struct Check {
    at: Option<Instant>,
    ok: bool,
    worked: bool,
}

/// The resolver and whether DNSSEC validation works through it.
pub struct Dns {
    resolver: Arc<dyn Resolver>,
    /// DNSSEC is wanted (`[outbound] dane`); off, it is never probed.
    wanted: bool,
    check: Mutex<Check>,
}

/// DNSSEC is checked again after this long.
const RECHECK: Duration = Duration::from_secs(600);
/// Once seen working, a failure is checked again soon: a lost packet (or
/// someone dropping it) must not turn DANE off for long.
const RETRY: Duration = Duration::from_secs(15);

impl Dns {
    /// The server's: hickory over the configured (or the system's) name
    /// servers, DNSSEC as `[outbound]` says.
    pub fn system(config: &crate::config::Config) -> Dns {
        let o = &config.outbound;
        let resolver = hickory::System::new(o.nameservers.clone(), o.trust_anchor.clone());
        Dns::new(Arc::new(resolver), o.dane)
    }

    pub fn new(resolver: Arc<dyn Resolver>, dnssec_wanted: bool) -> Dns {
        Dns {
            resolver,
            wanted: dnssec_wanted,
            check: Mutex::new(Check::default()),
        }
    }

    pub async fn lookup(
        &self,
        name: &str,
        kind: Kind,
        validate: bool,
    ) -> Result<Vec<Record>, Error> {
        self.resolver.lookup(name, kind, validate).await
    }

    /// mail-auth's checker over the same resolver (and its cache); `None`
    /// when there is no hickory resolver (a test zone, or none available).
    pub fn authenticator(&self) -> Option<mail_auth::MessageAuthenticator> {
        let resolver = self.resolver.hickory()?;
        Some(mail_auth::MessageAuthenticator((*resolver).clone()))
    }

    /// Whether DNSSEC answers reach us: the root zone's DNSKEY validates
    /// against the trust anchor. Many home routers' DNS forwarders drop
    /// the signatures; behind one, DANE cannot be used (and is not: it
    /// would make every signed domain look bogus). Checked every 10 minutes.
    pub async fn dnssec(&self) -> bool {
        let last = *self.check.lock().expect("dnssec check");
        if let Some(at) = last.at {
            let wait = if !last.ok && last.worked {
                RETRY
            } else {
                RECHECK
            };
            if at.elapsed() < wait {
                return last.ok;
            }
        }
        if !self.wanted {
            return false;
        }
        let checked = match self.resolver.lookup(".", Kind::DnsKey, true).await {
            Ok(records)
                if records
                    .iter()
                    .any(|r| r.data == Data::DnsKey && r.proof == Proof::Secure) =>
            {
                Ok(())
            }
            Ok(_) => Err("the root zone's keys do not validate".to_string()),
            Err(e) => Err(format!("the root zone's keys: {e}")),
        };
        let ok = checked.is_ok();
        *self.check.lock().expect("dnssec check") = Check {
            at: Some(Instant::now()),
            ok,
            worked: last.worked || ok,
        };
        if last.at.is_none() || last.ok != ok {
            match checked {
                Ok(()) => tracing::info!(
                    "DNSSEC validation works: DANE is used for domains that publish TLSA records"
                ),
                Err(why) => tracing::warn!("DNSSEC does not work here ({why}): DANE is not used"),
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::mock::Zone;
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.7".parse().unwrap()),
            "7.2.0.192.in-addr.arpa."
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }

    #[tokio::test]
    async fn dnssec_works_when_the_root_keys_validate() {
        let zone = Zone::default().with(".", Kind::DnsKey, Ok(vec![Zone::secure(Data::DnsKey)]));
        assert!(Dns::new(Arc::new(zone), true).dnssec().await);
    }

    #[tokio::test]
    async fn dnssec_is_off_behind_a_resolver_that_strips_signatures() {
        let zone = Zone::default().with(".", Kind::DnsKey, Ok(vec![Zone::insecure(Data::DnsKey)]));
        assert!(!Dns::new(Arc::new(zone), true).dnssec().await);
        let failing = Zone::default();
        assert!(!Dns::new(Arc::new(failing), true).dnssec().await);
    }

    #[tokio::test]
    async fn dnssec_is_never_probed_when_not_wanted() {
        let zone = Zone::default().with(".", Kind::DnsKey, Ok(vec![Zone::secure(Data::DnsKey)]));
        assert!(!Dns::new(Arc::new(zone), false).dnssec().await);
    }
}
