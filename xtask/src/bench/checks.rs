//! `cargo xtask bench --checks`: what the inbound checks cost. One
//! DKIM-signed message (dkimpy, RSA 2048, `bench.example`) is sent by
//! every connection over and over to our server twice, one run after the
//! other on the same machine: first with the checks off, then with SPF
//! (HELO and MAIL FROM), DKIM, ARC, DMARC (`p=reject`), one DNSBL zone and
//! the HELO and sender-domain sanity checks,
//! all answered by a local dnslib server (its answers pass: the cost, not
//! a refusal, is measured). Greylisting and the pregreet test are off in
//! both runs: they delay a client's first message, they do not cost per
//! message. Reports messages per second, p50/p99 latency and peak RSS of
//! each run and the ratios.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::{
    Bench, count_files, generate, peak_rss_kib, rate, report_accepted, start_ours_with,
    wait_arrival,
};
use crate::check;

/// Makes a key, signs one message of about `argv[1]` bytes, serves the
/// records over DNS; prints the port, then the message in base64.
const PEER: &str = r#"
import base64, sys
import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver
size = int(sys.argv[1])
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
head = b"From: bench@bench.example\r\nTo: alice@example.org\r\nSubject: bench\r\nMessage-ID: <bench@bench.example>\r\n\r\n"
line = b"x" * 76 + b"\r\n"
msg = head + line * max(1, (size - len(head)) // len(line))
sig = dkim.sign(msg, b"bench", b"bench.example", pem, canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[b"from", b"to", b"subject", b"message-id"])
chunks = " ".join('"%s"' % txt[i:i + 200] for i in range(0, len(txt), 200))
zone = ("bench.example. 60 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n"
        "bench.example. 60 IN MX 10 bench.example.\n"
        "bench.example. 60 IN A 127.0.0.1\n"
        "_dmarc.bench.example. 60 IN TXT \"v=DMARC1; p=reject\"\n"
        "bench._domainkey.bench.example. 60 IN TXT %s\n" % chunks)
quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
server = DNSServer(ZoneResolver(zone, glob=False), port=0, address="127.0.0.1", logger=quiet)
server.start_thread()
print(server.server.server_address[1])
print(base64.b64encode(sig + msg).decode(), flush=True)
sys.stdin.read()
"#;

const OFF: &str = "authenticate = false\npregreet = \"0s\"\ngreylist = \"0s\"\ndnsbl = []";
const ON: &str = "authenticate = true\npregreet = \"0s\"\ngreylist = \"0s\"\ntrusted_networks = []\ndnsbl = [\"bl.bench.example*3\"]";

/// One run's figures: msgs/s accepted, p99 latency (ms), peak RSS (MiB).
struct Figures {
    rate: f64,
    p99: f64,
    rss: f64,
}

pub fn checks(b: Bench) -> anyhow::Result<()> {
    crate::tools::ensure(&crate::tools::for_checks_bench())?;
    let mut peer = Command::new("python3")
        .args(["-c", PEER, &b.size.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the DNS server")?;
    let mut out = BufReader::new(peer.stdout.take().context("piped")?);
    let (mut port, mut message) = (String::new(), String::new());
    out.read_line(&mut port)?;
    out.read_line(&mut message)?;
    let port: u16 = port.trim().parse().context("the DNS server's port")?;
    use base64::Engine;
    let message = Arc::new(
        base64::engine::general_purpose::STANDARD
            .decode(message.trim())
            .context("the signed message")?,
    );
    let total = b.connections * b.messages;
    println!(
        "bench --checks: {} connections x {} messages of {} bytes = {total} messages, checks off then on",
        b.connections,
        b.messages,
        message.len()
    );
    let mut figures = Vec::new();
    for (label, inbound) in [("off", OFF), ("on", ON)] {
        println!("-- checks {label}");
        let ours = start_ours_with(&b, None, Some((inbound, port)))?;
        let new_dir = ours.dir.join("data/mail/example.org/alice/new");
        check(&mut Command::new("sync"))?;
        let started = Instant::now();
        let mut latencies = generate(
            ours.addr,
            None,
            "alice@example.org",
            b.connections,
            b.messages,
            b.size,
            Some(message.clone()),
        )?;
        let accepted = started.elapsed();
        latencies.sort();
        let p99 = latencies[((latencies.len() as f64 * 0.99) as usize).min(latencies.len() - 1)];
        report_accepted(total, accepted, latencies, true);
        wait_arrival(total, || count_files(&new_dir), "delivered")?;
        println!("end to end: {}", rate(total, started.elapsed()));
        let rss = peak_rss_kib(ours.child.id()).unwrap_or(0) as f64 / 1024.0;
        println!("server:     peak RSS {rss:.1} MiB");
        // The checks ran: one delivered message carries their results.
        if label == "on" {
            let first = std::fs::read_dir(&new_dir)?
                .next()
                .context("no message delivered")??;
            let mut head = String::new();
            std::fs::File::open(first.path())?
                .take(4096)
                .read_to_string(&mut head)?;
            // Our field: its first line and its continuation lines.
            let mut lines = head
                .lines()
                .skip_while(|l| !l.starts_with("Authentication-Results:"));
            let results = lines
                .next()
                .into_iter()
                .chain(lines.take_while(|l| l.starts_with([' ', '\t'])))
                .collect::<Vec<_>>()
                .join(" ");
            for want in ["spf=pass", "dkim=pass", "dmarc=pass"] {
                anyhow::ensure!(
                    results.contains(want),
                    "the checks did not pass ({want}): {results}"
                );
            }
            println!(
                "checked:    {}",
                results.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
        figures.push(Figures {
            rate: total as f64 / accepted.as_secs_f64(),
            p99: p99.as_secs_f64() * 1000.0,
            rss,
        });
    }
    let _ = peer.kill();
    let _ = peer.wait();
    let (off, on) = (&figures[0], &figures[1]);
    println!(
        "checks on / off: {:.2}x the messages per second ({:.0} / {:.0}), {:.2}x the p99 latency ({:.1} / {:.1} ms), peak RSS {:.1} / {:.1} MiB",
        on.rate / off.rate,
        on.rate,
        off.rate,
        on.p99 / off.p99,
        on.p99,
        off.p99,
        on.rss,
        off.rss
    );
    Ok(())
}
