//! The session core without sockets: every rule is a conversation.

use super::fixture::{Fixture, Target};
use super::*;

struct Harness {
    s: Session<Fixture>,
    submitted: Vec<Submission<Target>>,
    /// Each submitted message whole: prefix, the content taken during the
    /// transaction (as the adapter does), the rest.
    messages: Vec<Vec<u8>>,
    taken: Vec<u8>,
    directory: Arc<Fixture>,
}

fn harness_with(max_size: u64, max_rcpt: usize, tls: bool) -> Harness {
    harness_role(max_size, max_rcpt, tls, Role::Mx)
}

fn harness_role(max_size: u64, max_rcpt: usize, tls: bool, role: Role) -> Harness {
    let cfg = SessionConfig {
        hostname: "mx.example.org".into(),
        max_message_size: max_size,
        max_recipients: max_rcpt,
        max_errors: 5,
        command_timeout: Duration::from_secs(300),
        data_timeout: Duration::from_secs(600),
        tls_available: tls,
        role,
        trace_user: false,
    };
    let directory = Arc::new(Fixture::default());
    let mut s = Session::new(
        Arc::new(cfg),
        Arc::new(TestClock::default()),
        directory.clone(),
        "192.0.2.7".parse().unwrap(),
    );
    s.greet();
    Harness {
        s,
        submitted: Vec::new(),
        messages: Vec::new(),
        taken: Vec::new(),
        directory,
    }
}

fn harness() -> Harness {
    harness_with(10_000, 3, true)
}

impl Harness {
    /// Feeds `input`, commits every submission, returns (output, last step name).
    fn talk(&mut self, input: &str) -> (String, &'static str) {
        self.talk_bytes(input.as_bytes())
    }

    fn talk_bytes(&mut self, input: &[u8]) -> (String, &'static str) {
        self.s.receive(input);
        let mut out = String::from_utf8(self.s.take_output()).unwrap();
        loop {
            let step = self.s.process();
            out.push_str(&String::from_utf8(self.s.take_output()).unwrap());
            if !matches!(step, Step::Submit(_)) {
                let taken = self.s.take_body();
                self.taken.extend_from_slice(&taken);
                if self.s.transaction().is_none() {
                    self.taken.clear();
                }
            }
            match step {
                Step::Submit(sub) => {
                    let id = sub.id;
                    let taken = std::mem::take(&mut self.taken);
                    self.messages
                        .push([sub.prefix.as_slice(), &taken, &sub.rest].concat());
                    assert_eq!(sub.size as usize, self.messages.last().unwrap().len());
                    self.submitted.push(sub);
                    self.s.submitted(id, Ok(()));
                }
                Step::Authenticate(c) => {
                    let outcome = match self.directory.verify_password(&c.username, &c.password) {
                        Some(account) => AuthOutcome::Accepted(account),
                        None => AuthOutcome::Rejected,
                    };
                    self.s.auth_result(outcome);
                }
                Step::Write => {}
                Step::NeedInput => return (out, "need-input"),
                Step::StartTls => return (out, "starttls"),
                Step::Close => return (out, "close"),
            }
        }
    }

    fn codes(&mut self, input: &str) -> Vec<u16> {
        let (out, _) = self.talk(input);
        reply_codes(&out)
    }
}

fn reply_codes(out: &str) -> Vec<u16> {
    out.lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| l[..3].parse().unwrap())
        .collect()
}

#[test]
fn greeting_then_full_pipelined_transaction() {
    let mut h = harness();
    let (out, _) = h.talk("");
    assert!(out.starts_with("220 mx.example.org ESMTP"), "{out}");
    let codes = h.codes("EHLO client.example\r\nMAIL FROM:<x@sender.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    assert_eq!(codes, vec![250, 250, 250, 354]);
    let codes = h.codes("Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
    assert_eq!(codes, vec![250, 221]);
    let sub = &h.submitted[0];
    let body = String::from_utf8_lossy(&h.messages[0]);
    assert!(
        body.starts_with("Received: from client.example ([192.0.2.7])\r\n"),
        "{body}"
    );
    assert!(body.contains("with ESMTP id "), "{body}");
    assert!(body.ends_with("Subject: hi\r\n\r\n.dot\r\n"), "{body}");
    assert_eq!(sub.from, "x@sender.example");
}

#[test]
fn ehlo_advertises_the_extensions() {
    let mut h = harness();
    let (out, _) = h.talk("EHLO c.example\r\n");
    for ext in [
        "PIPELINING",
        "SIZE 10000",
        "STARTTLS",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "CHUNKING",
        "SMTPUTF8",
    ] {
        assert!(
            out.contains(&format!("250-{ext}\r\n")) || out.contains(&format!("250 {ext}\r\n")),
            "{ext}: {out}"
        );
    }
}

#[test]
fn mail_needs_helo_first() {
    let mut h = harness();
    assert_eq!(h.codes("MAIL FROM:<a@b.example>\r\n")[1..], [503]);
}

#[test]
fn bare_lf_in_data_closes_the_session() {
    let mut h = harness();
    h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    let (out, step) = h.talk("Subject: x\r\n\r\nsmuggled\n.\nMAIL FROM:<evil@x>\r\n");
    assert!(out.starts_with("521 5.5.2"), "{out}");
    assert_eq!(step, "close");
    assert!(h.submitted.is_empty());
}

#[test]
fn bare_cr_in_data_closes_the_session() {
    let mut h = harness();
    h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    let (out, step) = h.talk("Subject: x\r\n\r\nab\rcd\r\n.\r\n");
    assert!(out.starts_with("521 5.5.2"), "{out}");
    assert_eq!(step, "close");
}

#[test]
fn end_marker_split_across_reads_is_found() {
    let mut h = harness();
    h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    for piece in ["Subject: x\r", "\n\r\nbody\r\n", ".", "\r", "\n"] {
        h.talk(piece);
    }
    assert_eq!(h.submitted.len(), 1);
    assert!(h.messages[0].ends_with(b"\r\nbody\r\n"));
}

#[test]
fn bare_lf_in_command_closes_the_session() {
    let mut h = harness();
    let (out, step) = h.talk("EHLO c\n");
    assert!(out.contains("521 5.5.2"), "{out}");
    assert_eq!(step, "close");
}

#[test]
fn relay_attempts_are_refused() {
    let mut h = harness();
    h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\n");
    for (rcpt, code) in [
        ("<victim@elsewhere.example>", 554),
        ("<@example.org:victim@elsewhere.example>", 554),
        ("<victim%elsewhere.example@example.org>", 554),
        ("<elsewhere.example!victim@example.org>", 554),
        ("<\"victim@elsewhere.example\"@example.org>", 554),
        ("<nobody@example.org>", 550),
    ] {
        let mut h = harness();
        h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\n");
        assert_eq!(
            h.codes(&format!("RCPT TO:{rcpt}\r\n")),
            vec![code],
            "{rcpt}"
        );
    }
}

#[test]
fn too_many_recipients_is_452() {
    let mut h = harness_with(10_000, 2, false);
    h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\n");
    let codes = h.codes("RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<both@example.org>\r\n");
    assert_eq!(codes, vec![250, 250, 452]);
}

#[test]
fn declared_and_actual_size_limits() {
    let mut h = harness_with(100, 3, false);
    h.talk("EHLO c\r\n");
    assert_eq!(h.codes("MAIL FROM:<a@b.example> SIZE=101\r\n"), vec![552]);
    h.talk("MAIL FROM:<a@b.example> SIZE=50\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    let big = format!("{}\r\n.\r\n", "x".repeat(150));
    assert_eq!(h.codes(&big), vec![552]);
    assert!(h.submitted.is_empty());
    // The session goes on after the refusal.
    assert_eq!(h.codes("NOOP\r\n"), vec![250]);
}

#[test]
fn overlong_text_line_is_refused_at_the_end_of_data() {
    let mut h = harness_with(100_000, 3, false);
    h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    let long = format!("{}\r\n.\r\n", "y".repeat(1200));
    assert_eq!(h.codes(&long), vec![550]);
    assert!(h.submitted.is_empty());
}

#[test]
fn overlong_command_line_is_refused() {
    let mut h = harness();
    let long = format!("NOOP {}\r\nNOOP\r\n", "z".repeat(600));
    assert_eq!(h.codes(&long)[1..], [500, 250]);
}

#[test]
fn bdat_chunks_make_one_message() {
    let mut h = harness();
    h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\n");
    let codes = h.codes("BDAT 12\r\nSubject: x\r\nBDAT 6 LAST\r\n\r\nhi\r\n");
    assert_eq!(codes, vec![250, 250]);
    assert_eq!(h.submitted.len(), 1);
    assert!(h.messages[0].ends_with(b"Subject: x\r\n\r\nhi\r\n"));
}

#[test]
fn refused_bdat_still_consumes_its_chunk() {
    let mut h = harness();
    h.talk("EHLO c\r\n");
    // Without MAIL the chunk is read and thrown away; "QUIT\r\n" inside it is data.
    let codes = h.codes("BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(codes, vec![503, 250]);
}

#[test]
fn starttls_discards_pipelined_commands() {
    let mut h = harness();
    h.talk("EHLO c\r\n");
    let (out, step) = h.talk("STARTTLS\r\nMAIL FROM:<injected@x.example>\r\n");
    assert_eq!(reply_codes(&out), vec![220]);
    assert_eq!(step, "starttls");
    h.s.tls_established("TLSv1.3".into());
    // The injected MAIL must not have survived, and EHLO is needed again.
    assert_eq!(h.codes("MAIL FROM:<a@b.example>\r\n"), vec![503]);
    let (out, _) = h.talk("EHLO c\r\n");
    assert!(!out.contains("STARTTLS"), "{out}");
}

#[test]
fn a_blocked_client_may_not_send_mail_but_the_session_goes_on() {
    let mut h = harness();
    h.talk("");
    h.s.block("Service unavailable; client [192.0.2.7] blocked using bl.example".into());
    assert_eq!(h.codes("EHLO c.example\r\n"), vec![250]);
    let (out, _) = h.talk("MAIL FROM:<x@sender.example>\r\n");
    assert!(
        out.starts_with(
            "550 5.7.1 Service unavailable; client [192.0.2.7] blocked using bl.example"
        ),
        "{out}"
    );
    assert_eq!(h.codes("RCPT TO:<alice@example.org>\r\n"), vec![503]);
    assert_eq!(h.codes("QUIT\r\n"), vec![221]);
    assert!(h.submitted.is_empty());
}

#[test]
fn a_gate_defers_mail_while_it_says_so_and_the_errors_are_counted() {
    let mut h = harness();
    h.talk("");
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (o, a) = (open.clone(), asked.clone());
    h.s.gate(Box::new(move || {
        a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (!o.load(std::sync::atomic::Ordering::SeqCst))
            .then(|| "Error: more than 1 messages a minute from 192.0.2.0/24".to_string())
    }));
    assert_eq!(h.codes("EHLO c.example\r\n"), vec![250]);
    assert_eq!(h.s.errors(), 0);
    let (out, _) = h.talk("MAIL FROM:<x@sender.example>\r\n");
    assert_eq!(
        out,
        "450 4.7.1 Error: more than 1 messages a minute from 192.0.2.0/24\r\n"
    );
    assert_eq!(h.s.errors(), 1);
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(h.codes("MAIL FROM:<x@sender.example>\r\n"), vec![250]);
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn early_talker_is_refused() {
    let cfg = SessionConfig {
        hostname: "mx.example.org".into(),
        max_message_size: 100,
        max_recipients: 1,
        max_errors: 5,
        command_timeout: Duration::from_secs(1),
        data_timeout: Duration::from_secs(1),
        tls_available: false,
        role: Role::Mx,
        trace_user: false,
    };
    let mut s = Session::new(
        Arc::new(cfg),
        Arc::new(TestClock::default()),
        Arc::new(Fixture::default()),
        "192.0.2.7".parse().unwrap(),
    );
    s.receive(b"EHLO spam\r\n");
    s.greet();
    let out = String::from_utf8(s.take_output()).unwrap();
    assert!(out.starts_with("554 5.5.0"), "{out}");
    assert!(matches!(s.process(), Step::Close));
}

#[test]
fn too_many_errors_drops_the_client() {
    let mut h = harness();
    let (out, step) = h.talk("FOO\r\nFOO\r\nFOO\r\nFOO\r\nFOO\r\nFOO\r\n");
    assert!(out.contains("421 4.7.0"), "{out}");
    assert_eq!(step, "close");
}

#[test]
fn vrfy_does_not_enumerate() {
    let mut h = harness();
    h.talk("EHLO c\r\n");
    assert_eq!(h.codes("VRFY alice@example.org\r\n"), vec![252]);
    assert_eq!(h.codes("VRFY nobody@example.org\r\n"), vec![252]);
}

#[test]
fn duplicates_and_aliases_give_one_copy_per_mailbox() {
    let mut h = harness();
    h.talk("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<both@example.org>\r\nRCPT TO:<alice+x@example.org>\r\nDATA\r\nx\r\n.\r\n");
    let rcpts: Vec<_> = h.submitted[0]
        .recipients
        .iter()
        .map(|(_, target)| target.clone())
        .collect();
    assert_eq!(rcpts.len(), 2, "{rcpts:?}");
}

#[test]
fn timeout_says_421_and_closes() {
    let mut h = harness();
    h.talk("EHLO c\r\n");
    h.s.timed_out();
    let (out, step) = h.talk("");
    assert!(out.starts_with("421 4.4.2"), "{out}");
    assert_eq!(step, "close");
}

#[test]
fn smtputf8_address_needs_the_parameter() {
    let mut h = harness();
    h.talk("EHLO c\r\n");
    assert_eq!(h.codes("MAIL FROM:<jöran@b.example>\r\n"), vec![553]);
    assert_eq!(
        h.codes("MAIL FROM:<jöran@b.example> SMTPUTF8\r\n"),
        vec![250]
    );
}

#[test]
fn disk_full_at_intake_is_452() {
    let mut h = harness();
    h.s.receive(
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nx\r\n.\r\n",
    );
    let id = loop {
        match h.s.process() {
            Step::Submit(sub) => break sub.id,
            Step::NeedInput => panic!("no submission"),
            _ => {}
        }
    };
    h.s.take_output();
    h.s.submitted(id, Err(IntakeError::DiskFull));
    let out = String::from_utf8(h.s.take_output()).unwrap();
    assert!(out.starts_with("452 4.3.1"), "{out}");
}

fn b64(s: &str) -> String {
    crate::sasl::encode_text(s)
}

fn submission() -> Harness {
    let mut h = harness_role(100_000, 10, true, Role::Submission);
    h.talk("EHLO laptop\r\nSTARTTLS\r\n");
    h.s.tls_established("TLSv1.3".into());
    h
}

#[test]
fn auth_is_not_offered_on_the_mx_port() {
    let mut h = harness();
    let (out, _) = h.talk("EHLO c\r\n");
    assert!(!out.contains("AUTH"), "{out}");
    assert_eq!(
        h.codes(&format!(
            "AUTH PLAIN {}\r\n",
            b64("\0alice@example.org\0Hello world!")
        )),
        vec![503]
    );
}

#[test]
fn submission_needs_tls_before_auth_and_auth_before_mail() {
    let mut h = harness_role(100_000, 10, true, Role::Submission);
    let (out, _) = h.talk("EHLO laptop\r\n");
    assert!(!out.contains("AUTH"), "AUTH offered in clear text: {out}");
    assert_eq!(
        h.codes(&format!(
            "AUTH PLAIN {}\r\n",
            b64("\0alice@example.org\0Hello world!")
        )),
        vec![538]
    );
    assert_eq!(h.codes("MAIL FROM:<alice@example.org>\r\n"), vec![530]);
    let mut h = submission();
    let (out, _) = h.talk("EHLO laptop\r\n");
    assert!(out.contains("250-AUTH PLAIN LOGIN\r\n"), "{out}");
    assert_eq!(h.codes("MAIL FROM:<alice@example.org>\r\n"), vec![530]);
}

#[test]
fn plain_and_login_exchanges() {
    let mut h = submission();
    h.talk("EHLO laptop\r\n");
    assert_eq!(
        h.codes(&format!(
            "AUTH PLAIN {}\r\n",
            b64("\0alice@example.org\0wrong")
        )),
        vec![535]
    );
    let codes = h.codes(&format!(
        "AUTH PLAIN\r\n{}\r\n",
        b64("\0alice@example.org\0Hello world!")
    ));
    assert_eq!(codes, vec![334, 235]);
    assert_eq!(h.s.authenticated(), Some("alice@example.org"));

    let mut h = submission();
    h.talk("EHLO laptop\r\n");
    let (out, _) = h.talk("AUTH LOGIN\r\n");
    assert_eq!(out, format!("334 {}\r\n", b64("Username:")));
    let (out, _) = h.talk(&format!("{}\r\n", b64("Alice@Example.org")));
    assert_eq!(out, format!("334 {}\r\n", b64("Password:")));
    assert_eq!(h.codes(&format!("{}\r\n", b64("Hello world!"))), vec![235]);

    let mut h = submission();
    h.talk("EHLO laptop\r\n");
    assert_eq!(h.codes("AUTH LOGIN\r\n*\r\n"), vec![334, 501]);
    assert_eq!(h.codes("AUTH CRAM-MD5\r\n"), vec![504]);
}

#[test]
fn authenticated_user_sends_only_as_itself_but_to_anyone() {
    let mut h = submission();
    h.talk(&format!(
        "EHLO laptop\r\nAUTH PLAIN {}\r\n",
        b64("\0alice@example.org\0Hello world!")
    ));
    assert_eq!(h.codes("MAIL FROM:<bob@example.org>\r\n"), vec![553]);
    assert_eq!(
        h.codes("MAIL FROM:<alice+lists@example.org>\r\n"),
        vec![250]
    );
    assert_eq!(
        h.codes("RCPT TO:<friend@elsewhere.example>\r\nRCPT TO:<bob@example.org>\r\n"),
        vec![250, 250]
    );
    assert_eq!(
        h.codes("DATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\n"),
        vec![354, 250]
    );
    let sub = &h.submitted[0];
    assert_eq!(sub.auth.as_deref(), Some("alice@example.org"));
    assert!(sub.recipients.iter().any(|(_, target)| *target
        == Target::Remote {
            address: "friend@elsewhere.example".into()
        }));
    let body = String::from_utf8_lossy(&h.messages[0]);
    assert!(body.contains("with ESMTPSA id"), "{body}");
    assert!(
        !body.contains("alice@example.org)"),
        "user named in Received by default: {body}"
    );
    assert!(
        body.contains("\r\nDate: ") && body.contains("\r\nMessage-ID: <"),
        "{body}"
    );
}

#[test]
fn existing_date_and_message_id_are_kept() {
    let mut h = submission();
    h.talk(&format!(
        "EHLO laptop\r\nAUTH PLAIN {}\r\n",
        b64("\0alice@example.org\0Hello world!")
    ));
    h.talk("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
    h.talk("Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <x@y>\r\n\r\nbody\r\n.\r\n");
    let body = String::from_utf8_lossy(&h.messages[0]);
    assert_eq!(body.matches("Date:").count(), 1, "{body}");
    assert_eq!(
        body.to_lowercase().matches("message-id:").count(),
        1,
        "{body}"
    );
}

#[test]
fn short_lines_cost_linear_work() {
    // 4 MiB of empty lines inside DATA, then pipelined NOOPs, in 64 KiB
    // reads: the bytes moved inside the input buffer stay a small fraction
    // of the input (a drain per line moved ~64 KiB per 2-byte line).
    let mut h = harness_with(100 << 20, 3, true);
    h.talk("EHLO c\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    let chunk = b"\r\n".repeat(32 * 1024);
    for _ in 0..64 {
        h.talk_bytes(&chunk);
    }
    let (out, _) = h.talk(".\r\n");
    assert!(out.starts_with("250 "), "{out}");
    let noops = b"NOOP\r\n".repeat(10_000);
    for part in noops.chunks(64 * 1024) {
        h.talk_bytes(part);
    }
    let total = 64 * chunk.len() + noops.len();
    assert!(
        h.s.input.moved < total / 100,
        "{} bytes moved for {total} bytes of input",
        h.s.input.moved
    );
}

#[test]
fn replies_to_pipelined_commands_are_written_in_bounded_pieces() {
    let mut h = harness();
    h.s.receive(&b"EHLO x\r\n".repeat(20_000));
    let mut pieces = 0;
    loop {
        let step = h.s.process();
        let out = h.s.take_output();
        assert!(
            out.len() < 2 * MAX_PENDING_OUTPUT,
            "{} bytes at once",
            out.len()
        );
        pieces += 1;
        match step {
            Step::Write => continue,
            Step::NeedInput => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(pieces > 100, "{pieces}");
}

#[test]
fn bdat_bare_cr_and_lf_become_crlf_across_chunks() {
    let mut h = harness();
    h.talk("EHLO c\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<alice@example.org>\r\n");
    let (first, last) = (b"x\r.\r\n\r".as_slice(), b"\ny\nz\r\r".as_slice());
    let input = [
        format!("BDAT {}\r\n", first.len()).as_bytes(),
        first,
        format!("BDAT {} LAST\r\n", last.len()).as_bytes(),
        last,
    ]
    .concat();
    let (out, _) = h.talk_bytes(&input);
    assert!(out.contains("250 2.0.0 Ok: queued"), "{out}");
    let body = String::from_utf8_lossy(&h.messages[0]).into_owned();
    assert!(
        body.ends_with("; Sun, 29 Nov 2026 10:00:00 +0100\r\nx\r\n.\r\n\r\ny\r\nz\r\n\r\n"),
        "{body:?}"
    );
}

#[test]
fn a_message_with_too_many_hops_is_refused() {
    let mut h = harness();
    h.talk("EHLO c\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    let hops = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(MAX_HOPS);
    let (out, _) = h.talk(&format!("{hops}Subject: loop\r\n\r\nx\r\n.\r\n"));
    assert!(out.starts_with("554 5.4.6 "), "{out}");
    assert!(h.submitted.is_empty());
    h.talk("MAIL FROM:<a@sender.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    let hops = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(MAX_HOPS - 1);
    let (out, _) = h.talk(&format!("{hops}Subject: ok\r\n\r\nx\r\n.\r\n"));
    assert!(out.starts_with("250 "), "{out}");
}

fn logged_in_as_alice() -> Harness {
    let mut h = submission();
    h.talk(&format!(
        "EHLO laptop\r\nAUTH PLAIN {}\r\n",
        b64("\0alice@example.org\0Hello world!")
    ));
    h
}

#[test]
fn the_from_header_must_belong_to_the_account() {
    let mut h = logged_in_as_alice();
    h.talk("MAIL FROM:<alice@example.org>\r\nRCPT TO:<friend@elsewhere.example>\r\nDATA\r\n");
    let (out, _) = h.talk("From: Bob <bob@example.org>\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    assert!(
        out.starts_with("553 5.7.1 <bob@example.org>: From: header"),
        "{out}"
    );
    h.talk("MAIL FROM:<alice@example.org>\r\nRCPT TO:<friend@elsewhere.example>\r\nDATA\r\n");
    let (out, _) =
        h.talk("From: \"alice@example.org\" <bob@example.org>\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    assert!(
        out.starts_with("553 "),
        "a display name is not the address: {out}"
    );
    h.talk("MAIL FROM:<alice@example.org>\r\nRCPT TO:<friend@elsewhere.example>\r\nDATA\r\n");
    let (out, _) =
        h.talk("From: a@example.org\r\nFrom: Alice <alice@example.org>\r\n\r\nhi\r\n.\r\n");
    assert!(out.starts_with("553 "), "two From fields: {out}");
    assert!(h.submitted.is_empty());
    h.talk("MAIL FROM:<alice@example.org>\r\nRCPT TO:<friend@elsewhere.example>\r\nDATA\r\n");
    let (out, _) = h.talk("From: Alice <Alice+x@Example.org>\r\n\r\nhi\r\n.\r\n");
    assert!(out.starts_with("250 "), "{out}");
    assert_eq!(h.submitted[0].author_domain.as_deref(), Some("example.org"));
}

#[test]
fn the_null_sender_is_refused_on_submission() {
    let mut h = logged_in_as_alice();
    let (out, _) = h.talk("MAIL FROM:<>\r\n");
    assert!(out.starts_with("553 5.7.1 <>"), "{out}");
}

#[test]
fn a_reload_that_changes_the_password_ends_the_login() {
    let mut h = logged_in_as_alice();
    assert_eq!(
        h.codes("MAIL FROM:<alice@example.org>\r\nRSET\r\n"),
        vec![250, 250]
    );
    // The same directory again (a reload that changed nothing): still in.
    let same = Arc::new(Fixture::default());
    h.s.set_directory(same);
    assert_eq!(
        h.codes("MAIL FROM:<alice@example.org>\r\nRSET\r\n"),
        vec![250, 250]
    );
    h.s.set_directory(Arc::new(
        Fixture::default().with_password("alice@example.org", "another"),
    ));
    let (out, step) = h.talk("MAIL FROM:<alice@example.org>\r\n");
    assert!(out.starts_with("421 4.7.0 "), "{out}");
    assert_eq!(step, "close");
}

#[test]
fn deleting_the_account_ends_the_login() {
    let mut h = logged_in_as_alice();
    h.s.set_directory(Arc::new(Fixture::default().without("alice@example.org")));
    let (out, _) = h.talk("MAIL FROM:<alice@example.org>\r\n");
    assert!(out.starts_with("421 4.7.0 "), "{out}");
}

#[test]
fn a_full_mailbox_is_refused_for_now_at_rcpt() {
    let mut h = harness();
    h.s.set_directory(Arc::new(
        Fixture::default()
            .with_room("alice@example.org", 0)
            .with_room("bob@example.org", 500),
    ));
    let (out, _) = h.talk("EHLO c.example\r\nMAIL FROM:<x@sender.example>\r\n");
    assert!(out.ends_with("250 2.1.0 Ok\r\n"), "{out}");
    let (out, _) = h.talk("RCPT TO:<alice@example.org>\r\nRCPT TO:<both@example.org>\r\n");
    assert_eq!(
        out,
        "452 4.2.2 <alice@example.org>: Mailbox full, try again later\r\n\
         452 4.2.2 <both@example.org>: Mailbox full, try again later\r\n"
    );
    let (out, _) = h.talk("RCPT TO:<bob@example.org>\r\nRSET\r\n");
    assert!(out.starts_with("250 2.1.5 Ok\r\n"), "{out}");
    // A message announced larger than the room left does not fit.
    let (out, _) = h.talk("MAIL FROM:<x@sender.example> SIZE=600\r\nRCPT TO:<bob@example.org>\r\n");
    assert!(
        out.ends_with("452 4.2.2 <bob@example.org>: Mailbox full, try again later\r\n"),
        "{out}"
    );
}
