//! `[network]`: DHCP or a static address (init reads it at boot).

use super::check::Checker;
use super::*;

impl Checker<'_> {
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
