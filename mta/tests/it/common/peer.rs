//! Independent peers (tests/it/peer.py, with peer_smtp.py, peer_dns.py and
//! peer_sts.py): an SMTP or LMTP server (aiosmtpd)
//! and a DNS server (dnslib) on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Peer {
    child: Child,
    pub smtp: u16,
    pub dns: Option<u16>,
    pub https: Option<u16>,
    pub out: tempfile::TempDir,
    pub cert: Option<PathBuf>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Received {
    pub envelope: serde_json::Value,
    pub message: String,
}

/// What peer.py runs.
#[derive(Default)]
pub struct Options<'a> {
    /// LMTP instead of SMTP.
    pub lmtp: bool,
    /// STARTTLS with a self-signed certificate for relay.test (`Peer::cert`).
    pub tls: bool,
    /// STARTTLS with this certificate and key instead.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// TLS from the first byte instead of STARTTLS (with `tls`).
    pub implicit_tls: bool,
    /// `USER:PASS` required over TLS.
    pub auth: Option<&'a str>,
    /// A DNS zone (dnslib's zone file syntax) to serve.
    pub zone: Option<&'a str>,
    /// A root zone to sign and serve with DNSSEC ("{SMTP_PORT}" stands for
    /// the SMTP port); its key is the trust anchor at `Peer::anchor()`.
    pub signed_zone: Option<&'a str>,
    /// Change the signed zone's TLSA records after signing (a forgery).
    pub tamper: bool,
    /// An MTA-STS policy to serve over HTTPS with this certificate and key.
    pub sts: Option<(&'a str, PathBuf, PathBuf)>,
}

/// A certificate authority for tests: trusted through `[outbound] ca`.
pub struct TestCa {
    dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Mailbox test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, cert.pem()).unwrap();
        TestCa {
            dir,
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `names`: (certificate, key) PEM files.
    pub fn issue(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let base = self.dir.path().join(names[0]);
        let (c, k) = (base.with_extension("crt"), base.with_extension("key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// A self-signed end-entity certificate (not a CA, for serverAuth) for
/// `names` (DNS names or IP addresses; the first is also the common name):
/// its key, and the certificate and key PEM files in `dir`.
pub fn self_signed(dir: &Path, names: &[&str]) -> (rcgen::KeyPair, PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let base = dir.join(names[0]);
    let (c, k) = (base.with_extension("crt"), base.with_extension("key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (key, c, k)
}

impl Peer {
    pub fn with(options: Options<'_>) -> Peer {
        let out = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/peer.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg("--out").arg(out.path());
        if options.lmtp {
            cmd.arg("--lmtp");
        }
        let mut cert = None;
        if options.tls {
            // An end-entity certificate, trusted directly by the client.
            let (_, c, k) = self_signed(out.path(), &["relay.test", "127.0.0.1"]);
            cmd.arg("--tls").arg(&c).arg(&k);
            if options.implicit_tls {
                cmd.arg("--implicit-tls");
            }
            cert = Some(c);
        } else if let Some((c, k)) = &options.tls_files {
            cmd.arg("--tls").arg(c).arg(k);
            cert = Some(c.clone());
        }
        if let Some(a) = options.auth {
            cmd.args(["--auth", a]);
        }
        if let Some(z) = options.zone {
            let path = out.path().join("zone");
            std::fs::write(&path, z).unwrap();
            cmd.arg("--zone").arg(path);
        }
        if let Some(z) = options.signed_zone {
            let path = out.path().join("signed-zone");
            std::fs::write(&path, z).unwrap();
            cmd.arg("--signed-zone").arg(path);
            if options.tamper {
                cmd.arg("--tamper");
            }
        }
        if let Some((policy, c, k)) = &options.sts {
            let path = out.path().join("mta-sts.txt");
            std::fs::write(&path, policy).unwrap();
            cmd.arg("--sts").arg(path).arg(c).arg(k);
        }
        // What the peer says when it cannot start goes into the panic.
        let errors = out.path().join("peer-stderr");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&errors).unwrap())
            .spawn()
            .expect("python3 with aiosmtpd and dnslib (`cargo xtask test` installs them)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut smtp = 0;
        let mut dns = None;
        let mut https = None;
        let expected = 1
            + usize::from(options.zone.is_some() || options.signed_zone.is_some())
            + usize::from(options.sts.is_some());
        for _ in 0..expected {
            let Some(Ok(line)) = lines.next() else {
                let said = std::fs::read_to_string(&errors).unwrap_or_default();
                panic!("peer.py stopped before it was ready:\n{said}");
            };
            match line.split_once(' ') {
                Some(("SMTP", p)) => smtp = p.parse().unwrap(),
                Some(("DNS", p)) => dns = Some(p.parse().unwrap()),
                Some(("HTTPS", p)) => https = Some(p.parse().unwrap()),
                _ => panic!("peer.py: {line}"),
            }
        }
        Peer {
            child,
            smtp,
            dns,
            https,
            out,
            cert,
        }
    }

    /// Connections made to the SMTP/LMTP server so far, and the most open
    /// at once.
    pub fn connections(&self) -> (usize, usize) {
        let read = |name: &str| {
            std::fs::read_to_string(self.out.path().join(name))
                .map(|t| t.trim().parse().unwrap())
                .unwrap_or(0)
        };
        (read("connections"), read("max-connections"))
    }

    /// The DNSSEC trust anchor of the signed zone.
    pub fn anchor(&self) -> PathBuf {
        self.out.path().join("anchor")
    }

    /// How often the MTA-STS policy was fetched.
    pub fn sts_fetches(&self) -> usize {
        std::fs::read_to_string(self.out.path().join("sts-fetches"))
            .map(|t| t.trim().parse().unwrap())
            .unwrap_or(0)
    }

    pub fn received(&self) -> Vec<Received> {
        let mut out = Vec::new();
        for n in 1.. {
            let json = self.out.path().join(format!("{n}.json"));
            let Ok(text) = std::fs::read_to_string(&json) else {
                break;
            };
            out.push(Received {
                envelope: serde_json::from_str(&text).unwrap(),
                message: std::fs::read_to_string(self.out.path().join(format!("{n}.eml"))).unwrap(),
            });
        }
        out
    }

    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        super::wait_until(
            Duration::from_secs(20),
            || {
                let got = self.received().len();
                format!("the peer received {got} messages, expected {n}")
            },
            || {
                let r = self.received();
                (r.len() >= n).then_some(r)
            },
        )
    }
}
