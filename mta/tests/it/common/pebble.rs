//! Pebble, Let's Encrypt's ACME test server (Debian `pebble`), on
//! loopback: its HTTPS under a test CA, its DNS lookups sent to a test
//! zone, and the ports its validation checks (80 and 443 of a real CA)
//! chosen by the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::peer::TestCa;

pub struct Pebble {
    child: Child,
    pub dir: tempfile::TempDir,
    /// The CA Pebble's own HTTPS is under (for `[acme] ca`).
    pub https_ca: TestCa,
    pub port: u16,
    management: u16,
    files: (PathBuf, PathBuf),
}

/// How Pebble is run.
pub struct Options {
    /// The port HTTP-01 validation connects to.
    pub http_port: u16,
    /// The port TLS-ALPN-01 validation connects to.
    pub tls_port: u16,
    /// The DNS server Pebble resolves names with.
    pub dns: u16,
    /// Percentage of good nonces refused (`PEBBLE_WFE_NONCEREJECT`).
    pub nonce_reject: u8,
    /// Lifetime of issued certificates, seconds (Pebble's default: 5 years).
    pub validity: Option<u64>,
    /// Percentage of orders that reuse a valid authorization
    /// (`PEBBLE_AUTHZREUSE`, as Let's Encrypt does for 30 days).
    pub authz_reuse: u8,
}

/// A port nothing listens on (yet), for a listener whose port must be
/// known before it starts. Taken below the kernel's ephemeral range
/// (32768 and up), where no `bind(:0)` or outgoing connection of another
/// test lands, and never twice in this process: a port returned here
/// cannot be taken by someone else before its user binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20000 + (std::process::id() % 1000) as u16 * 12,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32768, "no free port left below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Pebble {
    pub fn start(o: Options) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let https_ca = TestCa::new();
        let files = https_ca.issue(&["localhost", "127.0.0.1"]);
        let child = Command::new("true").spawn().unwrap();
        let mut p = Pebble {
            child,
            dir,
            https_ca,
            port: free_port(),
            management: free_port(),
            files,
        };
        p.spawn(&o);
        p
    }

    /// Stops Pebble and starts a new one (which knows nothing of the old
    /// one's accounts) on the same address, under the same HTTPS
    /// certificate.
    pub fn restart(&mut self, o: Options) {
        self.stop();
        self.spawn(&o);
    }

    fn spawn(&mut self, o: &Options) {
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{}", self.port),
            "managementListenAddress": format!("127.0.0.1:{}", self.management),
            "certificate": self.files.0,
            "privateKey": self.files.1,
            "httpPort": o.http_port,
            "tlsPort": o.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(v) = o.validity {
            pebble["certificateValidityPeriod"] = v.into();
        }
        let config = self.dir.path().join("pebble.json");
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string()).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pebble.log"))
            .unwrap();
        self.child = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{}", o.dns))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", o.nonce_reject.to_string())
            .env("PEBBLE_AUTHZREUSE", o.authz_reuse.to_string())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("pebble (Debian package `pebble`; `cargo xtask test` installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || TcpStream::connect(("127.0.0.1", self.management)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pebble did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The `[acme]` section that points at this Pebble.
    pub fn acme_config(&self) -> String {
        format!(
            "[acme]\ncontact = \"owner@example.org\"\nterms_accepted = true\ndirectory = \"{}\"\nca = \"{}\"\n",
            self.directory(),
            self.https_ca.pem.display()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root its certificates chain to (a new one each run).
    pub fn root(&self) -> PathBuf {
        let body = self.get(self.management, "/roots/0");
        let path = self.dir.path().join("root.pem");
        std::fs::write(&path, body).unwrap();
        path
    }

    fn get(&self, port: u16, path: &str) -> String {
        let tls = client(&std::fs::read(&self.https_ca.pem).unwrap());
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ClientConnection::new(tls, "127.0.0.1".try_into().unwrap()).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        assert!(head.contains(" 200 "), "{head}");
        body.to_string()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TLS client trusting only the certificates in `pem`.
pub fn client(pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
