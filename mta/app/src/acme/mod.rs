//! Automatic certificates (ACME, RFC 8555): the HTTP-01 answers the web
//! serves at `/.well-known/acme-challenge/<token>` on port 80 (TLS-ALPN-01
//! answers live in [`crate::tls::CertStore`]); when to renew, a pure
//! function of the certificate's dates and the failures so far; the
//! client that talks to the CA (`client.rs`, on instant-acme) and the
//! task that keeps the certificate current and reports on it
//! (`manager.rs`).
//!
//! One certificate covers every name (the host name, and `mta-sts.`,
//! `autoconfig.` and `autodiscover.` of each domain): one pair to keep
//! atomically and one to present, whatever name a client asks for.

use std::collections::HashMap;
use std::sync::Mutex;

mod client;
pub(crate) use client::{Connector, connector};
mod manager;

pub use client::Challenge;
pub use manager::{Acme, Asked, Report, Status, when};

/// The owner's choice about certificates, written into `[acme]`.
pub enum Choice<'a> {
    /// Certificates from the CA at `directory` ("production", "staging" or
    /// a URL), its terms accepted, `contact` told about them.
    On {
        contact: Option<&'a str>,
        directory: &'a str,
    },
    /// The self-signed certificate (or `[tls]` files) only.
    Off,
}

/// Writes `choice` into the configuration document (through
/// [`crate::config::edit`], which checks the whole).
pub fn choose(doc: &mut toml_edit::DocumentMut, choice: Choice) -> anyhow::Result<String> {
    match choice {
        Choice::Off => {
            doc.remove("acme");
            Ok("certificates from Let's Encrypt turned off".into())
        }
        Choice::On { contact, directory } => {
            let table = doc
                .entry("acme")
                .or_insert(toml_edit::table())
                .as_table_like_mut()
                .ok_or_else(|| anyhow::anyhow!("`acme` in the configuration is not a table"))?;
            match contact.map(str::trim).filter(|c| !c.is_empty()) {
                Some(c) => {
                    table.insert("contact", toml_edit::value(c));
                }
                None => {
                    table.remove("contact");
                }
            }
            table.insert("terms_accepted", toml_edit::value(true));
            if directory != "production" || table.contains_key("directory") {
                table.insert("directory", toml_edit::value(directory));
            }
            Ok("certificates are requested from the CA".into())
        }
    }
}

/// At most this many challenges wait at once: an order's names, at most
/// 100 (Let's Encrypt's limit per certificate).
const MAX_WAITING: usize = 128;

/// HTTP-01 challenges waiting for the CA: token → key authorization.
#[derive(Default)]
pub struct Http01 {
    waiting: Mutex<HashMap<String, String>>,
}

impl Http01 {
    /// Answers `token` with `key_authorization` until [`Http01::remove`].
    pub fn insert(&self, token: &str, key_authorization: &str) -> anyhow::Result<()> {
        // RFC 8555 §8.1: tokens are base64url; nothing else is served.
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            anyhow::bail!("{token:?} is not an ACME token");
        }
        let mut waiting = self.waiting.lock().expect("challenges");
        if waiting.len() >= MAX_WAITING && !waiting.contains_key(token) {
            anyhow::bail!("too many challenges waiting");
        }
        waiting.insert(token.to_string(), key_authorization.to_string());
        Ok(())
    }

    pub fn remove(&self, token: &str) {
        self.waiting.lock().expect("challenges").remove(token);
    }

    /// The answer to the CA's request for `token`.
    pub fn answer(&self, token: &str) -> Option<String> {
        self.waiting.lock().expect("challenges").get(token).cloned()
    }
}

/// A certificate's validity, unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: u64,
    pub not_after: u64,
}

/// The first retry after a failed attempt; each further failure doubles it.
pub const RETRY_FIRST: u64 = 10 * 60;
/// Retries are never further apart than this, so a certificate is tried
/// many times before it runs out.
pub const RETRY_MAX: u64 = 6 * 3600;
/// A certificate this close to its end is shown as a warning.
pub const WARN_BEFORE: u64 = 14 * 86400;

/// When to try for a certificate next (unix seconds; `now` or earlier:
/// now). Without a real certificate: at once. With one: at two thirds of
/// its lifetime, as certbot and Caddy do (or at the start of the window the
/// CA suggests, RFC 9773, when it gave one). After `failures` failed
/// attempts, the last at `last_failure`, not before the backoff has passed.
pub fn next_attempt(
    cert: Option<Validity>,
    suggested_start: Option<u64>,
    failures: u32,
    last_failure: Option<u64>,
    now: u64,
) -> u64 {
    let planned = match (cert, suggested_start) {
        (None, _) => now,
        (Some(_), Some(start)) => start,
        (Some(v), None) => v.not_before + v.not_after.saturating_sub(v.not_before) * 2 / 3,
    };
    let backoff = match last_failure {
        Some(at) => backoff(failures, at),
        None => 0,
    };
    planned.max(backoff)
}

/// The earliest retry after `failures` failed attempts in a row, the last
/// at `at`: [`RETRY_FIRST`], doubling with each failure, at most
/// [`RETRY_MAX`].
pub fn backoff(failures: u32, at: u64) -> u64 {
    match failures {
        0 => 0,
        n => {
            at + RETRY_FIRST
                .saturating_mul(1u64 << (n - 1).min(20))
                .min(RETRY_MAX)
        }
    }
}

/// What the owner should be told about `cert` at `now`, if anything.
pub fn warning(cert: Option<Validity>, now: u64) -> Option<String> {
    let v = cert?;
    if now >= v.not_after {
        return Some("the certificate has expired: clients refuse to connect".into());
    }
    let left = v.not_after - now;
    (left <= WARN_BEFORE).then(|| {
        let days = left.div_ceil(86400);
        format!(
            "the certificate expires in {days} day{} and has not been renewed yet",
            if days == 1 { "" } else { "s" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86400;

    #[test]
    fn renewal_comes_at_two_thirds_of_the_lifetime_or_when_the_ca_says() {
        let v = Validity {
            not_before: 1000 * DAY,
            not_after: 1090 * DAY,
        };
        assert_eq!(next_attempt(Some(v), None, 0, None, 1001 * DAY), 1060 * DAY);
        assert_eq!(
            next_attempt(Some(v), Some(1050 * DAY), 0, None, 1001 * DAY),
            1050 * DAY
        );
        // No real certificate yet: now.
        assert_eq!(next_attempt(None, None, 0, None, 5), 5);
    }

    #[test]
    fn failures_back_off_doubling_up_to_a_limit() {
        let now = 1_000_000;
        let at = |failures| next_attempt(None, None, failures, Some(now), now);
        assert_eq!(at(1), now + RETRY_FIRST);
        assert_eq!(at(2), now + 2 * RETRY_FIRST);
        assert_eq!(at(4), now + 8 * RETRY_FIRST);
        assert_eq!(at(30), now + RETRY_MAX);
        // A due renewal still waits for the backoff; a later one is not
        // brought forward by it.
        let v = Validity {
            not_before: 0,
            not_after: 90 * DAY,
        };
        assert_eq!(
            next_attempt(Some(v), None, 1, Some(70 * DAY), 70 * DAY),
            70 * DAY + RETRY_FIRST
        );
        assert_eq!(
            next_attempt(Some(v), None, 1, Some(10 * DAY), 10 * DAY),
            60 * DAY
        );
    }

    #[test]
    fn the_owner_is_warned_two_weeks_before_the_end() {
        let v = Validity {
            not_before: 0,
            not_after: 90 * DAY,
        };
        assert_eq!(warning(Some(v), 60 * DAY), None);
        assert!(
            warning(Some(v), 80 * DAY)
                .unwrap()
                .contains("expires in 10 days")
        );
        assert!(warning(Some(v), 90 * DAY).unwrap().contains("expired"));
        assert_eq!(warning(None, 0), None);
    }

    #[test]
    fn only_waiting_well_formed_tokens_are_answered() {
        let h = Http01::default();
        assert!(h.insert("../etc/passwd", "x").is_err());
        h.insert("tok_en-1", "tok_en-1.thumbprint").unwrap();
        assert_eq!(h.answer("tok_en-1").as_deref(), Some("tok_en-1.thumbprint"));
        assert_eq!(h.answer("other"), None);
        h.remove("tok_en-1");
        assert_eq!(h.answer("tok_en-1"), None);
        for i in 0..MAX_WAITING {
            h.insert(&format!("t{i}"), "k").unwrap();
        }
        assert!(h.insert("one-more", "k").is_err());
    }
}
