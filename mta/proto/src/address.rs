//! Mail addresses as they appear in SMTP paths (RFC 5321 §4.1.2) and in the
//! configuration.
//!
//! This module only parses and normalises; deciding whether an address is ours
//! is the directory's job (`mta-app`). Parsing is strict on purpose: source routes,
//! `%`/`!` routing and quoted local parts that hide an `@` are classic ways to
//! turn a mail server into an open relay, so they are reported as their own
//! error kinds and the SMTP session refuses them.

use std::fmt;

/// RFC 5321 §4.5.3.1.2: a domain is at most 255 octets.
pub const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3: a path, brackets included, is at most 256 octets.
pub const MAX_PATH: usize = 256;

/// A mailbox: `local@domain`. The domain is kept in lower case; the local part
/// is kept as the sender wrote it (lookups fold case themselves).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: String,
    domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the path is not enclosed in angle brackets")]
    NotBracketed,
    #[error("source routes (@host,@host:user@domain) are not accepted")]
    SourceRoute,
    #[error("the address has no @domain part")]
    NoDomain,
    #[error("the local part is empty or malformed")]
    BadLocalPart,
    #[error("the domain is malformed")]
    BadDomain,
    #[error("the address is too long")]
    TooLong,
    #[error("the address contains non-ASCII characters but SMTPUTF8 was not requested")]
    NeedsUtf8,
    #[error("routing characters (% or !) in the local part are not accepted")]
    RoutingCharacters,
    #[error("a quoted local part may not contain @")]
    QuotedAt,
}

impl Address {
    /// Parses `local@domain` (no brackets). `utf8` allows non-ASCII (RFC 6531).
    pub fn parse(text: &str, utf8: bool) -> Result<Address, AddressError> {
        if text.len() > MAX_PATH - 2 {
            return Err(AddressError::TooLong);
        }
        if !utf8 && !text.is_ascii() {
            return Err(AddressError::NeedsUtf8);
        }
        let (local, domain) = split_mailbox(text)?;
        // RFC 5321 §4.5.3.1.1 allows a local part 64 octets, but §4.5.3.1
        // asks for no limits where possible, and rewritten senders (SRS,
        // VERP) are often longer: Postfix takes them, and so do we, within
        // the path's 256.
        if local.is_empty() {
            return Err(AddressError::BadLocalPart);
        }
        check_local_part(local)?;
        let domain = normalise_domain(domain)?;
        Ok(Address {
            local: local.to_string(),
            domain,
        })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The lower-case form used as a lookup key.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }

    /// The local part contains a relay trick (`%`, `!`, or a quoted `@`).
    /// Harmless for a sender, refused for a recipient.
    pub fn routing_trick(&self) -> Option<AddressError> {
        if self.local.starts_with('"') && self.local.contains('@') {
            return Some(AddressError::QuotedAt);
        }
        if self.local.contains('%') || self.local.contains('!') {
            return Some(AddressError::RoutingCharacters);
        }
        None
    }

    pub fn with_local(&self, local: &str) -> Address {
        Address {
            local: local.to_string(),
            domain: self.domain.clone(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// The argument of `MAIL FROM:` or `RCPT TO:` up to the closing `>`, and what
/// follows it (the ESMTP parameters).
pub struct PathArg<'a> {
    /// `None` for the null path `<>`.
    pub address: Option<&'a str>,
    pub params: &'a str,
}

/// Splits `<path> params`. Rejects source routes.
pub fn split_path(arg: &str) -> Result<PathArg<'_>, AddressError> {
    let arg = arg.trim_start();
    let rest = arg.strip_prefix('<').ok_or(AddressError::NotBracketed)?;
    // Find the closing bracket outside any quoted string.
    let mut quoted = false;
    let mut escaped = false;
    let mut end = None;
    for (i, c) in rest.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.ok_or(AddressError::NotBracketed)?;
    let inner = &rest[..end];
    let params = rest[end + 1..].trim();
    if inner.len() + 2 > MAX_PATH {
        return Err(AddressError::TooLong);
    }
    if inner.starts_with('@') {
        return Err(AddressError::SourceRoute);
    }
    Ok(PathArg {
        address: if inner.is_empty() { None } else { Some(inner) },
        params,
    })
}

fn split_mailbox(text: &str) -> Result<(&str, &str), AddressError> {
    if text.starts_with('"') {
        // Quoted string: find the closing quote honouring backslash escapes.
        let bytes = text.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        if i >= bytes.len() {
            return Err(AddressError::BadLocalPart);
        }
        let local = &text[..=i];
        let rest = &text[i + 1..];
        let domain = rest.strip_prefix('@').ok_or(AddressError::NoDomain)?;
        Ok((local, domain))
    } else {
        let at = text.rfind('@').ok_or(AddressError::NoDomain)?;
        Ok((&text[..at], &text[at + 1..]))
    }
}

fn check_local_part(local: &str) -> Result<(), AddressError> {
    if let Some(inner) = local.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or(AddressError::BadLocalPart)?;
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) if (' '..='~').contains(&e) => {}
                    _ => return Err(AddressError::BadLocalPart),
                },
                c if c.is_control() => return Err(AddressError::BadLocalPart),
                _ => {}
            }
        }
        if inner.contains('@') {
            return Err(AddressError::QuotedAt);
        }
        return Ok(());
    }
    // Dot-string: atoms separated by single dots.
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::BadLocalPart);
    }
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~.".contains(c)
            || (!c.is_ascii() && !c.is_control())
    };
    if local.chars().all(atext) {
        Ok(())
    } else {
        Err(AddressError::BadLocalPart)
    }
}

/// Validates and lower-cases a domain or an address literal (`[192.0.2.1]`,
/// `[IPv6:…]`).
pub fn normalise_domain(domain: &str) -> Result<String, AddressError> {
    if domain.is_empty() {
        return Err(AddressError::NoDomain);
    }
    if domain.len() > MAX_DOMAIN {
        return Err(AddressError::TooLong);
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal.strip_suffix(']').ok_or(AddressError::BadDomain)?;
        let ok = if let Some(v6) = literal
            .strip_prefix("IPv6:")
            .or_else(|| literal.strip_prefix("ipv6:"))
        {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            literal.parse::<std::net::Ipv4Addr>().is_ok()
        };
        return if ok {
            Ok(domain.to_ascii_lowercase())
        } else {
            Err(AddressError::BadDomain)
        };
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    for label in domain.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
            });
        if !valid {
            return Err(AddressError::BadDomain);
        }
    }
    Ok(domain.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_address_parses_and_lowercases_domain() {
        let a = Address::parse("Alice@Example.ORG", false).unwrap();
        assert_eq!(a.local(), "Alice");
        assert_eq!(a.domain(), "example.org");
        assert_eq!(a.key(), "alice@example.org");
    }

    #[test]
    fn source_route_is_rejected() {
        assert_eq!(
            split_path("<@relay.example:bob@example.org>").err(),
            Some(AddressError::SourceRoute)
        );
    }

    #[test]
    fn null_path_and_params_split() {
        let p = split_path("<> SIZE=100").unwrap();
        assert!(p.address.is_none());
        assert_eq!(p.params, "SIZE=100");
    }

    #[test]
    fn closing_bracket_inside_quotes_is_not_the_end() {
        let p = split_path("<\"a>b\"@example.org>").unwrap();
        assert_eq!(p.address, Some("\"a>b\"@example.org"));
    }

    #[test]
    fn quoted_local_part_hiding_an_at_is_refused() {
        assert_eq!(
            Address::parse("\"bob@evil.example\"@example.org", false).err(),
            Some(AddressError::QuotedAt)
        );
    }

    #[test]
    fn percent_and_bang_are_routing_tricks() {
        let a = Address::parse("bob%evil.example@example.org", false).unwrap();
        assert_eq!(a.routing_trick(), Some(AddressError::RoutingCharacters));
        let b = Address::parse("evil.example!bob@example.org", false).unwrap();
        assert_eq!(b.routing_trick(), Some(AddressError::RoutingCharacters));
    }

    #[test]
    fn non_ascii_needs_smtputf8() {
        assert_eq!(
            Address::parse("jöran@example.org", false).err(),
            Some(AddressError::NeedsUtf8)
        );
        assert!(Address::parse("jöran@exämple.org", true).is_ok());
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "@example.org",
            "a..b@example.org",
            ".a@example.org",
            "a@",
            "a@-x.org",
            "a@x..org",
            "a b@example.org",
            "a@[300.1.1.1]",
        ] {
            assert!(
                Address::parse(bad, false).is_err(),
                "{bad} should be rejected"
            );
        }
        // A local part past RFC 5321's 64 octets is taken (SRS senders
        // are), a path past its 256 is not.
        let long = format!("{}@example.org", "a".repeat(65));
        assert!(Address::parse(&long, false).is_ok());
        let too_long = format!("{}@example.org", "a".repeat(243));
        assert_eq!(
            Address::parse(&too_long, false).err(),
            Some(AddressError::TooLong)
        );
    }

    #[test]
    fn address_literals_are_accepted() {
        assert!(Address::parse("a@[192.0.2.1]", false).is_ok());
        assert!(Address::parse("a@[IPv6:2001:db8::1]", false).is_ok());
    }
}
