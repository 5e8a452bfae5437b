//! IMAP's durability under fire: an imaplib client appends, flags and
//! moves while SMTP deliveries arrive, and the server is SIGKILLed at
//! random moments and restarted. Afterwards every message the client got
//! `OK` for and every message that got `250` exists exactly once, nothing
//! exists twice, and no UID changed or was given to two messages.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Client, Server};

const LISTENERS: &str = "\
[[listeners]]
address = \"127.0.0.1:0\"
role = \"imaps\"
";
const ROUNDS: usize = 4;

/// The worker: appends, flags and moves until its connection dies; logs
/// what was acknowledged and what it saw (folder, UIDVALIDITY, UID,
/// Message-ID).
const WORKER: &str = r#"
import imaplib, ssl, sys, random
port, cafile, round_, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile); ctx.check_hostname = False
out = open(log, "a", buffering=1)
def scan(c):
    for folder in ("INBOX", "Archive"):
        typ, data = c.select(folder)
        validity = c.untagged_responses.get("UIDVALIDITY", [b"?"])[0].decode()
        if int(data[0]) == 0:
            continue
        typ, data = c.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for d in data:
            if isinstance(d, tuple):
                uid = d[0].split(b"UID ")[1].split()[0].decode()
                mid = d[1].decode().split(":", 1)[1].strip()
                out.write(f"seen {folder} {validity} {uid} {mid}\n")
c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=10)
c.login("alice@example.org", "Hello world!")
i = 0
while True:
    i += 1
    mid = f"<imap-{round_}-{i}@test>"
    message = f"Message-ID: {mid}\r\nSubject: appended {i}\r\n\r\nbody {i}\r\n".encode()
    typ, _ = c.append("INBOX", "", None, message)
    if typ == "OK":
        out.write(f"acked {mid}\n")
    c.select("INBOX")
    if i % 2 == 0:
        c.store("1:*", "+FLAGS", "(\\Seen)")
    if i % 3 == 0:
        typ, data = c.uid("SEARCH", None, "ALL")
        uids = data[0].split()
        if uids:
            c.uid("MOVE", random.choice(uids).decode(), "Archive")
    if i % 5 == 0:
        scan(c)
"#;

fn worker(s: &Server, round: usize, log: &std::path::Path) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(WORKER)
        .arg(s.listeners["imaps"].port().to_string())
        .arg(s.data().join("tls/self-signed.crt"))
        .arg(round.to_string())
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3")
}

/// Sends marked mail to alice until told to stop, wherever the server
/// listens now; the Message-IDs that got 250.
fn smtp(addr: Arc<Mutex<SocketAddr>>, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(mut c) = Client::try_connect(*addr.lock().unwrap(), Duration::from_millis(500))
        else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = c.stream.set_read_timeout(Some(Duration::from_secs(5)));
            if c.try_reply()?.code != 220 {
                return None;
            }
            c.send(b"EHLO crash.example\r\n");
            c.try_reply()?;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let mid = format!("<smtp-{n}@test>");
                c.send(
                    b"MAIL FROM:<load@sender.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n",
                );
                for _ in 0..3 {
                    c.try_reply()?;
                }
                c.send(
                    format!("Message-ID: {mid}\r\nSubject: delivered\r\n\r\nhi\r\n.\r\n")
                        .as_bytes(),
                );
                if c.try_reply()?.code == 250 {
                    acked.push(mid);
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            Some(())
        }));
        if sent.is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    acked
}

#[test]
fn sigkill_during_imap_work_loses_nothing_and_reuses_no_uid() {
    let mut s = Server::start(LISTENERS);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // Archive exists from the first login on.
    let mut setup = worker(&s, 0, &log);
    std::thread::sleep(Duration::from_millis(300));
    let _ = setup.kill();
    let _ = setup.wait();

    let addr = Arc::new(Mutex::new(s.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (addr, stop) = (addr.clone(), stop.clone());
        std::thread::spawn(move || smtp(addr, stop))
    };
    let mut rng = 0x9e37_79b9_u64;
    for round in 1..=ROUNDS {
        let mut w = worker(&s, round, &log);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(600 + rng % 1200));
        s.kill();
        let _ = w.wait();
        s.restart();
        *addr.lock().unwrap() = s.addr;
    }
    stop.store(true, Ordering::SeqCst);
    let delivered = sender.join().unwrap();
    s.wait_queue_empty(Duration::from_secs(30));

    // The last look, over a quiet server.
    let mut scan = worker(&s, 99, &dir.path().join("final"));
    std::thread::sleep(Duration::from_millis(100));
    let _ = scan.kill();
    let _ = scan.wait();
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
c = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx, timeout=20)
c.login("alice@example.org", "Hello world!")
for folder in ("INBOX", "Archive"):
    typ, data = c.select(folder, readonly=True)
    validity = c.untagged_responses.get("UIDVALIDITY", [b"?"])[0].decode()
    if int(data[0]) == 0:
        continue
    typ, data = c.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    for d in data:
        if isinstance(d, tuple):
            uid = d[0].split(b"UID ")[1].split()[0].decode()
            mid = d[1].decode().split(":", 1)[1].strip()
            print(f"seen {folder} {validity} {uid} {mid}")
"#,
        )
        .arg(s.listeners["imaps"].port().to_string())
        .arg(s.data().join("tls/self-signed.crt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = String::from_utf8(out.stdout).unwrap();
    let history = std::fs::read_to_string(&log).unwrap_or_default();

    // Every acknowledged message exists once; nothing exists twice.
    let mut count: HashMap<&str, usize> = HashMap::new();
    for line in last.lines() {
        let mid = line.split_whitespace().nth(4).unwrap();
        *count.entry(mid).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "messages twice: {twice:?}");
    let appended: Vec<&str> = history
        .lines()
        .filter_map(|l| l.strip_prefix("acked "))
        .collect();
    for mid in appended
        .iter()
        .copied()
        .chain(delivered.iter().map(String::as_str))
    {
        assert_eq!(count.get(mid), Some(&1), "{mid} acknowledged, then lost");
    }
    assert!(
        appended.len() >= ROUNDS && delivered.len() >= ROUNDS,
        "too little happened: {} appended, {} delivered",
        appended.len(),
        delivered.len()
    );

    // A UID, once given in a folder (and UIDVALIDITY), stays with its
    // message and goes to no other.
    let mut owner: HashMap<(String, String, String), String> = HashMap::new();
    let mut uid_of: HashMap<(String, String, String), String> = HashMap::new();
    for line in history.lines().chain(last.lines()) {
        let Some(rest) = line.strip_prefix("seen ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (folder, validity, uid, mid) = (f[0], f[1], f[2], f[3]);
        let key = (folder.to_string(), validity.to_string(), uid.to_string());
        if let Some(other) = owner.insert(key.clone(), mid.to_string()) {
            assert_eq!(other, mid, "UID {uid} of {folder} given to two messages");
        }
        let at = (folder.to_string(), validity.to_string(), mid.to_string());
        if let Some(before) = uid_of.insert(at, uid.to_string()) {
            assert_eq!(before, uid, "{mid} changed its UID in {folder}");
        }
    }
    let validities: HashSet<(&str, &str)> = history
        .lines()
        .chain(last.lines())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"seen")).then(|| (f[1], f[2]))
        })
        .collect();
    eprintln!(
        "{} appended and {} delivered across {ROUNDS} SIGKILLs, all there once; UIDVALIDITY per folder: {validities:?}",
        appended.len(),
        delivered.len()
    );
    for folder in ["INBOX", "Archive"] {
        assert!(
            validities.iter().filter(|(f, _)| *f == folder).count() <= 1,
            "{folder}'s UIDVALIDITY changed: {validities:?}"
        );
    }
}
