//! Automatic certificates (ACME, RFC 8555) — what is shared between the
//! client and the listeners that answer the CA's challenges: the HTTP-01
//! answers, served by the web at `/.well-known/acme-challenge/<token>` on
//! port 80. (TLS-ALPN-01 answers live in [`crate::tls::CertStore`].)

use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many challenges wait at once (a few names per order).
const MAX_WAITING: usize = 64;

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

#[cfg(test)]
mod tests {
    use super::*;

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
