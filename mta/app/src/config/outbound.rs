//! `[outbound]`, `[[relays]]`, `[[transports]]`, `[[sender_routes]]`:
//! how mail leaves.

use super::check::{Checker, address_or_domain, host_port};
use super::*;

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
}
