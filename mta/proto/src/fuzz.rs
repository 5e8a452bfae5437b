//! Property-based fuzzing (proptest) of the protocol cores: the SMTP
//! session, addresses and paths, SASL responses (what `mta-app` parses from
//! peers is fuzzed there; the IMAP session's property sits beside its
//! tests, `imap/session/tests.rs`, where its store is). Each property holds for
//! any input: no panic, bounded output, well-formed replies, and the same
//! answers however the input is split into reads.
//!
//! `cargo xtask test` runs proptest's default number of cases; for a long
//! run: `PROPTEST_CASES=200000 cargo test --release -p mta-proto fuzz`.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use crate::address::{Address, split_path};
use crate::sasl;
use crate::smtp::session::fixture::Fixture;
use crate::smtp::session::{AuthOutcome, Role, Session, SessionConfig, Step, TestClock};

fn session(role: Role) -> Session<Fixture> {
    let cfg = SessionConfig {
        hostname: "mx.example.org".into(),
        max_message_size: 4096,
        max_recipients: 5,
        max_errors: 20,
        command_timeout: Duration::from_secs(300),
        data_timeout: Duration::from_secs(600),
        tls_available: true,
        role,
        trace_user: false,
    };
    let mut s = Session::new(
        Arc::new(cfg),
        Arc::new(TestClock::default()),
        Arc::new(Fixture::default().with_alias(
            "both@example.org",
            &["alice@example.org", "x@elsewhere.example"],
        )),
        "192.0.2.1".parse().unwrap(),
    );
    s.greet();
    s
}

/// Feeds `chunks` one at a time, as reads from a socket; answers every step
/// the way an adapter would. Returns the reply lines and the number of
/// messages submitted. A submission session runs under TLS from the start
/// (so AUTH is reachable); on the MX port STARTTLS ends the run, because
/// what the client pipelined after it is discarded with the read it came in
/// (CVE-2011-0411), which depends on how the input was split.
fn drive(role: Role, chunks: &[Vec<u8>]) -> (Vec<String>, usize) {
    let mut s = session(role);
    if role != Role::Mx {
        s.tls_established("TLSv1.3".into());
    }
    let mut out = s.take_output();
    let mut submitted = 0;
    'feed: for chunk in chunks {
        s.receive(chunk);
        loop {
            let step = s.process();
            out.extend(s.take_output());
            // The adapter takes message content as it comes.
            let _ = s.take_body();
            match step {
                Step::NeedInput => break,
                Step::Write => {}
                Step::Close => break 'feed,
                Step::Submit(sub) => {
                    submitted += 1;
                    s.submitted(sub.id, Ok(()));
                }
                Step::StartTls => break 'feed,
                Step::Authenticate(c) => s.auth_result(if c.password == "Hello world!" {
                    AuthOutcome::Accepted("alice@example.org".into())
                } else {
                    AuthOutcome::Rejected
                }),
            }
        }
    }
    let text = String::from_utf8(out).expect("replies are UTF-8");
    assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
    // The clock is fixed and the ids numbered: whole replies compare.
    let lines = text.split_terminator("\r\n").map(str::to_string).collect();
    (lines, submitted)
}

/// Input that looks like SMTP often enough to get deep into the session.
fn smtp_input() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        Just("EHLO client.example".to_string()),
        Just("HELO x".to_string()),
        Just("MAIL FROM:<a@sender.example>".to_string()),
        Just("MAIL FROM:<alice@example.org> SIZE=100 BODY=8BITMIME".to_string()),
        Just("MAIL FROM:<>".to_string()),
        Just("RCPT TO:<alice@example.org>".to_string()),
        Just("RCPT TO:<both@example.org>".to_string()),
        Just("RCPT TO:<x@elsewhere.example>".to_string()),
        Just("DATA".to_string()),
        Just("BDAT 5".to_string()),
        Just("BDAT 3 LAST".to_string()),
        Just("BDAT 0 LAST".to_string()),
        Just("RSET".to_string()),
        Just("NOOP".to_string()),
        Just("STARTTLS".to_string()),
        Just("AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAEhlbGxvIHdvcmxkIQ==".to_string()),
        Just("AUTH LOGIN".to_string()),
        Just("*".to_string()),
        Just(".".to_string()),
        Just("..x".to_string()),
        Just("Received: from a by b".to_string()),
        Just("From: Alice <alice@example.org>".to_string()),
        Just("Subject: hi".to_string()),
        Just(String::new()),
        "[ -~]{0,40}",
        "\\PC{0,20}",
    ];
    let ending = prop_oneof![
        8 => Just("\r\n"),
        1 => Just("\n"),
        1 => Just("\r"),
        1 => Just(""),
    ];
    prop::collection::vec((word, ending), 0..40).prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(w, e)| [w, e.to_string()])
            .collect::<String>()
            .into_bytes()
    })
}

/// `input` split at the given points (taken modulo its length).
fn split(input: &[u8], mut cuts: Vec<usize>) -> Vec<Vec<u8>> {
    if input.is_empty() {
        return vec![Vec::new()];
    }
    cuts.iter_mut().for_each(|c| *c %= input.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([input.len()]) {
        out.push(input[at..c].to_vec());
        at = c;
    }
    out
}

fn well_formed(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 4
        && b[..3].iter().all(u8::is_ascii_digit)
        && (b[3] == b' ' || b[3] == b'-')
        && !line.contains('\r')
        && !line.contains('\n')
}

proptest! {
    #[test]
    fn the_session_answers_any_input_the_same_way_however_it_is_split(
        input in smtp_input(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        submission in any::<bool>(),
    ) {
        let role = if submission { Role::Submission } else { Role::Mx };
        let whole = drive(role, std::slice::from_ref(&input));
        let pieces = drive(role, &split(&input, cuts));
        for line in &whole.0 {
            prop_assert!(well_formed(line), "malformed reply {:?}", line);
        }
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn the_session_survives_arbitrary_bytes(
        input in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let (lines, _) = drive(Role::Mx, &split(&input, cuts));
        for line in &lines {
            prop_assert!(well_formed(line), "malformed reply {:?}", line);
        }
    }

    #[test]
    fn addresses_that_parse_print_back_to_themselves(text in "\\PC{0,80}", utf8 in any::<bool>()) {
        if let Ok(a) = Address::parse(&text, utf8) {
            let again = Address::parse(&a.to_string(), utf8);
            prop_assert_eq!(again.as_ref().ok(), Some(&a));
            prop_assert!(!a.to_string().contains(['\r', '\n', '\0']));
        }
        let _ = split_path(&text);
    }

    #[test]
    fn sasl_responses_decode_or_fail_cleanly(text in "\\PC{0,200}", raw in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = sasl::decode_plain(&text);
        let _ = sasl::decode_text(&text);
        let b64 = sasl::encode_text(&String::from_utf8_lossy(&raw));
        let _ = sasl::decode_plain(&b64);
    }

    #[test]
    fn plain_credentials_round_trip(user in "[^\\x00]{1,40}", password in "[^\\x00]{0,40}") {
        let response = sasl::encode_text(&format!("\0{user}\0{password}"));
        let c = sasl::decode_plain(&response).unwrap();
        prop_assert_eq!(c.username, user);
        prop_assert_eq!(c.password, password);
    }
}
