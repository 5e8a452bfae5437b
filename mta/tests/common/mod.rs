//! Test harness: runs the real `mta serve` binary on loopback with a
//! throw-away data directory, and a small blocking SMTP client to talk to it.

#![allow(dead_code)]

pub mod peer;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MTA: &str = env!("CARGO_BIN_EXE_mta");

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
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mailbox.toml");
        // Tests never query real DNS: without a test resolver, lookups go
        // to a closed loopback port and fail at once.
        let outbound = if extra.contains("[outbound]") {
            ""
        } else {
            "[outbound]\nnameservers = [\"127.0.0.1:9\"]\n"
        };
        let text = format!(
            "data_dir = \"{}\"\n{BASE_CONFIG}\n{extra}\n{outbound}",
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
        let mut old = std::mem::take(&mut *self.log.lock().unwrap());
        old.push("--- restart ---".into());
        old.append(&mut log.lock().unwrap());
        *log.lock().unwrap() = old;
        self.child = child;
        self.addr = listeners["mx"];
        self.listeners = listeners;
        self.log = log;
    }

    /// Sends a signal (`HUP`, `TERM` …) to the server process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit by itself; returns whether it succeeded.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "mta did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log_contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Files in `new/` of an account's Maildir.
    pub fn maildir(&self, account: &str) -> Vec<PathBuf> {
        let (local, domain) = account.split_once('@').unwrap();
        let dir = self
            .data()
            .join("mail")
            .join(domain)
            .join(local)
            .join("new");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Waits until the account has `n` messages, and returns them.
    pub fn wait_for_mail(&self, account: &str, n: usize) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let files = self.maildir(account);
            if files.len() >= n {
                return files;
            }
            assert!(
                Instant::now() < deadline,
                "{account} has {} messages, expected {n}",
                files.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `mta queue ACTION [ID]` against this server.
    pub fn queue(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(MTA)
            .arg("queue")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Sends a message as alice (password "Hello world!") over 587 with
    /// swaks, an independent client.
    pub fn submit(&self, to: &[&str], extra: &[&str]) {
        let server = self.listeners["submission"].to_string();
        let to = to.join(",");
        let mut args = vec![
            "--server",
            &server,
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.org",
            "--auth-password",
            "Hello world!",
            "--from",
            "alice@example.org",
            "--to",
            &to,
        ];
        args.extend_from_slice(extra);
        let (ok, out) = swaks(&args);
        assert!(ok, "{out}");
    }

    /// Waits until the queue is empty.
    pub fn wait_queue_empty(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (ok, list) = self.queue(&["list"]);
            if ok && list.contains("the queue is empty") {
                return;
            }
            assert!(Instant::now() < deadline, "the queue did not drain: {list}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
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

/// Runs swaks; (success, everything it printed).
pub fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(args)
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
            if let Some(rest) = line.split("listening on ").nth(1) {
                let mut words = rest.split_whitespace();
                let addr: SocketAddr = words.next().unwrap().parse().unwrap();
                let role = words.nth(1).unwrap_or("mx").to_string();
                let _ = tx.send(Some((role, addr)));
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
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
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
        let mut text = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
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

    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
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

/// Strips the header lines Mailbox adds (Return-Path, Delivered-To and our
/// Received, which is folded over several lines) and turns LF into CRLF, to
/// compare a stored message with what was sent.
pub fn original_of(stored: &[u8]) -> String {
    let text = String::from_utf8_lossy(stored).to_string();
    let lines = text.split('\n').peekable();
    let mut out = Vec::new();
    let mut skipping = false;
    let mut in_header = true;
    for line in lines {
        if in_header {
            if line.starts_with('\t') && skipping {
                continue;
            }
            skipping = false;
            if line.starts_with("Return-Path:") || line.starts_with("Delivered-To:") {
                continue;
            }
            if line.starts_with("Received:") && out.is_empty() {
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
