//! `[acme]`: certificates from Let's Encrypt (or another ACME CA).

use super::*;

/// Let's Encrypt's directories.
pub const PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

impl Checker<'_> {
    pub(super) fn acme(&mut self, a: &RawAcme, hostname: &str, has_tls: bool) -> Option<Acme> {
        let mut ok = true;
        if !*a.terms_accepted.get_ref() {
            self.report(
                a.terms_accepted.span(),
                "the CA's terms are not accepted: no certificate can be requested",
                Some("set `terms_accepted = true` after reading them (Let's Encrypt: https://letsencrypt.org/repository/), or remove [acme]"),
            );
            ok = false;
        }
        if has_tls {
            self.report(
                a.terms_accepted.span(),
                "[acme] and [tls] both say where the certificate comes from",
                Some("keep [tls] for a certificate you manage yourself, or [acme] for automatic ones"),
            );
            ok = false;
        }
        if hostname.ends_with(".local") || hostname.ends_with(".localhost") {
            self.report(
                a.terms_accepted.span(),
                format!("hostname {hostname:?} is not a public name a CA can check"),
                Some("set the host name your MX record points to before turning on [acme]"),
            );
            ok = false;
        }
        let contact = a.contact.as_ref().and_then(|c| {
            let address = self.address(c, "contact")?;
            Some(address.to_string())
        });
        if a.contact.is_some() && contact.is_none() {
            ok = false;
        }
        let directory = match a.directory.as_ref().map(|d| (d, d.get_ref().as_str())) {
            None | Some((_, "production")) => PRODUCTION.to_string(),
            Some((_, "staging")) => STAGING.to_string(),
            Some((_, url))
                if url.starts_with("https://")
                    && url.len() > "https://".len()
                    && !url.contains(char::is_whitespace) =>
            {
                url.to_string()
            }
            Some((d, other)) => {
                self.report(
                    d.span(),
                    format!("ACME directory {other:?} is neither a known one nor an https:// URL"),
                    Some("use \"production\", \"staging\" (Let's Encrypt's test CA) or the https:// URL of your CA's directory"),
                );
                ok = false;
                String::new()
            }
        };
        let ca = a.ca.as_ref().and_then(|c| {
            if Path::new(c.get_ref()).is_absolute() {
                Some(PathBuf::from(c.get_ref()))
            } else {
                self.report(
                    c.span(),
                    format!("{:?} is not an absolute path", c.get_ref()),
                    None,
                );
                None
            }
        });
        ok.then_some(Acme {
            contact,
            directory,
            ca,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    const BASE: &str = r#"
hostname = "mail.example.org"
data_dir = "/var/lib/mailbox"
domains = ["example.org", "example.net"]
[[accounts]]
address = "me@example.org"
"#;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), &format!("{BASE}{extra}"))
    }

    #[test]
    fn acme_is_on_only_with_the_terms_accepted() {
        let c = parse("[acme]\ncontact = \"me@example.org\"\nterms_accepted = true\n").unwrap();
        let acme = c.acme.unwrap();
        assert_eq!(acme.directory, super::PRODUCTION);
        assert_eq!(acme.contact.as_deref(), Some("me@example.org"));
        let e = parse("[acme]\nterms_accepted = false\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("t.toml:8:18: the CA's terms are not accepted"),
            "{e}"
        );
        assert!(parse("").unwrap().acme.is_none());
    }

    #[test]
    fn acme_directories_and_their_mistakes() {
        let c = parse("[acme]\nterms_accepted = true\ndirectory = \"staging\"\n").unwrap();
        assert_eq!(c.acme.unwrap().directory, super::STAGING);
        let c = parse(
            "[acme]\nterms_accepted = true\ndirectory = \"https://ca.internal/dir\"\nca = \"/etc/ca.pem\"\n",
        )
        .unwrap();
        let acme = c.acme.unwrap();
        assert_eq!(acme.directory, "https://ca.internal/dir");
        assert_eq!(acme.ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        let e =
            parse("[acme]\nterms_accepted = true\ndirectory = \"http://ca/dir\"\n").unwrap_err();
        assert!(e.to_string().contains("neither a known one"), "{e}");
        let e = parse("[acme]\nterms_accepted = true\ncontact = \"not an address\"\n").unwrap_err();
        assert!(e.to_string().contains("contact"), "{e}");
        let e = parse("[acme]\nterms_accepted = true\n[tls]\ncertificate = \"/c\"\nkey = \"/k\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("[acme] and [tls]"), "{e}");
        let local = "hostname = \"mailbox.local\"\ndata_dir = \"/d\"\ndomains = [\"mailbox.local\"]\n[[accounts]]\naddress = \"a@mailbox.local\"\n[acme]\nterms_accepted = true\n";
        let e = Config::parse(Path::new("t.toml"), local).unwrap_err();
        assert!(e.to_string().contains("not a public name"), "{e}");
    }

    #[test]
    fn the_certificate_covers_the_names_clients_and_mta_sts_use() {
        let c = parse("").unwrap();
        assert_eq!(
            c.certificate_names(),
            [
                "mail.example.org",
                "mta-sts.example.org",
                "autoconfig.example.org",
                "autodiscover.example.org",
                "mta-sts.example.net",
                "autoconfig.example.net",
                "autodiscover.example.net",
            ]
        );
    }
}
