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

/// Builds the rustls server configuration (TLS 1.2 and 1.3, ring).
pub fn server_config(config: &Config) -> anyhow::Result<Arc<rustls::ServerConfig>> {
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
    Ok(Arc::new(server))
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
