//! TLS for every listener: the configured certificate, or a self-signed one
//! generated once (rcgen) and kept in `<data>/tls/` so that STARTTLS and
//! HTTPS work from the first boot, before a real certificate exists; held
//! in a [`CertStore`] that swaps it for new connections.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Config;

/// The ALPN protocol of TLS-ALPN-01 challenges (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate every TLS listener presents (SMTP's STARTTLS, 465, 443,
/// later IMAP), swapped whole: a new one (a reload, ACME) is what the next
/// handshake gets, while connections already open keep theirs. It also
/// answers TLS-ALPN-01 challenges: a handshake that offers only
/// `acme-tls/1` for a name with a challenge waiting gets that challenge's
/// certificate.
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    issued: AtomicBool,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Held while a new pair is kept or the configured one reloaded.
    changing: Mutex<()>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("issued", &self.issued())
            .finish()
    }
}

impl CertStore {
    pub fn new(key: Arc<CertifiedKey>, issued: bool) -> CertStore {
        CertStore {
            current: RwLock::new(key),
            issued: AtomicBool::new(issued),
            challenges: Mutex::new(HashMap::new()),
            changing: Mutex::new(()),
        }
    }

    /// The certificate `config` names (or the last one from ACME, or the
    /// self-signed one, made on first use), and whether a CA issued it.
    pub fn load(config: &Config) -> anyhow::Result<(Arc<CertifiedKey>, bool)> {
        if let Some(files) = &config.tls {
            return load_pair(&files.certificate, &files.key);
        }
        if let Some((cert, key)) = current_pair(&acme_dir(config))? {
            let pair = load_pair(&cert, &key)?;
            // With ACME turned off, its last certificate serves until it
            // ends, then the appliance's own does again.
            let expired = CertInfo::of(&pair.0.cert, pair.1).is_some_and(|c| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                c.not_after <= now
            });
            if config.acme.is_some() || !expired {
                return Ok(pair);
            }
        }
        let (cert, key) = self_signed(config)?;
        load_pair(&cert, &key)
    }

    /// Loads `config`'s certificate and presents it from now on (a reload).
    pub fn reload(&self, config: &Config) -> anyhow::Result<()> {
        let _one = self.changing.lock().expect("certificate change");
        let (key, issued) = CertStore::load(config)?;
        self.swap(key, issued);
        Ok(())
    }

    /// Keeps a new pair from ACME ([`store_pair`]) and presents it from now
    /// on; what it is. One change at a time: a reload cannot put back the
    /// pair this replaces, nor read a generation this removes.
    pub fn keep(
        &self,
        config: &Config,
        chain_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<Option<CertInfo>> {
        let _one = self.changing.lock().expect("certificate change");
        let dir = acme_dir(config);
        store_pair(&dir, chain_pem, key_pem)
            .with_context(|| format!("keeping the certificate in {}", dir.display()))?;
        let (key, issued) = CertStore::load(config)?;
        let info = CertInfo::of(&key.cert, issued);
        self.swap(key, issued);
        Ok(info)
    }

    /// From now on, handshakes present `key`.
    pub fn swap(&self, key: Arc<CertifiedKey>, issued: bool) {
        *self.current.write().expect("certificate") = key;
        self.issued.store(issued, Ordering::Relaxed);
    }

    /// The certificate presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("certificate").clone()
    }

    /// Whether the certificate presented was issued by a CA.
    pub fn issued(&self) -> bool {
        self.issued.load(Ordering::Relaxed)
    }

    /// The certificate that answers a TLS-ALPN-01 challenge for `name`.
    pub fn set_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .lock()
            .expect("challenges")
            .insert(name.to_ascii_lowercase(), key);
    }

    pub fn clear_challenge(&self, name: &str) {
        self.challenges
            .lock()
            .expect("challenges")
            .remove(&name.to_ascii_lowercase());
    }

    /// TLS for SMTP (and later IMAP): no ALPN.
    pub fn smtp_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        self.config(Vec::new())
    }

    /// TLS for the web: HTTP/1.1, and TLS-ALPN-01 challenges.
    pub fn https_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        self.config(vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()])
    }

    fn config(self: &Arc<Self>, alpn: Vec<Vec<u8>>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        server.alpn_protocols = alpn;
        Ok(Arc::new(server))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let challenge = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .lock()
                .expect("challenges")
                .get(&name)
                .cloned();
        }
        Some(self.current.read().expect("certificate").clone())
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A certificate chain and its key from PEM files, and whether a CA
/// issued it.
fn load_pair(cert_path: &Path, key_path: &Path) -> anyhow::Result<(Arc<CertifiedKey>, bool)> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading the certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the certificate {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} contains no certificate", cert_path.display());
    }
    let issued = issued_by_another(&certs[0]);
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading the private key {}", key_path.display()))?;
    let certified = CertifiedKey::from_der(certs, key, &provider()).with_context(|| {
        format!(
            "{} does not match {}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok((Arc::new(certified), issued))
}

/// What the owner is shown about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Its DNS names (subject alternative names).
    pub names: Vec<String>,
    /// Its issuer's organisation or common name.
    pub issuer: String,
    /// Whether a CA issued it (not self-signed).
    pub issued: bool,
    pub not_before: u64,
    pub not_after: u64,
    /// SHA-256 of the certificate (DER), as `AB:CD:…`: what a client
    /// pins when the certificate is self-signed (`cargo xtask deploy
    /// --fingerprint`).
    pub fingerprint: String,
}

impl CertInfo {
    /// The leaf of `chain`, described.
    pub fn of(chain: &[CertificateDer<'_>], issued: bool) -> Option<CertInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let issuer = cert.issuer();
        let issuer = issuer
            .iter_organization()
            .chain(issuer.iter_common_name())
            .find_map(|a| a.as_str().ok())
            .unwrap_or("unknown")
            .to_string();
        let secs = |t: x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
        Some(CertInfo {
            names,
            issuer,
            issued,
            not_before: secs(cert.validity().not_before),
            not_after: secs(cert.validity().not_after),
            fingerprint: fingerprint(chain.first()?),
        })
    }
}

/// The SHA-256 of `der` in colon-separated hex (as browsers show it).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether a certificate (DER) names another issuer than its subject.
fn issued_by_another(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c.issuer() != c.subject())
        .unwrap_or(false)
}

/// Where certificates from ACME are kept: `<data>/tls/acme`.
pub fn acme_dir(config: &Config) -> PathBuf {
    config.data_dir.join("tls/acme")
}

/// Keeps a new certificate (chain PEM) and its key (PEM) in `dir` so that
/// a power cut at any moment leaves the old pair or the new one, never a
/// mix: both files of a new generation are written and synced first, then
/// `current` (the commit point) is replaced atomically to name it, then
/// older generations go.
pub fn store_pair(dir: &Path, chain_pem: &str, key_pem: &str) -> anyhow::Result<()> {
    mta_store::fsutil::create_dir_synced(dir)?;
    let generation = format!("{}", mta_store::envelope::now_micros());
    mta_store::fsutil::write_atomically(
        &dir.join(format!("{generation}.key")),
        key_pem.as_bytes(),
        0o600,
    )?;
    mta_store::fsutil::write_atomically(
        &dir.join(format!("{generation}.crt")),
        chain_pem.as_bytes(),
        0o644,
    )?;
    mta_store::fsutil::write_atomically(&dir.join("current"), generation.as_bytes(), 0o644)?;
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let stem = name.split('.').next().unwrap_or("");
        if name != "current" && stem != generation {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// The certificate and key `current` names in `dir`, if any.
pub fn current_pair(dir: &std::path::Path) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let generation = match fs::read_to_string(dir.join("current")) {
        Ok(g) => g.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}/current", dir.display())),
    };
    if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!(
            "{}/current names no certificate ({generation:?})",
            dir.display()
        );
    }
    Ok(Some((
        dir.join(format!("{generation}.crt")),
        dir.join(format!("{generation}.key")),
    )))
}

/// The appliance's own certificate for `hostname`: named after it and
/// Mailbox (what a browser's warning shows), valid for ten years from
/// today.
fn make_self_signed(hostname: &str) -> Result<(rcgen::Certificate, rcgen::KeyPair), rcgen::Error> {
    use chrono::Datelike;
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Mailbox appliance");
    let today = chrono::Utc::now().date_naive();
    params.not_before = rcgen::date_time_ymd(today.year(), today.month() as u8, today.day() as u8);
    params.not_after = rcgen::date_time_ymd(
        today.year() + 10,
        today.month() as u8,
        today.day().min(28) as u8,
    );
    let key = rcgen::KeyPair::generate()?;
    Ok((params.self_signed(&key)?, key))
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
    let (made, signing_key) =
        make_self_signed(&config.hostname).context("generating a self-signed certificate")?;
    mta_store::fsutil::write_atomically(&key, signing_key.serialize_pem().as_bytes(), 0o600)?;
    mta_store::fsutil::write_atomically(&cert, made.pem().as_bytes(), 0o644)?;
    tracing::info!(
        "generated a self-signed certificate for {} in {}",
        config.hostname,
        cert.display()
    );
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::{
        ClientConfig, ClientConnection, DigitallySignedStruct, ServerConnection, SignatureScheme,
    };

    use super::*;

    /// Takes any certificate: the tests look at which one was presented.
    #[derive(Debug)]
    struct AcceptAll;

    impl ServerCertVerifier for AcceptAll {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// A handshake in memory; the leaf certificate the server presented.
    fn presented(server: Arc<rustls::ServerConfig>, name: &str, alpn: &[&[u8]]) -> Option<Vec<u8>> {
        let mut client = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAll))
            .with_no_client_auth();
        client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let mut c =
            ClientConnection::new(Arc::new(client), name.to_string().try_into().unwrap()).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut bytes = Vec::new();
            c.write_tls(&mut bytes).unwrap();
            s.read_tls(&mut bytes.as_slice()).unwrap();
            s.process_new_packets().ok()?;
            let mut bytes = Vec::new();
            s.write_tls(&mut bytes).unwrap();
            c.read_tls(&mut bytes.as_slice()).unwrap();
            c.process_new_packets().ok()?;
            if !c.is_handshaking() {
                return c.peer_certificates().map(|certs| certs[0].to_vec());
            }
        }
        None
    }

    fn certified(name: &str) -> (Arc<CertifiedKey>, Vec<u8>) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let der = made.cert.der().to_vec();
        let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let certified =
            CertifiedKey::from_der(vec![made.cert.der().clone()], key, &provider()).unwrap();
        (Arc::new(certified), der)
    }

    #[test]
    fn a_new_pair_counts_only_once_current_names_it() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("acme");
        assert_eq!(current_pair(&dir).unwrap(), None);
        store_pair(&dir, "CHAIN 1", "KEY 1").unwrap();
        let (crt, key) = current_pair(&dir).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&crt).unwrap(), "CHAIN 1");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "KEY 1");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // A power cut after the new files but before `current`: the old
        // pair, whole.
        std::fs::write(dir.join("99999999999999999.crt"), "CHAIN half").unwrap();
        assert_eq!(
            current_pair(&dir).unwrap(),
            Some((crt.clone(), key.clone()))
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        store_pair(&dir, "CHAIN 2", "KEY 2").unwrap();
        let (crt2, key2) = current_pair(&dir).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&crt2).unwrap(), "CHAIN 2");
        assert_eq!(std::fs::read_to_string(&key2).unwrap(), "KEY 2");
        assert!(
            !crt.exists() && !dir.join("99999999999999999.crt").exists(),
            "older generations go"
        );
        std::fs::write(dir.join("current"), "../../etc/passwd").unwrap();
        assert!(current_pair(&dir).is_err());
    }

    #[test]
    fn a_swapped_certificate_is_what_the_next_handshake_gets() {
        let (first, first_der) = certified("mx.example.org");
        let store = Arc::new(CertStore::new(first, false));
        let smtp = store.smtp_config().unwrap();
        let https = store.https_config().unwrap();
        assert_eq!(
            presented(smtp.clone(), "mx.example.org", &[]),
            Some(first_der)
        );
        let (second, second_der) = certified("mx.example.org");
        store.swap(second, true);
        assert!(store.issued());
        // The configurations made before the swap present the new one too.
        assert_eq!(
            presented(smtp, "mx.example.org", &[]).as_ref(),
            Some(&second_der)
        );
        assert_eq!(
            presented(https, "mx.example.org", &[b"http/1.1"]).as_ref(),
            Some(&second_der)
        );
    }

    #[test]
    fn tls_alpn_challenges_get_their_own_certificate_and_nothing_else() {
        let (normal, normal_der) = certified("mx.example.org");
        let store = Arc::new(CertStore::new(normal, false));
        let https = store.https_config().unwrap();
        // No challenge waiting: an acme-tls/1 handshake gets nothing.
        assert_eq!(
            presented(https.clone(), "mx.example.org", &[ACME_TLS_ALPN]),
            None
        );
        let (challenge, challenge_der) = certified("mx.example.org");
        store.set_challenge("MX.example.org", challenge);
        assert_eq!(
            presented(https.clone(), "mx.example.org", &[ACME_TLS_ALPN]),
            Some(challenge_der)
        );
        assert_eq!(
            presented(https.clone(), "mx.example.org", &[b"http/1.1"]).as_ref(),
            Some(&normal_der)
        );
        store.clear_challenge("mx.example.org");
        assert_eq!(presented(https, "mx.example.org", &[ACME_TLS_ALPN]), None);
    }

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
