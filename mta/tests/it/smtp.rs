//! The receive path over real TCP: SMTP rules, TLS, queue and Maildir.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Client, Server, Swaks, original_of, wait_until};

const MESSAGE: &str = "From: Sender <x@sender.example>\r\nTo: alice@example.org\r\nSubject: hello\r\nMessage-ID: <m1@sender.example>\r\n\r\nFirst line.\r\n.A line that starts with a dot.\r\n\r\nLast line.\r\n";

#[test]
fn message_lands_in_the_maildir_byte_for_byte_with_trace_headers() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    let r = c.send_mail("x@sender.example", &["alice@example.org"], MESSAGE);
    assert_eq!(r.code, 250, "{r:?}");
    assert!(r.text.contains("queued as"), "{r:?}");
    let files = s.wait_for_mail("alice@example.org", 1);
    let stored = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8_lossy(&stored);
    assert!(
        text.starts_with(
            "Return-Path: <x@sender.example>\nDelivered-To: alice@example.org\nAuthentication-Results: mx.example.org;"
        ),
        "{text}"
    );
    assert!(
        text.contains("\nReceived: from client.example ([127.0.0.1])\n"),
        "{text}"
    );
    assert!(
        text.contains("by mx.example.org (Mailbox) with ESMTP id"),
        "{text}"
    );
    assert_eq!(original_of(&stored), MESSAGE);
    // Maildir name: unique, with the size of the file and the size IMAP
    // gives (every line end CRLF).
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    let lines = stored.iter().filter(|b| **b == b'\n').count();
    assert!(
        name.ends_with(&format!(",S={},W={}", stored.len(), stored.len() + lines)),
        "{name}"
    );
    assert_eq!(c.cmd("QUIT").code, 221);
}

#[test]
fn pipelined_commands_get_their_replies_in_order() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.send(b"MAIL FROM:<x@sender.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    let codes: Vec<u16> = (0..5).map(|_| c.reply().code).collect();
    assert_eq!(codes, vec![250, 250, 550, 250, 354]);
    c.send(b"Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    let codes: Vec<u16> = (0..4).map(|_| c.reply().code).collect();
    assert_eq!(codes, vec![250, 250, 250, 354]);
    c.send(b"second\r\n.\r\nQUIT\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.reply().code, 221);
    s.wait_for_mail("alice@example.org", 1);
    s.wait_for_mail("bob@example.org", 2);
}

#[test]
fn starttls_with_a_rustls_client_then_mail() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.text.contains("STARTTLS"), "{ehlo:?}");
    // Trusting exactly the certificate the server generated for itself.
    let mut tls = c.starttls(&s);
    let ehlo = tls.cmd("EHLO client.example");
    assert_eq!(ehlo.code, 250);
    assert!(
        !ehlo.text.contains("STARTTLS"),
        "STARTTLS offered inside TLS"
    );
    assert_eq!(tls.cmd("MAIL FROM:<x@sender.example>").code, 250);
    assert_eq!(tls.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(tls.cmd("DATA").code, 354);
    assert_eq!(tls.cmd("Subject: tls\r\n\r\nsecret\r\n.").code, 250);
    assert_eq!(tls.cmd("QUIT").code, 221);
    let files = s.wait_for_mail("alice@example.org", 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("with ESMTPS id"), "{text}");
    assert!(text.contains("(using TLSv1.3 with cipher"), "{text}");
}

#[test]
fn commands_pipelined_after_starttls_are_not_executed() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    // The injected commands arrive in the same packet as STARTTLS.
    c.send(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<alice@example.org>\r\n");
    assert_eq!(c.reply().code, 220);
    // We now speak garbage instead of a TLS ClientHello: if the server had
    // executed the injected commands it would answer them in plain text.
    c.send(b"DATA\r\n");
    let r = c.try_reply();
    assert!(r.is_none() || r.as_ref().unwrap().code != 250, "{r:?}");
    assert!(s.maildir("alice@example.org").is_empty());
}

#[test]
fn bdat_chunking_over_tcp() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<x@sender.example>");
    c.cmd("RCPT TO:<alice@example.org>");
    let part1 = b"Subject: chunks\r\n\r\n";
    let part2 = b"binary\x00safe? no, but 8bit \xc3\xa9 is\r\n";
    c.send(format!("BDAT {}\r\n", part1.len()).as_bytes());
    c.send(part1);
    assert_eq!(c.reply().code, 250);
    c.send(format!("BDAT {} LAST\r\n", part2.len()).as_bytes());
    c.send(part2);
    let r = c.reply();
    assert_eq!(r.code, 250, "{r:?}");
    let files = s.wait_for_mail("alice@example.org", 1);
    let stored = std::fs::read(&files[0]).unwrap();
    assert!(stored.ends_with(b"Subject: chunks\n\nbinary\x00safe? no, but 8bit \xc3\xa9 is\n"));
}

/// A message of about 3 MiB: lines of text, some starting with a dot.
fn large_message() -> String {
    let mut m = String::from("From: x@sender.example\r\nSubject: large\r\n\r\n");
    for i in 0..100_000 {
        m.push_str(if i % 5 == 0 { ".dotted " } else { "plain " });
        m.push_str(&format!("line {i} with some words to make it longer\r\n"));
    }
    m
}

#[test]
fn large_messages_are_spooled_and_delivered_byte_for_byte() {
    let s = Server::start("");
    let message = large_message();
    assert!(message.len() > 3 << 20);
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.send_mail("x@sender.example", &["alice@example.org"], &message);
    assert_eq!(r.code, 250, "{r:?}");
    // The same with BDAT, in chunks that split lines (and CRLF pairs).
    c.cmd("MAIL FROM:<x@sender.example>");
    c.cmd("RCPT TO:<bob@example.org>");
    let chunks: Vec<&[u8]> = message.as_bytes().chunks(1_000_001).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() { " LAST" } else { "" };
        c.send(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
        c.send(chunk);
        assert_eq!(c.reply().code, 250);
    }
    for account in ["alice@example.org", "bob@example.org"] {
        let files = s.wait_for_mail(account, 1);
        let stored = std::fs::read(&files[0]).unwrap();
        assert!(
            original_of(&stored) == message,
            "{account}: the message changed"
        );
        let name = files[0].file_name().unwrap().to_string_lossy().to_string();
        let lines = stored.iter().filter(|b| **b == b'\n').count();
        assert!(
            name.ends_with(&format!(",S={},W={}", stored.len(), stored.len() + lines)),
            "{name}"
        );
    }
    s.wait_queue_empty(Duration::from_secs(10));
    // A body file goes once the commit that removed its message is durable
    // (within half a second).
    for dir in ["queue/spool", "queue/bodies"] {
        wait_until(
            Duration::from_secs(5),
            || format!("{dir} still has files"),
            || (std::fs::read_dir(s.data().join(dir)).unwrap().count() == 0).then_some(()),
        );
    }
}

#[test]
fn a_pipelined_message_after_a_refused_one_has_only_its_own_content() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.send(b"MAIL FROM:<x@sender.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    let codes: Vec<u16> = (0..3).map(|_| c.reply().code).collect();
    assert_eq!(codes, vec![250, 250, 354]);
    // Large enough that part of it is spooled before its end is refused
    // (too many hops), and the next transaction pipelined right behind it.
    let mut first = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(50);
    first.push_str("Subject: refused\r\n\r\n");
    first.push_str(&"REFUSED CONTENT\r\n".repeat(5000));
    first.push_str(".\r\nMAIL FROM:<x@sender.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    c.send(first.as_bytes());
    let codes: Vec<u16> = (0..4).map(|_| c.reply().code).collect();
    assert_eq!(codes, vec![554, 250, 250, 354]);
    c.send(b"Subject: second\r\n\r\nonly this\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    let files = s.wait_for_mail("alice@example.org", 1);
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        !stored.contains("REFUSED"),
        "{}",
        &stored[..stored.len().min(2000)]
    );
    assert!(
        stored.ends_with("Subject: second\n\nonly this\n"),
        "{stored}"
    );
}

#[test]
fn a_refused_large_message_leaves_no_spool_file() {
    let s = Server::start("[limits]\nmessage_size = \"1M\"\n");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.send_mail("x@sender.example", &["alice@example.org"], &large_message());
    assert_eq!(r.code, 552, "{r:?}");
    // Cut off in the middle of a large message: the connection drops.
    c.cmd("MAIL FROM:<x@sender.example>");
    c.cmd("RCPT TO:<alice@example.org>");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(&large_message().as_bytes()[..900_000]);
    drop(c);
    wait_until(
        Duration::from_secs(10),
        || "a spool file was left behind".into(),
        || {
            let left = std::fs::read_dir(s.data().join("queue/spool"))
                .unwrap()
                .count();
            (left == 0).then_some(())
        },
    );
}

#[test]
fn relay_and_routing_tricks_are_refused() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<x@sender.example>");
    for rcpt in [
        "<victim@elsewhere.example>",
        "<@example.org:victim@elsewhere.example>",
        "<victim%elsewhere.example@example.org>",
        "<elsewhere.example!victim@example.org>",
        "<\"victim@elsewhere.example\"@example.org>",
        "<victim@[127.0.0.1]>",
    ] {
        let r = c.cmd(&format!("RCPT TO:{rcpt}"));
        assert_eq!(r.code, 554, "{rcpt}: {r:?}");
        assert!(r.text.contains("5.7.1"), "{rcpt}: {r:?}");
    }
    let r = c.cmd("RCPT TO:<nobody@example.org>");
    assert!(r.text.starts_with("550 5.1.1"), "{r:?}");
    assert_eq!(c.cmd("DATA").code, 503);
}

#[test]
fn smtp_smuggling_end_markers_are_refused() {
    for smuggled in [&b"\n.\n"[..], b"\r\n.\n", b"\n.\r\n"] {
        let s = Server::start("");
        let mut c = Client::greeted(s.addr);
        c.cmd("EHLO client.example");
        c.cmd("MAIL FROM:<x@sender.example>");
        c.cmd("RCPT TO:<alice@example.org>");
        assert_eq!(c.cmd("DATA").code, 354);
        let mut data = b"Subject: a\r\n\r\nhello".to_vec();
        data.extend_from_slice(smuggled);
        data.extend_from_slice(b"MAIL FROM:<admin@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n");
        c.send(&data);
        let r = c.reply();
        assert_eq!(r.code, 521, "{smuggled:?}: {r:?}");
        assert!(c.closed());
        std::thread::sleep(Duration::from_millis(200));
        assert!(s.maildir("alice@example.org").is_empty());
        assert!(s.maildir("bob@example.org").is_empty());
    }
}

#[test]
fn oversize_messages_are_refused_and_the_session_continues() {
    let s = Server::start("[limits]\nmessage_size = 1000\n");
    let mut c = Client::greeted(s.addr);
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.text.contains("SIZE 1000"), "{ehlo:?}");
    assert!(
        c.cmd("MAIL FROM:<x@sender.example> SIZE=5000")
            .text
            .starts_with("552 5.3.4")
    );
    let big = format!("Subject: big\r\n\r\n{}", "0123456789\r\n".repeat(200));
    let r = c.send_mail("x@sender.example", &["alice@example.org"], &big);
    assert!(r.text.starts_with("552 5.3.4"), "{r:?}");
    let r = c.send_mail(
        "x@sender.example",
        &["alice@example.org"],
        "Subject: small\r\n\r\nok\r\n",
    );
    assert_eq!(r.code, 250);
    assert_eq!(s.wait_for_mail("alice@example.org", 1).len(), 1);
}

#[test]
fn too_many_recipients_is_452() {
    let s = Server::start("[limits]\nrecipients = 2\n");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<x@sender.example>");
    assert_eq!(c.cmd("RCPT TO:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@example.org>").code, 250);
    assert!(
        c.cmd("RCPT TO:<both@example.org>")
            .text
            .starts_with("452 4.5.3")
    );
}

#[test]
fn pregreet_refuses_early_talkers_and_greets_patient_clients_at_once_after() {
    // The default configuration, but for the loopback address the tests
    // come from, which is trusted by default (as Postfix's mynetworks).
    let s = Server::start("[inbound]\ntrusted_networks = []\n");
    // A spam engine writes its commands as soon as the first line comes.
    let mut c = Client::connect(s.addr);
    let first = c.line();
    assert!(first.starts_with("220-mx.example.org ESMTP"), "{first:?}");
    c.send(b"EHLO impatient.example\r\nMAIL FROM:<spam@impatient.example>\r\n");
    let r = c.reply();
    assert!(r.text.starts_with("554 5.5.0"), "{r:?}");
    assert!(c.closed());
    s.wait_for_log("it talked before the greeting's last line (pregreet)");
    // A patient client reads both lines of the greeting and is served.
    let started = Instant::now();
    let mut c = Client::connect(s.addr);
    let r = c.reply();
    let waited = started.elapsed();
    assert_eq!(r.code, 220);
    assert!(
        r.text.starts_with("220-mx.example.org") && r.text.contains("\r\n220 mx.example.org"),
        "{r:?}"
    );
    assert!(
        waited >= Duration::from_millis(1900),
        "greeted after {waited:?}"
    );
    assert_eq!(c.cmd("EHLO patient.example").code, 250);
    // Having waited once, it is greeted at once, with one line.
    let started = Instant::now();
    let r = Client::connect(s.addr).reply();
    assert!(r.text.starts_with("220 mx.example.org"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn trusted_networks_skip_the_pregreet_test() {
    // The default: loopback and the private ranges are trusted.
    let s = Server::start("");
    let started = Instant::now();
    let r = Client::connect(s.addr).reply();
    assert!(r.text.starts_with("220 mx.example.org"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn pregreet_can_be_turned_off() {
    let s = Server::start("[inbound]\npregreet = \"0s\"\ntrusted_networks = []\n");
    let mut c = Client::connect(s.addr);
    c.send(b"EHLO at-once.example\r\n");
    let r = c.reply();
    assert!(r.text.starts_with("220 mx.example.org"), "{r:?}");
    assert_eq!(c.reply().code, 250);
}

#[test]
fn idle_client_times_out_with_421() {
    let s = Server::start("[limits]\ncommand_timeout = \"1s\"\n");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.reply();
    assert!(r.text.starts_with("421 4.4.2"), "{r:?}");
    assert!(c.closed());
}

#[test]
fn helo_is_required_and_vrfy_does_not_enumerate() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    assert!(
        c.cmd("MAIL FROM:<x@sender.example>")
            .text
            .starts_with("503 5.5.1")
    );
    c.cmd("HELO client.example");
    assert_eq!(c.cmd("VRFY alice@example.org").code, 252);
    assert_eq!(c.cmd("VRFY nobody@example.org").code, 252);
    assert_eq!(c.cmd("HELP").code, 214);
    assert_eq!(c.cmd("NOOP").code, 250);
    assert_eq!(c.cmd("RSET").code, 250);
}

#[test]
fn aliases_plus_addresses_and_duplicates() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.send_mail(
        "x@sender.example",
        &[
            "both@example.org",
            "alice+news@example.org",
            "Alice@Example.org",
        ],
        "Subject: fan-out\r\n\r\nx\r\n",
    );
    assert_eq!(r.code, 250);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.wait_for_mail("alice@example.org", 1).len(),
        1,
        "alice gets one copy"
    );
    assert_eq!(
        s.wait_for_mail("bob@example.org", 1).len(),
        1,
        "bob gets one copy"
    );
    let r = c.send_mail(
        "x@sender.example",
        &["alice+news@example.org"],
        "Subject: plus\r\n\r\nx\r\n",
    );
    assert_eq!(r.code, 250);
    let files = s.wait_for_mail("alice@example.org", 2);
    let plus = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .find(|t| t.contains("Subject: plus"))
        .unwrap();
    assert!(
        plus.contains("Delivered-To: alice+news@example.org\n"),
        "{plus}"
    );
}

#[test]
fn full_disk_answers_452_and_keeps_nothing() {
    // More free space demanded than any disk has: the queue must refuse.
    let s = Server::start("[limits]\nmin_free_space = \"1000000G\"\n");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.send_mail(
        "x@sender.example",
        &["alice@example.org"],
        "Subject: x\r\n\r\nx\r\n",
    );
    assert!(r.text.starts_with("452 4.3.1"), "{r:?}");
    let (ok, list) = s.queue(&["list"]);
    assert!(ok && list.contains("the queue is empty"), "{list}");
}

#[test]
fn temporary_delivery_failure_is_retried_after_flush() {
    let s = Server::start("");
    // bob's Maildir cannot be created: a file is in the way.
    let blocker = s.data().join("mail/example.org/bob");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"in the way").unwrap();
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.send_mail(
        "x@sender.example",
        &["bob@example.org"],
        "Subject: later\r\n\r\nx\r\n",
    );
    assert_eq!(r.code, 250);
    let list = wait_until(
        Duration::from_secs(10),
        || format!("no attempt yet: {}", s.queue(&["list"]).1),
        || {
            let (_, list) = s.queue(&["list"]);
            list.contains("1 attempts").then_some(list)
        },
    );
    assert!(list.contains("cannot write to the maildir"), "{list}");
    s.wait_for_log("status=deferred");
    std::fs::remove_file(&blocker).unwrap();
    let (ok, out) = s.queue(&["flush"]);
    assert!(ok, "{out}");
    let files = s.wait_for_mail("bob@example.org", 1);
    assert!(
        std::fs::read_to_string(&files[0])
            .unwrap()
            .contains("Subject: later")
    );
    s.wait_queue_empty(Duration::from_secs(10));
}

#[test]
fn queue_cli_lists_shows_holds_releases_and_deletes_while_running() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    // friend@ forwards to another domain, which stays queued in this version.
    let r = c.send_mail(
        "x@sender.example",
        &["friend@example.org"],
        "Subject: queued\r\n\r\nx\r\n",
    );
    assert_eq!(r.code, 250);
    let id = r
        .text
        .split("queued as ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, list) = s.queue(&["list"]);
    assert!(
        ok && list.contains(&id) && list.contains("someone@elsewhere.example"),
        "{list}"
    );
    let (ok, show) = s.queue(&["show", &id]);
    assert!(ok && show.contains("Subject: queued"), "{show}");
    let (ok, out) = s.queue(&["hold", &id]);
    assert!(ok && out.contains("held"), "{out}");
    assert!(s.queue(&["list"]).1.contains(&format!("{id}!")));
    let (ok, out) = s.queue(&["release", &id]);
    assert!(ok && out.contains("released"), "{out}");
    let (ok, out) = s.queue(&["delete", &id]);
    assert!(ok && out.contains("deleted"), "{out}");
    assert!(s.queue(&["list"]).1.contains("the queue is empty"));
    let (ok, out) = s.queue(&["show", "0123456789ABCDEF"]);
    assert!(!ok && out.contains("no message"), "{out}");
}

#[test]
fn swaks_delivers_with_starttls() {
    let s = Server::start("");
    let (ok, text) = Swaks::new(s.addr, "x@sender.example", "alice@example.org")
        .tls("--tls")
        .args(&["--header", "Subject: from swaks", "--body", "sent by swaks"])
        .run();
    assert!(ok, "{text}");
    assert!(text.contains("250 2.0.0 Ok: queued as"), "{text}");
    let files = s.wait_for_mail("alice@example.org", 1);
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        stored.contains("Subject: from swaks") && stored.contains("sent by swaks"),
        "{stored}"
    );
    assert!(stored.contains("with ESMTPS"), "{stored}");
}

#[test]
fn python_smtplib_delivers_with_starttls_and_bdat_free_smtputf8() {
    let s = Server::start("");
    let script = r#"
import smtplib, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, port, timeout=20) as c:
    c.ehlo("py.example")
    assert c.has_extn("smtputf8") and c.has_extn("size")
    c.starttls(context=ctx)
    c.ehlo("py.example")
    msg = "From: jöran@sender.example\r\nTo: alice@example.org\r\nSubject: ünïcode\r\n\r\nhej då\r\n".encode()
    refused = c.sendmail("jöran@sender.example", ["alice@example.org"], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert not refused, refused
print("sent")
"#;
    crate::common::python(
        script,
        &[s.addr.ip().to_string(), s.addr.port().to_string()],
    );
    let files = s.wait_for_mail("alice@example.org", 1);
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        stored.contains("Return-Path: <jöran@sender.example>"),
        "{stored}"
    );
    assert!(stored.contains("with UTF8ESMTPS"), "{stored}");
    assert!(stored.contains("hej då"), "{stored}");
}

#[test]
fn check_config_reports_problems_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "hostname = \"mx.example.org\"\ndata_dir = \"/d\"\ndomains = [\"example.org\"]\n[[accounts]]\naddress = \"alice@example.org\"\npassword = \"plaintext\"\n",
    )
    .unwrap();
    let out = Command::new(crate::common::MTA)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:6:"), "{err}");
    assert!(err.contains("mta hash-password"), "{err}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let out = Command::new(crate::common::MTA)
        .args(["check-config", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sighup_reloads_the_configuration_without_dropping_connections() {
    let s = Server::start("");
    let mut old = Client::greeted(s.addr);
    old.cmd("EHLO client.example");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<x@sender.example>");
    assert_eq!(c.cmd("RCPT TO:<carol@example.org>").code, 550);

    let text = std::fs::read_to_string(&s.config).unwrap();
    let added = text.replace(
        "[aliases]",
        "[[accounts]]\naddress = \"carol@example.org\"\n[aliases]",
    );
    std::fs::write(&s.config, &added).unwrap();
    s.signal("HUP");
    s.wait_for_log("configuration reloaded");

    // The connection opened before the reload is still served.
    assert_eq!(old.cmd("NOOP").code, 250);
    let r = old.send_mail(
        "x@sender.example",
        &["alice@example.org"],
        "Subject: across reload\r\n\r\nx\r\n",
    );
    assert_eq!(r.code, 250);
    // New connections see the new account.
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.send_mail(
        "x@sender.example",
        &["carol@example.org"],
        "Subject: new account\r\n\r\nx\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    s.wait_for_mail("carol@example.org", 1);

    // A broken configuration is refused and the running one stays.
    std::fs::write(&s.config, added.replace("domains =", "domainz =")).unwrap();
    s.signal("HUP");
    s.wait_for_log("configuration not reloaded");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<x@sender.example>");
    assert_eq!(c.cmd("RCPT TO:<carol@example.org>").code, 250);
}

#[test]
fn sigterm_says_goodbye_to_idle_clients_and_exits_cleanly() {
    let mut s = Server::start("");
    let mut idle = Client::greeted(s.addr);
    idle.cmd("EHLO client.example");
    s.signal("TERM");
    let r = idle.reply();
    assert!(r.text.starts_with("421 4.3.2"), "{r:?}");
    assert!(
        s.wait_exit(Duration::from_secs(15)),
        "mta exited with failure"
    );
    s.wait_for_log("stopped");
}

#[test]
fn an_orderly_stop_right_after_a_delivery_does_not_deliver_it_again() {
    // The delivery's result waits up to half a second for a durable
    // commit; the stop must not lose it (found by the QEMU e2e: the copy
    // came twice when the wizard had renamed the host meanwhile).
    let mut s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.send_mail(
        "x@sender.example",
        &["alice@example.org"],
        "Subject: once\r\n\r\nonce\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    s.wait_for_log("delivered to maildir");
    s.signal("TERM");
    assert!(s.wait_exit(Duration::from_secs(15)));
    s.restart();
    s.wait_for_log("--- restart ---");
    // Whatever the queue still held is delivered at start; a health
    // check answers only after the writer's first commit.
    assert!(Client::try_connect(s.addr, Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_secs(1));
    let deliveries = s
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("delivered to maildir"))
        .count();
    assert_eq!(deliveries, 1, "delivered again after the restart");
    assert_eq!(s.maildir("alice@example.org").len(), 1);
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_write_deadline() {
    let s = Server::start("[limits]\ncommand_timeout = \"2s\"\nconnections_per_ip = 1\n");
    let stalled = TcpStream::connect(s.addr).unwrap();
    let mut greeting = String::new();
    let mut lines = BufReader::new(stalled.try_clone().unwrap());
    while !greeting.starts_with("220 ") {
        greeting.clear();
        lines.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("220"), "{greeting:?}");
    }
    // The address's one slot is taken.
    let r = Client::connect(s.addr).reply();
    assert!(r.text.starts_with("421 4.7.0"), "{r:?}");
    // Pipelined EHLOs whose replies (megabytes, more than the socket
    // buffers hold) are never read.
    let mut writer = stalled.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let flood = std::thread::spawn(move || {
        let _ = writer.write_all(&b"EHLO x\r\n".repeat(128 * 1024));
    });
    // The server gives up writing to it and frees the slot, although the
    // client keeps its end open.
    wait_until(
        Duration::from_secs(15),
        || {
            let refused = s.log_lines("too many connections").len();
            format!("the stalled client kept the slot ({refused} connections refused)")
        },
        || {
            let mut c = Client::try_connect(s.addr, Duration::from_secs(5))?;
            (c.try_reply()?.code == 220).then_some(())
        },
    );
    s.wait_for_log("cannot write to the client");
    flood.join().unwrap();
    drop(stalled);
}

#[test]
fn the_health_check_answers_during_the_greeting_delay() {
    let s = Server::start("[inbound]\npregreet = \"5s\"\ntrusted_networks = []\n");
    // A client waits for its greeting meanwhile.
    let mut waiting = Client::connect(s.addr);
    let started = Instant::now();
    let (ok, out) = s.queue(&["health"]);
    let took = started.elapsed();
    assert!(ok && out.contains("healthy"), "{out}");
    assert!(
        took < Duration::from_secs(3),
        "the health check took {took:?}"
    );
    assert_eq!(waiting.reply().code, 220);
}

#[test]
fn a_connection_ends_at_its_time_limit() {
    let s = Server::start("[limits]\nsession_time = \"2s\"\ncommand_timeout = \"60s\"\n");
    let mut c = Client::greeted(s.addr);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    // Long before the 60 s command timeout (and within the client's 20 s).
    let r = c.reply();
    assert!(r.text.starts_with("421 4.4.2"), "{r:?}");
    assert!(c.closed());
    s.wait_for_log("connection time limit reached");
}

#[test]
fn a_message_dripped_a_byte_at_a_time_is_cut_off_after_the_time_limit() {
    let s = Server::start(
        "[limits]\nsession_time = \"1s\"\ndata_timeout = \"2s\"\ncommand_timeout = \"60s\"\n",
    );
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<x@sender.example>");
    c.cmd("RCPT TO:<alice@example.org>");
    assert_eq!(c.cmd("DATA").code, 354);
    let mut writer = c.stream.try_clone().unwrap();
    std::thread::spawn(move || {
        // Always inside the 2 s data timeout, for up to 30 s.
        for _ in 0..100 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let started = Instant::now();
    let r = c.reply();
    assert!(r.text.starts_with("421 4.4.2"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    s.wait_for_log("connection time limit reached during a transfer");
}

/// A message that has passed `hops` servers before.
fn with_received_fields(hops: usize) -> String {
    let mut message = String::new();
    for n in (0..hops).rev() {
        message.push_str(&format!(
            "Received: from hop{n}.example by hop{}.example; Sun, 29 Nov 2026 09:00:00 +0000\r\n",
            n + 1
        ));
    }
    message.push_str(&format!("Subject: {hops} hops\r\n\r\nx\r\n"));
    message
}

#[test]
fn a_message_with_too_many_received_fields_is_refused() {
    let s = Server::start("");
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO client.example");
    let r = c.send_mail(
        "x@sender.example",
        &["alice@example.org"],
        &with_received_fields(50),
    );
    assert!(r.text.starts_with("554 5.4.6"), "{r:?}");
    // The session goes on; one hop fewer passes.
    let r = c.send_mail(
        "x@sender.example",
        &["alice@example.org"],
        &with_received_fields(49),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let files = s.wait_for_mail("alice@example.org", 1);
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(stored.contains("Subject: 49 hops"), "{stored}");
    assert_eq!(
        stored
            .lines()
            .filter(|l| l.starts_with("Received:"))
            .count(),
        50,
        "ours and the 49 before: {stored}"
    );
    s.wait_queue_empty(Duration::from_secs(10));
    assert_eq!(s.maildir("alice@example.org").len(), 1);
}
