//! Authenticated submission on 587 (STARTTLS) and 465 (implicit TLS),
//! driven by swaks as an independent client.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Client, PASSWORD, Server, Swaks};

#[test]
fn auth_over_starttls_on_587_relays_anywhere() {
    let s = Server::start("");
    for mechanism in ["PLAIN", "LOGIN"] {
        let (ok, out) = Swaks::alice(
            s.listeners["submission"],
            "bob@example.org,friend@elsewhere.example",
        )
        .auth(mechanism, "alice@example.org", PASSWORD)
        .args(&["--header", "Subject: via 587"])
        .run();
        assert!(ok, "{out}");
        assert!(out.contains("235 2.7.0"), "{out}");
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    }
    let files = s.wait_for_mail("bob@example.org", 2);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("with ESMTPSA id"), "{text}");
    assert!(text.contains("Subject: via 587"), "{text}");
    // The other domain's copy waits for outbound delivery.
    std::thread::sleep(Duration::from_millis(300));
    let (_, list) = s.queue(&["list"]);
    assert!(list.contains("friend@elsewhere.example"), "{list}");
}

#[test]
fn auth_over_implicit_tls_on_465() {
    let s = Server::start("");
    let (ok, out) = Swaks::alice(s.listeners["submissions"], "bob@example.org")
        .tls("--tlsc")
        .run();
    assert!(ok, "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    s.wait_for_mail("bob@example.org", 1);
}

#[test]
fn no_auth_in_clear_text() {
    let s = Server::start("");
    let mut c = Client::greeted(s.listeners["submission"]);
    let ehlo = c.cmd("EHLO laptop.example");
    assert!(
        ehlo.text.contains("STARTTLS") && !ehlo.text.contains("AUTH"),
        "{ehlo:?}"
    );
    let r = c.cmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAEhlbGxvIHdvcmxkIQ==");
    assert!(r.text.starts_with("538 5.7.11"), "{r:?}");
    let r = c.cmd("MAIL FROM:<alice@example.org>");
    assert!(r.text.starts_with("530 5.7.0"), "{r:?}");
    // swaks refuses too: the server does not offer AUTH without TLS.
    let (ok, out) = Swaks::new(
        s.listeners["submission"],
        "alice@example.org",
        "bob@example.org",
    )
    .auth("PLAIN", "alice@example.org", PASSWORD)
    .run();
    assert!(!ok, "{out}");
    assert!(s.maildir("bob@example.org").is_empty());
}

#[test]
fn sender_must_belong_to_the_user() {
    let s = Server::start("");
    let (ok, out) = Swaks::new(
        s.listeners["submission"],
        "bob@example.org",
        "bob@example.org",
    )
    .tls("--tls")
    .auth("PLAIN", "alice@example.org", PASSWORD)
    .run();
    assert!(!ok, "{out}");
    assert!(out.contains("553 5.7.1"), "{out}");
}

#[test]
fn failed_logins_are_slow_then_locked_out_without_telling_who_exists() {
    let s = Server::start("");
    let attempt = |user: &str, password: &str| {
        Swaks::new(s.listeners["submissions"], user, "bob@example.org")
            .tls("--tlsc")
            .auth("PLAIN", user, password)
            .args(&["--quit-after", "AUTH"])
            .run()
            .1
    };
    let started = std::time::Instant::now();
    let unknown = attempt("nobody@example.org", "guess");
    let wrong = attempt("alice@example.org", "guess");
    assert!(
        unknown.contains("535 5.7.8") && wrong.contains("535 5.7.8"),
        "{unknown}\n{wrong}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "failures must be slow"
    );
    for _ in 0..3 {
        attempt("alice@example.org", "guess");
    }
    // Five failures from this address: even the right password waits now.
    let locked = attempt("alice@example.org", PASSWORD);
    assert!(locked.contains("454 4.7.0"), "{locked}");
    assert!(s.log_contains("authentication failed"));
    assert!(
        s.log_lines("guess").is_empty(),
        "a password reached the log"
    );
}

#[test]
fn user_cli_adds_an_account_the_running_server_accepts() {
    let s = Server::start("");
    let mut cmd = Command::new(common::MTA);
    cmd.args(["user", "--config"])
        .arg(&s.config)
        .args(["add", "carol@example.org"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"carols secret\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("added carol@example.org"),
        "{text}"
    );
    s.wait_for_log("configuration reloaded");
    let (ok, out) = Swaks::new(
        s.listeners["submission"],
        "carol@example.org",
        "bob@example.org",
    )
    .tls("--tls")
    .auth("LOGIN", "carol@example.org", "carols secret")
    .run();
    assert!(ok, "{out}");
    let list = s.mta("user", &["list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("carol@example.org"));
}
