//! DKIM signing keys and signatures (RFC 6376, RFC 8463).
//!
//! Each local domain gets an Ed25519 and an RSA-2048 key the first time it
//! is needed, under `<data>/dkim/<domain>/` (owner-only files named
//! `<selector>.ed25519` / `<selector>.rsa`, DER). Selectors are dated,
//! `YYYYMM` and a letter (`202611a`, `202611b`, …), so a rotation adds new
//! selectors while the old records keep verifying mail already sent.
//! Messages are signed with the newest key of each kind (dual signing),
//! relaxed/relaxed, with From oversigned. Mail forwarded to another
//! domain is ARC-sealed (RFC 8617) with the domain's RSA key: ARC defines
//! RSA-SHA256 only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, generate::DkimKeyPair};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::EncodePublicKey;

/// Headers signed when present; every name listed is also "oversigned"
/// (signed as absent when missing), and From is listed twice so that a
/// second From cannot be added to a signed message.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "From",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    Rsa,
}

impl Algorithm {
    fn extension(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa => "rsa",
        }
    }
}

/// One key of a domain.
#[derive(Clone)]
pub struct Key {
    pub selector: String,
    pub algorithm: Algorithm,
    private_der: Vec<u8>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}, {:?})", self.selector, self.algorithm)
    }
}

impl Key {
    /// The DNS TXT record's value: `v=DKIM1; k=…; p=…`.
    pub fn record(&self) -> anyhow::Result<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(match self.algorithm {
            Algorithm::Ed25519 => {
                let key = Ed25519Key::from_pkcs8_der(&self.private_der)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                format!("v=DKIM1; k=ed25519; p={}", b64.encode(key.public_key()))
            }
            Algorithm::Rsa => {
                // Published as SubjectPublicKeyInfo, like OpenDKIM does.
                let private = rsa_private(&self.private_der)?;
                let spki = rsa::RsaPublicKey::from(&private)
                    .to_public_key_der()
                    .map_err(|e| anyhow::anyhow!("encoding the RSA public key: {e}"))?;
                format!("v=DKIM1; k=rsa; p={}", b64.encode(spki.as_bytes()))
            }
        })
    }
}

fn rsa_private(der: &[u8]) -> anyhow::Result<rsa::RsaPrivateKey> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| anyhow::anyhow!("reading the RSA key: {e}"))
}

/// The DKIM keys of every domain, generated on first use.
pub struct Keys {
    dir: PathBuf,
    domains: Mutex<HashMap<String, Arc<Vec<Key>>>>,
}

impl Keys {
    /// Keys under `<data_dir>/dkim`.
    pub fn new(data_dir: &Path) -> Keys {
        Keys {
            dir: data_dir.join("dkim"),
            domains: Mutex::new(HashMap::new()),
        }
    }

    /// Every key of `domain`, oldest first, generating the first pair if
    /// there is none.
    pub fn of(&self, domain: &str) -> anyhow::Result<Arc<Vec<Key>>> {
        let mut cache = self.domains.lock().expect("dkim keys");
        if let Some(keys) = cache.get(domain) {
            return Ok(keys.clone());
        }
        let dir = self.dir.join(domain);
        let mut keys = read_keys(&dir)?;
        if keys.is_empty() {
            generate_pair(&dir, &keys)?;
            keys = read_keys(&dir)?;
            tracing::info!("generated DKIM keys for {domain}: {}", selectors(&keys));
        }
        let keys = Arc::new(keys);
        cache.insert(domain.to_string(), keys.clone());
        Ok(keys)
    }

    /// Adds a new Ed25519 + RSA pair; the old keys stay (and stay
    /// published) until removed by hand.
    pub fn rotate(&self, domain: &str) -> anyhow::Result<Vec<Key>> {
        let dir = self.dir.join(domain);
        let before = read_keys(&dir)?;
        generate_pair(&dir, &before)?;
        self.domains.lock().expect("dkim keys").remove(domain);
        let after = read_keys(&dir)?;
        Ok(after
            .into_iter()
            .filter(|k| !before.iter().any(|b| b.selector == k.selector))
            .collect())
    }

    /// `DKIM-Signature:` header fields for the message made of `chunks`
    /// (CRLF line ends), one per algorithm, newest keys.
    pub fn sign(&self, domain: &str, message: &[&[u8]]) -> anyhow::Result<Vec<u8>> {
        let keys = self.of(domain)?;
        let mut out = Vec::new();
        for algorithm in [Algorithm::Ed25519, Algorithm::Rsa] {
            let Some(key) = keys.iter().rev().find(|k| k.algorithm == algorithm) else {
                continue;
            };
            let header = match algorithm {
                Algorithm::Ed25519 => header(
                    Ed25519Key::from_pkcs8_der(&key.private_der)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                    domain,
                    &key.selector,
                    message,
                )?,
                Algorithm::Rsa => {
                    let der =
                        rustls::pki_types::PrivateKeyDer::Pkcs1(key.private_der.clone().into());
                    header(
                        RsaKey::<Sha256>::from_key_der(der).map_err(|e| anyhow::anyhow!("{e}"))?,
                        domain,
                        &key.selector,
                        message,
                    )?
                }
            };
            out.extend_from_slice(header.as_bytes());
        }
        Ok(out)
    }

    /// The ARC set (`ARC-Seal`, `ARC-Message-Signature`,
    /// `ARC-Authentication-Results` fields) with which `domain` forwards
    /// `message`, whose checks found `results` and its chain `arc`.
    pub fn arc_set(
        &self,
        domain: &str,
        message: &mail_auth::AuthenticatedMessage<'_>,
        results: &mail_auth::AuthenticationResults,
        arc: &mail_auth::ArcOutput<'_>,
    ) -> anyhow::Result<String> {
        let keys = self.of(domain)?;
        let key = keys
            .iter()
            .rev()
            .find(|k| k.algorithm == Algorithm::Rsa)
            .with_context(|| format!("{domain} has no RSA key to seal with"))?;
        let der = rustls::pki_types::PrivateKeyDer::Pkcs1(key.private_der.clone().into());
        let rsa = RsaKey::<Sha256>::from_key_der(der).map_err(|e| anyhow::anyhow!("{e}"))?;
        let set = mail_auth::arc::ArcSealer::from_key(rsa)
            .domain(domain)
            .selector(&key.selector)
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .seal(message, results, arc)
            .map_err(|e| anyhow::anyhow!("ARC sealing failed: {e}"))?;
        Ok(set.to_header())
    }

    /// `message` with its `DKIM-Signature:` header fields in front.
    pub fn signed(&self, domain: &str, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut out = self.sign(domain, &[message])?;
        out.extend_from_slice(message);
        Ok(out)
    }
}

/// One `DKIM-Signature:` header field: relaxed/relaxed, our header list.
fn header<K: mail_auth::common::crypto::SigningKey>(
    key: K,
    domain: &str,
    selector: &str,
    message: &[&[u8]],
) -> anyhow::Result<String> {
    Ok(DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign_chained(message.iter().copied())
        .map_err(|e| anyhow::anyhow!("DKIM signing failed: {e}"))?
        .to_header())
}

fn selectors(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| k.selector.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_keys(dir: &Path) -> anyhow::Result<Vec<Key>> {
    let mut keys = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let algorithm = match ext {
            "ed25519" => Algorithm::Ed25519,
            "rsa" => Algorithm::Rsa,
            _ => continue,
        };
        keys.push(Key {
            selector: stem.to_string(),
            algorithm,
            private_der: std::fs::read(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        });
    }
    // Dated selectors sort in creation order.
    keys.sort_by(|a, b| a.selector.cmp(&b.selector));
    Ok(keys)
}

/// The next two free selectors of this month.
fn next_selectors(existing: &[Key]) -> anyhow::Result<(String, String)> {
    let month = chrono::Utc::now().format("%Y%m").to_string();
    let mut free = ('a'..='z')
        .map(|c| format!("{month}{c}"))
        .filter(|s| !existing.iter().any(|k| &k.selector == s));
    match (free.next(), free.next()) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => bail!("no free DKIM selector left for {month}"),
    }
}

fn generate_pair(dir: &Path, existing: &[Key]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ed_selector, rsa_selector) = next_selectors(existing)?;
    let ed = DkimKeyPair::generate_ed25519()
        .map_err(|e| anyhow::anyhow!("generating an Ed25519 key: {e}"))?;
    let rsa = DkimKeyPair::generate_rsa(2048)
        .map_err(|e| anyhow::anyhow!("generating an RSA key: {e}"))?;
    // The public half must be derivable: check before saving.
    rsa::RsaPublicKey::from_pkcs1_der(rsa.public_key()).map_err(|e| anyhow::anyhow!("{e}"))?;
    mta_store::fsutil::write_atomically(
        &dir.join(format!("{ed_selector}.{}", Algorithm::Ed25519.extension())),
        ed.private_key(),
        0o600,
    )?;
    mta_store::fsutil::write_atomically(
        &dir.join(format!("{rsa_selector}.{}", Algorithm::Rsa.extension())),
        rsa.private_key(),
        0o600,
    )?;
    Ok(())
}

/// A zone-file line for a key: the value split into strings of at most 255
/// octets (RFC 1035 character-strings).
pub fn zone_line(domain: &str, key: &Key) -> anyhow::Result<String> {
    let value = key.record()?;
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    Ok(format!(
        "{}._domainkey.{domain}. IN TXT ( {} )",
        key.selector,
        parts.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_dated_and_rotated() {
        let t = tempfile::tempdir().unwrap();
        let keys = Keys::new(t.path());
        let first = keys.of("example.org").unwrap();
        assert_eq!(first.len(), 2);
        let month = chrono::Utc::now().format("%Y%m").to_string();
        assert_eq!(first[0].selector, format!("{month}a"));
        assert_eq!(first[1].selector, format!("{month}b"));
        assert_eq!(
            keys.of("example.org").unwrap().len(),
            2,
            "not generated twice"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(t.path().join(format!("dkim/example.org/{month}a.ed25519")))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let new = keys.rotate("example.org").unwrap();
        assert_eq!(
            new.iter().map(|k| k.selector.clone()).collect::<Vec<_>>(),
            [format!("{month}c"), format!("{month}d")]
        );
        assert_eq!(keys.of("example.org").unwrap().len(), 4);
    }

    #[test]
    fn records_are_split_and_signatures_name_both_keys() {
        let t = tempfile::tempdir().unwrap();
        let keys = Keys::new(t.path());
        let all = keys.of("example.org").unwrap();
        let rsa = zone_line("example.org", &all[1]).unwrap();
        assert!(
            rsa.contains("._domainkey.example.org. IN TXT ( \"v=DKIM1; k=rsa; p=MIIBIjAN"),
            "{rsa}"
        );
        assert!(
            rsa.matches('"').count() >= 4,
            "a 2048-bit key needs two strings: {rsa}"
        );
        let msg = b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nbody\r\n";
        let headers = String::from_utf8(keys.sign("example.org", &[msg]).unwrap()).unwrap();
        assert_eq!(headers.matches("DKIM-Signature:").count(), 2, "{headers}");
        assert!(
            headers.contains("a=ed25519-sha256") && headers.contains("a=rsa-sha256"),
            "{headers}"
        );
        assert!(headers.contains("c=relaxed/relaxed"), "{headers}");
    }
}
