//! DANE for SMTP (RFC 7672): when an MX host's TLSA records are
//! DNSSEC-secure, STARTTLS is required and the certificate must match one of
//! them. DANE-EE(3) records pin the server's certificate or key (names and
//! dates do not matter, §3.1.1); DANE-TA(2) records pin a trust anchor in the
//! chain the server sends, and the chain must be valid for the MX host name
//! (§3.1.2). PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (§3.1.3).

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

pub use crate::dns::Tlsa;

const DANE_TA: u8 = 2;
const DANE_EE: u8 = 3;

impl Tlsa {
    /// Whether SMTP can use the record (§3.1.3; RFC 6698 selectors and
    /// matching types).
    pub fn usable(&self) -> bool {
        matches!(self.usage, DANE_TA | DANE_EE)
            && self.selector <= 1
            && match self.matching {
                0 => !self.data.is_empty(),
                1 => self.data.len() == 32,
                2 => self.data.len() == 64,
                _ => false,
            }
    }

    /// Whether `cert` (DER) is what the record describes.
    fn matches(&self, cert: &[u8]) -> bool {
        let selected = match self.selector {
            0 => cert.to_vec(),
            _ => match spki(cert) {
                Some(s) => s,
                None => return false,
            },
        };
        let digest = |alg| ring::digest::digest(alg, &selected).as_ref().to_vec();
        let value = match self.matching {
            0 => selected,
            1 => digest(&ring::digest::SHA256),
            2 => digest(&ring::digest::SHA512),
            _ => return false,
        };
        value == self.data
    }
}

/// The SubjectPublicKeyInfo of a certificate, as DER.
fn spki(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

/// A TLS client configuration that accepts exactly what `records` (all
/// usable) allow.
pub fn config(records: Vec<Tlsa>) -> rustls::ClientConfig {
    super::tls::judged(Verifier {
        records,
        provider: super::tls::provider(),
    })
}

#[derive(Debug)]
struct Verifier {
    records: Vec<Tlsa>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl super::tls::Judge for Verifier {
    fn judge(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), String> {
        self.check(end_entity, intermediates, name, now)
            .map_err(|e| format!("DANE: {e}"))
    }
}

impl Verifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), String> {
        let ee = self.records.iter().filter(|r| r.usage == DANE_EE);
        if ee.clone().any(|r| r.matches(end_entity)) {
            return Ok(());
        }
        // DANE-TA: an issuer the server sent is the pinned anchor, and the
        // chain up to it (from the other certificates sent, in any order)
        // is valid for the MX name.
        let mut problem = None;
        for (at, anchor) in intermediates.iter().enumerate() {
            if !self
                .records
                .iter()
                .any(|r| r.usage == DANE_TA && r.matches(anchor))
            {
                continue;
            }
            let mut roots = rustls::RootCertStore::empty();
            if let Err(e) = roots.add(anchor.clone()) {
                problem = Some(format!("the DANE-TA anchor is not usable: {e}"));
                continue;
            }
            let others: Vec<CertificateDer<'_>> = intermediates
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != at)
                .map(|(_, c)| c.clone())
                .collect();
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                self.provider.clone(),
            )
            .build()
            .map_err(|e| e.to_string())?;
            match webpki.verify_server_cert(end_entity, &others, name, &[], now) {
                Ok(_) => return Ok(()),
                Err(e) => problem = Some(format!("the chain to the DANE-TA anchor: {e}")),
            }
        }
        if let Some(problem) = problem {
            return Err(problem);
        }
        Err("the certificate matches none of the TLSA records".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, data)
            .as_ref()
            .to_vec()
    }

    struct Chain {
        ca: CertificateDer<'static>,
        leaf: CertificateDer<'static>,
        leaf_spki: Vec<u8>,
    }

    fn chain(name: &str) -> Chain {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Chain {
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            leaf_spki: rcgen::PublicKeyData::subject_public_key_info(&key),
        }
    }

    fn verify(records: Vec<Tlsa>, chain: &Chain, name: &str) -> Result<(), String> {
        let v = Verifier {
            records,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        v.check(
            &chain.leaf,
            std::slice::from_ref(&chain.ca),
            &ServerName::try_from(name.to_string()).unwrap(),
            UnixTime::now(),
        )
    }

    fn tlsa(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    #[test]
    fn dane_ee_pins_the_key_whatever_the_name() {
        let c = chain("mx.example.net");
        let spki = tlsa(3, 1, 1, sha256(&c.leaf_spki));
        assert_eq!(verify(vec![spki.clone()], &c, "other.example"), Ok(()));
        assert_eq!(
            verify(vec![tlsa(3, 0, 1, sha256(&c.leaf))], &c, "x.example"),
            Ok(())
        );
        assert_eq!(
            verify(vec![tlsa(3, 0, 0, c.leaf.to_vec())], &c, "x.example"),
            Ok(())
        );
        let other = chain("mx.example.net");
        assert!(verify(vec![spki], &other, "mx.example.net").is_err());
    }

    #[test]
    fn dane_ta_pins_the_issuer_and_checks_the_name() {
        let c = chain("mx.example.net");
        let ta = tlsa(2, 0, 1, sha256(&c.ca));
        assert_eq!(verify(vec![ta.clone()], &c, "mx.example.net"), Ok(()));
        let e = verify(vec![ta.clone()], &c, "mx.elsewhere.example").unwrap_err();
        assert!(e.contains("DANE-TA"), "{e}");
        // An issuer the record does not name.
        let other = chain("mx.example.net");
        assert!(verify(vec![ta], &other, "mx.example.net").is_err());
    }

    #[test]
    fn unusable_records() {
        assert!(!tlsa(1, 1, 1, vec![0; 32]).usable(), "PKIX-EE");
        assert!(!tlsa(0, 1, 1, vec![0; 32]).usable(), "PKIX-TA");
        assert!(!tlsa(3, 2, 1, vec![0; 32]).usable(), "selector");
        assert!(!tlsa(3, 1, 1, vec![0; 31]).usable(), "digest length");
        assert!(!tlsa(3, 1, 3, vec![0; 32]).usable(), "matching type");
        assert!(tlsa(3, 1, 2, vec![0; 64]).usable());
        assert!(tlsa(2, 0, 0, vec![1]).usable());
    }
}
