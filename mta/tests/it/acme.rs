//! Certificates from ACME, against Pebble (Let's Encrypt's test CA) on
//! loopback, its DNS pointed at a dnslib zone: issuance over HTTP-01 and
//! TLS-ALPN-01, every TLS listener presenting the chain (checked by a
//! client that trusts only Pebble's root), renewal of short-lived
//! certificates without a restart, a CA that cannot confirm the name, and
//! SIGKILL in the middle of renewals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::http::Browser;
use crate::common::pebble::{self, Pebble, free_port};
use crate::common::peer::{Options, Peer};
use crate::common::{Client, PASSWORD, Server, wait_until};

/// The host name and the names clients and MTA-STS use resolve here;
/// `autodiscover.example.org` is not published, so the CA cannot confirm
/// it.
pub const ZONE: &str = "\
mx.example.org. 60 IN A 127.0.0.1
mta-sts.example.org. 60 IN A 127.0.0.1
autoconfig.example.org. 60 IN A 127.0.0.1
";

/// A claimed appliance for example.org whose web listens on `http` and
/// `https` (the ports Pebble checks).
pub fn base(http: u16, https: u16) -> String {
    format!(
        r#"
hostname = "mx.example.org"
domains = ["example.org"]
[[accounts]]
address = "owner@example.org"
password = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
admin = true
[[listeners]]
address = "127.0.0.1:0"
role = "mx"
[[listeners]]
address = "127.0.0.1:0"
role = "submissions"
[[listeners]]
address = "127.0.0.1:{http}"
role = "http"
[[listeners]]
address = "127.0.0.1:{https}"
role = "https"
"#
    )
}

/// The names of the leaf a TLS server at `addr` presents, verified
/// against `root` for `mx.example.org`; `Err` when verification fails.
/// With `starttls`, after SMTP's EHLO and STARTTLS.
fn presented(addr: SocketAddr, root: &Path, starttls: bool) -> Result<Vec<u8>, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if starttls {
        let mut c = Client::greeted(addr);
        c.cmd("EHLO client.example");
        let r = c.cmd("STARTTLS");
        assert_eq!(r.code, 220, "{r:?}");
        tcp = c.stream.try_clone().unwrap();
    }
    let tls = pebble::client(&std::fs::read(root).unwrap());
    let mut conn =
        rustls::ClientConnection::new(tls, "mx.example.org".try_into().unwrap()).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

/// A TLS session on `addr` (port 465) trusting `root`, greeted.
fn tls_session(
    addr: SocketAddr,
    root: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tls = pebble::client(&std::fs::read(root).unwrap());
    let conn = rustls::ClientConnection::new(tls, "mx.example.org".try_into().unwrap()).unwrap();
    let mut session = rustls::StreamOwned::new(conn, tcp);
    let mut greeting = [0u8; 256];
    let n = session.read(&mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b"220"), "{:?}", &greeting[..n]);
    session
}

fn status(s: &Server) -> String {
    let out = s.mta("cert", &["status"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The log line of the certificate issued after `after` others.
pub fn wait_issued(s: &Server, after: usize, within: Duration) -> String {
    wait_until(
        within,
        || format!("no certificate: {:?}", s.log.lock().unwrap()),
        || {
            let lines = s.log_lines(" issued by ");
            lines.get(after).cloned()
        },
    )
}

#[test]
fn a_certificate_over_http01_is_presented_on_25_465_and_443() {
    let dns = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let (http, https) = (free_port(), free_port());
    let ca = Pebble::start(pebble::Options {
        http_port: http,
        tls_port: https,
        dns: dns.dns.unwrap(),
        nonce_reject: 0,
        validity: None,
        authz_reuse: 0,
    });
    let started = Instant::now();
    let s = Server::start_with(&base(http, https), &ca.acme_config());
    let line = wait_issued(&s, 0, Duration::from_secs(60));
    eprintln!(
        "first certificate {:.1} s after the server started: {line}",
        started.elapsed().as_secs_f64()
    );
    assert!(line.contains("over HTTP-01"), "{line}");
    let root = ca.root();
    let leaf = presented(s.listeners["https"], &root, false).unwrap();
    assert_eq!(
        presented(s.listeners["submissions"], &root, false).unwrap(),
        leaf
    );
    assert_eq!(presented(s.addr, &root, true).unwrap(), leaf);
    // Names the CA confirmed; the unpublished one left out, and said so.
    let shown = status(&s);
    assert!(
        shown
            .contains("certificate: mx.example.org, mta-sts.example.org, autoconfig.example.org\n"),
        "{shown}"
    );
    assert!(shown.contains("issuer:      Pebble"), "{shown}");
    assert!(shown.contains("over HTTP-01 (port 80)"), "{shown}");
    assert!(
        shown.contains("left out:    autodiscover.example.org: "),
        "{shown}"
    );
    assert!(!shown.contains("last error"), "{shown}");
    // The account key is the owner's only.
    let account = s.data().join("acme/account.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&account).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The owner's page says the same, over HTTPS a browser trusts.
    let mut b = Browser::trusting(&root, "mx.example.org");
    let r = b.post(
        s.listeners["https"],
        true,
        "/login",
        &[
            ("address", "owner@example.org"),
            ("password", PASSWORD),
            ("next", "/certificate"),
        ],
    );
    assert_eq!(r.location(), "/certificate", "{r:?}");
    let page = b.get(s.listeners["https"], true, "/certificate");
    for text in [
        "<code>mx.example.org</code>",
        "Pebble Intermediate CA",
        "checked over HTTP-01 (port 80)",
        "<code>autodiscover.example.org</code>: ",
    ] {
        assert!(page.body.contains(text), "{text} not in {}", page.body);
    }
    let r = b.post(
        s.listeners["https"],
        true,
        "/certificate/renew",
        &[("csrf", &page.input("csrf"))],
    );
    assert_eq!(r.location(), "/certificate");
    wait_issued(&s, 1, Duration::from_secs(60));
    // A real certificate: plain HTTP now only redirects (and answers the CA).
    let mut c = TcpStream::connect(("127.0.0.1", http)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET /setup HTTP/1.1\r\nHost: mx.example.org\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 30"), "{answer}");
}

#[test]
fn tls_alpn01_is_used_when_port_80_cannot_be_reached() {
    let dns = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let (http, https) = (free_port(), free_port());
    // The CA's HTTP-01 check goes to a port nobody forwards.
    let ca = Pebble::start(pebble::Options {
        http_port: free_port(),
        tls_port: https,
        dns: dns.dns.unwrap(),
        nonce_reject: 0,
        validity: None,
        authz_reuse: 0,
    });
    let s = Server::start_with(&base(http, https), &ca.acme_config());
    let line = wait_issued(&s, 0, Duration::from_secs(90));
    assert!(line.contains("over TLS-ALPN-01"), "{line}");
    let root = ca.root();
    presented(s.listeners["https"], &root, false).unwrap();
    let shown = status(&s);
    assert!(shown.contains("over TLS-ALPN-01 (port 443)"), "{shown}");
}

#[test]
fn when_no_challenge_can_succeed_the_owner_is_told_and_a_later_try_recovers() {
    let dns = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let (http, https) = (free_port(), free_port());
    let dead = || pebble::Options {
        http_port: free_port(),
        tls_port: free_port(),
        dns: dns.dns.unwrap(),
        nonce_reject: 0,
        validity: None,
        authz_reuse: 0,
    };
    let mut ca = Pebble::start(dead());
    let s = Server::start_with(&base(http, https), &ca.acme_config());
    let line = wait_until(
        Duration::from_secs(90),
        || format!("no failure logged: {:?}", s.log.lock().unwrap()),
        || s.log_lines("no certificate from").first().cloned(),
    );
    eprintln!("{line}");
    assert!(
        line.contains("the CA could not confirm that mx.example.org leads here")
            && line.contains("HTTP-01 (port 80): ")
            && line.contains("TLS-ALPN-01 (port 443): ")
            && line.contains("next try "),
        "{line}"
    );
    let shown = status(&s);
    eprintln!("{shown}");
    assert!(shown.contains("this appliance (self-signed"), "{shown}");
    assert!(
        shown.contains("last error:  HTTP-01 (port 80): the CA could not confirm"),
        "{shown}"
    );
    // The listeners still present the appliance's own certificate.
    let own = s.data().join("tls/self-signed.crt");
    presented(s.listeners["https"], &own, false).unwrap();

    // The CA comes back reachable (a new Pebble on the same address: it
    // no longer knows the account, which is registered again); asking
    // now does not wait for the backoff.
    ca.restart(pebble::Options {
        http_port: http,
        tls_port: https,
        ..dead()
    });
    let out = s.mta("cert", &["renew"]);
    assert!(out.status.success(), "{out:?}");
    wait_issued(&s, 0, Duration::from_secs(90));
    presented(s.listeners["https"], &ca.root(), false).unwrap();
    let shown = status(&s);
    assert!(!shown.contains("last error"), "{shown}");
}

#[test]
fn short_certificates_are_renewed_and_a_sigkill_during_renewal_leaves_a_working_pair() {
    let dns = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let (http, https) = (free_port(), free_port());
    let ca = Pebble::start(pebble::Options {
        http_port: http,
        tls_port: https,
        dns: dns.dns.unwrap(),
        nonce_reject: 0,
        // Renewed at two thirds: every 6 s or so.
        validity: Some(9),
        // Renewals reuse the names' valid authorizations, as Let's
        // Encrypt's do.
        authz_reuse: 100,
    });
    let mut s = Server::start_with(&base(http, https), &ca.acme_config());
    let root = ca.root();
    wait_issued(&s, 0, Duration::from_secs(60));
    let first = presented(s.listeners["https"], &root, false).unwrap();
    // A TLS session open across the renewal keeps working.
    let mut open = tls_session(s.listeners["submissions"], &root);
    wait_issued(&s, 1, Duration::from_secs(60));
    let second = presented(s.listeners["https"], &root, false).unwrap();
    assert_ne!(first, second, "the new certificate, without a restart");
    write!(open, "NOOP\r\n").unwrap();
    let mut reply = [0u8; 64];
    let n = open.read(&mut reply).unwrap();
    assert!(
        reply[..n].starts_with(b"250"),
        "the open session goes on: {:?}",
        String::from_utf8_lossy(&reply[..n])
    );

    // SIGKILL at moments spread over the renewal cycle; every time the
    // pair on disk is whole, and the server comes back and gets a
    // certificate that verifies. (The page cache survives a SIGKILL: this
    // checks the order of the writes; their syncs are `fsutil`'s.)
    let mut rng = 0x2545_f491_u64;
    for round in 0..6 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(rng % 6000));
        s.kill();
        let dir = s.data().join("tls/acme");
        let current = std::fs::read_to_string(dir.join("current")).unwrap();
        let chain = std::fs::read(dir.join(format!("{}.crt", current.trim()))).unwrap();
        let key = std::fs::read(dir.join(format!("{}.key", current.trim()))).unwrap();
        assert!(
            matches(&chain, &key),
            "round {round}: the kept certificate and key do not belong together"
        );
        s.restart();
        // An attempt the kill cut short counts as failed (its backoff keeps
        // a crashing server from hammering the CA): ask again now.
        let out = s.mta("cert", &["renew"]);
        assert!(out.status.success(), "{out:?}");
        let got = wait_until(
            Duration::from_secs(60),
            || {
                format!(
                    "round {round}: no valid certificate: {:?}",
                    s.log.lock().unwrap()
                )
            },
            || presented(s.listeners["https"], &root, false).ok(),
        );
        assert!(!got.is_empty());
    }
}

/// Whether the private key (PEM) is the one of the chain's leaf (PEM).
fn matches(chain: &[u8], key: &[u8]) -> bool {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let Ok(key) = rustls::pki_types::PrivateKeyDer::from_pem_slice(key) else {
        return false;
    };
    !certs.is_empty()
        && rustls::sign::CertifiedKey::from_der(
            certs,
            key,
            &rustls::crypto::ring::default_provider(),
        )
        .is_ok()
}

#[test]
fn a_ca_that_refuses_every_request_is_reported_and_asked_again_later() {
    let dns = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let (http, https) = (free_port(), free_port());
    let options = |nonce_reject| pebble::Options {
        http_port: http,
        tls_port: https,
        dns: dns.dns.unwrap(),
        nonce_reject,
        validity: None,
        authz_reuse: 0,
    };
    // Every nonce refused as bad: the client's retries give up.
    let mut ca = Pebble::start(options(100));
    let s = Server::start_with(&base(http, https), &ca.acme_config());
    let line = wait_until(
        Duration::from_secs(60),
        || format!("no failure logged: {:?}", s.log.lock().unwrap()),
        || s.log_lines("no certificate from").first().cloned(),
    );
    assert!(line.contains("badNonce"), "{line}");
    assert!(status(&s).contains("last error:  "), "{}", status(&s));
    // The CA behaves again (the same one, restarted); asked, it issues.
    ca.restart(options(0));
    let out = s.mta("cert", &["renew"]);
    assert!(out.status.success(), "{out:?}");
    wait_issued(&s, 0, Duration::from_secs(60));
    presented(s.listeners["https"], &ca.root(), false).unwrap();
}
