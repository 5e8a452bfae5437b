//! `cargo xtask bench --imap`: one folder of `--folder-size` messages
//! (10,000 by default) in a Maildir, read by our IMAP server and by
//! Debian's Dovecot from copies of the same files, side by side in the same
//! run: the time to SELECT it, to FETCH 1:* (FLAGS ENVELOPE) and to UID
//! SEARCH it, the first time (each server builds its index) and again, and
//! the memory each took. Ours is measured over TLS on 993 (login
//! included), Dovecot pre-authenticated over a pipe without TLS (its
//! `imap` binary, as the tests run it): what TLS costs counts against ours.
//! A benchmark, not a test: it asserts nothing about speed.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{BENCH_PASSWORD, Bench, ReadWrite, ms, peak_rss_kib, rss_kib, start_ours, trusting};

/// Dovecot's IMAP server binary (Debian's dovecot-imapd).
const DOVECOT_IMAP: &str = "/usr/lib/dovecot/imap";

/// The commands timed, in order, each session.
const COMMANDS: [(&str, &str); 4] = [
    ("SELECT", "SELECT INBOX"),
    ("FETCH 1:* (FLAGS ENVELOPE)", "FETCH 1:* (FLAGS ENVELOPE)"),
    ("UID SEARCH UNSEEN", "UID SEARCH UNSEEN"),
    (
        "UID SEARCH SUBJECT (reads every message)",
        "UID SEARCH SUBJECT \"needle\"",
    ),
];

/// An IMAP connection that sends tagged commands and reads up to their
/// tagged answer, literals included.
struct Client {
    io: Box<dyn ReadWrite>,
    buf: Vec<u8>,
    tags: u32,
}

impl Client {
    fn new(io: Box<dyn ReadWrite>) -> anyhow::Result<Client> {
        let mut c = Client {
            io,
            buf: Vec::new(),
            tags: 0,
        };
        let greeting = c.line()?;
        if !greeting.starts_with(b"* OK") && !greeting.starts_with(b"* PREAUTH") {
            bail!("greeted with {}", String::from_utf8_lossy(&greeting));
        }
        Ok(c)
    }

    fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.io.read(&mut chunk)?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// One response line; a literal it announces is read with it.
    fn line(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i + 2;
                }
                self.fill()?;
            };
            let part: Vec<u8> = self.buf.drain(..end).collect();
            let literal = part
                .strip_suffix(b"}\r\n")
                .and_then(|p| p.iter().rposition(|b| *b == b'{').map(|i| &p[i + 1..]))
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
            line.extend_from_slice(&part);
            let Some(n) = literal else {
                return Ok(line);
            };
            while self.buf.len() < n {
                self.fill()?;
            }
            line.extend(self.buf.drain(..n));
        }
    }

    /// Sends `command`, reads to its tagged answer; how long that took,
    /// the bytes answered and the untagged lines.
    fn run(&mut self, command: &str) -> anyhow::Result<(Duration, usize, Vec<Vec<u8>>)> {
        self.tags += 1;
        let tag = format!("t{}", self.tags);
        let started = Instant::now();
        self.io
            .write_all(format!("{tag} {command}\r\n").as_bytes())?;
        self.io.flush()?;
        let mut bytes = 0;
        let mut lines = Vec::new();
        loop {
            let line = self.line()?;
            bytes += line.len();
            if line.starts_with(format!("{tag} ").as_bytes()) {
                if !line.starts_with(format!("{tag} OK").as_bytes()) {
                    bail!("{command}: {}", String::from_utf8_lossy(&line).trim_end());
                }
                return Ok((started.elapsed(), bytes, lines));
            }
            lines.push(line);
        }
    }
}

/// A child process's stdin and stdout as one stream.
struct Piped {
    stdin: std::process::ChildStdin,
    stdout: std::process::ChildStdout,
}

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Write for Piped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stdin.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stdin.flush()
    }
}

/// Writes `count` messages into the Maildir at `dir` (in `cur/`, one in
/// three seen, as if read before), varied in senders, subjects and size;
/// one in a hundred has "needle" in its subject. Their total size.
fn fill_maildir(dir: &Path, count: usize) -> anyhow::Result<u64> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let mut total = 0;
    let start = 1_700_000_000u64;
    for i in 0..count {
        let subject = if i % 100 == 7 {
            format!("The needle in message {i}")
        } else {
            format!("Report number {i} on =?UTF-8?Q?caf=C3=A9?= matters")
        };
        let mut text = format!(
            "Return-Path: <sender{s}@example.net>\nMessage-ID: <{i}.bench@example.net>\n\
             Date: Tue, 14 Nov 2023 {h:02}:{m:02}:00 +0000\nFrom: \"Sender {s}\" <sender{s}@example.net>\n\
             To: Alice <alice@example.org>, bob@example.org\nCc: team-{c}@example.org\n\
             Subject: {subject}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n",
            s = i % 97,
            h = (i / 60) % 24,
            m = i % 60,
            c = i % 7,
        );
        for line in 0..(10 + i % 40) {
            text.push_str(&format!(
                "Line {line} of the body of message {i}: some words to make it look like mail.\n"
            ));
        }
        let seen = if i % 3 == 0 { "S" } else { "" };
        let name = format!(
            "{}.M{i}P1.bench,S={}:2,{seen}",
            start + i as u64,
            text.len()
        );
        std::fs::write(dir.join("cur").join(name), &text)?;
        total += text.len() as u64;
    }
    Ok(total)
}

/// The figures of one session: per command, the time taken.
type Session = Vec<Duration>;

fn session(c: &mut Client) -> anyhow::Result<(Session, Vec<usize>)> {
    let mut times = Vec::new();
    let mut bytes = Vec::new();
    for (_, command) in COMMANDS {
        let (took, answered, _) = c.run(command)?;
        times.push(took);
        bytes.push(answered);
    }
    Ok((times, bytes))
}

pub fn imap(b: Bench) -> anyhow::Result<()> {
    crate::tools::ensure(&[crate::tools::dovecot()])?;
    let count = b.folder_size;
    let ours = start_ours(&b, None)?;
    let maildir = ours.dir.join("data/mail/example.org/alice");
    let size = fill_maildir(&maildir, count)?;
    println!(
        "bench --imap: INBOX of {count} messages, {:.1} MiB; ours over TLS (993, login included), \
         Dovecot pre-authenticated over a pipe (no TLS)",
        size as f64 / (1 << 20) as f64
    );

    // Dovecot's copy, owned by the unprivileged user it runs as.
    let dv = ours.dir.join("dovecot");
    std::fs::create_dir_all(&dv)?;
    let dv_mail = dv.join("mail");
    crate::check(Command::new("cp").arg("-a").arg(&maildir).arg(&dv_mail))?;
    // As root, Dovecot drops to nobody (65534).
    let (uid, gid) = if crate::tools::is_root() {
        crate::check(Command::new("chown").args(["-R", "65534:65534"]).arg(&dv))?;
        (65534, 65534)
    } else {
        let id = |flag| -> anyhow::Result<u32> {
            let out = Command::new("id").arg(flag).output()?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        (id("-u")?, id("-g")?)
    };
    let conf = dv.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "mail_location = maildir:{}\nlog_path = {}\nprotocols = imap\nssl = no\n\
             mail_uid = {uid}\nmail_gid = {gid}\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n\
             namespace inbox {{\n inbox = yes\n separator = .\n}}\n",
            dv_mail.display(),
            dv.join("dovecot.log").display()
        ),
    )?;

    // Ours: two sessions, then the memory of the whole server.
    let cert = ours.dir.join("data/tls/self-signed.crt");
    let tls = trusting(&cert)?;
    let connect = || -> anyhow::Result<Client> {
        let tcp = std::net::TcpStream::connect(ours.addr)?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("bench.example.org")?;
        let conn = rustls::ClientConnection::new(tls.clone(), name)?;
        let mut c = Client::new(Box::new(rustls::StreamOwned::new(conn, tcp)))?;
        c.run(&format!("LOGIN alice@example.org \"{BENCH_PASSWORD}\""))?;
        Ok(c)
    };
    let idle = rss_kib(ours.child.id(), "VmRSS:");
    let mut mine = Vec::new();
    let mut answered = Vec::new();
    for _ in 0..2 {
        let mut c = connect()?;
        let (times, bytes) = session(&mut c)?;
        let _ = c.run("LOGOUT");
        mine.push(times);
        answered = bytes;
    }
    let mine_rss = peak_rss_kib(ours.child.id());

    // Dovecot: the same two sessions, each its own imap process (as
    // Dovecot runs one per connection); its peak memory before it ends.
    let mut theirs = Vec::new();
    let mut theirs_rss = None;
    for _ in 0..2 {
        let mut child = Command::new(DOVECOT_IMAP)
            .arg("-c")
            .arg(&conf)
            .env_clear()
            .env("USER", "alice")
            .env("HOME", &dv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting Dovecot's imap")?;
        let io = Piped {
            stdin: child.stdin.take().context("stdin")?,
            stdout: child.stdout.take().context("stdout")?,
        };
        let mut c = Client::new(Box::new(io))?;
        let (times, _) = session(&mut c)?;
        theirs_rss = theirs_rss.max(peak_rss_kib(child.id()));
        let _ = c.run("LOGOUT");
        drop(c);
        let _ = child.wait();
        theirs.push(times);
    }

    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "", "ours", "Dovecot", "ours/Dovecot"
    );
    for (round, label) in [(0, "first (index built)"), (1, "again")] {
        println!("{label}:");
        for (i, (name, _)) in COMMANDS.iter().enumerate() {
            let (a, d) = (mine[round][i], theirs[round][i]);
            println!(
                "  {:<42} {:>9.1} ms {:>9.1} ms {:>8.2}",
                name,
                ms(a),
                ms(d),
                a.as_secs_f64() / d.as_secs_f64().max(1e-9)
            );
        }
    }
    let mib =
        |kib: Option<u64>| kib.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "answer of FETCH 1:* (FLAGS ENVELOPE): {:.1} MiB",
        answered.get(1).copied().unwrap_or(0) as f64 / (1 << 20) as f64
    );
    println!(
        "memory: ours {} peak for the whole server (SMTP, web and queue included; {} at idle), \
         Dovecot {} peak for its imap process",
        mib(mine_rss),
        mib(idle),
        mib(theirs_rss)
    );
    Ok(())
}
