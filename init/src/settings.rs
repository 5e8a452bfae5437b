//! What init reads from the configuration (`hostname`, `[network]`) and the
//! kernel command line. The mail server validates the same file fully; init
//! is lenient and falls back to DHCP when something is off, so a typo never
//! makes the appliance unreachable.

use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::console::log;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressing {
    Dhcp,
    Static {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        dns: Vec<Ipv4Addr>,
    },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub hostname: String,
    pub addressing: Addressing,
    pub ntp: Vec<String>,
}

#[derive(Default)]
struct Raw {
    hostname: Option<String>,
    network: Option<RawNetwork>,
}

#[derive(Deserialize, Default)]
struct RawNetwork {
    mode: Option<String>,
    address: Option<String>,
    gateway: Option<String>,
    dns: Option<Vec<String>>,
    ntp: Option<Vec<String>>,
}

impl Settings {
    pub fn load() -> Settings {
        let text = std::fs::read_to_string(crate::CONFIG)
            .or_else(|_| std::fs::read_to_string("/etc/mailbox/mailbox.toml"))
            .unwrap_or_default();
        Settings::parse(&text)
    }

    pub fn parse(text: &str) -> Settings {
        // Only our keys are read; the rest of the file belongs to mta.
        let raw: Raw = match toml::from_str::<toml::Table>(text) {
            Ok(table) => {
                let hostname = table
                    .get("hostname")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                let network = table
                    .get("network")
                    .cloned()
                    .and_then(|v| v.try_into::<RawNetwork>().ok());
                Raw { hostname, network }
            }
            Err(e) => {
                log!("{}: {e}; using defaults", crate::CONFIG);
                Raw::default()
            }
        };
        let net = raw.network.unwrap_or_default();
        let addressing = match net.mode.as_deref() {
            Some("static") => match static_addressing(&net) {
                Some(a) => a,
                None => {
                    log!("[network] static settings are incomplete or malformed; using DHCP");
                    Addressing::Dhcp
                }
            },
            _ => Addressing::Dhcp,
        };
        Settings {
            hostname: raw.hostname.unwrap_or_else(|| "mailbox.local".into()),
            addressing,
            ntp: net.ntp.unwrap_or_else(|| vec!["pool.ntp.org".into()]),
        }
    }
}

fn static_addressing(net: &RawNetwork) -> Option<Addressing> {
    let (ip, prefix) = net.address.as_deref()?.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some(Addressing::Static {
        address: ip.parse().ok()?,
        prefix,
        gateway: match &net.gateway {
            Some(g) => Some(g.parse().ok()?),
            None => None,
        },
        dns: net
            .dns
            .clone()
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect(),
    })
}

/// The running version (from os-release, written by the image build).
pub fn version() -> String {
    image::update::os_release("VERSION").unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

/// The boot slot this kernel came from (`mailbox.slot=` on the command line).
pub fn slot() -> Option<String> {
    cmdline_value("mailbox.slot")
}

fn cmdline_value(key: &str) -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_by_default_static_when_complete() {
        let s =
            Settings::parse("hostname = \"mail.example.org\"\n[[accounts]]\naddress = \"a@b.c\"\n");
        assert_eq!(s.hostname, "mail.example.org");
        assert_eq!(s.addressing, Addressing::Dhcp);
        let s = Settings::parse(
            "[network]\nmode = \"static\"\naddress = \"192.0.2.10/24\"\ngateway = \"192.0.2.1\"\ndns = [\"192.0.2.53\"]\n",
        );
        assert_eq!(
            s.addressing,
            Addressing::Static {
                address: "192.0.2.10".parse().unwrap(),
                prefix: 24,
                gateway: Some("192.0.2.1".parse().unwrap()),
                dns: vec!["192.0.2.53".parse().unwrap()],
            }
        );
        let broken = Settings::parse("[network]\nmode = \"static\"\naddress = \"192.0.2.10\"\n");
        assert_eq!(broken.addressing, Addressing::Dhcp);
    }
}
