//! The DNS records a domain needs for mail to and from this appliance, as
//! the owner must publish them: what the DNS page shows and what the DNS
//! check compares with what resolvers answer.

use crate::config::Config;
use crate::dkim::Keys;

/// What a record is for, in the order the page shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Mail for the domain reaches us (MX, the host's address).
    Receive,
    /// Mail from the domain is believed (SPF, DKIM, DMARC).
    Authenticate,
    /// Mail to the domain is encrypted (MTA-STS, TLS-RPT, CAA).
    Secure,
    /// Mail programs find the server (SRV, autoconfig).
    Clients,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name, absolute, without the trailing dot.
    pub name: String,
    /// `MX`, `A`, `TXT` …
    pub kind: &'static str,
    /// The record's value as a zone file writes it; for A and AAAA a
    /// description of the address (the appliance cannot know the public
    /// one behind a router).
    pub value: String,
    /// The value as a DNS provider's form wants it (TXT without the quotes
    /// and the splitting into strings).
    pub plain: String,
    pub purpose: Purpose,
    /// Why the record is there, for a person.
    pub why: &'static str,
    /// A record only to ask for (the PTR is the address owner's).
    pub ask_isp: bool,
}

impl Record {
    /// The record as one zone-file line.
    pub fn zone_line(&self) -> String {
        format!("{}. 3600 IN {} {}", self.name, self.kind, self.value)
    }
}

/// A TXT value as zone-file strings of at most 255 octets each.
fn txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every record for `domain` (one of the configuration's), DKIM from the
/// domain's keys (made when missing).
pub fn for_domain(config: &Config, keys: &Keys, domain: &str) -> anyhow::Result<Vec<Record>> {
    let host = &config.hostname;
    let report_to = config
        .owner()
        .map(|o| o.address.key())
        .unwrap_or_else(|| format!("postmaster@{domain}"));
    let record = |name: String, kind, plain: String, purpose, why| Record {
        name,
        kind,
        value: if kind == "TXT" {
            txt(&plain)
        } else {
            plain.clone()
        },
        plain,
        purpose,
        why,
        ask_isp: false,
    };
    let mut out = vec![
        record(
            domain.to_string(),
            "MX",
            format!("10 {host}."),
            Purpose::Receive,
            "Mail for the domain is delivered to this server.",
        ),
        record(
            host.clone(),
            "A",
            "(this appliance's public IPv4 address)".into(),
            Purpose::Receive,
            "The server's address, as the Internet reaches it (your router's public address, with ports 25, 80, 443, 465 and 587 forwarded).",
        ),
        record(
            host.clone(),
            "AAAA",
            "(this appliance's public IPv6 address, if it has one)".into(),
            Purpose::Receive,
            "The server's IPv6 address, if your connection has IPv6; otherwise leave it out.",
        ),
        record(
            domain.to_string(),
            "TXT",
            spf(config),
            Purpose::Authenticate,
            "SPF: only this server (and the relay, if any) sends mail for the domain.",
        ),
    ];
    for key in keys.of(domain)?.iter() {
        out.push(record(
            format!("{}._domainkey.{domain}", key.selector),
            "TXT",
            key.record()?,
            Purpose::Authenticate,
            "DKIM: the public key that verifies this server's signatures.",
        ));
    }
    out.push(record(
        format!("_dmarc.{domain}"),
        "TXT",
        format!("v=DMARC1; p=quarantine; rua=mailto:{report_to}"),
        Purpose::Authenticate,
        "DMARC: receivers put mail that fails SPF and DKIM in spam, and send reports to you.",
    ));
    out.push(record(
        format!("mta-sts.{domain}"),
        "CNAME",
        format!("{host}."),
        Purpose::Secure,
        "MTA-STS: the name the policy is served at (by this server).",
    ));
    out.push(record(
        format!("_mta-sts.{domain}"),
        "TXT",
        "v=STSv1; id=1".into(),
        Purpose::Secure,
        "MTA-STS: senders must use TLS to this server (raise the id when the policy changes).",
    ));
    out.push(record(
        format!("_smtp._tls.{domain}"),
        "TXT",
        format!("v=TLSRPTv1; rua=mailto:{report_to}"),
        Purpose::Secure,
        "TLS-RPT: senders report TLS problems to you.",
    ));
    out.push(record(
        domain.to_string(),
        "CAA",
        "0 issue \"letsencrypt.org\"".into(),
        Purpose::Secure,
        "Only Let's Encrypt may issue certificates for the domain.",
    ));
    // The standard ports: what the Internet sees (the router forwards
    // them), whatever this machine binds.
    out.push(record(
        format!("_submissions._tcp.{domain}"),
        "SRV",
        format!("0 1 465 {host}."),
        Purpose::Clients,
        "Mail programs find where to send mail (TLS, RFC 8314).",
    ));
    out.push(record(
        format!("_submission._tcp.{domain}"),
        "SRV",
        format!("0 1 587 {host}."),
        Purpose::Clients,
        "Mail programs find where to send mail (STARTTLS, RFC 6186).",
    ));
    if config.serves_imap() {
        out.push(record(
            format!("_imaps._tcp.{domain}"),
            "SRV",
            format!("0 1 993 {host}."),
            Purpose::Clients,
            "Mail programs find where to read mail (IMAP over TLS, RFC 8314).",
        ));
        out.push(record(
            format!("_imap._tcp.{domain}"),
            "SRV",
            format!("10 1 143 {host}."),
            Purpose::Clients,
            "Mail programs find where to read mail (IMAP with STARTTLS, RFC 6186).",
        ));
    }
    for name in ["autoconfig", "autodiscover"] {
        out.push(record(
            format!("{name}.{domain}"),
            "CNAME",
            format!("{host}."),
            Purpose::Clients,
            "Mail programs set themselves up from this server.",
        ));
    }
    out.push(Record {
        name: "(your public IPv4 address, reversed)".into(),
        kind: "PTR",
        value: format!("{host}."),
        plain: format!("{host}."),
        purpose: Purpose::Receive,
        why: "Ask your Internet provider to set the reverse DNS of your address to the host name: many receivers refuse mail without it.",
        ask_isp: true,
    });
    Ok(out)
}

/// The SPF policy: this domain's MX hosts, and the relay if mail leaves
/// through one.
pub fn spf(config: &Config) -> String {
    let relay = config
        .outbound
        .smarthost
        .as_ref()
        .and_then(|name| config.outbound.relays.iter().find(|r| &r.name == name));
    match relay {
        Some(r) => format!("v=spf1 mx a:{} -all", r.host),
        None => "v=spf1 mx -all".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_domain_gets_every_record_with_its_dkim_keys() {
        let t = tempfile::tempdir().unwrap();
        let text = format!(
            "hostname = \"mail.example.org\"\ndata_dir = \"{}\"\ndomains = [\"example.org\"]\n[[accounts]]\naddress = \"owner@example.org\"\npassword = \"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5\"\nadmin = true\n",
            t.path().display()
        );
        let config = Config::parse(Path::new("t.toml"), &text).unwrap();
        let keys = Keys::new(&config.data_dir);
        let records = for_domain(&config, &keys, "example.org").unwrap();
        let find = |name: &str, kind: &str| {
            records
                .iter()
                .find(|r| r.name == name && r.kind == kind)
                .unwrap_or_else(|| panic!("no {kind} at {name}: {records:#?}"))
        };
        assert_eq!(find("example.org", "MX").value, "10 mail.example.org.");
        assert_eq!(find("example.org", "TXT").value, "\"v=spf1 mx -all\"");
        assert!(
            find("_dmarc.example.org", "TXT")
                .value
                .contains("rua=mailto:owner@example.org")
        );
        let dkim: Vec<_> = records
            .iter()
            .filter(|r| r.name.ends_with("._domainkey.example.org"))
            .collect();
        assert_eq!(dkim.len(), 2, "Ed25519 and RSA");
        assert!(dkim.iter().any(|r| r.value.contains("k=ed25519")));
        assert_eq!(
            find("_submissions._tcp.example.org", "SRV").value,
            "0 1 465 mail.example.org."
        );
        assert!(find("(your public IPv4 address, reversed)", "PTR").ask_isp);
        assert!(records.iter().all(|r| !r.zone_line().contains('\n')));
    }
}
