//! Outbound delivery: where each recipient goes (a transport, a relay, the
//! domain's MX hosts) and handing the message over there.
//!
//! Routing, in order (like Postfix's transport_maps, sender-dependent relay
//! hosts, relayhost and then MX):
//! 1. `[[transports]]` for the recipient address, then its domain;
//! 2. local accounts → Maildir (not this module);
//! 3. `[[sender_routes]]` for the sender address, then its domain;
//! 4. `[outbound] smarthost`;
//! 5. the recipient domain's MX hosts (implicit MX; null MX refuses).

pub mod client;
pub mod sts;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use rand::seq::SliceRandom;

use crate::config::{Config, Outbound as Settings, Relay, Transport};
use client::{Connection, Failure, Tls};

/// Where a recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    Local,
    Mx(String),
    Relay(String),
    Smtp(String, u16),
    Lmtp(String, u16),
}

impl Route {
    /// For the delivery log line.
    pub fn relay_name(&self) -> String {
        match self {
            Route::Local => "local".into(),
            Route::Mx(d) => format!("mx:{d}"),
            Route::Relay(r) => format!("relay:{r}"),
            Route::Smtp(h, p) => format!("smtp:{h}:{p}"),
            Route::Lmtp(h, p) => format!("lmtp:{h}:{p}"),
        }
    }
}

/// The outcome for one recipient.
#[derive(Debug, Clone)]
pub enum Result {
    Delivered(String),
    Deferred(String),
    Failed(String),
}

/// The message being handed over.
struct Message<'a> {
    from: &'a str,
    recipients: &'a [String],
    body: &'a mta_store::body::Body,
}

/// One next hop: where and how to connect.
struct Hop<'a> {
    host: &'a str,
    port: u16,
    lmtp: bool,
    tls: Tls,
    /// What the TLS settings come from: connections are only reused under
    /// the same one, and the log names the verified ones.
    policy: Policy,
    credentials: Option<(&'a str, &'a str)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Policy {
    /// STARTTLS when offered (RFC 7435).
    Opportunistic,
    /// DANE-secured TLSA records (RFC 7672): the certificate matches one.
    Dane,
    /// TLSA records exist but none is usable: TLS without authentication.
    DaneUnusable,
    /// MTA-STS enforce (RFC 8461): WebPKI-valid for the MX name.
    Sts,
    /// A relay: verified TLS.
    Relay,
    /// An LMTP/SMTP transport to a configured host.
    Transport,
}

impl Policy {
    fn label(self) -> &'static str {
        match self {
            Policy::Dane => " (TLS verified by DANE)",
            Policy::Sts => " (TLS verified, MTA-STS)",
            Policy::Relay => " (TLS verified)",
            _ => "",
        }
    }
}

/// Permission to deliver on one route now (see [`Outbound::turn`]).
pub struct Turn {
    _destination: tokio::sync::OwnedSemaphorePermit,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// What DANE says about one MX host, without the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DaneState {
    None,
    Usable,
    Unusable,
}

/// What to do with one MX host.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Not this host: why.
    Skip(String),
    /// Deliver under this policy (with something worth logging).
    Use(Policy, Option<String>),
}

/// The TLS policy for one MX host of `domain`, from what DANE and MTA-STS
/// say (RFC 7672, RFC 8461): usable secure TLSA records decide (MTA-STS
/// does not override DANE, RFC 8461 §2); otherwise an MTA-STS policy in
/// enforce mode admits only the hosts it lists, over verified TLS, never
/// downgraded (§4.2); otherwise TLS records that exist but none usable
/// mean TLS without authentication; otherwise opportunistic STARTTLS. A
/// policy in testing mode only reports an unlisted host.
fn decide(dane: DaneState, sts: Option<&sts::Policy>, host: &str, domain: &str) -> Decision {
    if dane == DaneState::Usable {
        return Decision::Use(Policy::Dane, None);
    }
    let enforce = sts.is_some_and(|p| p.mode == sts::Mode::Enforce);
    let listed = sts.is_none_or(|p| p.mode == sts::Mode::None || p.allows(host));
    let mut note = None;
    if !listed {
        let text = format!("{host} is not an MX host in the MTA-STS policy of {domain}");
        if enforce {
            return Decision::Skip(text);
        }
        note = Some(format!("{text} (policy in testing mode)"));
    }
    let policy = if enforce {
        Policy::Sts
    } else if dane == DaneState::Unusable {
        Policy::DaneUnusable
    } else {
        Policy::Opportunistic
    };
    Decision::Use(policy, note)
}

/// What DANE says about one MX host.
enum Dane {
    /// No TLSA records (or an insecure answer): DANE does not apply.
    None,
    /// Secure, usable TLSA records.
    Required(Vec<dane::Tlsa>),
    /// Secure TLSA records, none usable for SMTP.
    Unusable,
}

impl Dane {
    fn state(&self) -> DaneState {
        match self {
            Dane::None => DaneState::None,
            Dane::Required(_) => DaneState::Usable,
            Dane::Unusable => DaneState::Unusable,
        }
    }
}

type Attempted = std::result::Result<Vec<client::RcptResult>, Failure>;

/// The last DNSSEC check: when, whether it worked, and whether one ever did.
#[derive(Debug, Default, Clone, Copy)]
struct DnssecCheck {
    at: Option<std::time::Instant>,
    ok: bool,
    worked: bool,
}

pub struct Outbound {
    settings: Settings,
    hostname: String,
    /// Built on first use: on the appliance the system's resolvers are only
    /// known once DHCP has answered, which may be after the server started.
    resolver: std::sync::Mutex<Option<Arc<TokioResolver>>>,
    validating: std::sync::Mutex<Option<Arc<TokioResolver>>>,
    dnssec: std::sync::Mutex<DnssecCheck>,
    /// One semaphore per destination, `per_destination` permits each
    /// (fewer than `slots` has, so one destination never takes them all).
    destinations: std::sync::Mutex<std::collections::HashMap<Route, Arc<tokio::sync::Semaphore>>>,
    per_destination: usize,
    /// Remote deliveries under way at once, to all destinations.
    slots: Arc<tokio::sync::Semaphore>,
    opportunistic: Arc<rustls::ClientConfig>,
    verified: Arc<rustls::ClientConfig>,
    /// The TLS configuration of each relay with its own `ca` (or why it
    /// could not be built: its mail waits until the file is fixed).
    relay_tls:
        std::collections::HashMap<String, std::result::Result<Arc<rustls::ClientConfig>, String>>,
    sts: sts::Cache,
    pool: Arc<pool::Pool>,
}

impl Outbound {
    pub fn new(config: &Config) -> anyhow::Result<Outbound> {
        Ok(Outbound {
            settings: config.outbound.clone(),
            hostname: config.hostname.clone(),
            resolver: std::sync::Mutex::new(None),
            validating: std::sync::Mutex::new(None),
            dnssec: std::sync::Mutex::new(DnssecCheck::default()),
            destinations: std::sync::Mutex::new(std::collections::HashMap::new()),
            per_destination: config
                .outbound
                .per_destination
                .min(config.queue.delivery_workers.saturating_sub(1))
                .max(1),
            slots: Arc::new(tokio::sync::Semaphore::new(config.queue.delivery_workers)),
            opportunistic: Arc::new(tls::opportunistic()),
            verified: Arc::new(tls::verified(config.outbound.ca.as_deref())?),
            relay_tls: config
                .outbound
                .relays
                .iter()
                .filter_map(|r| {
                    let ca = r.ca.as_deref()?;
                    let built = tls::verified(Some(ca))
                        .map(Arc::new)
                        .map_err(|e| format!("{e:#}"));
                    Some((r.name.clone(), built))
                })
                .collect(),
            sts: sts::Cache::open(&config.data_dir.join("cache"))?,
            pool: Arc::new(pool::Pool::default()),
        })
    }

    fn resolver(&self) -> std::result::Result<Arc<TokioResolver>, Failure> {
        self.cached_resolver(&self.resolver, false)
    }

    /// The DNSSEC-validating resolver (for DANE), with the IANA root keys
    /// or `[outbound] trust_anchor`.
    fn validating(&self) -> std::result::Result<Arc<TokioResolver>, Failure> {
        self.cached_resolver(&self.validating, true)
    }

    fn cached_resolver(
        &self,
        slot: &std::sync::Mutex<Option<Arc<TokioResolver>>>,
        validate: bool,
    ) -> std::result::Result<Arc<TokioResolver>, Failure> {
        let mut slot = slot.lock().expect("resolver");
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let provider = TokioRuntimeProvider::default();
        let unavailable = |e: &dyn std::fmt::Display| {
            Failure::temporary(format!("no DNS resolver available: {e}"))
        };
        let mut builder = if self.settings.nameservers.is_empty() {
            Resolver::builder(provider).map_err(|e| unavailable(&e))?
        } else {
            let servers = self
                .settings
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
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                provider,
            )
        };
        if validate {
            let anchors = match &self.settings.trust_anchor {
                Some(path) => TrustAnchors::from_file(path).map_err(|e| {
                    Failure::temporary(format!("trust anchor {}: {e}", path.display()))
                })?,
                None => TrustAnchors::default(),
            };
            builder = builder.with_trust_anchor(Arc::new(anchors));
        }
        let resolver = Arc::new(builder.build().map_err(|e| unavailable(&e))?);
        *slot = Some(resolver.clone());
        Ok(resolver)
    }

    /// Whether DNSSEC answers reach us: the root zone's DNSKEY validates
    /// against the trust anchor. Many home routers' DNS forwarders drop
    /// the signatures; behind one, DANE cannot be used (and is not: it
    /// would make every signed domain look bogus). Checked every 10 minutes.
    async fn dnssec(&self) -> bool {
        const RECHECK: std::time::Duration = std::time::Duration::from_secs(600);
        // Once seen working, a failure is checked again soon: a lost
        // packet (or someone dropping it) must not turn DANE off for long.
        const RETRY: std::time::Duration = std::time::Duration::from_secs(15);
        let last = *self.dnssec.lock().expect("dnssec");
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
        if !self.settings.dane {
            return false;
        }
        let checked = match self.validating() {
            Ok(r) => match r.lookup(Name::root(), RecordType::DNSKEY).await {
                Ok(lookup)
                    if lookup.answers().iter().any(|r| {
                        r.record_type() == RecordType::DNSKEY && r.proof == Proof::Secure
                    }) =>
                {
                    Ok(())
                }
                Ok(_) => Err("the root zone's keys do not validate".to_string()),
                Err(e) => Err(format!("the root zone's keys: {e}")),
            },
            Err(f) => Err(f.message),
        };
        let ok = checked.is_ok();
        *self.dnssec.lock().expect("dnssec") = DnssecCheck {
            at: Some(std::time::Instant::now()),
            ok,
            worked: last.worked || ok,
        };
        if last.at.is_none() || last.ok != ok {
            if ok {
                tracing::info!(
                    "DNSSEC validation works: DANE is used for domains that publish TLSA records"
                );
            } else if let Err(why) = checked {
                tracing::warn!("DNSSEC does not work here ({why}): DANE is not used");
            }
        }
        ok
    }

    /// DANE for one MX host (RFC 7672 §2.2): the TLSA records at
    /// `_PORT._tcp.HOST`, if DNSSEC-secure. A bogus or failed lookup makes
    /// the host unusable for now.
    async fn dane(&self, host: &str) -> std::result::Result<Dane, Failure> {
        let name = format!(
            "_{}._tcp.{}.",
            self.settings.port,
            host.trim_end_matches('.')
        );
        match self.validating()?.tlsa_lookup(name.as_str()).await {
            Ok(lookup) => {
                let mut records = Vec::new();
                for r in lookup.answers() {
                    let RData::TLSA(t) = &r.data else { continue };
                    match r.proof {
                        Proof::Secure => records.push(dane::Tlsa {
                            usage: t.cert_usage.into(),
                            selector: t.selector.into(),
                            matching: t.matching.into(),
                            data: t.cert_data.clone(),
                        }),
                        Proof::Bogus => {
                            return Err(Failure::temporary(format!(
                                "the TLSA records of {host} fail DNSSEC validation"
                            )));
                        }
                        _ => return Ok(Dane::None),
                    }
                }
                let usable: Vec<dane::Tlsa> =
                    records.iter().filter(|t| t.usable()).cloned().collect();
                Ok(if !usable.is_empty() {
                    Dane::Required(usable)
                } else if records.is_empty() {
                    Dane::None
                } else {
                    Dane::Unusable
                })
            }
            Err(e) if negative(&e).is_some() => Ok(Dane::None),
            Err(e) => Err(Failure::temporary(format!(
                "looking up the TLSA records of {host}: {e}"
            ))),
        }
    }

    /// Waits until a delivery on `route` may start: the destination's turn
    /// first (at most `per_destination` at once), then one of the slots for
    /// all destinations, so that waiting for a busy destination holds no
    /// slot others could use.
    pub async fn turn(&self, route: &Route) -> Turn {
        let destination = {
            let mut map = self.destinations.lock().expect("destinations");
            map.entry(route.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_destination)))
                .clone()
        };
        let destination = destination
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Turn {
            _destination: destination,
            _slot: slot,
        }
    }

    /// The route of one recipient (`address` is the target after alias
    /// expansion; `local` when it is one of our Maildirs).
    pub fn route(&self, sender: &str, address: &str, local: bool) -> Route {
        let lower = address.to_lowercase();
        let domain = lower.rsplit_once('@').map(|(_, d)| d).unwrap_or(&lower);
        match by_address_or_domain(&self.settings.transports, &lower) {
            Some(Transport::Smtp { host, port }) => return Route::Smtp(host.clone(), *port),
            Some(Transport::Lmtp { host, port }) => return Route::Lmtp(host.clone(), *port),
            Some(Transport::Relay(name)) => return Route::Relay(name.clone()),
            Some(Transport::Local) => return Route::Local,
            None => {}
        }
        if local {
            return Route::Local;
        }
        if let Some(relay) =
            by_address_or_domain(&self.settings.sender_routes, &sender.to_lowercase())
        {
            return Route::Relay(relay.clone());
        }
        if let Some(relay) = &self.settings.smarthost {
            return Route::Relay(relay.clone());
        }
        Route::Mx(domain.to_string())
    }

    /// Delivers one message to the recipients that share `route`, over one
    /// connection (trying the next MX host while none has taken it). The
    /// caller holds the route's [`Turn`].
    pub async fn deliver(
        &self,
        _turn: &Turn,
        route: &Route,
        from: &str,
        recipients: &[String],
        body: &mta_store::body::Body,
    ) -> Vec<Result> {
        let message = Message {
            from,
            recipients,
            body,
        };
        let attempt = match route {
            Route::Local => unreachable!("local recipients go to Maildirs"),
            Route::Mx(domain) => self.via_mx(domain, &message).await,
            Route::Relay(name) => match self.settings.relays.iter().find(|r| &r.name == name) {
                Some(relay) => self.via_relay(relay, &message).await,
                None => Err(Failure::temporary(format!(
                    "relay {name:?} is not configured"
                ))),
            },
            Route::Smtp(host, port) => self.via_host(host, *port, false, &message).await,
            Route::Lmtp(host, port) => self.via_host(host, *port, true, &message).await,
        };
        match attempt {
            Ok(results) => results
                .into_iter()
                .map(|r| match r {
                    Ok(text) => Result::Delivered(text),
                    Err(f) if f.permanent => Result::Failed(f.message),
                    Err(f) => Result::Deferred(f.message),
                })
                .collect(),
            Err(f) => {
                let r = if f.permanent {
                    Result::Failed(f.message)
                } else {
                    Result::Deferred(f.message)
                };
                vec![r; recipients.len()]
            }
        }
    }

    async fn via_mx(&self, domain: &str, message: &Message<'_>) -> Attempted {
        let mut last = Failure::temporary(format!("no address for the mail servers of {domain}"));
        let sts = self.sts_policy(domain).await;
        let (hosts, secure) = self.mx_hosts(domain).await?;
        for (host, addresses) in hosts {
            // DANE first: a secure MX set and secure TLSA records decide
            // (RFC 8461 §2: MTA-STS does not override DANE).
            let dane = if secure {
                match self.dane(&host).await {
                    Ok(d) => d,
                    Err(f) => {
                        tracing::warn!("{}", f.message);
                        last = f;
                        continue;
                    }
                }
            } else {
                Dane::None
            };
            let (policy, note) = match decide(dane.state(), sts.as_ref(), &host, domain) {
                Decision::Skip(why) => {
                    tracing::warn!("{why}: skipped");
                    last = Failure::temporary(why);
                    continue;
                }
                Decision::Use(policy, note) => (policy, note),
            };
            if let Some(note) = note {
                tracing::info!("{note}");
            }
            let tls = match (policy, dane) {
                (Policy::Dane, Dane::Required(records)) => {
                    Tls::Required(Arc::new(dane::config(records)))
                }
                (Policy::Sts, _) => Tls::Required(self.verified.clone()),
                (Policy::DaneUnusable, _) => Tls::Required(self.opportunistic.clone()),
                _ => Tls::Opportunistic(self.opportunistic.clone()),
            };
            let hop = Hop {
                host: &host,
                port: self.settings.port,
                lmtp: false,
                tls,
                policy,
                credentials: None,
            };
            match self.try_addresses(&hop, addresses, message).await {
                Ok(results) => return Ok(results),
                Err(f) if f.permanent => return Err(f),
                Err(f) => last = f,
            }
        }
        Err(last)
    }

    async fn via_relay(&self, relay: &Relay, message: &Message<'_>) -> Attempted {
        let config = match self.relay_tls.get(&relay.name) {
            Some(Ok(config)) => config.clone(),
            Some(Err(e)) => return Err(Failure::temporary(format!("relay {}: {e}", relay.name))),
            None => self.verified.clone(),
        };
        let hop = Hop {
            host: &relay.host,
            port: relay.port,
            lmtp: false,
            tls: if relay.implicit_tls {
                Tls::Implicit(config)
            } else {
                Tls::Required(config)
            },
            policy: Policy::Relay,
            credentials: relay.username.as_deref().zip(relay.password.as_deref()),
        };
        let addresses = self.addresses(&relay.host).await?;
        self.try_addresses(&hop, addresses, message).await
    }

    async fn via_host(
        &self,
        host: &str,
        port: u16,
        lmtp: bool,
        message: &Message<'_>,
    ) -> Attempted {
        let hop = Hop {
            host,
            port,
            lmtp,
            tls: if lmtp {
                Tls::None
            } else {
                Tls::Opportunistic(self.opportunistic.clone())
            },
            policy: Policy::Transport,
            credentials: None,
        };
        let addresses = self.addresses(host).await?;
        self.try_addresses(&hop, addresses, message).await
    }

    /// Tries each address of a host until one takes the message or answers
    /// for good: a permanent refusal of the whole message ends the attempt,
    /// anything else tries the next address.
    async fn try_addresses(
        &self,
        hop: &Hop<'_>,
        addresses: Vec<IpAddr>,
        message: &Message<'_>,
    ) -> Attempted {
        let mut last = Failure::temporary(format!("no address for {}", hop.host));
        for ip in addresses {
            match self
                .transaction(SocketAddr::new(ip, hop.port), hop, message)
                .await
            {
                Ok(results) => return Ok(results),
                Err(f) if f.permanent => return Err(f),
                Err(f) => last = f,
            }
        }
        Err(last)
    }

    async fn transaction(
        &self,
        addr: SocketAddr,
        hop: &Hop<'_>,
        message: &Message<'_>,
    ) -> Attempted {
        let key = pool::Key {
            addr,
            host: hop.host.to_string(),
            lmtp: hop.lmtp,
            policy: hop.policy,
            user: hop.credentials.map(|(u, _)| u.to_string()),
        };
        let mut conn = match self.pool.take(&key).await {
            Some(idle) => idle,
            None => {
                let mut c = Connection::open(
                    addr,
                    hop.host,
                    &self.hostname,
                    hop.lmtp,
                    &hop.tls,
                    self.settings.connect_timeout,
                    self.settings.timeout,
                )
                .await?;
                if let Some((user, password)) = hop.credentials {
                    c.authenticate(user, password).await?;
                }
                pool::Idle::new(c)
            }
        };
        conn.uses += 1;
        let peer = match conn.uses {
            1 => format!("{}{}", conn.connection.peer, hop.policy.label()),
            n => format!(
                "{}{} (conn_use={n})",
                conn.connection.peer,
                hop.policy.label()
            ),
        };
        let results = conn
            .connection
            .send(message.from, message.recipients, message.body)
            .await;
        if results.is_ok() && conn.connection.reusable {
            self.pool.put(key, conn);
        } else {
            conn.connection.quit().await;
        }
        results.map(|rs| {
            rs.into_iter()
                .map(|r| {
                    r.map(|text| format!("{peer}: {text}"))
                        .map_err(|f| Failure {
                            message: format!("{peer}: {}", f.message),
                            ..f
                        })
                })
                .collect()
        })
    }

    /// MX hosts in preference order (random among equals), each with its
    /// addresses. No MX: the domain itself (RFC 5321 §5.1). A null MX
    /// (RFC 7505) or a domain that does not exist is a permanent failure.
    /// With DNSSEC working, the MX lookup is validated: `secure` says the
    /// MX set is DNSSEC-secure (so DANE applies to its hosts), and a bogus
    /// answer is a temporary failure rather than a fallback.
    async fn mx_hosts(
        &self,
        domain: &str,
    ) -> std::result::Result<(Vec<(String, Vec<IpAddr>)>, bool), Failure> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let dnssec = self.dnssec().await;
        let resolver = if dnssec {
            self.validating()?
        } else {
            self.resolver()?
        };
        let mut secure;
        let mut mx: Vec<(u16, String)> = match resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx = Vec::new();
                secure = dnssec;
                for r in lookup.answers() {
                    let RData::MX(m) = &r.data else { continue };
                    match r.proof {
                        Proof::Secure => {}
                        Proof::Bogus if dnssec => {
                            return Err(Failure::temporary(format!(
                                "the MX records of {domain} fail DNSSEC validation"
                            )));
                        }
                        // Insecure or indeterminate (no trust anchor above).
                        _ => secure = false,
                    }
                    mx.push((
                        m.preference,
                        m.exchange.to_ascii().trim_end_matches('.').to_lowercase(),
                    ));
                }
                mx
            }
            Err(e) => match negative(&e) {
                Some(ResponseCode::NXDomain) => {
                    return Err(Failure::permanent(format!(
                        "the domain {domain} does not exist (5.1.2)"
                    )));
                }
                Some(_) => {
                    // No MX: the domain is its own host, and DANE applies
                    // to it when the absence is proven (RFC 7672 §2.2.1).
                    secure = dnssec && securely_denied(&e);
                    Vec::new()
                }
                None => {
                    return Err(Failure::temporary(format!(
                        "looking up the MX of {domain}: {e}"
                    )));
                }
            },
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
            match self.addresses(&host).await {
                Ok(a) => out.push((host, a)),
                Err(f) => tracing::debug!("{host}: {}", f.message),
            }
        }
        Ok((out, secure))
    }

    /// The MTA-STS policy that applies to `domain` (RFC 8461 §5.1): the
    /// cached one while its TXT id is unchanged and it has not expired, a
    /// freshly fetched one when the id changed (or half its max_age has
    /// passed: refreshed before it can lapse), the cached one when the
    /// refresh fails or the TXT record went away, none otherwise.
    async fn sts_policy(&self, domain: &str) -> Option<sts::Policy> {
        let now = mta_store::envelope::now_secs();
        let cached = match self.sts.get(domain) {
            Ok(p) => p.filter(|p| !p.expired(now)),
            Err(e) => {
                tracing::warn!("MTA-STS cache: {e:#}");
                None
            }
        };
        let id = self.sts_id(domain).await;
        let id = match (id, &cached) {
            (None, _) => return cached,
            (Some(id), Some(c)) if c.id == id && !c.refresh_due(now) => return cached,
            (Some(id), _) => id,
        };
        let host = format!("mta-sts.{domain}");
        let mut problem = format!("no address for {host}");
        let addresses = match self.addresses(&host).await {
            Ok(a) => a,
            Err(f) => {
                problem = f.message;
                Vec::new()
            }
        };
        for ip in addresses {
            let addr = SocketAddr::new(ip, self.settings.mta_sts_port);
            let fetched = sts::fetch(
                addr,
                &host,
                self.verified.clone(),
                self.settings.connect_timeout,
            )
            .await
            .and_then(|text| sts::Policy::parse(&text, &id, now));
            match fetched {
                Ok(policy) => {
                    tracing::info!(
                        "MTA-STS policy of {domain}: id {id}, {:?}, mx {:?}, max_age {}",
                        policy.mode,
                        policy.mx,
                        policy.max_age
                    );
                    if let Err(e) = self.sts.put(domain, &policy) {
                        tracing::warn!("MTA-STS cache: {e:#}");
                    }
                    return Some(policy);
                }
                Err(e) => problem = e,
            }
        }
        tracing::warn!("MTA-STS policy of {domain} (id {id}) not fetched: {problem}");
        cached
    }

    async fn sts_id(&self, domain: &str) -> Option<String> {
        let name = format!("_mta-sts.{}.", domain.trim_end_matches('.'));
        let lookup = self.resolver().ok()?.txt_lookup(name.as_str()).await.ok()?;
        let records: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        sts::txt_id(&records)
    }

    async fn addresses(&self, host: &str) -> std::result::Result<Vec<IpAddr>, Failure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver()?.lookup_ip(fqdn.as_str()).await {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) => Err(Failure::temporary(format!("no address for {host}: {e}"))),
        }
    }
}

/// The response code of an answer that proves there is no such record (or
/// name), validated or not: `None` for failures and bogus answers.
fn negative(e: &NetError) -> Option<ResponseCode> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(n)) => Some(n.response_code),
        NetError::Dns(DnsError::Nsec {
            response,
            proof: Proof::Secure | Proof::Insecure | Proof::Indeterminate,
            ..
        }) => Some(response.response_code),
        _ => None,
    }
}

/// The entry for a (lowercase) address, else for its domain.
fn by_address_or_domain<'a, T>(table: &'a [(String, T)], address: &str) -> Option<&'a T> {
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    let find = |key: &str| table.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    find(address).or_else(|| find(domain))
}

/// Whether a "no such record" answer came with validated (NSEC) proof.
fn securely_denied(e: &NetError) -> bool {
    let NetError::Dns(DnsError::NoRecordsFound(n)) = e else {
        return false;
    };
    n.authorities.as_deref().is_some_and(|records| {
        records.iter().any(|r| r.proof == Proof::Secure)
            && records.iter().all(|r| r.proof != Proof::Bogus)
    })
}

pub mod dane;

mod pool;

pub mod tls;

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(mode: sts::Mode) -> sts::Policy {
        sts::Policy {
            id: "1".into(),
            mode,
            mx: vec!["mx.example.net".into(), "*.backup.example.net".into()],
            max_age: 86400,
            fetched: 0,
        }
    }

    fn decided(dane: DaneState, policy: Option<sts::Mode>, host: &str) -> Decision {
        decide(dane, policy.map(sts).as_ref(), host, "example.net")
    }

    #[test]
    fn usable_dane_records_decide_even_against_mta_sts() {
        let d = decided(
            DaneState::Usable,
            Some(sts::Mode::Enforce),
            "rogue.example.net",
        );
        assert_eq!(d, Decision::Use(Policy::Dane, None));
    }

    #[test]
    fn mta_sts_enforce_admits_listed_hosts_over_verified_tls_only() {
        assert_eq!(
            decided(DaneState::None, Some(sts::Mode::Enforce), "mx.example.net"),
            Decision::Use(Policy::Sts, None)
        );
        assert_eq!(
            decided(
                DaneState::None,
                Some(sts::Mode::Enforce),
                "a.backup.example.net"
            ),
            Decision::Use(Policy::Sts, None)
        );
        assert!(matches!(
            decided(DaneState::None, Some(sts::Mode::Enforce), "rogue.example.net"),
            Decision::Skip(why) if why.contains("not an MX host in the MTA-STS policy")
        ));
        // Unusable TLSA records do not weaken an enforced policy.
        assert_eq!(
            decided(
                DaneState::Unusable,
                Some(sts::Mode::Enforce),
                "mx.example.net"
            ),
            Decision::Use(Policy::Sts, None)
        );
    }

    #[test]
    fn testing_mode_reports_and_delivers_as_without_a_policy() {
        let Decision::Use(policy, note) = decided(
            DaneState::None,
            Some(sts::Mode::Testing),
            "rogue.example.net",
        ) else {
            panic!("skipped in testing mode")
        };
        assert_eq!(policy, Policy::Opportunistic);
        assert!(note.unwrap().contains("testing mode"));
        assert_eq!(
            decided(DaneState::None, Some(sts::Mode::None), "rogue.example.net"),
            Decision::Use(Policy::Opportunistic, None)
        );
    }

    #[test]
    fn without_policies_tls_is_opportunistic_or_required_for_unusable_tlsa() {
        assert_eq!(
            decided(DaneState::None, None, "mx.example.net"),
            Decision::Use(Policy::Opportunistic, None)
        );
        assert_eq!(
            decided(DaneState::Unusable, None, "mx.example.net"),
            Decision::Use(Policy::DaneUnusable, None)
        );
    }
}
