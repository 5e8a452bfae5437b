//! Limits on what one client may take (issue 16): errors (a disconnect,
//! and tarpitting past a few), simultaneous connections per address and
//! per network, new connections and messages per minute per network —
//! for strangers; trusted networks are neither counted nor slowed.

use std::time::{Duration, Instant};

use crate::common::{AS_STRANGER, Client, Server};

/// Port 25 as a stranger sees it (loopback is trusted by default), with
/// `limits` in `[limits]`.
fn as_stranger(limits: &str) -> Server {
    Server::start(&format!(
        "{AS_STRANGER}authenticate = false\nsender_sanity = false\n[limits]\n{limits}\n"
    ))
}

#[test]
fn too_many_errors_disconnects() {
    let s = Server::start("[limits]\nmax_errors = 3\n");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.cmd("BOGUS");
    c.cmd("BOGUS");
    assert_eq!(c.cmd("BOGUS").code, 500);
    let r = c.reply();
    assert!(r.text.starts_with("421 4.7.0"), "{r:?}");
    assert!(c.closed());
}

#[test]
fn connections_per_ip_are_limited() {
    let s = Server::start("[limits]\nconnections_per_ip = 2\n");
    let _a = Client::greeted(s.addr);
    let _b = Client::greeted(s.addr);
    let mut c = Client::connect(s.addr);
    let r = c.reply();
    assert!(r.text.starts_with("421 4.7.0"), "{r:?}");
    drop(_a);
    std::thread::sleep(Duration::from_millis(200));
    let _d = Client::greeted(s.addr);
}

#[test]
fn a_strangers_network_is_limited_in_connections_and_their_rate() {
    let s = as_stranger("connections_per_network = 2\nconnection_rate = 3\n");
    let a = Client::greeted(s.addr);
    let _b = Client::greeted(s.addr);
    // The third at once: 127.0.0.0/24 has two open (one address of it
    // could have twenty).
    let mut c = Client::connect(s.addr);
    let r = c.reply();
    assert!(r.text.starts_with("421 4.7.0"), "{r:?}");
    assert!(
        r.text.contains("too many connections from 127.0.0.0/24"),
        "{r:?}"
    );
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    // Three so far this minute (the refused one counts too: a client that
    // keeps knocking keeps waiting); the fourth is one too many.
    let mut d = Client::connect(s.addr);
    let r = d.reply();
    assert!(r.text.starts_with("421 4.7.0"), "{r:?}");
    assert!(
        r.text
            .contains("more than 3 connections a minute from 127.0.0.0/24"),
        "{r:?}"
    );
    s.wait_for_log("refused 127.0.0.1");
}

#[test]
fn a_strangers_network_is_limited_in_messages_a_minute() {
    let s = as_stranger("message_rate = 2\n");
    let mut c = Client::greeted(s.addr);
    assert_eq!(c.cmd("EHLO mx.sender.example").code, 250);
    let text = "From: a@sender.example\r\nSubject: rate\r\n\r\nHi.\r\n";
    for _ in 0..2 {
        let r = c.send_mail("a@sender.example", &["alice@example.org"], text);
        assert_eq!(r.code, 250, "{r:?}");
    }
    let r = c.cmd("MAIL FROM:<a@sender.example>");
    assert!(r.text.starts_with("450 4.7.1"), "{r:?}");
    assert!(
        r.text
            .contains("more than 2 messages a minute from 127.0.0.0/24"),
        "{r:?}"
    );
    // Another connection of the network: the same count.
    let mut d = Client::greeted(s.addr);
    assert_eq!(d.cmd("EHLO mx.sender.example").code, 250);
    assert_eq!(d.cmd("MAIL FROM:<b@sender.example>").code, 450);
    assert_eq!(s.wait_for_mail("alice@example.org", 2).len(), 2);
}

#[test]
fn trusted_networks_are_not_counted() {
    // Loopback is trusted by default.
    let s = Server::start(
        "[limits]\nconnections_per_network = 1\nconnection_rate = 1\nmessage_rate = 1\n",
    );
    let mut clients: Vec<Client> = (0..3).map(|_| Client::greeted(s.addr)).collect();
    let text = "From: a@sender.example\r\nSubject: rate\r\n\r\nHi.\r\n";
    let c = &mut clients[0];
    assert_eq!(c.cmd("EHLO mx.sender.example").code, 250);
    for _ in 0..3 {
        let r = c.send_mail("a@sender.example", &["alice@example.org"], text);
        assert_eq!(r.code, 250, "{r:?}");
    }
}

/// How long the reply to `line` took.
fn timed(c: &mut Client, line: &str) -> Duration {
    let started = Instant::now();
    c.cmd(line);
    started.elapsed()
}

#[test]
fn past_a_few_errors_a_stranger_waits_for_each_reply() {
    let s = as_stranger("soft_errors = 1\nerror_delay = \"3s\"\n");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO mx.sender.example");
    // The first error is answered at once (no lower bound to check); past
    // soft_errors, each reply waits.
    timed(&mut c, "BOGUS");
    assert!(timed(&mut c, "BOGUS") >= Duration::from_secs(3));
    assert!(timed(&mut c, "NOOP") >= Duration::from_secs(3));
    // A trusted client is not slowed.
    let t = Server::start("[limits]\nsoft_errors = 1\nerror_delay = \"3s\"\n");
    let mut c = Client::greeted(t.addr);
    c.cmd("EHLO client.example");
    timed(&mut c, "BOGUS");
    assert!(timed(&mut c, "BOGUS") < Duration::from_secs(3));
}
