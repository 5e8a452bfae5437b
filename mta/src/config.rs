//! The one configuration file: parsing, defaults and validation.
//!
//! Every problem is reported with the file, the line and what to do about it,
//! and all problems are reported at once (`mta check-config`). Unknown keys are
//! errors: a typo must not silently turn a setting off. This module does not
//! write the file (the wizard and `mta user` will, atomically).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::address::{Address, normalise_domain};
use crate::password::PasswordHash;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub hostname: String,
    pub data_dir: PathBuf,
    pub domains: Vec<String>,
    pub recipient_delimiter: String,
    pub postmaster: Option<Address>,
    pub accounts: Vec<Account>,
    /// Alias address key (`local@domain` lower case, or `@domain` for a
    /// catch-all) → targets.
    pub aliases: BTreeMap<String, Vec<Address>>,
    pub limits: Limits,
    pub queue: QueuePolicy,
    pub listeners: Vec<Listener>,
    pub tls: Option<TlsFiles>,
    pub network: Network,
    pub submission: SubmissionPolicy,
    pub outbound: Outbound,
}

/// How mail leaves: by MX lookup, or through relays and transports.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// Port for delivery to MX hosts (25; tests use another).
    pub port: u16,
    /// Resolvers for MX/A/AAAA lookups; empty: the system's.
    pub nameservers: Vec<SocketAddr>,
    /// A relay (by name) for all mail to other domains.
    pub smarthost: Option<String>,
    pub relays: Vec<Relay>,
    /// Sender address or domain → relay name.
    pub sender_routes: Vec<(String, String)>,
    /// Recipient address or domain → where to hand it over.
    pub transports: Vec<(String, Transport)>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Simultaneous connections to one destination (domain, relay or
    /// transport host), so a big mailing does not hammer one server.
    pub per_destination: usize,
    /// Port MTA-STS policies are fetched from (443; tests use another).
    pub mta_sts_port: u16,
    /// Extra trust anchors (PEM) for verified TLS to MX hosts and MTA-STS
    /// policy servers, beside the system's CA bundle.
    pub ca: Option<PathBuf>,
    /// DNSKEY records (zone file syntax) trusted for DNSSEC instead of the
    /// IANA root keys built in (tests sign their own root zone).
    pub trust_anchor: Option<PathBuf>,
    /// DANE (RFC 7672) for MX hosts, when DNSSEC works here.
    pub dane: bool,
}

/// A server mail is handed to (an ISP's smarthost, a provider's submission
/// port), with TLS required and optional SASL credentials.
#[derive(Debug, Clone)]
pub struct Relay {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (port 465) instead of STARTTLS.
    pub implicit_tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Extra trust anchor (PEM) for a relay with its own CA.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Smtp {
        host: String,
        port: u16,
    },
    Lmtp {
        host: String,
        port: u16,
    },
    Relay(String),
    /// Deliver locally even if a broader rule says otherwise.
    Local,
}

/// How submitted (authenticated) mail is treated.
#[derive(Debug, Clone, Default)]
pub struct SubmissionPolicy {
    /// Name the authenticated user in the Received header (off: privacy).
    pub trace_user: bool,
}

/// How the appliance's network is configured. Applied by `init`; checked
/// here so `mta check-config` catches mistakes before a reboot does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Dhcp,
    Static {
        address: std::net::Ipv4Addr,
        prefix: u8,
        gateway: Option<std::net::Ipv4Addr>,
        dns: Vec<std::net::Ipv4Addr>,
    },
}

pub use crate::directory::Account;

#[derive(Debug, Clone)]
pub struct Limits {
    pub message_size: u64,
    pub recipients: usize,
    pub connections_per_ip: usize,
    pub connections: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// The longest a connection may last, however busy.
    pub session_time: Duration,
    pub max_errors: u32,
    pub greeting_delay: Duration,
    pub min_free_space: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePolicy {
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Give up (and bounce) after this long.
    pub max_age: Duration,
    /// Tell the sender once that delivery is delayed after this long.
    pub delay_warning: Duration,
    pub delivery_workers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail from the world to our domains.
    Mx,
    /// Port 587: users sending mail; STARTTLS, then AUTH, before MAIL.
    Submission,
    /// Port 465: the same over implicit TLS (RFC 8314).
    Submissions,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Mx => "mx",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// One problem found in the configuration file.
#[derive(Debug, Clone)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

/// All the problems in one file.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                p.message
            )?;
            if let Some(help) = &p.help {
                write!(f, "\n  help: {help}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hostname: Spanned<String>,
    data_dir: Spanned<String>,
    domains: Spanned<Vec<Spanned<String>>>,
    recipient_delimiter: Option<Spanned<String>>,
    postmaster: Option<Spanned<String>>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    aliases: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    queue: RawQueue,
    listeners: Option<Vec<RawListener>>,
    tls: Option<RawTls>,
    network: Option<RawNetwork>,
    #[serde(default)]
    submission: RawSubmission,
    #[serde(default)]
    outbound: RawOutbound,
    #[serde(default)]
    relays: Vec<RawRelay>,
    #[serde(default)]
    sender_routes: Vec<RawSenderRoute>,
    #[serde(default)]
    transports: Vec<RawTransport>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    port: Option<Spanned<i64>>,
    nameservers: Option<Vec<Spanned<String>>>,
    smarthost: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    per_destination: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
    mta_sts_port: Option<Spanned<i64>>,
    ca: Option<Spanned<String>>,
    trust_anchor: Option<Spanned<String>>,
    dane: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    name: Spanned<String>,
    host: Spanned<String>,
    port: Option<Spanned<i64>>,
    tls: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<String>,
    ca: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSenderRoute {
    sender: Spanned<String>,
    relay: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransport {
    recipient: Spanned<String>,
    via: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSubmission {
    trace_user: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    mode: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    dns: Option<Vec<Spanned<String>>>,
    ntp: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    address: Spanned<String>,
    password: Option<Spanned<String>>,
    send_as: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    message_size: Option<Spanned<toml::Value>>,
    recipients: Option<Spanned<i64>>,
    connections_per_ip: Option<Spanned<i64>>,
    connections: Option<Spanned<i64>>,
    command_timeout: Option<Spanned<String>>,
    data_timeout: Option<Spanned<String>>,
    session_time: Option<Spanned<String>>,
    max_errors: Option<Spanned<i64>>,
    greeting_delay: Option<Spanned<String>>,
    min_free_space: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    retry_min: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
    delay_warning: Option<Spanned<String>>,
    delivery_workers: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Spanned<String>,
    role: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: Spanned<String>,
    key: Spanned<String>,
}

struct Checker<'a> {
    source: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.source[..offset.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, column)
    }

    fn report(&mut self, span: Range<usize>, message: impl Into<String>, help: Option<&str>) {
        let (line, column) = self.position(span.start);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
            help: help.map(str::to_string),
        });
    }

    fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        default: Duration,
        name: &str,
    ) -> Duration {
        let Some(value) = value else { return default };
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                self.report(
                    value.span(),
                    format!("`{name}` = {:?} is not a duration: {e}", value.get_ref()),
                    Some("write a number with a unit, such as \"30s\", \"5m\" or \"1h\""),
                );
                default
            }
        }
    }

    fn port(&mut self, value: &Option<Spanned<i64>>, default: u16) -> u16 {
        let Some(p) = value else { return default };
        match u16::try_from(*p.get_ref()) {
            Ok(v) if v > 0 => v,
            _ => {
                self.report(
                    p.span(),
                    format!("port {} is not a TCP port", p.get_ref()),
                    None,
                );
                default
            }
        }
    }

    fn count(
        &mut self,
        value: &Option<Spanned<i64>>,
        default: usize,
        min: i64,
        name: &str,
    ) -> usize {
        let Some(value) = value else { return default };
        let v = *value.get_ref();
        if v < min {
            self.report(
                value.span(),
                format!("`{name}` must be at least {min}, not {v}"),
                None,
            );
            return default;
        }
        v as usize
    }

    fn size(&mut self, value: &Option<Spanned<toml::Value>>, default: u64, name: &str) -> u64 {
        let Some(value) = value else { return default };
        let parsed = match value.get_ref() {
            toml::Value::Integer(n) if *n >= 0 => Some(*n as u64),
            toml::Value::String(s) => parse_size(s),
            _ => None,
        };
        match parsed {
            Some(n) => n,
            None => {
                self.report(
                    value.span(),
                    format!("`{name}` is not a size"),
                    Some(
                        "write a number of bytes, or a string such as \"50M\", \"512K\" or \"2G\"",
                    ),
                );
                default
            }
        }
    }
}

/// An address or a domain (routing keys), lower-cased; `None` if neither.
fn address_or_domain(text: &str) -> Option<String> {
    let t = text.trim();
    if t.contains('@') {
        Address::parse(t, true).ok().map(|a| a.key())
    } else {
        normalise_domain(t).ok().filter(|d| !d.starts_with('['))
    }
}

/// `host:port`, with the port required.
fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

impl Checker<'_> {
    fn outbound(&mut self, raw: &RawConfig) -> Outbound {
        let o = &raw.outbound;
        let port = self.port(&o.port, 25);
        let mta_sts_port = self.port(&o.mta_sts_port, 443);
        let mut nameservers = Vec::new();
        for ns in o.nameservers.iter().flatten() {
            let text = ns.get_ref();
            let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
                text.parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            });
            match parsed {
                Some(a) => nameservers.push(a),
                None => self.report(
                    ns.span(),
                    format!("nameserver {text:?} is not IP or IP:PORT"),
                    None,
                ),
            }
        }
        let mut relays: Vec<Relay> = Vec::new();
        for r in &raw.relays {
            let (host, port_in_host) = match host_port(r.host.get_ref()) {
                Some((h, p)) => (h, Some(p)),
                None => (r.host.get_ref().clone(), None),
            };
            let implicit_tls = match r.tls.as_ref().map(|t| t.get_ref().as_str()) {
                None | Some("starttls") => false,
                Some("implicit") => true,
                Some(other) => {
                    let span = r.tls.as_ref().map(|t| t.span()).unwrap_or(0..0);
                    self.report(span, format!("relay tls {other:?} is not known"), Some("use \"starttls\" (port 587) or \"implicit\" (port 465); TLS is always required"));
                    false
                }
            };
            let port = match (&r.port, port_in_host) {
                (Some(_), _) => self.port(&r.port, 587),
                (None, Some(p)) => p,
                (None, None) => {
                    if implicit_tls {
                        465
                    } else {
                        587
                    }
                }
            };
            if relays.iter().any(|x| x.name == *r.name.get_ref()) {
                self.report(
                    r.name.span(),
                    format!("relay {:?} is defined twice", r.name.get_ref()),
                    None,
                );
            }
            if r.username.is_some() != r.password.is_some() {
                self.report(
                    r.name.span(),
                    format!(
                        "relay {:?}: username and password go together",
                        r.name.get_ref()
                    ),
                    None,
                );
            }
            relays.push(Relay {
                name: r.name.get_ref().clone(),
                host,
                port,
                implicit_tls,
                username: r.username.clone(),
                password: r.password.clone(),
                ca: r.ca.as_ref().map(|c| PathBuf::from(c.get_ref())),
            });
        }
        let known = |name: &str| relays.iter().any(|r| r.name == name);
        let smarthost = o.smarthost.as_ref().map(|s| {
            if !known(s.get_ref()) {
                self.report(
                    s.span(),
                    format!("smarthost {:?} is not a [[relays]] name", s.get_ref()),
                    None,
                );
            }
            s.get_ref().clone()
        });
        let mut sender_routes = Vec::new();
        for r in &raw.sender_routes {
            match address_or_domain(r.sender.get_ref()) {
                Some(k) => sender_routes.push((k, r.relay.get_ref().clone())),
                None => self.report(
                    r.sender.span(),
                    format!("{:?} is not an address or a domain", r.sender.get_ref()),
                    None,
                ),
            }
            if !known(r.relay.get_ref()) {
                self.report(
                    r.relay.span(),
                    format!("{:?} is not a [[relays]] name", r.relay.get_ref()),
                    None,
                );
            }
        }
        let mut transports = Vec::new();
        for t in &raw.transports {
            let Some(key) = address_or_domain(t.recipient.get_ref()) else {
                self.report(
                    t.recipient.span(),
                    format!("{:?} is not an address or a domain", t.recipient.get_ref()),
                    None,
                );
                continue;
            };
            let via = t.via.get_ref();
            let transport = match via.split_once(':') {
                Some(("smtp", hp)) => {
                    host_port(hp).map(|(host, port)| Transport::Smtp { host, port })
                }
                Some(("lmtp", hp)) => {
                    host_port(hp).map(|(host, port)| Transport::Lmtp { host, port })
                }
                Some(("relay", name)) if known(name) => Some(Transport::Relay(name.to_string())),
                None if via == "local" => Some(Transport::Local),
                _ => None,
            };
            match transport {
                Some(tr) => transports.push((key, tr)),
                None => self.report(
                    t.via.span(),
                    format!("transport {via:?} is not understood"),
                    Some("use \"smtp:HOST:PORT\", \"lmtp:HOST:PORT\", \"relay:NAME\" or \"local\""),
                ),
            }
        }
        Outbound {
            port,
            nameservers,
            smarthost,
            relays,
            sender_routes,
            transports,
            connect_timeout: self.duration(
                &o.connect_timeout,
                Duration::from_secs(30),
                "connect_timeout",
            ),
            timeout: self.duration(&o.timeout, Duration::from_secs(300), "timeout"),
            per_destination: self.count(&o.per_destination, 10, 1, "per_destination"),
            mta_sts_port,
            ca: o.ca.as_ref().map(|c| PathBuf::from(c.get_ref())),
            trust_anchor: o.trust_anchor.as_ref().map(|c| PathBuf::from(c.get_ref())),
            dane: o.dane.unwrap_or(true),
        }
    }

    fn network(&mut self, n: &RawNetwork) -> Network {
        let ip = |ck: &mut Checker, v: &Spanned<String>, what: &str| match v
            .get_ref()
            .parse::<std::net::Ipv4Addr>(
        ) {
            Ok(a) => Some(a),
            Err(_) => {
                ck.report(
                    v.span(),
                    format!("{what} {:?} is not an IPv4 address", v.get_ref()),
                    None,
                );
                None
            }
        };
        for server in n.ntp.iter().flatten() {
            if server.get_ref().trim().is_empty() {
                self.report(server.span(), "empty NTP server name", None);
            }
        }
        match n.mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("dhcp") => Network::Dhcp,
            Some("static") => {
                let Some(address) = &n.address else {
                    let span = n.mode.as_ref().map(|m| m.span()).unwrap_or(0..0);
                    self.report(
                        span,
                        "static networking needs `address`",
                        Some("for example address = \"192.168.1.10/24\""),
                    );
                    return Network::Dhcp;
                };
                let parsed = address.get_ref().split_once('/').and_then(|(a, p)| {
                    Some((
                        a.parse::<std::net::Ipv4Addr>().ok()?,
                        p.parse::<u8>().ok().filter(|p| *p <= 32)?,
                    ))
                });
                let Some((addr, prefix)) = parsed else {
                    self.report(
                        address.span(),
                        format!("address {:?} is not ADDRESS/PREFIX", address.get_ref()),
                        Some("for example \"192.168.1.10/24\""),
                    );
                    return Network::Dhcp;
                };
                let gateway = n.gateway.as_ref().and_then(|g| ip(self, g, "gateway"));
                let dns = n
                    .dns
                    .iter()
                    .flatten()
                    .filter_map(|d| ip(self, d, "dns server"))
                    .collect();
                Network::Static {
                    address: addr,
                    prefix,
                    gateway,
                    dns,
                }
            }
            Some(other) => {
                let span = n.mode.as_ref().map(|m| m.span()).unwrap_or(0..0);
                self.report(
                    span,
                    format!("network mode {other:?} is not known"),
                    Some("use \"dhcp\" or \"static\""),
                );
                Network::Dhcp
            }
        }
    }
}

/// Parses `123`, `512K`, `50M`, `2G` (binary multiples; an optional trailing
/// `B`/`iB` is accepted).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t)
        .trim_end();
    let (digits, mult) = match t.char_indices().last()? {
        (i, 'K' | 'k') => (&t[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&t[..i], 1 << 20),
        (i, 'G' | 'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the configuration {}: {e}", path.display())
        })?;
        Ok(Config::parse(path, &text)?)
    }

    /// Validates the text of a configuration file named `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut ck = Checker {
            source: text,
            problems: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let help = if e.message().contains("unknown field") {
                    Some(
                        "remove the key or fix its spelling; see mta/config.example.toml for every key",
                    )
                } else {
                    None
                };
                ck.report(span, e.message().trim().to_string(), help);
                return Err(ConfigError {
                    path: path.to_path_buf(),
                    problems: ck.problems,
                });
            }
        };

        let hostname = match normalise_domain(raw.hostname.get_ref()) {
            Ok(h) if h.contains('.') && !h.starts_with('[') => h,
            _ => {
                ck.report(
                    raw.hostname.span(),
                    format!(
                        "hostname {:?} is not a fully qualified domain name",
                        raw.hostname.get_ref()
                    ),
                    Some("use the name your MX record points to, such as \"mail.example.org\""),
                );
                String::new()
            }
        };

        let data_dir = PathBuf::from(raw.data_dir.get_ref());
        if !data_dir.is_absolute() {
            ck.report(
                raw.data_dir.span(),
                format!(
                    "data_dir {:?} is not an absolute path",
                    raw.data_dir.get_ref()
                ),
                None,
            );
        }

        let mut domains: Vec<String> = Vec::new();
        if raw.domains.get_ref().is_empty() {
            ck.report(
                raw.domains.span(),
                "no domains: the server would accept mail for nobody",
                Some("list the domains you receive mail for, such as domains = [\"example.org\"]"),
            );
        }
        for d in raw.domains.get_ref() {
            match normalise_domain(d.get_ref()) {
                Ok(n) if !n.starts_with('[') => {
                    if domains.contains(&n) {
                        ck.report(d.span(), format!("domain {n:?} is listed twice"), None);
                    } else {
                        domains.push(n);
                    }
                }
                _ => ck.report(
                    d.span(),
                    format!("{:?} is not a domain name", d.get_ref()),
                    None,
                ),
            }
        }

        let recipient_delimiter = match &raw.recipient_delimiter {
            None => "+".to_string(),
            Some(d) => {
                let bad = d
                    .get_ref()
                    .chars()
                    .any(|c| c == '@' || c.is_whitespace() || c.is_control());
                if bad {
                    ck.report(
                        d.span(),
                        format!(
                            "recipient_delimiter {:?} may not contain @ or spaces",
                            d.get_ref()
                        ),
                        Some("use \"+\" (the default), \"-\", or \"\" to turn plus-addressing off"),
                    );
                }
                d.get_ref().clone()
            }
        };

        let parse_addr = |ck: &mut Checker, s: &Spanned<String>, what: &str| -> Option<Address> {
            match Address::parse(s.get_ref(), true) {
                Ok(a) => Some(a),
                Err(e) => {
                    ck.report(
                        s.span(),
                        format!("{what} {:?} is not an address: {e}", s.get_ref()),
                        None,
                    );
                    None
                }
            }
        };

        let mut accounts: Vec<Account> = Vec::new();
        for raw_account in &raw.accounts {
            let Some(address) = parse_addr(&mut ck, &raw_account.address, "account") else {
                continue;
            };
            if !domains.iter().any(|d| d == address.domain()) {
                ck.report(
                    raw_account.address.span(),
                    format!("account {address} is not in one of the domains"),
                    Some("add its domain to `domains` or fix the address"),
                );
            }
            let local = address.local().to_lowercase();
            if local.starts_with('.') || local.contains('/') || local.starts_with('"') {
                ck.report(
                    raw_account.address.span(),
                    format!("account {address}: the local part cannot name a mail folder"),
                    Some("use letters, digits, dots, dashes and underscores"),
                );
            }
            if accounts.iter().any(|a| a.address.key() == address.key()) {
                ck.report(
                    raw_account.address.span(),
                    format!("account {address} is defined twice"),
                    None,
                );
            }
            let password = match &raw_account.password {
                None => None,
                Some(p) => match PasswordHash::parse(p.get_ref()) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        ck.report(
                            p.span(),
                            format!("the password of {address} is not a usable hash: {e}"),
                            Some("store a hash, never the password: run `mta hash-password` (argon2id) or `mkpasswd -m sha-512`"),
                        );
                        None
                    }
                },
            };
            let mut send_as = Vec::new();
            for pattern in raw_account.send_as.iter().flatten() {
                let text = pattern.get_ref().trim();
                let valid = match text.strip_prefix("*@").or_else(|| text.strip_prefix('@')) {
                    Some(domain) => normalise_domain(domain).is_ok(),
                    None => Address::parse(text, true).is_ok(),
                };
                if valid {
                    send_as.push(text.trim_start_matches('*').to_lowercase());
                } else {
                    ck.report(
                        pattern.span(),
                        format!("send_as {text:?} is not an address or *@domain"),
                        None,
                    );
                }
            }
            accounts.push(Account {
                address,
                password,
                send_as,
            });
        }

        let postmaster = raw
            .postmaster
            .as_ref()
            .and_then(|p| parse_addr(&mut ck, p, "postmaster"));

        let mut aliases: BTreeMap<String, Vec<Address>> = BTreeMap::new();
        let mut alias_spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for (key, value) in &raw.aliases {
            let key_text = key.get_ref().trim();
            let key_norm = if let Some(domain) = key_text.strip_prefix('@') {
                match normalise_domain(domain) {
                    Ok(d) => Some(format!("@{d}")),
                    Err(_) => None,
                }
            } else {
                Address::parse(key_text, true).ok().map(|a| a.key())
            };
            let Some(key_norm) = key_norm else {
                ck.report(
                    key.span(),
                    format!("alias {key_text:?} is not an address or an @domain catch-all"),
                    None,
                );
                continue;
            };
            let domain = key_norm.rsplit('@').next().unwrap_or_default();
            if !domains.iter().any(|d| d == domain) {
                ck.report(
                    key.span(),
                    format!("alias {key_text:?} is not in one of the domains"),
                    Some(
                        "aliases can only be defined for the domains this server receives mail for",
                    ),
                );
            }
            let texts: Vec<(String, Range<usize>)> = match value.get_ref() {
                toml::Value::String(s) => vec![(s.clone(), value.span())],
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| (v.as_str().unwrap_or("\u{0}").to_string(), value.span()))
                    .collect(),
                _ => vec![("\u{0}".to_string(), value.span())],
            };
            if texts.is_empty() {
                ck.report(
                    value.span(),
                    format!("alias {key_text:?} has no targets"),
                    None,
                );
            }
            let mut targets = Vec::new();
            for (t, span) in texts {
                match Address::parse(&t, true) {
                    Ok(a) => targets.push(a),
                    Err(e) => ck.report(
                        span,
                        format!("target {t:?} of alias {key_text:?} is not an address: {e}"),
                        Some("targets are full addresses: \"alice@example.org\" or a list of them"),
                    ),
                }
            }
            if aliases.contains_key(&key_norm) {
                ck.report(
                    key.span(),
                    format!("alias {key_text:?} is defined twice"),
                    None,
                );
            }
            alias_spans.insert(key_norm.clone(), value.span());
            aliases.insert(key_norm, targets);
        }

        let l = &raw.limits;
        let limits = Limits {
            message_size: ck.size(&l.message_size, 50 << 20, "message_size"),
            recipients: ck.count(&l.recipients, 1000, 1, "recipients"),
            connections_per_ip: ck.count(&l.connections_per_ip, 20, 1, "connections_per_ip"),
            connections: ck.count(&l.connections, 500, 1, "connections"),
            command_timeout: ck.duration(
                &l.command_timeout,
                Duration::from_secs(300),
                "command_timeout",
            ),
            data_timeout: ck.duration(&l.data_timeout, Duration::from_secs(600), "data_timeout"),
            session_time: ck.duration(&l.session_time, Duration::from_secs(3600), "session_time"),
            max_errors: ck.count(&l.max_errors, 10, 1, "max_errors") as u32,
            greeting_delay: ck.duration(&l.greeting_delay, Duration::ZERO, "greeting_delay"),
            min_free_space: ck.size(&l.min_free_space, 64 << 20, "min_free_space"),
        };
        let q = &raw.queue;
        let queue = QueuePolicy {
            retry_min: ck.duration(&q.retry_min, Duration::from_secs(60), "retry_min"),
            retry_max: ck.duration(&q.retry_max, Duration::from_secs(3600), "retry_max"),
            max_age: ck.duration(&q.max_age, Duration::from_secs(5 * 86400), "max_age"),
            delay_warning: ck.duration(
                &q.delay_warning,
                Duration::from_secs(4 * 3600),
                "delay_warning",
            ),
            delivery_workers: ck.count(&q.delivery_workers, 8, 1, "delivery_workers"),
        };

        let listeners = match &raw.listeners {
            None => vec![Listener {
                address: "0.0.0.0:25".parse().expect("static address"),
                role: Role::Mx,
            }],
            Some(list) => {
                let mut out = Vec::new();
                for l in list {
                    let address = match l.address.get_ref().parse::<SocketAddr>() {
                        Ok(a) => a,
                        Err(_) => {
                            ck.report(
                                l.address.span(),
                                format!(
                                    "listener address {:?} is not IP:PORT",
                                    l.address.get_ref()
                                ),
                                Some("for example \"0.0.0.0:25\" or \"[::]:25\""),
                            );
                            continue;
                        }
                    };
                    let role = match l.role.get_ref().as_str() {
                        "mx" => Role::Mx,
                        "submission" => Role::Submission,
                        "submissions" => Role::Submissions,
                        other => {
                            ck.report(
                                l.role.span(),
                                format!("listener role {other:?} is not known"),
                                Some("use \"mx\" (port 25), \"submission\" (587) or \"submissions\" (465)"),
                            );
                            continue;
                        }
                    };
                    out.push(Listener { address, role });
                }
                out
            }
        };

        let tls = raw.tls.as_ref().map(|t| {
            for f in [&t.certificate, &t.key] {
                if !Path::new(f.get_ref()).is_absolute() {
                    ck.report(
                        f.span(),
                        format!("{:?} is not an absolute path", f.get_ref()),
                        None,
                    );
                }
            }
            TlsFiles {
                certificate: t.certificate.get_ref().into(),
                key: t.key.get_ref().into(),
            }
        });

        let network = match &raw.network {
            None => Network::Dhcp,
            Some(n) => ck.network(n),
        };

        let outbound = ck.outbound(&raw);

        let config = Config {
            path: path.to_path_buf(),
            hostname,
            data_dir,
            domains,
            recipient_delimiter,
            postmaster,
            accounts,
            aliases,
            limits,
            queue,
            listeners,
            tls,
            network,
            submission: SubmissionPolicy {
                trace_user: raw.submission.trace_user.unwrap_or(false),
            },
            outbound,
        };

        // Checks that need the whole picture: every local alias target and the
        // postmaster must lead to a mailbox, and aliases must not loop.
        let directory = config.directory();
        for (key, targets) in &config.aliases {
            for t in targets {
                if let Err(e) = directory.resolve_target(t) {
                    let span = alias_spans.get(key).cloned().unwrap_or(0..0);
                    ck.report(
                        span,
                        format!("alias {key}: {e}"),
                        Some("point it to an account or to an address in another domain"),
                    );
                }
            }
        }
        if config.accounts.is_empty()
            && !config
                .aliases
                .values()
                .flatten()
                .any(|a| !config.is_local_domain(a.domain()))
        {
            ck.report(
                raw.domains.span(),
                "no accounts: mail for these domains would have nowhere to go",
                Some("add an [[accounts]] entry"),
            );
        }
        if let (Some(pm), Some(span)) = (
            &config.postmaster,
            raw.postmaster.as_ref().map(|p| p.span()),
        ) && let Err(e) = directory.resolve_target(pm)
        {
            ck.report(span, format!("postmaster {pm}: {e}"), None);
        }

        if ck.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                path: path.to_path_buf(),
                problems: ck.problems,
            })
        }
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d == domain)
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.data_dir.join("queue")
    }

    pub fn mail_dir(&self) -> PathBuf {
        self.data_dir.join("mail")
    }

    /// Who receives mail here, as this configuration says.
    pub fn directory(&self) -> crate::directory::Directory {
        crate::directory::Directory::new(crate::directory::Parts {
            domains: &self.domains,
            accounts: &self.accounts,
            aliases: &self.aliases,
            recipient_delimiter: &self.recipient_delimiter,
            postmaster: self.postmaster.as_ref(),
            routed: self
                .outbound
                .transports
                .iter()
                .filter(|(_, t)| !matches!(t, Transport::Local))
                .map(|(k, _)| k.clone())
                .collect(),
        })
    }

    pub fn control_socket(&self) -> PathBuf {
        self.data_dir.join("control.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
hostname = "mail.example.org"
data_dir = "/var/lib/mailbox"
domains = ["example.org", "Example.NET"]

[[accounts]]
address = "alice@example.org"

[[accounts]]
address = "bob@example.net"

[aliases]
"info@example.org" = ["alice@example.org", "bob@example.net"]
"@example.net" = "bob@example.net"
"friend@example.org" = "someone@elsewhere.example"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    #[test]
    fn good_config_gets_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.domains, ["example.org", "example.net"]);
        assert_eq!(c.recipient_delimiter, "+");
        assert_eq!(c.limits.message_size, 50 << 20);
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.aliases["info@example.org"].len(), 2);
        assert!(c.aliases.contains_key("@example.net"));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let text = GOOD.replace(
            "[[accounts]]\naddress = \"bob",
            "[[accounts]]\npasword = \"x\"\naddress = \"bob",
        );
        let e = parse(&text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.starts_with("test.toml:10:"), "{shown}");
        assert!(shown.contains("pasword"), "{shown}");
    }

    #[test]
    fn every_semantic_problem_is_reported_with_its_line() {
        let text = r#"hostname = "localhost"
data_dir = "relative/dir"
domains = ["example.org"]
[[accounts]]
address = "alice@other.example"
password = "hunter2"
[aliases]
"x@example.org" = "nobody@example.org"
[limits]
message_size = "lots"
command_timeout = "forever"
"#;
        let e = parse(text).unwrap_err();
        let lines: Vec<usize> = e.problems.iter().map(|p| p.line).collect();
        for expected in [1, 2, 5, 6, 8, 10, 11] {
            assert!(
                lines.contains(&expected),
                "no problem on line {expected}: {e}"
            );
        }
    }

    #[test]
    fn alias_loop_is_reported() {
        let text = r#"hostname = "mail.example.org"
data_dir = "/d"
domains = ["example.org"]
[[accounts]]
address = "alice@example.org"
[aliases]
"a@example.org" = "b@example.org"
"b@example.org" = "a@example.org"
"#;
        let e = parse(text).unwrap_err();
        assert!(e.to_string().contains("loop"), "{e}");
    }

    #[test]
    fn static_network_is_checked() {
        let ok = format!(
            "{GOOD}\n[network]\nmode = \"static\"\naddress = \"192.0.2.10/24\"\ngateway = \"192.0.2.1\"\ndns = [\"192.0.2.53\"]\n"
        );
        assert!(matches!(
            parse(&ok).unwrap().network,
            Network::Static { prefix: 24, .. }
        ));
        let bad = format!("{GOOD}\n[network]\nmode = \"static\"\naddress = \"192.0.2.10\"\n");
        assert!(
            parse(&bad)
                .unwrap_err()
                .to_string()
                .contains("ADDRESS/PREFIX")
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("50M"), Some(50 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn crypt_and_argon2_hashes_are_accepted_plain_text_is_not() {
        let text = GOOD.replace(
            "address = \"alice@example.org\"",
            "address = \"alice@example.org\"\npassword = \"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1\"",
        );
        assert!(parse(&text).is_ok());
    }
}
