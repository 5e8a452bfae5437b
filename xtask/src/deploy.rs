//! `cargo xtask deploy --host H`: sends a signed update bundle to an
//! appliance's HTTPS API (`PUT /api/update`, the owner's credentials as
//! HTTP Basic) and prints what the appliance answers. The appliance
//! checks the bundle itself (signature, board, version, hashes); this only
//! carries it there.
//!
//! The appliance's certificate is checked against the CAs of this machine
//! (`/etc/ssl/certs/ca-certificates.crt`: a Let's Encrypt certificate
//! passes). A self-signed one (before Let's Encrypt, or on a LAN) is
//! refused with its SHA-256 fingerprint; compare it with the admin's
//! Certificate page and pass it as `--fingerprint` to trust exactly that
//! certificate.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use argh::FromArgs;
use base64::Engine;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest;

/// The CAs a Debian machine trusts (package ca-certificates).
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// How long the appliance may be silent while the bundle goes up or its
/// answer comes back (it checks every hash before answering).
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// send a signed update bundle to an appliance over HTTPS; it installs it and restarts
#[derive(FromArgs)]
#[argh(subcommand, name = "deploy")]
pub struct DeployArgs {
    /// the appliance: its host name or address, with :PORT if not 443
    #[argh(option)]
    host: String,
    /// the bundle to send (default: build one of --board at the workspace's version)
    #[argh(option)]
    bundle: Option<PathBuf>,
    /// board to build the bundle for when no --bundle is given (default pc-x86_64)
    #[argh(option, default = "String::from(\"pc-x86_64\")")]
    board: String,
    /// the owner's address (asked for when not given); the password comes from $MAILBOX_PASSWORD or is asked for
    #[argh(option)]
    user: Option<String>,
    /// install even an older version than the one running
    #[argh(switch)]
    force: bool,
    /// trust the appliance's certificate with this SHA-256 fingerprint (its admin's Certificate page shows it) instead of this machine's CAs
    #[argh(option)]
    fingerprint: Option<String>,
}

/// The certificate was not trusted; its fingerprint, for `--fingerprint`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the appliance's certificate is not trusted by this machine's CAs (self-signed?): {reason}.\n\
     Its SHA-256 fingerprint is\n  {fingerprint}\n\
     If the appliance's admin page (Certificate) shows the same, run again with --fingerprint {fingerprint}"
)]
pub struct Untrusted {
    pub fingerprint: String,
    reason: String,
}

pub fn run(args: DeployArgs) -> anyhow::Result<()> {
    let bundle = match args.bundle {
        Some(path) => path,
        None => crate::bundle::build(&args.board, None, None)?,
    };
    let user = match args.user {
        Some(user) => user,
        None => ask("the owner's address: ", false)?,
    };
    let password = match std::env::var("MAILBOX_PASSWORD") {
        Ok(p) => p,
        Err(_) => ask(&format!("password of {user}: "), true)?,
    };
    let started = Instant::now();
    let answer = send(
        &args.host,
        &bundle,
        &user,
        &password,
        args.force,
        args.fingerprint.as_deref(),
        true,
    )?;
    ensure!(
        answer.status == 200,
        "the appliance refused the update ({}): {}",
        answer.status,
        answer.text
    );
    println!(
        "deploy: {} ({:.1} s)",
        answer.text,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Asks on the terminal (without echo for a password).
fn ask(prompt: &str, secret: bool) -> anyhow::Result<String> {
    let answer = if secret {
        rpassword::prompt_password(prompt).context("reading the password")?
    } else {
        eprint!("{prompt}");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line
    };
    let answer = answer.trim().to_string();
    ensure!(!answer.is_empty(), "nothing given");
    Ok(answer)
}

/// What the appliance answered.
pub struct Answer {
    pub status: u16,
    pub text: String,
}

/// `host` or `host:port` (443 by default; `[v6]:port` too).
fn split_host(target: &str) -> anyhow::Result<(String, u16)> {
    if let Some(rest) = target.strip_prefix('[') {
        let (host, port) = rest.split_once(']').context("an unclosed [ in --host")?;
        let port = match port.strip_prefix(':') {
            Some(p) => p.parse().context("the port in --host")?,
            None => 443,
        };
        return Ok((host.to_string(), port));
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((
            host.to_string(),
            port.parse().context("the port in --host")?,
        )),
        _ => Ok((target.to_string(), 443)),
    }
}

/// Sends the bundle at `path` to `target`'s update API as `user`.
pub fn send(
    target: &str,
    path: &Path,
    user: &str,
    password: &str,
    force: bool,
    fingerprint: Option<&str>,
    progress: bool,
) -> anyhow::Result<Answer> {
    let (host, port) = split_host(target)?;
    let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let size = file.metadata()?.len();
    let verifier = Arc::new(Verifier::new(fingerprint)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).context("the host name in --host")?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .with_context(|| format!("connecting to {host}:{port}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let query = if force { "?force=1" } else { "" };
    let head = format!(
        "PUT /api/update{query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {credentials}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = tls.write_all(head.as_bytes()) {
        if let Some(untrusted) = verifier.refused() {
            return Err(untrusted.into());
        }
        return Err(e).context("the TLS handshake");
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent: u64 = 0;
    let mut shown = 0;
    // A refusal may come before the whole bundle is sent (the appliance
    // still reads it to its end, so the answer is not lost).
    while sent < size {
        let n = file.read(&mut buf)?;
        if n == 0 {
            bail!("{} became shorter while it was sent", path.display());
        }
        if tls.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        let quarter = (sent * 4 / size.max(1)) as usize;
        if progress && quarter > shown {
            shown = quarter;
            println!("deploy: sent {}% of {} bytes", quarter * 25, size);
        }
    }
    // A refusal may have closed the way up; its answer is still there.
    let _ = tls.flush();
    let mut answer = Vec::new();
    // Bounded: the answer is one line of text.
    let read = BufReader::new(&mut tls)
        .take(64 * 1024)
        .read_to_end(&mut answer);
    if answer.is_empty() {
        read.context("reading the appliance's answer")?;
        bail!("the appliance closed the connection without an answer");
    }
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("the appliance's answer is not HTTP")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the appliance's answer has no status")?;
    // The body is one line (the API does not chunk it).
    Ok(Answer {
        status,
        text: body.trim().to_string(),
    })
}

/// Checks the server's certificate against this machine's CAs, or
/// against one pinned fingerprint; remembers what it refused.
#[derive(Debug)]
struct Verifier {
    pinned: Option<String>,
    system: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    refused: Mutex<Option<Untrusted>>,
}

fn fingerprint_of(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `ab:cd…`, `ABCD…` or `AB CD …`: the 64 hex digits, upper case.
fn normalize(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Verifier {
    fn new(pinned: Option<&str>) -> anyhow::Result<Verifier> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pinned = pinned.map(normalize);
        if let Some(p) = &pinned {
            ensure!(
                p.len() == 64,
                "--fingerprint is a SHA-256: 64 hex digits (colons allowed)"
            );
        }
        let system = if pinned.is_some() {
            None
        } else {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(SYSTEM_CAS).with_context(|| {
                format!("{SYSTEM_CAS} (install ca-certificates, or pass --fingerprint)")
            })?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                // A CA this rustls cannot use is skipped, as browsers do.
                let _ = roots.add(c?);
            }
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()?,
            )
        };
        Ok(Verifier {
            pinned,
            system,
            provider,
            refused: Mutex::new(None),
        })
    }

    fn refused(&self) -> Option<Untrusted> {
        self.refused.lock().expect("not poisoned").take()
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint = fingerprint_of(end_entity);
        let verdict = match (&self.pinned, &self.system) {
            (Some(pinned), _) if normalize(&fingerprint) == *pinned => {
                return Ok(ServerCertVerified::assertion());
            }
            (Some(_), _) => Err("its fingerprint is not the one given".to_string()),
            (None, Some(system)) => system
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| e.to_string()),
            (None, None) => Err("nothing to check it against".to_string()),
        };
        verdict.map_err(|reason| {
            *self.refused.lock().expect("not poisoned") = Some(Untrusted {
                fingerprint,
                reason: reason.clone(),
            });
            rustls::Error::General(reason)
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_with_and_without_ports() {
        assert_eq!(
            split_host("mail.example.org").unwrap(),
            ("mail.example.org".into(), 443)
        );
        assert_eq!(
            split_host("127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(split_host("[::1]:444").unwrap(), ("::1".into(), 444));
        assert_eq!(split_host("[::1]").unwrap(), ("::1".into(), 443));
        assert_eq!(split_host("::1").unwrap(), ("::1".into(), 443));
        assert!(split_host("host:port").is_err());
    }

    #[test]
    fn fingerprints_compare_however_written() {
        let f = fingerprint_of(b"certificate");
        assert_eq!(f.len(), 64 + 31);
        assert_eq!(normalize(&f), normalize(&f.to_lowercase().replace(':', "")));
        assert!(Verifier::new(Some("AB:CD")).is_err());
    }
}
