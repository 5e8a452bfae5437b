//! `cargo xtask bench`: SMTP load against our MTA (started with a temporary
//! data directory) or any server (`--target HOST:PORT --rcpt ADDR`).
//!
//! Reports messages per second accepted (every `250` after DATA means the
//! message is durable), end-to-end messages per second (until the files are
//! in the Maildir's `new/`, when the target is ours or `--maildir` names the
//! directory), the per-message latency from MAIL to the final `250` (p50, p99),
//! and the server's peak RSS. A benchmark, not a test: it asserts nothing
//! about speed.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use argh::FromArgs;

use crate::smtp::expect;
use crate::{cargo, check, root};

mod checks;
mod imap;

/// measure SMTP throughput, latency and memory
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
pub struct Bench {
    /// parallel connections (default 32)
    #[argh(option, default = "32")]
    connections: usize,
    /// messages per connection (default 100)
    #[argh(option, default = "100")]
    messages: usize,
    /// message size in bytes (default 4096)
    #[argh(option, default = "4096")]
    size: usize,
    /// benchmark the SMTP server at HOST:PORT instead of starting ours
    #[argh(option)]
    target: Option<String>,
    /// recipient address (default alice@example.org, an account of the server we start)
    #[argh(option)]
    rcpt: Option<String>,
    /// with --target: the Maildir `new/` directory the messages land in, for end-to-end figures
    #[argh(option)]
    maildir: Option<PathBuf>,
    /// drive the load with Postfix's smtp-source (one connection per message) instead of the built-in client
    #[argh(switch)]
    smtp_source: bool,
    /// where our server's temporary data directory is made (default target/bench): the file system measured
    #[argh(option)]
    dir: Option<PathBuf>,
    /// measure relaying instead: authenticated submission over TLS (465), DKIM signing, delivery to a loopback sink
    #[argh(switch)]
    outbound: bool,
    /// run the same smtp-source load against another server too, one after the other on the same file system, and compare (only "postfix": Debian's package, Maildir delivery)
    #[argh(option)]
    compare: Option<String>,
    /// measure the web instead: page requests (the setup wizard's first page and the stylesheet, each on a new connection) from --connections clients, --messages each
    #[argh(switch)]
    web: bool,
    /// our server's binary (default: target/release/mta, built first), e.g. an older build for a before/after figure
    #[argh(option)]
    mta: Option<PathBuf>,
    /// measure IMAP instead, beside Dovecot: SELECT, FETCH 1:* (FLAGS ENVELOPE) and UID SEARCH of one folder, and memory (see bench/imap.rs)
    #[argh(switch)]
    imap: bool,
    /// measure the inbound checks: the same load with SPF, DKIM (a signed message), DMARC and a DNSBL answered by a local DNS server, beside the same load without them (see bench/checks.rs)
    #[argh(switch)]
    checks: bool,
    /// with --imap: the messages in the folder (default 10000)
    #[argh(option, default = "10000")]
    folder_size: usize,
}

/// The account the outbound benchmark submits as ("Hello world!", the
/// SHA-crypt reference vector).
const BENCH_PASSWORD: &str = "Hello world!";
const BENCH_HASH: &str = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";

struct Ours {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn bench(b: Bench) -> anyhow::Result<()> {
    if b.outbound {
        return outbound(b);
    }
    if b.web {
        return web(b);
    }
    if b.imap {
        return imap::imap(b);
    }
    if b.checks {
        return checks::checks(b);
    }
    if let Some(peer) = &b.compare {
        if peer != "postfix" {
            bail!("--compare knows only postfix");
        }
        return compare_postfix(b);
    }
    let total = b.connections * b.messages;
    let (ours, addr, rcpt, new_dir) = match &b.target {
        Some(target) => {
            let addr = target
                .to_socket_addrs()
                .with_context(|| format!("resolving {target}"))?
                .next()
                .context("no address")?;
            let rcpt = b.rcpt.clone().context("--target needs --rcpt ADDRESS")?;
            (None, addr, rcpt, b.maildir.clone())
        }
        None => {
            let ours = start_ours(&b, None)?;
            let addr = ours.addr;
            let new_dir = ours.dir.join("data/mail/example.org/alice/new");
            (
                Some(ours),
                addr,
                b.rcpt.clone().unwrap_or("alice@example.org".into()),
                Some(new_dir),
            )
        }
    };
    let already = new_dir.as_deref().map(count_files).unwrap_or(0);
    if let Some(kib) = ours.as_ref().and_then(|o| rss_kib(o.child.id(), "VmRSS:")) {
        println!(
            "server:     RSS {:.1} MiB at idle, before the load",
            kib as f64 / 1024.0
        );
    }
    let client = if b.smtp_source {
        "smtp-source"
    } else {
        "built-in client"
    };
    println!(
        "bench: {} connections x {} messages of {} bytes = {total} messages to {addr} ({client})",
        b.connections, b.messages, b.size
    );

    // Start from a quiet disk: earlier runs' writes and deletions must not be
    // flushed during this one.
    check(&mut Command::new("sync"))?;
    let started = Instant::now();
    let latencies = if b.smtp_source {
        let (program, libs) = crate::tools::smtp_source()?;
        check(&mut smtp_source(&program, &libs, &b, total, &rcpt, addr))?;
        Vec::new()
    } else {
        generate(addr, None, &rcpt, b.connections, b.messages, b.size, None)?
    };
    report_accepted(total, started.elapsed(), latencies, true);
    if let Some(dir) = &new_dir {
        wait_arrival(
            total,
            || count_files(dir).saturating_sub(already),
            &format!("arrived in {}", dir.display()),
        )?;
        println!(
            "end to end: {} (files in {})",
            rate(total, started.elapsed()),
            if ours.is_some() {
                "the Maildir's new/"
            } else {
                "new/"
            }
        );
    }
    if let Some(kib) = ours.as_ref().and_then(|o| peak_rss_kib(o.child.id())) {
        println!("server:     peak RSS {:.1} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "N messages in S s = R msgs/s".
fn rate(total: usize, elapsed: Duration) -> String {
    format!(
        "{total} messages in {:.2} s = {:.0} msgs/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    )
}

/// Prints how fast the messages were accepted, and the latency percentiles
/// (and, with `max`, the slowest message).
fn report_accepted(total: usize, accepted: Duration, mut latencies: Vec<Duration>, max: bool) {
    println!("accepted:   {}", rate(total, accepted));
    if latencies.is_empty() {
        return;
    }
    latencies.sort();
    let l = &latencies;
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    let max = if max {
        format!(", max {:.2} ms", ms(*l.last().unwrap()))
    } else {
        String::new()
    };
    println!(
        "latency:    p50 {:.2} ms, p99 {:.2} ms{max} (MAIL to 250 after DATA)",
        ms(pct(0.50)),
        ms(pct(0.99))
    );
}

/// Waits up to 300 s for `arrived()` to reach `total`; `place` ends the
/// error ("only N of TOTAL messages {place}").
fn wait_arrival(
    total: usize,
    mut arrived: impl FnMut() -> usize,
    place: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = arrived();
        if n >= total {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {n} of {total} messages {place}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    rss_kib(pid, "VmHWM:")
}

/// A memory figure of /proc/PID/status (`VmRSS:` now, `VmHWM:` the peak).
fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Our server; with `sink`, set up for relaying: an account, the
/// submissions port, and a transport sending `sink.example` to the sink.
/// Page response times and memory under `connections` clients that each
/// ask `messages` times for the wizard's first page (rendered each time)
/// and the stylesheet, on a new connection per request like a browser
/// without keep-alive.
fn web(b: Bench) -> anyhow::Result<()> {
    let ours = start_ours(&b, None)?;
    let port = ours.addr.port();
    if let Some(kib) = rss_kib(ours.child.id(), "VmRSS:") {
        println!(
            "server:     RSS {:.1} MiB at idle, before the load",
            kib as f64 / 1024.0
        );
    }
    let total = b.connections * b.messages * 2;
    println!(
        "bench: {} clients x {} x (GET /setup + GET /assets/style.css) = {total} requests over HTTP",
        b.connections, b.messages
    );
    let barrier = Arc::new(Barrier::new(b.connections));
    let started = Instant::now();
    let clients: Vec<_> = (0..b.connections)
        .map(|_| {
            let barrier = barrier.clone();
            let n = b.messages;
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                barrier.wait();
                let mut times = Vec::with_capacity(n * 2);
                for _ in 0..n {
                    for path in ["/setup", "/assets/style.css"] {
                        let t = Instant::now();
                        let r = crate::http::request(port, "GET", path, None, None)?;
                        if r.status != 200 {
                            bail!("GET {path}: {}", r.status);
                        }
                        times.push(t.elapsed());
                    }
                }
                Ok(times)
            })
        })
        .collect();
    let mut times = Vec::new();
    for c in clients {
        times.extend(c.join().expect("client thread")?);
    }
    let elapsed = started.elapsed();
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "served:     {total} requests in {:.2} s = {:.0} requests/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency:    p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (connect to the last byte)",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*times.last().expect("requests"))
    );
    if let Some(kib) = peak_rss_kib(ours.child.id()) {
        println!("server:     peak RSS {:.1} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}

fn start_ours(b: &Bench, sink: Option<u16>) -> anyhow::Result<Ours> {
    start_ours_with(b, sink, None)
}

/// [`start_ours`], with `inbound` (the `[inbound]` section's lines and the
/// port of the DNS server to ask) instead of the checks off.
fn start_ours_with(
    b: &Bench,
    sink: Option<u16>,
    inbound: Option<(&str, u16)>,
) -> anyhow::Result<Ours> {
    let binary = match &b.mta {
        Some(path) => path.clone(),
        None => {
            check(cargo().args(["build", "--release", "-p", "mta"]))?;
            root().join("target/release/mta")
        }
    };
    let base = b.dir.clone().unwrap_or_else(|| root().join("target/bench"));
    let dir = base.join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("mailbox.toml");
    std::fs::write(
        &config,
        format!(
            r#"hostname = "bench.example.org"
data_dir = "{}"
domains = ["example.org"]
[[accounts]]
address = "alice@example.org"
password = "{BENCH_HASH}"
[limits]
connections_per_ip = 1000
connections_per_network = 1000
connections = 1000
connection_rate = 0
message_rate = 0
[outbound]
nameservers = ["127.0.0.1:{}"]
[inbound]
{}
{}[[listeners]]
address = "127.0.0.1:0"
role = "{}"
"#,
            dir.join("data").display(),
            inbound.map_or(9, |(_, port)| port),
            inbound.map_or("authenticate = false\npregreet = \"0s\"", |(lines, _)| {
                lines
            }),
            match sink {
                Some(port) => format!(
                    "[[transports]]\nrecipient = \"sink.example\"\nvia = \"smtp:127.0.0.1:{port}\"\n"
                ),
                None => String::new(),
            },
            if sink.is_some() {
                "submissions"
            } else if b.web {
                "http"
            } else if b.imap {
                "imaps"
            } else {
                "mx"
            },
        ),
    )?;
    let mut child = Command::new(binary)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting mta")?;
    // Logging stays at its production level (info): its cost is part of the figure.
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            } else if line.contains("ERROR") || line.contains("WARN") {
                eprintln!("mta: {line}");
            }
        }
    });
    let mut ours = Ours {
        child,
        dir,
        addr: "127.0.0.1:0".parse()?,
    };
    let text = rx
        .recv_timeout(Duration::from_secs(30))
        .context("mta did not start")?;
    ours.addr = text
        .parse()
        .with_context(|| format!("bad address {text:?}"))?;
    Ok(ours)
}

/// The built-in client: each connection pipelines MAIL, RCPT and DATA, sends
/// the message and waits for the final reply before the next one. With
/// `login`, it speaks TLS from the first byte (trusting the server's
/// certificate file) and authenticates first.
fn generate(
    addr: SocketAddr,
    login: Option<(&str, &str, &Path)>,
    rcpt: &str,
    connections: usize,
    messages: usize,
    size: usize,
    fixed: Option<Arc<Vec<u8>>>,
) -> anyhow::Result<Vec<Duration>> {
    let barrier = Arc::new(Barrier::new(connections));
    let tls = login.map(|(_, _, cert)| trusting(cert)).transpose()?;
    let login = login.map(|(u, p, _)| (u.to_string(), p.to_string()));
    let from = login
        .as_ref()
        .map_or("bench@bench.example".to_string(), |(u, _)| u.clone());
    let handles: Vec<_> = (0..connections)
        .map(|n| {
            let barrier = barrier.clone();
            let rcpt = rcpt.to_string();
            let login = login.clone();
            let tls = tls.clone();
            let from = from.clone();
            let fixed = fixed.clone();
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let tcp = TcpStream::connect(addr)?;
                tcp.set_nodelay(true)?;
                let stream: Box<dyn ReadWrite> = match tls {
                    Some(config) => {
                        let name = rustls::pki_types::ServerName::try_from("bench.example.org")?;
                        let conn = rustls::ClientConnection::new(config, name)?;
                        Box::new(rustls::StreamOwned::new(conn, tcp))
                    }
                    None => Box::new(tcp),
                };
                let mut io = BufReader::new(stream);
                expect(&mut io, 220)?;
                io.get_mut().write_all(b"EHLO bench.example\r\n")?;
                expect(&mut io, 250)?;
                if let Some((user, password)) = &login {
                    use base64::Engine;
                    let token = base64::engine::general_purpose::STANDARD
                        .encode(format!("\0{user}\0{password}"));
                    io.get_mut()
                        .write_all(format!("AUTH PLAIN {token}\r\n").as_bytes())?;
                    expect(&mut io, 235)?;
                }
                let mut latencies = Vec::with_capacity(messages);
                barrier.wait();
                for m in 0..messages {
                    let t = Instant::now();
                    io.get_mut().write_all(
                        format!("MAIL FROM:<{from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes(),
                    )?;
                    expect(&mut io, 250)?;
                    expect(&mut io, 250)?;
                    expect(&mut io, 354)?;
                    match &fixed {
                        // One message for all (DKIM-signed), dot-stuffed and
                        // ending in CRLF.
                        Some(message) => {
                            io.get_mut().write_all(message)?;
                            io.get_mut().write_all(b".\r\n")?;
                        }
                        None => write_message(io.get_mut(), &from, &rcpt, n, m, size)?,
                    }
                    expect(&mut io, 250)?;
                    latencies.push(t.elapsed());
                }
                io.get_mut().write_all(b"QUIT\r\n")?;
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??,
        );
    }
    Ok(all)
}

trait ReadWrite: std::io::Read + Write + Send {}
impl<T: std::io::Read + Write + Send> ReadWrite for T {}

/// A TLS client configuration that trusts exactly the certificate in `cert`
/// (our server's self-signed one).
fn trusting(cert: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// A minimal SMTP server that accepts everything and counts messages.
/// The loopback sink: its port, the messages it received and the
/// connections it accepted.
type Counter = Arc<std::sync::atomic::AtomicUsize>;

fn sink() -> anyhow::Result<(u16, Counter, Counter)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let accepted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            accepted.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut w = stream.try_clone()?;
                let mut r = BufReader::new(stream);
                w.write_all(b"220 sink ESMTP\r\n")?;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    match verb.as_str() {
                        "DATA" => {
                            w.write_all(b"354 go on\r\n")?;
                            loop {
                                line.clear();
                                if r.read_line(&mut line)? == 0 {
                                    return Ok(());
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                            }
                            counter.fetch_add(1, Ordering::SeqCst);
                            w.write_all(b"250 2.0.0 kept\r\n")?;
                        }
                        "QUIT" => {
                            w.write_all(b"221 bye\r\n")?;
                            return Ok(());
                        }
                        _ => w.write_all(b"250 ok\r\n")?,
                    }
                }
            });
        }
    });
    Ok((port, count, connections))
}

/// `--outbound`: submission (TLS, AUTH, DKIM) → queue → SMTP to the sink.
fn outbound(b: Bench) -> anyhow::Result<()> {
    let total = b.connections * b.messages;
    let (port, delivered, connections) = sink()?;
    let ours = start_ours(&b, Some(port))?;
    println!(
        "bench --outbound: {} connections x {} messages of {} bytes = {total} messages, submitted over TLS with AUTH, DKIM-signed, relayed to a loopback sink",
        b.connections, b.messages, b.size
    );
    check(&mut Command::new("sync"))?;
    let started = Instant::now();
    let cert = ours.dir.join("data/tls/self-signed.crt");
    let latencies = generate(
        ours.addr,
        Some(("alice@example.org", BENCH_PASSWORD, &cert)),
        "user@sink.example",
        b.connections,
        b.messages,
        b.size,
        None,
    )?;
    report_accepted(total, started.elapsed(), latencies, false);
    wait_arrival(
        total,
        || delivered.load(std::sync::atomic::Ordering::SeqCst),
        "reached the sink",
    )?;
    println!(
        "relayed:    {} (received by the sink)",
        rate(total, started.elapsed())
    );
    let opened = connections.load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "sink:       {opened} connections, {:.1} messages per connection",
        total as f64 / opened.max(1) as f64
    );
    if let Some(kib) = peak_rss_kib(ours.child.id()) {
        println!("server:     peak RSS {:.1} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}

/// A message of about `size` bytes with 76-character lines, ended by the
/// DATA terminator.
/// Writes one message of about `size` bytes (lines of 78 octets) and the
/// end marker, a chunk at a time: 500 clients of 50 MB messages must not
/// need 25 GB here.
fn write_message(
    w: &mut impl Write,
    from: &str,
    to: &str,
    conn: usize,
    n: usize,
    size: usize,
) -> std::io::Result<()> {
    let head = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: bench {conn}-{n}\r\nMessage-ID: <{conn}.{n}@bench.example>\r\n\r\n"
    );
    let line = [[b'x'; 76].as_slice(), b"\r\n"].concat();
    let lines = size.saturating_sub(head.len()) / line.len();
    let chunk: Vec<u8> = line.repeat(lines.min(840));
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, w);
    out.write_all(head.as_bytes())?;
    let mut left = lines;
    while left > 0 {
        let take = left.min(840);
        out.write_all(&chunk[..take * line.len()])?;
        left -= take;
    }
    out.write_all(b".\r\n")?;
    out.flush()
}

/// Postfix's load generator: `b.connections` at once, one connection per
/// message.
fn smtp_source(
    program: &Path,
    libs: &Path,
    b: &Bench,
    total: usize,
    rcpt: &str,
    addr: SocketAddr,
) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("LD_LIBRARY_PATH", libs)
        .arg("-s")
        .arg(b.connections.to_string())
        .arg("-l")
        .arg(b.size.to_string())
        .arg("-m")
        .arg(total.to_string())
        .args(["-f", "bench@bench.example", "-t", rcpt])
        .arg(addr.to_string());
    cmd
}

/// One server's figures in the comparison.
struct Figures {
    accepted: Duration,
    end_to_end: Duration,
    cpu: Duration,
    peak_pss_kib: u64,
}

/// `--compare postfix`: the same smtp-source load (one connection per
/// message, `--connections` at once, `--connections x --messages` messages
/// of `--size` bytes) against Postfix and against ours, one after the other,
/// with their data on the same file system; each server's CPU time (all its
/// processes, read when it has stopped) and peak PSS (summed over its
/// processes, sampled every 100 ms).
fn compare_postfix(b: Bench) -> anyhow::Result<()> {
    crate::postfix::ensure_installed()?;
    let (program, libs) = crate::tools::smtp_source()?;
    let total = b.connections * b.messages;
    let base = b.dir.clone().unwrap_or_else(|| root().join("target/bench"));
    std::fs::create_dir_all(&base)?;
    let load = |addr: SocketAddr| -> anyhow::Result<()> {
        check(&mut smtp_source(
            &program,
            &libs,
            &b,
            total,
            "alice@example.org",
            addr,
        ))
    };
    println!(
        "compare: smtp-source -s {} -l {} -m {total}, one server after the other, data under {}",
        b.connections,
        b.size,
        base.display()
    );

    // Postfix.
    let port = crate::qemu::free_port()?;
    let mut postfix = crate::postfix::Postfix::start(&base.join("postfix"), port)?;
    let master = postfix.master_pid().context("no Postfix master pid")?;
    let pf = measure(
        || load(format!("127.0.0.1:{port}").parse()?),
        &postfix.maildir(),
        total,
        move || descendants(master),
        || postfix.stop(),
    )?;
    drop(postfix);

    // Ours.
    let ours = start_ours(&b, None)?;
    let pid = ours.child.id();
    let maildir = ours.dir.join("data/mail/example.org/alice/new");
    let addr = ours.addr;
    let mut ours = Some(ours);
    let mb = measure(
        || load(addr),
        &maildir,
        total,
        move || vec![pid],
        || {
            drop(ours.take());
            Ok(())
        },
    )?;

    let line = |name: &str, f: &Figures| {
        println!(
            "{name:8} {:>10.0} {:>12.0} {:>11.2} {:>9.1}",
            total as f64 / f.accepted.as_secs_f64(),
            total as f64 / f.end_to_end.as_secs_f64(),
            f.cpu.as_secs_f64() * 1000.0 / total as f64,
            f.peak_pss_kib as f64 / 1024.0
        )
    };
    println!("server   accepted/s  end-to-end/s  CPU ms/msg  PSS MiB");
    line("postfix", &pf);
    line("mailbox", &mb);
    println!(
        "mailbox/postfix: {:.2}x accepted, {:.2}x end to end, {:.2}x CPU per message, {:.2}x peak PSS",
        pf.accepted.as_secs_f64() / mb.accepted.as_secs_f64(),
        pf.end_to_end.as_secs_f64() / mb.end_to_end.as_secs_f64(),
        mb.cpu.as_secs_f64() / pf.cpu.as_secs_f64(),
        mb.peak_pss_kib as f64 / pf.peak_pss_kib as f64
    );
    Ok(())
}

/// Runs `load`, waits until `total` files are in `maildir`, then `stop`s the
/// server; its CPU time is what our reaped children gained meanwhile (the
/// load generator's own time taken out).
fn measure(
    load: impl FnOnce() -> anyhow::Result<()>,
    maildir: &Path,
    total: usize,
    pids: impl Fn() -> Vec<u32> + Send + 'static,
    stop: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Figures> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    check(&mut Command::new("sync"))?;
    let already = count_files(maildir);
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let pss: u64 = pids().into_iter().filter_map(pss_kib).sum();
                peak.fetch_max(pss, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let started = Instant::now();
    load()?;
    let accepted = started.elapsed();
    let after_load = children_cpu()?;
    wait_arrival(
        total,
        || count_files(maildir).saturating_sub(already),
        &format!("arrived in {}", maildir.display()),
    )?;
    let end_to_end = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    stop()?;
    let after_stop = children_cpu()?;
    Ok(Figures {
        accepted,
        end_to_end,
        cpu: after_stop.saturating_sub(after_load),
        peak_pss_kib: peak.load(Ordering::SeqCst),
    })
}

/// CPU time of our children that have been waited for (cutime + cstime).
fn children_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, cutime 16 and cstime 17.
    let ticks: u64 = fields[13].parse::<u64>()? + fields[14].parse::<u64>()?;
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `root` and every process below it.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
        {
            parent.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}
