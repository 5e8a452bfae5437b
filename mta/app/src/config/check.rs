//! Checking the raw configuration: spans turned into lines and columns,
//! one problem per mistake with help, the sections that need more than a
//! line (outbound, network).

use super::*;

pub(super) struct Checker<'a> {
    pub(super) source: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.source[..offset.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, column)
    }

    pub(super) fn report(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<&str>,
    ) {
        let (line, column) = self.position(span.start);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
            help: help.map(str::to_string),
        });
    }

    pub(super) fn duration(
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

    pub(super) fn port(&mut self, value: &Option<Spanned<i64>>, default: u16) -> u16 {
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

    pub(super) fn count(
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

    pub(super) fn size(
        &mut self,
        value: &Option<Spanned<toml::Value>>,
        default: u64,
        name: &str,
    ) -> u64 {
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
pub(super) fn address_or_domain(text: &str) -> Option<String> {
    let t = text.trim();
    if t.contains('@') {
        Address::parse(t, true).ok().map(|a| a.key())
    } else {
        normalise_domain(t).ok().filter(|d| !d.starts_with('['))
    }
}

/// `host:port`, with the port required.
pub(super) fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok().filter(|p| *p > 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

impl Checker<'_> {
    pub(super) fn outbound(&mut self, raw: &RawConfig) -> Outbound {
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

    pub(super) fn network(&mut self, n: &RawNetwork) -> Network {
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

impl Checker<'_> {
    pub(super) fn limits(&mut self, l: &RawLimits) -> Limits {
        Limits {
            message_size: self.size(&l.message_size, 50 << 20, "message_size"),
            recipients: self.count(&l.recipients, 1000, 1, "recipients"),
            connections_per_ip: self.count(&l.connections_per_ip, 20, 1, "connections_per_ip"),
            connections: self.count(&l.connections, 500, 1, "connections"),
            command_timeout: self.duration(
                &l.command_timeout,
                Duration::from_secs(300),
                "command_timeout",
            ),
            data_timeout: self.duration(&l.data_timeout, Duration::from_secs(600), "data_timeout"),
            session_time: self.duration(&l.session_time, Duration::from_secs(3600), "session_time"),
            max_errors: self.count(&l.max_errors, 10, 1, "max_errors") as u32,
            greeting_delay: self.duration(&l.greeting_delay, Duration::ZERO, "greeting_delay"),
            min_free_space: self.size(&l.min_free_space, 64 << 20, "min_free_space"),
        }
    }

    pub(super) fn queue(&mut self, q: &RawQueue) -> QueuePolicy {
        QueuePolicy {
            retry_min: self.duration(&q.retry_min, Duration::from_secs(60), "retry_min"),
            retry_max: self.duration(&q.retry_max, Duration::from_secs(3600), "retry_max"),
            max_age: self.duration(&q.max_age, Duration::from_secs(5 * 86400), "max_age"),
            delay_warning: self.duration(
                &q.delay_warning,
                Duration::from_secs(4 * 3600),
                "delay_warning",
            ),
            delivery_workers: self.count(&q.delivery_workers, 8, 1, "delivery_workers"),
        }
    }

    /// The listeners (by default, port 25 on every address).
    pub(super) fn listeners(&mut self, list: Option<&[RawListener]>) -> Vec<Listener> {
        match list {
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
                            self.report(
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
                            self.report(
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
        }
    }

    pub(super) fn tls(&mut self, t: &RawTls) -> TlsFiles {
        for f in [&t.certificate, &t.key] {
            if !Path::new(f.get_ref()).is_absolute() {
                self.report(
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
    }
}

impl Checker<'_> {
    /// An address, or a problem reported for it.
    pub(super) fn address(&mut self, s: &Spanned<String>, what: &str) -> Option<Address> {
        match Address::parse(s.get_ref(), true) {
            Ok(a) => Some(a),
            Err(e) => {
                self.report(
                    s.span(),
                    format!("{what} {:?} is not an address: {e}", s.get_ref()),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn accounts(&mut self, raw: &[RawAccount], domains: &[String]) -> Vec<Account> {
        let mut accounts: Vec<Account> = Vec::new();
        for raw_account in raw {
            let Some(address) = self.address(&raw_account.address, "account") else {
                continue;
            };
            if !domains.iter().any(|d| d == address.domain()) {
                self.report(
                    raw_account.address.span(),
                    format!("account {address} is not in one of the domains"),
                    Some("add its domain to `domains` or fix the address"),
                );
            }
            let local = address.local().to_lowercase();
            if local.starts_with('.') || local.contains('/') || local.starts_with('"') {
                self.report(
                    raw_account.address.span(),
                    format!("account {address}: the local part cannot name a mail folder"),
                    Some("use letters, digits, dots, dashes and underscores"),
                );
            }
            if accounts.iter().any(|a| a.address.key() == address.key()) {
                self.report(
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
                        self.report(
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
                    self.report(
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
        accounts
    }

    /// The aliases, and where each is defined (for later problems).
    #[allow(clippy::type_complexity)]
    pub(super) fn aliases(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
        domains: &[String],
    ) -> (
        BTreeMap<String, Vec<Address>>,
        BTreeMap<String, Range<usize>>,
    ) {
        let mut aliases: BTreeMap<String, Vec<Address>> = BTreeMap::new();
        let mut alias_spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for (key, value) in raw {
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
                self.report(
                    key.span(),
                    format!("alias {key_text:?} is not an address or an @domain catch-all"),
                    None,
                );
                continue;
            };
            let domain = key_norm.rsplit('@').next().unwrap_or_default();
            if !domains.iter().any(|d| d == domain) {
                self.report(
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
                self.report(
                    value.span(),
                    format!("alias {key_text:?} has no targets"),
                    None,
                );
            }
            let mut targets = Vec::new();
            for (t, span) in texts {
                match Address::parse(&t, true) {
                    Ok(a) => targets.push(a),
                    Err(e) => self.report(
                        span,
                        format!("target {t:?} of alias {key_text:?} is not an address: {e}"),
                        Some("targets are full addresses: \"alice@example.org\" or a list of them"),
                    ),
                }
            }
            if aliases.contains_key(&key_norm) {
                self.report(
                    key.span(),
                    format!("alias {key_text:?} is defined twice"),
                    None,
                );
            }
            alias_spans.insert(key_norm.clone(), value.span());
            aliases.insert(key_norm, targets);
        }
        (aliases, alias_spans)
    }
}
