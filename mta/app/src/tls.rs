//! TLS for the SMTP listeners: the configured certificate, or a self-signed
//! one generated once (rcgen) and kept in `<data>/tls/` so that STARTTLS works
//! from the first boot, before a real certificate exists.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// The server's TLS: the rustls configuration, and whether its certificate
/// was issued by someone else (a CA browsers may trust) rather than signed
/// by itself.
pub struct Served {
    pub config: Arc<rustls::ServerConfig>,
    pub issued: bool,
}

/// Whether a certificate (DER) names another issuer than its subject.
fn issued_by_another(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.issuer() != c.subject())
        .unwrap_or(false)
}

/// Builds the rustls server configuration (TLS 1.2 and 1.3, ring).
pub fn server_config(config: &Config) -> anyhow::Result<Served> {
    let (cert_path, key_path) = match &config.tls {
        Some(files) => (files.certificate.clone(), files.key.clone()),
        None => self_signed(config)?,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading the certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the certificate {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} contains no certificate", cert_path.display());
    }
    let issued = issued_by_another(&certs[0]);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading the private key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "{} does not match {}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    Ok(Served {
        config: Arc::new(server),
        issued,
    })
}

/// Paths of the generated certificate and key, created on first use.
pub fn self_signed(config: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = config.data_dir.join("tls");
    let cert = dir.join("self-signed.crt");
    let key = dir.join("self-signed.key");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let generated = rcgen::generate_simple_self_signed(vec![config.hostname.clone()])
        .context("generating a self-signed certificate")?;
    mta_store::fsutil::write_atomically(
        &key,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    mta_store::fsutil::write_atomically(&cert, generated.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(
        "generated a self-signed certificate for {} in {}",
        config.hostname,
        cert.display()
    );
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_told_from_an_issued_one() {
        let own = rcgen::generate_simple_self_signed(vec!["mx.example.org".into()]).unwrap();
        assert!(!issued_by_another(own.cert.der()));
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["mx.example.org".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        assert!(issued_by_another(leaf.der()));
    }
}
