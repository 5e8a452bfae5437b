//! The one configuration file: parsing, defaults and validation.
//!
//! Every problem is reported with the file, the line and what to do about it,
//! and all problems are reported at once (`mta check-config`). Unknown keys are
//! errors: a typo must not silently turn a setting off.
//!
//! The raw file (`raw.rs`) is checked section by section, a file each
//! (addressing, limits, listeners, network, outbound) into the [`Config`]
//! the server runs on. The file is written only through [`edit`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::password::PasswordHash;
use mta_proto::address::{Address, normalise_domain};

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
    /// Certificates from an ACME CA (off: `[tls]` files or self-signed).
    pub acme: Option<Acme>,
    pub network: Network,
    pub submission: SubmissionPolicy,
    pub inbound: InboundPolicy,
    pub outbound: Outbound,
    pub update: UpdatePolicy,
}

/// `[update]`: the key updates must be signed with and the board they must
/// be for, when not the image's; where to look for new versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdatePolicy {
    pub public_key: Option<[u8; 32]>,
    pub board: Option<String>,
    /// A directory (http or https, ending in `/`) holding the newest
    /// bundle and its signed manifest (`cargo xtask bundle --publish`).
    pub url: Option<String>,
    /// How often the URL is asked.
    pub check_every: std::time::Duration,
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

/// What port 25 checks of mail from strangers (`crate::inbound`).
#[derive(Debug, Clone)]
pub struct InboundPolicy {
    /// SPF, DKIM, ARC and DMARC, with an `Authentication-Results:` field
    /// (on unless turned off, for a benchmark without them, say).
    pub authenticate: bool,
    /// postscreen's pregreet test: how long the greeting's last line waits
    /// after its first (`220-`); a client that talks meanwhile is refused.
    /// Zero: no test.
    pub pregreet: Duration,
    /// How long a new (network, sender, recipient) triplet is greylisted
    /// (`crate::inbound::greylist`); zero: no greylisting.
    pub greylist: Duration,
    /// Clients that skip the pregreet test, DNSBLs, the sanity checks and
    /// greylisting (Postfix's `mynetworks`): loopback and the private
    /// ranges by default — the printer on the LAN, not the internet behind
    /// the router's port forward.
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// DNS blocklists with their weights (`crate::inbound::dnsbl`).
    pub dnsbl: Vec<DnsblZone>,
    /// The score at which a client may not send mail.
    pub dnsbl_threshold: i32,
    /// Clients never refused for a listing (a friend's server on a shared
    /// address), besides the trusted networks.
    pub dnsbl_allow: Vec<ipnet::IpNet>,
    /// HELO and sender sanity (`crate::inbound::sanity`).
    pub sender_sanity: bool,
}

impl InboundPolicy {
    /// Whether `ip` is one of [`InboundPolicy::trusted_networks`].
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_networks.iter().any(|n| n.contains(&ip))
    }

    /// Whether `ip`'s listings are looked up at all.
    pub fn checks_dnsbl(&self, ip: std::net::IpAddr) -> bool {
        let canonical = ip.to_canonical();
        !self.dnsbl.is_empty()
            && !self.trusts(ip)
            && !self.dnsbl_allow.iter().any(|n| n.contains(&canonical))
    }
}

/// One DNS blocklist of `[inbound] dnsbl`: `zone[=answer][*weight]`
/// (`crate::inbound::dnsbl` asks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsblZone {
    pub name: String,
    /// The one answer that counts, if not any.
    pub answer: Option<std::net::Ipv4Addr>,
    pub weight: i32,
}

impl std::str::FromStr for DnsblZone {
    type Err = String;

    fn from_str(text: &str) -> Result<DnsblZone, String> {
        let text = text.trim();
        let (rest, weight) = match text.rsplit_once('*') {
            Some((rest, w)) => (
                rest,
                w.trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|w| (-100..=100).contains(w))
                    .ok_or_else(|| format!("the weight {w:?} is not a number from -100 to 100"))?,
            ),
            None => (text, 1),
        };
        let (name, answer) = match rest.split_once('=') {
            Some((name, answer)) => (
                name,
                Some(
                    answer
                        .trim()
                        .parse::<std::net::Ipv4Addr>()
                        .map_err(|_| format!("the answer {answer:?} is not an IPv4 address"))?,
                ),
            ),
            None => (rest, None),
        };
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = name.contains('.')
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(format!("{name:?} is not a DNS zone"));
        }
        Ok(DnsblZone {
            name,
            answer,
            weight,
        })
    }
}

/// The default DNS blocklists, as postscreen's documentation has them:
/// Spamhaus ZEN alone refuses a client, SpamCop alone does not.
pub const DNSBL: [&str; 2] = ["zen.spamhaus.org*3", "bl.spamcop.net*2"];

/// The default [`InboundPolicy::trusted_networks`].
pub const TRUSTED_NETWORKS: [&str; 7] = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

/// The default pregreet wait: spam engines that do not read multi-line
/// replies talk at once; an MTA waits for the last line, and is not kept
/// waiting again for a day (`crate::inbound::pregreet`).
pub const PREGREET: Duration = Duration::from_secs(2);

impl Default for InboundPolicy {
    fn default() -> Self {
        InboundPolicy {
            authenticate: true,
            pregreet: PREGREET,
            greylist: Duration::from_secs(300),
            trusted_networks: TRUSTED_NETWORKS
                .iter()
                .map(|n| n.parse().expect("a network"))
                .collect(),
            dnsbl: DNSBL.iter().map(|z| z.parse().expect("a zone")).collect(),
            dnsbl_threshold: 3,
            dnsbl_allow: Vec::new(),
            sender_sanity: true,
        }
    }
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
    /// Simultaneous connections from one client network (/24, /64).
    pub connections_per_network: usize,
    pub connections: usize,
    /// New SMTP connections per minute from one client network (0: no
    /// limit); trusted networks are not counted.
    pub connection_rate: usize,
    /// Messages (`MAIL` commands) per minute from one client network on
    /// port 25 (0: no limit); trusted networks are not counted.
    pub message_rate: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// The longest a connection may last, however busy.
    pub session_time: Duration,
    pub max_errors: u32,
    /// Errors after which each reply waits `error_delay` (tarpitting, as
    /// Postfix's `smtpd_soft_error_limit` and `smtpd_error_sleep_time`).
    pub soft_errors: u32,
    pub error_delay: Duration,
    pub min_free_space: u64,
    /// What each account's mail may take (bytes; 0: no limit) unless the
    /// account says otherwise.
    pub quota: u64,
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

pub use mta_proto::smtp::session::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub service: Service,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// SMTP in one of its roles (25, 587, 465).
    Smtp(Role),
    /// The web over plain HTTP (80): the wizard until the appliance is
    /// claimed, then a redirect to HTTPS (and ACME challenges, later).
    Http,
    /// The web over TLS (443), with the certificate SMTP uses.
    Https,
    /// IMAP: STARTTLS required before login (143), or TLS from the first
    /// byte (993).
    Imap { implicit_tls: bool },
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp(role) => role.name(),
            Service::Http => "http",
            Service::Https => "https",
            Service::Imap {
                implicit_tls: false,
            } => "imap",
            Service::Imap { implicit_tls: true } => "imaps",
        }
    }
}

/// Where certificates come from when ACME is on (`[acme]`, with its terms
/// accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The address the CA may write to about the certificates.
    pub contact: Option<String>,
    /// The ACME directory URL (Let's Encrypt's production one by default).
    pub directory: String,
    /// Extra trust anchors (PEM) for the directory's HTTPS: private CAs,
    /// tests.
    pub ca: Option<PathBuf>,
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

mod acme;
mod update;
pub use update::parse_key;
mod addressing;
mod check;
mod edit;
mod limits;
mod listeners;
mod network;
mod outbound;
mod raw;

use check::Checker;
pub use edit::edit;
use raw::*;

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

        let hostname = ck.hostname(&raw.hostname);
        let data_dir = ck.data_dir(&raw.data_dir);
        let domains = ck.domains(&raw.domains);
        let recipient_delimiter = ck.recipient_delimiter(raw.recipient_delimiter.as_ref());
        let accounts = ck.accounts(&raw.accounts, &domains);
        let postmaster = raw
            .postmaster
            .as_ref()
            .and_then(|p| ck.address(p, "postmaster"));

        let (aliases, alias_spans) = ck.aliases(&raw.aliases, &domains);
        let limits = ck.limits(&raw.limits);
        let queue = ck.queue(&raw.queue);

        let listeners = ck.listeners(raw.listeners.as_deref());

        let tls = raw.tls.as_ref().map(|t| ck.tls(t));
        let acme = raw
            .acme
            .as_ref()
            .and_then(|a| ck.acme(a, &hostname, raw.tls.is_some()));

        let network = match &raw.network {
            None => Network::Dhcp,
            Some(n) => ck.network(n),
        };

        let outbound = ck.outbound(&raw);
        let update = ck.update(raw.update.as_ref());

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
            acme,
            network,
            submission: SubmissionPolicy {
                trace_user: raw.submission.trace_user.unwrap_or(false),
            },
            inbound: InboundPolicy {
                authenticate: raw.inbound.authenticate.unwrap_or(true),
                pregreet: ck.pregreet(&raw.inbound, &raw.limits),
                greylist: ck.greylist(&raw.inbound),
                trusted_networks: ck
                    .networks(&raw.inbound.trusted_networks, "trusted_networks")
                    .unwrap_or_else(|| InboundPolicy::default().trusted_networks),
                dnsbl: ck.dnsbl(&raw.inbound),
                dnsbl_threshold: ck.count(&raw.inbound.dnsbl_threshold, 3, 1, "dnsbl_threshold")
                    as i32,
                dnsbl_allow: ck
                    .networks(&raw.inbound.dnsbl_allow, "dnsbl_allow")
                    .unwrap_or_default(),
                sender_sanity: raw.inbound.sender_sanity.unwrap_or(true),
            },
            outbound,
            update,
        };
        ck.whole_picture(&config, &raw, &alias_spans);

        if ck.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                path: path.to_path_buf(),
                problems: ck.problems,
            })
        }
    }

    /// The owner: the account with the admin role. Without one the
    /// appliance is unclaimed and serves the setup wizard.
    pub fn owner(&self) -> Option<&Account> {
        self.accounts.iter().find(|a| a.admin)
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
            quota: self.limits.quota,
            routed: self
                .outbound
                .transports
                .iter()
                .filter(|(_, t)| !matches!(t, Transport::Local))
                .map(|(k, _)| k.clone())
                .collect(),
        })
    }

    /// Whether mail can be read here (an IMAP listener).
    pub fn serves_imap(&self) -> bool {
        self.listeners
            .iter()
            .any(|l| matches!(l.service, Service::Imap { .. }))
    }

    /// The names the certificate is for: the host name, and the names
    /// each domain's clients and MTA-STS reach this server by (as the DNS
    /// page asks to publish them).
    /// Internationalised names in their ASCII (punycode) form, as CAs
    /// and certificates have them.
    pub fn certificate_names(&self) -> Vec<String> {
        let ascii = |name: &str| idna::domain_to_ascii(name).unwrap_or_else(|_| name.to_string());
        let mut names = vec![ascii(&self.hostname)];
        for domain in &self.domains {
            for prefix in ["mta-sts", "autoconfig", "autodiscover"] {
                let name = ascii(&format!("{prefix}.{domain}"));
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
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
    fn an_allow_list_takes_addresses_and_domains_and_names_what_it_cannot() {
        let text = GOOD.replace(
            "address = \"bob@example.net\"",
            "address = \"bob@example.net\"\nallow = [\"Friend@Example.COM\", \"*@a.example\", \"@b.example\", \"C.Example\"]",
        );
        let d = parse(&text).unwrap().directory();
        for sender in [
            "friend@example.com",
            "x@a.example",
            "Y@B.example",
            "z@c.example",
        ] {
            assert!(d.allows("bob@example.net", &[sender]), "{sender}");
        }
        for sender in [
            "other@example.com",
            "x@sub.a.example",
            "friend@example.com.evil",
        ] {
            assert!(!d.allows("bob@example.net", &[sender]), "{sender}");
        }
        // Any of the senders given (envelope and From field); no one else's list.
        assert!(d.allows("bob@example.net", &["x@y.example", "friend@example.com"]));
        assert!(!d.allows("alice@example.org", &["friend@example.com"]));
        let e = parse(&GOOD.replace(
            "address = \"bob@example.net\"",
            "address = \"bob@example.net\"\nallow = [\"not an address\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("allow \"not an address\" is not an address or a domain"),
            "{e}"
        );
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let c = parse(include_str!("../../config.example.toml")).unwrap();
        assert!(c.directory().allows("bob@example.org", &["x@club.example"]));
    }

    #[test]
    fn pregreet_is_on_by_default_and_bounded() {
        assert_eq!(parse(GOOD).unwrap().inbound.pregreet, PREGREET);
        let off = parse(&format!("{GOOD}[inbound]\npregreet = \"0s\"\n")).unwrap();
        assert!(off.inbound.pregreet.is_zero());
        let old = parse(&format!("{GOOD}[limits]\ngreeting_delay = \"5s\"\n")).unwrap();
        assert_eq!(old.inbound.pregreet, Duration::from_secs(5));
        let e = parse(&format!("{GOOD}[inbound]\npregreet = \"5m\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than a minute"), "{e}");
    }

    #[test]
    fn trusted_networks_and_greylisting_have_defaults_and_are_checked() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.inbound.greylist, Duration::from_secs(300));
        for ip in [
            "127.0.0.1",
            "::1",
            "192.168.1.20",
            "10.0.2.2",
            "::ffff:172.16.0.1",
            "fd00::1",
        ] {
            assert!(c.inbound.trusts(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.0.2.1", "2001:db8::1", "100.64.0.1"] {
            assert!(!c.inbound.trusts(ip.parse().unwrap()), "{ip}");
        }
        let c = parse(&format!(
            "{GOOD}[inbound]\ntrusted_networks = [\"203.0.113.7\", \"2001:db8::/32\"]\ngreylist = \"0s\"\n"
        ))
        .unwrap();
        assert!(c.inbound.trusts("203.0.113.7".parse().unwrap()));
        assert!(c.inbound.trusts("2001:db8:1::1".parse().unwrap()));
        assert!(!c.inbound.trusts("127.0.0.1".parse().unwrap()));
        assert!(c.inbound.greylist.is_zero());
        let e = parse(&format!(
            "{GOOD}[inbound]\ntrusted_networks = [\"the lan\"]\ngreylist = \"2d\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"the lan\" is not an address or a network"),
            "{e}"
        );
        assert!(e.contains("longer than a day"), "{e}");
        assert_eq!(
            parse(GOOD).unwrap().inbound.dnsbl.len(),
            2,
            "Spamhaus ZEN and SpamCop by default"
        );
        let e = parse(&format!(
            "{GOOD}[inbound]\ndnsbl = [\"zen.spamhaus.org*lots\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not a number from -100 to 100"), "{e}");
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
