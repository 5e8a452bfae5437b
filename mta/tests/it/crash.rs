//! The durability contract under fire: clients send mail concurrently while
//! the server is SIGKILLed at random moments and restarted. Afterwards every
//! message that got `250` is in exactly one Maildir file per recipient, and
//! nothing appeared that was not sent. Some messages are small (kept in the
//! queue database), some large (spooled to files).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::peer::{Options, Peer};
use crate::common::{Client, Server};
use rand::Rng;

const CLIENTS: usize = 8;
const KILLS: usize = 5;
const RECIPIENTS: [&str; 2] = ["alice@example.org", "bob@example.org"];

/// One client: sends marked messages until told to stop, reconnecting to
/// wherever the server currently listens. Returns (acknowledged, attempted).
fn client(
    n: usize,
    addr: Arc<Mutex<SocketAddr>>,
    stop: Arc<AtomicBool>,
    recipients: &'static [&'static str],
) -> (Vec<String>, Vec<String>) {
    let mut acked = Vec::new();
    let mut attempted = Vec::new();
    let mut seq = 0;
    while !stop.load(Ordering::SeqCst) {
        let target = *addr.lock().unwrap();
        let Some(mut c) = Client::try_connect(target, Duration::from_millis(500)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let greeting = c.try_reply()?;
            if greeting.code != 220 {
                return None;
            }
            c.send(b"EHLO crash.example\r\n");
            c.try_reply()?;
            while !stop.load(Ordering::SeqCst) {
                let marker = format!("crash-{n}-{seq}");
                seq += 1;
                attempted.push(marker.clone());
                let mut cmds = "MAIL FROM:<load@sender.example>\r\n".to_string();
                for r in recipients {
                    cmds.push_str(&format!("RCPT TO:<{r}>\r\n"));
                }
                cmds.push_str("DATA\r\n");
                c.send(cmds.as_bytes());
                // MAIL, each RCPT, DATA.
                for i in 0..recipients.len() + 2 {
                    let expected = if i == recipients.len() + 1 { 354 } else { 250 };
                    if c.try_reply()?.code != expected {
                        return None;
                    }
                }
                // Every fourth message is large enough to be spooled to a
                // file, so both ways of storing a message are killed mid-way.
                let words = if seq % 4 == 0 { 13_000 } else { 100 };
                let body = format!(
                    "Subject: {marker}\r\nX-Marker: {marker}\r\n\r\n{}\r\n.\r\n",
                    "payload ".repeat(words)
                );
                c.send(body.as_bytes());
                let r = c.try_reply()?;
                if r.code == 250 && r.text.contains("queued as") {
                    acked.push(marker);
                }
            }
            Some(())
        }));
        let _ = result; // a killed server shows up as a closed connection or a panic in write
    }
    (acked, attempted)
}

/// Runs CLIENTS clients against the server while killing and restarting
/// it KILLS times; returns (acknowledged, attempted) markers.
fn load_with_kills(
    server: &mut Server,
    recipients: &'static [&'static str],
) -> (HashSet<String>, HashSet<String>) {
    let addr = Arc::new(Mutex::new(server.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let addr = addr.clone();
            let stop = stop.clone();
            std::thread::spawn(move || client(n, addr, stop, recipients))
        })
        .collect();
    let mut rng = rand::rng();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(300..900)));
        server.kill();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..100)));
        server.restart();
        *addr.lock().unwrap() = server.addr;
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let mut acked = HashSet::new();
    let mut attempted = HashSet::new();
    for h in handles {
        let (a, t) = h.join().unwrap();
        acked.extend(a);
        attempted.extend(t);
    }
    (acked, attempted)
}

#[test]
fn every_acknowledged_message_is_delivered_exactly_once_across_sigkills() {
    let mut server = Server::start("[queue]\nretry_min = \"1s\"\n");
    let (acked, attempted) = load_with_kills(&mut server, &RECIPIENTS);
    assert!(
        acked.len() > 50,
        "the load was too light to mean anything: {} acknowledged",
        acked.len()
    );

    // Wait until the queue has drained, then count.
    server.wait_queue_empty(Duration::from_secs(60));
    for rcpt in RECIPIENTS {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for file in server.maildir(rcpt) {
            let text = std::fs::read_to_string(&file).unwrap();
            let marker = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Marker: "))
                .unwrap_or_else(|| panic!("{} has no marker:\n{text}", file.display()))
                .to_string();
            assert!(
                text.ends_with(&format!("{}\n", "payload ".repeat(100))),
                "truncated: {}",
                file.display()
            );
            *seen.entry(marker).or_default() += 1;
        }
        for (m, n) in &seen {
            assert!(attempted.contains(m), "{rcpt}: {m} was never sent");
            assert_eq!(*n, 1, "{rcpt}: {m} delivered {n} times");
        }
        for m in &acked {
            assert_eq!(
                seen.get(m).copied().unwrap_or(0),
                1,
                "{rcpt}: acknowledged {m} delivered {:?} times",
                seen.get(m)
            );
        }
        // Leftovers in tmp/ are allowed (a kill mid-write), but never in new/ half-written.
        eprintln!(
            "{rcpt}: {} acknowledged, {} delivered, {} attempted",
            acked.len(),
            seen.len(),
            attempted.len()
        );
    }
}

/// The same for mail that leaves: killed while handing messages to a remote
/// server, every acknowledged message still reaches it (at least once: a
/// kill between the remote's 250 and our commit means a second copy, which
/// SMTP allows), and the queue ends empty.
#[test]
fn every_acknowledged_message_reaches_the_remote_server_across_sigkills() {
    const REMOTE: [&str; 1] = ["friend@example.org"];
    let peer = Peer::with(Options::default());
    let mut server = Server::start(&format!(
        "[queue]\nretry_min = \"1s\"\nretry_max = \"1s\"\n[[transports]]\nrecipient = \"elsewhere.example\"\nvia = \"smtp:127.0.0.1:{}\"\n",
        peer.smtp
    ));
    let (acked, _) = load_with_kills(&mut server, &REMOTE);
    assert!(
        acked.len() > 20,
        "the load was too light: {} acknowledged",
        acked.len()
    );
    server.wait_queue_empty(Duration::from_secs(90));
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in peer.received() {
        let marker = r
            .message
            .lines()
            .find_map(|l| l.strip_prefix("X-Marker: "))
            .expect("a marker")
            .trim()
            .to_string();
        assert_eq!(
            r.envelope["rcpt_tos"],
            serde_json::json!(["someone@elsewhere.example"])
        );
        *seen.entry(marker).or_default() += 1;
    }
    let missing: Vec<&String> = acked.iter().filter(|m| !seen.contains_key(*m)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never delivered: {missing:?}"
    );
    let twice = seen.values().filter(|n| **n > 1).count();
    eprintln!(
        "remote: {} acknowledged, {} delivered, {twice} delivered twice",
        acked.len(),
        seen.len()
    );
}
