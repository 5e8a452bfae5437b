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

use crate::config::{Config, Outbound as Settings, Relay, Transport};
use crate::dns::Dns;
use client::{Connection, Failure, Tls};
use mail_auth::report::tlsrpt::PolicyDetails;
use policy::{Dane, Decision, Policy, decide};

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

/// Permission to deliver on one route now (see [`Outbound::turn`]).
pub struct Turn {
    _destination: tokio::sync::OwnedSemaphorePermit,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

type Attempted = std::result::Result<Vec<client::RcptResult>, Failure>;

pub struct Outbound {
    settings: Settings,
    hostname: String,
    dns: Arc<Dns>,
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
    /// Where the sessions under MTA-STS and DANE policies are counted for
    /// TLS reports (set once the store is open).
    tls_reports: std::sync::OnceLock<Arc<tlsrpt::TlsReports>>,
}

impl Outbound {
    /// Delivery as `config` says, asking `dns`.
    pub fn new(config: &Config, dns: Arc<Dns>) -> anyhow::Result<Outbound> {
        Ok(Outbound {
            settings: config.outbound.clone(),
            hostname: config.hostname.clone(),
            dns,
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
            tls_reports: std::sync::OnceLock::new(),
        })
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
        let (hosts, secure) = mx::hosts(&self.dns, domain).await?;
        for (host, addresses) in hosts {
            // DANE first: a secure MX set and secure TLSA records decide
            // (RFC 8461 §2: MTA-STS does not override DANE).
            let dane = if secure {
                match mx::dane(&self.dns, self.settings.port, &host).await {
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
            // The policy a TLS report counts this host's session under.
            let reported = match (&dane, &sts) {
                (Dane::Required(records), _) => Some(tlsrpt::tlsa_policy(
                    domain,
                    &host,
                    records
                        .iter()
                        .map(|t| {
                            let data: String = t.data.iter().map(|b| format!("{b:02x}")).collect();
                            format!("{} {} {} {data}", t.usage, t.selector, t.matching)
                        })
                        .collect(),
                )),
                // Enforce only: in testing mode the certificate is not
                // checked (the delivery is opportunistic), so a session's
                // success would say nothing.
                (_, Some(p)) if p.mode == sts::Mode::Enforce => {
                    Some(tlsrpt::sts_policy(domain, "enforce", &p.mx, p.max_age))
                }
                _ => None,
            };
            let (policy, note) = match decide(dane.state(), sts.as_ref(), &host, domain) {
                Decision::Skip(why) => {
                    tracing::warn!("{why}: skipped");
                    if let Some(details) = reported {
                        self.report_tls(
                            domain,
                            details,
                            tlsrpt::Outcome::Failure {
                                result: mail_auth::report::tlsrpt::ResultType::ValidationFailure,
                                mx: host.clone(),
                                ip: None,
                                why: "the MX host is not in the MTA-STS policy".into(),
                            },
                        );
                    }
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
            let attempt = self.try_addresses(&hop, addresses, message).await;
            if let Some(details) = reported {
                match &attempt {
                    Ok(_) => self.report_tls(domain, details, tlsrpt::Outcome::Success),
                    Err(Failure {
                        tls: Some(kind),
                        message,
                        ..
                    }) => self.report_tls(
                        domain,
                        details,
                        tlsrpt::Outcome::Failure {
                            result: *kind,
                            mx: host.clone(),
                            ip: None,
                            why: message.clone(),
                        },
                    ),
                    // Not a matter of TLS (refused, timed out, a 4xx).
                    Err(_) => {}
                }
            }
            match attempt {
                Ok(results) => return Ok(results),
                Err(f) if f.permanent => return Err(f),
                Err(f) => last = f,
            }
        }
        Err(last)
    }

    /// TLS reports are gathered in `reports` from now on.
    pub fn report_tls_to(&self, reports: Arc<tlsrpt::TlsReports>) {
        let _ = self.tls_reports.set(reports);
    }

    fn report_tls(&self, domain: &str, details: PolicyDetails, outcome: tlsrpt::Outcome) {
        if let Some(r) = self.tls_reports.get() {
            r.record(mta_store::envelope::now_secs(), domain, details, outcome);
        }
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
        let addresses = mx::addresses(&self.dns, &relay.host).await?;
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
        let addresses = mx::addresses(&self.dns, host).await?;
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
        let id = mx::sts_id(&self.dns, domain).await;
        let id = match (id, &cached) {
            (None, _) => return cached,
            (Some(id), Some(c)) if c.id == id && !c.refresh_due(now) => return cached,
            (Some(id), _) => id,
        };
        let host = format!("mta-sts.{domain}");
        let mut problem = format!("no address for {host}");
        let addresses = match mx::addresses(&self.dns, &host).await {
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
}

/// The entry for a (lowercase) address, else for its domain.
fn by_address_or_domain<'a, T>(table: &'a [(String, T)], address: &str) -> Option<&'a T> {
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    let find = |key: &str| table.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    find(address).or_else(|| find(domain))
}

pub mod dane;
mod mx;
mod policy;
mod pool;
pub mod tls;
pub mod tlsrpt;
