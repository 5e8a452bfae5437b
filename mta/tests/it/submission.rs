//! Authenticated submission on 587 (STARTTLS) and 465 (implicit TLS),
//! driven by swaks as an independent client.

use std::time::Duration;

use crate::common::{Client, PASSWORD, Server, Swaks, auth_plain};

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
    s.wait_for_log("authentication failed");
    assert!(
        s.log_lines("guess").is_empty(),
        "a password reached the log"
    );
}

#[test]
fn user_cli_adds_an_account_the_running_server_accepts() {
    let s = Server::start("");
    let out = s.mta_with_input("user", &["add", "carol@example.org"], b"carols secret\n");
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

#[test]
fn the_from_header_must_belong_to_the_submitting_account() {
    let s = Server::start("");
    let (ok, out) = Swaks::alice(s.listeners["submission"], "bob@example.org")
        .args(&["--header", "From: Bob <bob@example.org>"])
        .run();
    assert!(!ok, "{out}");
    assert!(out.contains("553 5.7.1"), "{out}");
    assert!(out.contains("not owned by user alice@example.org"), "{out}");
    let (ok, out) = Swaks::alice(s.listeners["submission"], "bob@example.org")
        .args(&["--header", "From: Alice <alice@example.org>"])
        .run();
    assert!(ok, "{out}");
    let files = s.wait_for_mail("bob@example.org", 1);
    s.wait_queue_empty(Duration::from_secs(10));
    assert_eq!(s.maildir("bob@example.org").len(), 1, "the forged one came");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains("From: Alice <alice@example.org>"), "{text}");
}

#[test]
fn the_null_sender_is_refused_on_submission() {
    let s = Server::start("");
    // swaks spells the null sender "<>".
    let (ok, out) = Swaks::new(s.listeners["submission"], "<>", "bob@example.org")
        .tls("--tls")
        .auth("PLAIN", "alice@example.org", PASSWORD)
        .run();
    assert!(!ok, "{out}");
    assert!(out.contains("MAIL FROM:<>"), "{out}");
    assert!(
        out.contains("553 5.7.1 <>: Sender address rejected"),
        "{out}"
    );
    assert!(s.maildir("bob@example.org").is_empty());
}

#[test]
fn a_changed_password_ends_an_open_login() {
    let s = Server::start("");
    let mut c = Client::greeted(s.listeners["submission"]);
    c.cmd("EHLO laptop.example");
    let mut c = c.starttls(&s);
    assert_eq!(c.cmd("EHLO laptop.example").code, 250);
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        auth_plain("alice@example.org", PASSWORD)
    ));
    assert!(r.text.starts_with("235 2.7.0"), "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("RSET").code, 250);

    let out = s.mta_with_input("user", &["passwd", "alice@example.org"], b"new secret\n");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_for_log("configuration reloaded");

    let r = c.cmd("MAIL FROM:<alice@example.org>");
    assert!(r.text.starts_with("421 4.7.0"), "{r:?}");
    assert!(c.closed());
    let (ok, out) = Swaks::alice(s.listeners["submission"], "bob@example.org").run();
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    let (ok, out) = Swaks::alice(s.listeners["submission"], "bob@example.org")
        .auth("PLAIN", "alice@example.org", "new secret")
        .run();
    assert!(ok, "{out}");
}

#[test]
fn a_connection_opened_before_a_password_change_cannot_log_in_with_the_old_one() {
    let s = Server::start("");
    let mut c = Client::greeted(s.listeners["submission"]);
    c.cmd("EHLO laptop.example");
    let mut c = c.starttls(&s);
    assert_eq!(c.cmd("EHLO laptop.example").code, 250);
    let out = s.mta_with_input("user", &["passwd", "alice@example.org"], b"new secret\n");
    assert!(out.status.success());
    s.wait_for_log("configuration reloaded");
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        auth_plain("alice@example.org", PASSWORD)
    ));
    assert!(
        r.text.starts_with("535 "),
        "the old password logged in: {r:?}"
    );
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        auth_plain("alice@example.org", "new secret")
    ));
    assert!(r.text.starts_with("235 "), "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").code, 250);
}

/// A login attempt as alice over 465 from `source` (any 127/8 address);
/// everything swaks printed.
fn login_from(s: &Server, source: &str, password: &str) -> String {
    Swaks::new(
        s.listeners["submissions"],
        "alice@example.org",
        "bob@example.org",
    )
    .tls("--tlsc")
    .auth("PLAIN", "alice@example.org", password)
    .args(&["--local-interface", source, "--quit-after", "AUTH"])
    .run()
    .1
}

#[test]
fn guessing_from_many_addresses_does_not_lock_out_the_owner() {
    let s = Server::start("");
    // Twelve wrong passwords for alice (more than the ten that mark an
    // account as guessed at), four from each of three addresses (fewer
    // than the five that block an address), at once.
    std::thread::scope(|scope| {
        for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            let s = &s;
            scope.spawn(move || {
                for _ in 0..4 {
                    let out = login_from(s, source, "guess");
                    assert!(out.contains("535 5.7.8"), "{out}");
                }
            });
        }
    });
    for source in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let failed = s.log_lines(&format!("client={source}:"));
        assert_eq!(failed.len(), 4, "{failed:?}");
    }
    // The owner, from elsewhere, still gets in (slowly).
    let out = login_from(&s, "127.0.0.5", PASSWORD);
    assert!(out.contains("235 2.7.0"), "{out}");
    s.wait_for_log("client=127.0.0.5:");
    assert!(s.log_lines("refused, too many failures").is_empty());
}

#[test]
fn a_source_with_too_many_failures_is_refused() {
    let s = Server::start("");
    for _ in 0..5 {
        let out = login_from(&s, "127.0.0.2", "guess");
        assert!(out.contains("535 5.7.8"), "{out}");
    }
    // Not even checked from there now…
    let out = login_from(&s, "127.0.0.2", PASSWORD);
    assert!(out.contains("454 4.7.0"), "{out}");
    s.wait_for_log("refused, too many failures from ip:127.0.0.2");
    // … while another address logs in.
    let out = login_from(&s, "127.0.0.3", PASSWORD);
    assert!(out.contains("235 2.7.0"), "{out}");
}

#[test]
fn a_forged_log_line_in_the_auth_username_is_escaped() {
    let s = Server::start("");
    let mut c = Client::greeted(s.listeners["submission"]);
    c.cmd("EHLO laptop.example");
    let mut c = c.starttls(&s);
    c.cmd("EHLO laptop.example");
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        auth_plain("x\r\nFAKE: forged", "pw")
    ));
    assert!(r.text.starts_with("535 5.7.8"), "{r:?}");
    s.wait_for_log("authentication failed");
    let lines = s.log_lines("FAKE");
    assert!(
        lines.len() == 1
            && lines[0].contains(r"sasl_username=x\r\nFAKE: forged: authentication failed"),
        "{lines:?}"
    );
    assert!(
        !s.log.lock().unwrap().iter().any(|l| l.starts_with("FAKE")),
        "a forged line reached the log"
    );
}
