//! The resolver of the running server: hickory over the system's name
//! servers (`/etc/resolv.conf`) or `[outbound] nameservers`, validating
//! DNSSEC from the IANA root keys or `[outbound] trust_anchor` when asked.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::{self, TrustAnchors};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver as Hickory, TokioResolver};

use super::{Answer, Data, Error, Kind, Proof, Record, Resolver, Tlsa};

pub struct System {
    nameservers: Vec<SocketAddr>,
    trust_anchor: Option<PathBuf>,
    /// Built on first use: on the appliance the system's resolvers are only
    /// known once DHCP has answered, which may be after the server started.
    plain: Mutex<Option<Arc<TokioResolver>>>,
    validating: Mutex<Option<Arc<TokioResolver>>>,
}

impl System {
    /// `nameservers` empty: the system's.
    pub fn new(nameservers: Vec<SocketAddr>, trust_anchor: Option<PathBuf>) -> System {
        System {
            nameservers,
            trust_anchor,
            plain: Mutex::new(None),
            validating: Mutex::new(None),
        }
    }

    fn resolver(&self, validate: bool) -> Result<Arc<TokioResolver>, Error> {
        let slot = if validate {
            &self.validating
        } else {
            &self.plain
        };
        let mut slot = slot.lock().expect("resolver");
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let provider = TokioRuntimeProvider::default();
        let unavailable =
            |e: &dyn std::fmt::Display| Error::Failed(format!("no DNS resolver available: {e}"));
        let mut builder = if self.nameservers.is_empty() {
            Hickory::builder(provider).map_err(|e| unavailable(&e))?
        } else {
            let servers = self
                .nameservers
                .iter()
                .map(|addr| {
                    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                    for c in &mut ns.connections {
                        c.port = addr.port();
                    }
                    ns
                })
                .collect();
            Hickory::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                provider,
            )
        };
        if validate {
            let anchors = match &self.trust_anchor {
                Some(path) => TrustAnchors::from_file(path)
                    .map_err(|e| Error::Failed(format!("trust anchor {}: {e}", path.display())))?,
                None => TrustAnchors::default(),
            };
            builder = builder.with_trust_anchor(Arc::new(anchors));
        }
        let resolver = Arc::new(builder.build().map_err(|e| unavailable(&e))?);
        *slot = Some(resolver.clone());
        Ok(resolver)
    }

    async fn ask(&self, name: &str, kind: Kind, validate: bool) -> Result<Vec<Record>, Error> {
        let resolver = self.resolver(validate)?;
        let rtype = match kind {
            Kind::Mx => RecordType::MX,
            Kind::Tlsa => RecordType::TLSA,
            Kind::Txt => RecordType::TXT,
            Kind::DnsKey => RecordType::DNSKEY,
            Kind::Cname => RecordType::CNAME,
            Kind::Srv => RecordType::SRV,
            Kind::Caa => RecordType::CAA,
            Kind::Ptr => RecordType::PTR,
            Kind::Ip => {
                // A and AAAA together; hickory gives the addresses only.
                let ips = resolver.lookup_ip(name).await.map_err(|e| error(&e))?;
                return Ok(ips
                    .iter()
                    .map(|ip| Record {
                        data: Data::Ip(ip),
                        proof: Proof::Insecure,
                    })
                    .collect());
            }
        };
        let name = Name::from_ascii(name).map_err(|e| Error::Failed(format!("{name}: {e}")))?;
        let records = resolver.lookup(name, rtype).await.map_err(|e| error(&e))?;
        Ok(records
            .answers()
            .iter()
            .filter_map(|r| {
                let data = match &r.data {
                    RData::MX(m) => Data::Mx {
                        preference: m.preference,
                        exchange: m.exchange.to_ascii().trim_end_matches('.').to_lowercase(),
                    },
                    RData::TLSA(t) => Data::Tlsa(Tlsa {
                        usage: t.cert_usage.into(),
                        selector: t.selector.into(),
                        matching: t.matching.into(),
                        data: t.cert_data.clone(),
                    }),
                    RData::TXT(t) => Data::Txt(
                        t.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect(),
                    ),
                    RData::DNSSEC(_) if r.record_type() == RecordType::DNSKEY => Data::DnsKey,
                    RData::CNAME(c) => Data::Name(name_text(&c.0)),
                    RData::PTR(p) => Data::Name(name_text(&p.0)),
                    RData::SRV(s) => Data::Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: name_text(&s.target),
                    },
                    RData::CAA(c) => Data::Caa(c.to_string()),
                    _ => return None,
                };
                Some(Record {
                    data,
                    proof: proof(r.proof),
                })
            })
            .collect())
    }
}

impl Resolver for System {
    fn lookup<'a>(&'a self, name: &'a str, kind: Kind, validate: bool) -> Answer<'a> {
        Box::pin(self.ask(name, kind, validate))
    }

    fn hickory(&self) -> Option<Arc<TokioResolver>> {
        self.resolver(false).ok()
    }
}

fn name_text(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_lowercase()
}

fn proof(p: dnssec::Proof) -> Proof {
    match p {
        dnssec::Proof::Secure => Proof::Secure,
        dnssec::Proof::Bogus => Proof::Bogus,
        // Insecure, or indeterminate (no trust anchor above).
        _ => Proof::Insecure,
    }
}

/// A negative answer (validated or not) or a failure. A denial whose proof
/// is bogus is a failure.
fn error(e: &NetError) -> Error {
    let (code, secure) = match e {
        NetError::Dns(DnsError::NoRecordsFound(n)) => {
            let secure = n.authorities.as_deref().is_some_and(|records| {
                records.iter().any(|r| r.proof == dnssec::Proof::Secure)
                    && records.iter().all(|r| r.proof != dnssec::Proof::Bogus)
            });
            (n.response_code, secure)
        }
        NetError::Dns(DnsError::Nsec {
            response,
            proof:
                p @ (dnssec::Proof::Secure | dnssec::Proof::Insecure | dnssec::Proof::Indeterminate),
            ..
        }) => (response.response_code, *p == dnssec::Proof::Secure),
        _ => return Error::Failed(e.to_string()),
    };
    if code == ResponseCode::NXDomain {
        Error::NoSuchName { secure }
    } else {
        Error::NoRecords { secure }
    }
}
