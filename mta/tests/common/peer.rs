//! Independent peers (tests/peer.py): an SMTP or LMTP server (aiosmtpd)
//! and a DNS server (dnslib) on loopback.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Peer {
    child: Child,
    pub smtp: u16,
    pub dns: Option<u16>,
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

impl Peer {
    pub fn start(lmtp: bool, tls: bool, auth: Option<&str>, zone: Option<&str>) -> Peer {
        let out = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peer.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg("--out").arg(out.path());
        if lmtp {
            cmd.arg("--lmtp");
        }
        let mut cert = None;
        if tls {
            let (c, k) = (out.path().join("cert.pem"), out.path().join("key.pem"));
            let ok = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=relay.test",
                ])
                .args(["-addext", "subjectAltName=DNS:relay.test,IP:127.0.0.1"])
                // An end-entity certificate, trusted directly by the client.
                .args([
                    "-addext",
                    "basicConstraints=critical,CA:FALSE",
                    "-addext",
                    "extendedKeyUsage=serverAuth",
                    "-keyout",
                ])
                .arg(&k)
                .arg("-out")
                .arg(&c)
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "openssl could not make a test certificate");
            cmd.arg("--tls").arg(&c).arg(&k);
            cert = Some(c);
        }
        if let Some(a) = auth {
            cmd.args(["--auth", a]);
        }
        if let Some(z) = zone {
            let path = out.path().join("zone");
            std::fs::write(&path, z).unwrap();
            cmd.arg("--zone").arg(path);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with aiosmtpd and dnslib (`cargo xtask test` installs them)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut smtp = 0;
        let mut dns = None;
        for _ in 0..if zone.is_some() { 2 } else { 1 } {
            let line = lines.next().expect("peer.py printed nothing").unwrap();
            match line.split_once(' ') {
                Some(("SMTP", p)) => smtp = p.parse().unwrap(),
                Some(("DNS", p)) => dns = Some(p.parse().unwrap()),
                _ => panic!("peer.py: {line}"),
            }
        }
        Peer {
            child,
            smtp,
            dns,
            out,
            cert,
        }
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
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.received();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "the peer received {} messages, expected {n}",
                r.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
