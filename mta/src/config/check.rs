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
