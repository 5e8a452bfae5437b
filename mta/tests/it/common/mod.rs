//! Test harness: runs the real `mta serve` binary on loopback with a
//! throw-away data directory, and a small blocking SMTP client to talk to it.

#![allow(dead_code)]

pub mod http;
pub mod pebble;
pub mod peer;
pub mod webdriver;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MTA: &str = env!("CARGO_BIN_EXE_mta");

/// alice's password (the SHA-crypt reference vector in `BASE_CONFIG`).
pub const PASSWORD: &str = "Hello world!";

pub const BASE_CONFIG: &str = r#"
hostname = "mx.example.org"
domains = ["example.org"]
[[accounts]]
address = "alice@example.org"
# "Hello world!"
password = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
[[accounts]]
address = "bob@example.org"
[aliases]
"both@example.org" = ["alice@example.org", "bob@example.org"]
"friend@example.org" = "someone@elsewhere.example"
[[listeners]]
address = "127.0.0.1:0"
role = "mx"
[[listeners]]
address = "127.0.0.1:0"
role = "submission"
[[listeners]]
address = "127.0.0.1:0"
role = "submissions"
"#;

/// A new appliance's configuration (as `overlays/`), on loopback ports.
pub const FIRST_BOOT_CONFIG: &str = r#"
hostname = "mailbox.local"
domains = ["mailbox.local"]
[[accounts]]
address = "postmaster@mailbox.local"
[[listeners]]
address = "127.0.0.1:0"
role = "mx"
[[listeners]]
address = "127.0.0.1:0"
role = "submission"
[[listeners]]
address = "127.0.0.1:0"
role = "http"
[[listeners]]
address = "127.0.0.1:0"
role = "https"
"#;

pub struct Server {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The MX listener.
    pub addr: SocketAddr,
    /// Every listener by role (`mx`, `submission`, `submissions`).
    pub listeners: HashMap<String, SocketAddr>,
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server; `extra` is appended to the configuration (tables
    /// such as `[limits]`).
    pub fn start(extra: &str) -> Server {
        Server::start_with(BASE_CONFIG, extra)
    }

    /// Starts a server on `base` (such as [`FIRST_BOOT_CONFIG`]) and `extra`.
    pub fn start_with(base: &str, extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mailbox.toml");
        // Tests never query real DNS: without a test resolver, lookups go
        // to one that refuses every question at once.
        let outbound = if extra.contains("[outbound]") {
            String::new()
        } else {
            format!(
                "[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
                refusing_dns()
            )
        };
        let text = format!(
            "data_dir = \"{}\"\n{base}\n{extra}\n{outbound}",
            dir.path().join("data").display()
        );
        std::fs::write(&config, text).unwrap();
        let (child, listeners, log) = spawn(&config);
        Server {
            dir,
            config,
            addr: listeners["mx"],
            listeners,
            child,
            log,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same data (new port).
    pub fn restart(&mut self) {
        self.kill();
        let (child, listeners, log) = spawn(&self.config);
        {
            // One guard over the new log: nothing it receives meanwhile is lost.
            let mut new = log.lock().unwrap();
            let mut old = std::mem::take(&mut *self.log.lock().unwrap());
            old.push("--- restart ---".into());
            old.append(&mut new);
            *new = old;
        }
        self.child = child;
        self.addr = listeners["mx"];
        self.listeners = listeners;
        self.log = log;
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`HUP`, `TERM` …) to the server process.
    pub fn signal(&self, name: &str) {
        let signal: nix::sys::signal::Signal = format!("SIG{name}").parse().unwrap();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("kill -{name}: {e}"));
    }

    /// Waits for the process to exit by itself; returns whether it succeeded.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        wait_until(
            within,
            || "mta did not exit".into(),
            || self.child.try_wait().unwrap(),
        )
        .success()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        wait_until(
            Duration::from_secs(10),
            || {
                format!(
                    "no log line with {needle:?}: {:?}",
                    self.log.lock().unwrap()
                )
            },
            || self.log_contains(needle).then_some(()),
        )
    }

    /// Files in `new/` of an account's Maildir.
    pub fn maildir(&self, account: &str) -> Vec<PathBuf> {
        self.folder(account, None)
    }

    /// The files in `new/` of `account`'s `folder` (`None`: the INBOX).
    pub fn folder(&self, account: &str, folder: Option<&str>) -> Vec<PathBuf> {
        let (local, domain) = account.split_once('@').unwrap();
        let mut dir = self.data().join("mail").join(domain).join(local);
        if let Some(name) = folder {
            dir = dir.join(format!(".{name}"));
        }
        let dir = dir.join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Waits until the account has `n` messages, and returns them.
    pub fn wait_for_mail(&self, account: &str, n: usize) -> Vec<PathBuf> {
        wait_until(
            Duration::from_secs(20),
            || {
                let found = self.maildir(account).len();
                format!("{account} has {found} messages, expected {n}")
            },
            || {
                let files = self.maildir(account);
                (files.len() >= n).then_some(files)
            },
        )
    }

    /// Runs `mta COMMAND --config <ours> ARGS...`.
    pub fn mta(&self, command: &str, args: &[&str]) -> std::process::Output {
        Command::new(MTA)
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `mta COMMAND --config <ours> ARGS...` with `input` on its
    /// standard input (passwords).
    pub fn mta_with_input(
        &self,
        command: &str,
        args: &[&str],
        input: &[u8],
    ) -> std::process::Output {
        let mut child = Command::new(MTA)
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `mta queue ARGS...`: (success, everything it printed).
    pub fn queue(&self, args: &[&str]) -> (bool, String) {
        let out = self.mta("queue", args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Sends a message as alice over 587 with swaks (`Swaks::alice`);
    /// `extra` are more swaks arguments.
    pub fn submit(&self, to: &[&str], extra: &[&str]) {
        let (ok, out) = Swaks::alice(self.listeners["submission"], &to.join(","))
            .args(extra)
            .run();
        assert!(ok, "{out}");
    }

    /// `mta reports send`, which must succeed: what it said.
    pub fn send_reports(&self) -> String {
        let out = self.mta("reports", &["send"]);
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said
    }

    /// Waits until the queue is empty.
    pub fn wait_queue_empty(&self, within: Duration) {
        wait_until(
            within,
            || format!("the queue did not drain: {}", self.queue(&["list"]).1),
            || {
                let (ok, list) = self.queue(&["list"]);
                (ok && list.contains("the queue is empty")).then_some(())
            },
        )
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// The log lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

/// Calls `f` every 50 ms until it returns `Some`, for at most `timeout`,
/// then panics with `what()`, which describes what was awaited (and may
/// show the state at that moment).
pub fn wait_until<T>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(done) = f() {
            return done;
        }
        if Instant::now() >= deadline {
            panic!("{}", what());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("MTA_TEST_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// A message sent with swaks, an independent SMTP client.
pub struct Swaks<'a> {
    server: SocketAddr,
    /// `--tls` (STARTTLS) or `--tlsc` (TLS from the first byte).
    tls: Option<&'a str>,
    /// Mechanism, user and password.
    auth: Option<(&'a str, &'a str, &'a str)>,
    from: &'a str,
    /// Recipients, separated by commas.
    to: String,
    extra: Vec<&'a str>,
}

impl<'a> Swaks<'a> {
    /// In plain text, without authentication.
    pub fn new(server: SocketAddr, from: &'a str, to: &str) -> Swaks<'a> {
        Swaks {
            server,
            tls: None,
            auth: None,
            from,
            to: to.to_string(),
            extra: Vec::new(),
        }
    }

    /// A submission as alice: STARTTLS, then AUTH PLAIN with `PASSWORD`.
    pub fn alice(server: SocketAddr, to: &str) -> Swaks<'a> {
        Swaks::new(server, "alice@example.org", to)
            .tls("--tls")
            .auth("PLAIN", "alice@example.org", PASSWORD)
    }

    /// `--tls` (STARTTLS) or `--tlsc` (TLS from the first byte).
    pub fn tls(mut self, flag: &'a str) -> Swaks<'a> {
        self.tls = Some(flag);
        self
    }

    pub fn auth(mut self, mechanism: &'a str, user: &'a str, password: &'a str) -> Swaks<'a> {
        self.auth = Some((mechanism, user, password));
        self
    }

    /// More arguments (`--header`, `--body`, `--quit-after` …).
    pub fn args(mut self, extra: &[&'a str]) -> Swaks<'a> {
        self.extra.extend_from_slice(extra);
        self
    }

    /// Runs swaks; (success, everything it printed).
    pub fn run(&self) -> (bool, String) {
        let mut cmd = Command::new("swaks");
        cmd.arg("--server").arg(self.server.to_string());
        if let Some(flag) = self.tls {
            cmd.arg(flag);
        }
        if let Some((mechanism, user, password)) = self.auth {
            cmd.args(["--auth", mechanism, "--auth-user", user])
                .args(["--auth-password", password]);
        }
        cmd.args(["--from", self.from, "--to", &self.to])
            .args(&self.extra);
        let out = cmd
            .output()
            .expect("swaks is needed: `cargo xtask test` installs it (apt-get install swaks)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

/// Runs the Python program `script` with `args`; what it printed (it must
/// succeed: its error output is the failure's message).
pub fn python<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs `script` on a file holding `contents` (its path is argv[1], then
/// `args`); what it printed, trimmed.
pub fn python_on_file(script: &str, contents: &str, args: &[&str]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), contents).unwrap();
    let mut all = vec![file.path().to_str().unwrap()];
    all.extend(args);
    python(script, &all).trim().to_string()
}

/// `[inbound]` for port 25 as a stranger sees it: loopback (where the
/// tests come from) not trusted, no pregreet wait, no greylisting, no
/// blocklists.
pub const AS_STRANGER: &str =
    "[inbound]\ntrusted_networks = []\npregreet = \"0s\"\ngreylist = \"0s\"\ndnsbl = []\n";

/// A DNS server on loopback (one for all tests) that answers every
/// question `REFUSED`: lookups fail at once, as when the DNS is down, instead
/// of waiting for a resolver's timeout. Returns its port.
pub fn refusing_dns() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if n < 12 {
                    continue;
                }
                // The header and the (first) question only.
                let mut end = 12;
                while end < n && buf[end] != 0 {
                    end += 1 + buf[end] as usize;
                }
                let end = (end + 5).min(n);
                let mut reply = buf[..end].to_vec();
                reply[4..6].copy_from_slice(&[0, 1]);
                // QR set, opcode and RD kept; RA set, RCODE 5 (REFUSED); the
                // question echoed, no records.
                reply[2] = 0x80 | (buf[2] & 0x79);
                reply[3] = 0x80 | 5;
                reply[6..12].fill(0);
                let _ = socket.send_to(&reply, from);
            }
        });
        port
    })
}

fn spawn(config: &Path) -> (Child, HashMap<String, SocketAddr>, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(MTA)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting mta");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // (An error such as "listening on ADDR: address in use" is
            // only logged: the server then stops, and says why.)
            let listening = line.split(" INFO listening on ").nth(1).and_then(|rest| {
                let mut words = rest.split_whitespace();
                let addr: SocketAddr = words.next()?.parse().ok()?;
                Some((words.nth(1).unwrap_or("mx").to_string(), addr))
            });
            if let Some(listener) = listening {
                let _ = tx.send(Some(listener));
            } else if line.contains(" started for ") {
                let _ = tx.send(None);
            }
            log2.lock().unwrap().push(line);
        }
    });
    let mut listeners = HashMap::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some((role, addr))) => {
                listeners.insert(role, addr);
            }
            Ok(None) => break,
            Err(_) => panic!("mta did not start: {:?}", log.lock().unwrap()),
        }
    }
    (child, listeners, log)
}

/// A reply: code and the text of all lines.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// A blocking SMTP client over plain TCP.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::new(TcpStream::connect(addr).unwrap()).unwrap()
    }

    /// Connects within `timeout`; `None` when nothing accepts the connection.
    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> Option<Client> {
        Client::new(TcpStream::connect_timeout(&addr, timeout).ok()?).ok()
    }

    fn new(stream: TcpStream) -> std::io::Result<Client> {
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client { stream, reader })
    }

    /// Connects and reads the greeting.
    pub fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr);
        let r = c.reply();
        assert_eq!(r.code, 220, "{r:?}");
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn reply(&mut self) -> Reply {
        self.try_reply()
            .expect("connection closed while waiting for a reply")
    }

    pub fn try_reply(&mut self) -> Option<Reply> {
        read_reply(&mut self.reader)
    }

    /// One line from the server, as it comes (`""` once it has closed).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.reader.read_line(&mut line);
        line
    }

    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }

    /// STARTTLS, trusting the certificate the server generated for itself;
    /// the connection goes on over TLS.
    pub fn starttls(mut self, server: &Server) -> TlsClient {
        let r = self.cmd("STARTTLS");
        assert_eq!(r.code, 220, "{r:?}");
        let pem = std::fs::read(server.data().join("tls/self-signed.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = "mx.example.org".try_into().unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        TlsClient {
            stream: BufReader::new(rustls::StreamOwned::new(conn, self.stream)),
        }
    }

    /// One complete transaction; returns the final reply.
    pub fn send_mail(&mut self, from: &str, to: &[&str], message: &str) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        if r.code != 250 {
            return r;
        }
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>"));
            assert_eq!(r.code, 250, "RCPT {t}: {r:?}");
        }
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "{r:?}");
        let mut data = String::new();
        for line in message
            .strip_suffix("\r\n")
            .unwrap_or(message)
            .split("\r\n")
        {
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push_str(".\r\n");
        self.send(data.as_bytes());
        self.reply()
    }
}

/// Reads one reply; `None` when the connection ends first.
fn read_reply(reader: &mut impl BufRead) -> Option<Reply> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        text.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Some(Reply { code, text });
        }
    }
}

/// A [`Client`] after STARTTLS (see [`Client::starttls`]).
pub struct TlsClient {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
}

impl TlsClient {
    pub fn send(&mut self, bytes: &[u8]) {
        let tls = self.stream.get_mut();
        tls.write_all(bytes).unwrap();
        tls.flush().unwrap();
    }

    pub fn reply(&mut self) -> Reply {
        self.try_reply()
            .expect("connection closed while waiting for a reply")
    }

    pub fn try_reply(&mut self) -> Option<Reply> {
        read_reply(&mut self.stream)
    }

    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.stream.read(&mut buf), Ok(0) | Err(_))
    }
}

/// The response to `AUTH PLAIN` for `user` and `password` (base64).
pub fn auth_plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// A TCP server on loopback that runs `serve` for each connection, in a
/// thread of its own (for servers that misbehave in ways no real one
/// would); returns its port.
pub fn tcp_stub(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

/// Strips the header lines Mailbox adds (Return-Path, Delivered-To and our
/// Received, which is folded over several lines) and turns LF into CRLF, to
/// compare a stored message with what was sent.
pub fn original_of(stored: &[u8]) -> String {
    let text = String::from_utf8_lossy(stored).to_string();
    let mut out = Vec::new();
    let mut skipping = false;
    let mut in_header = true;
    for line in text.split('\n') {
        if in_header {
            if line.starts_with('\t') && skipping {
                continue;
            }
            skipping = false;
            if line.starts_with("Return-Path:") || line.starts_with("Delivered-To:") {
                continue;
            }
            if (line.starts_with("Received:") || line.starts_with("Authentication-Results:"))
                && out.is_empty()
            {
                skipping = true;
                continue;
            }
            if line.is_empty() {
                in_header = false;
            }
        }
        out.push(line);
    }
    out.join("\r\n")
}
