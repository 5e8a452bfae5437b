//! IMAP over real TCP and TLS against Python's imaplib (an independent
//! client): log-in on 993 and, after STARTTLS, on 143, never before TLS;
//! delivered mail selected, fetched, flagged and expunged; folders; IDLE
//! woken by a delivery; quotas (RFC 9208, and 452 4.2.2 at RCPT).

use std::process::Command;

use crate::common::{Client, Server};

const LISTENERS: &str = "\
[[listeners]]
address = \"127.0.0.1:0\"
role = \"imap\"
[[listeners]]
address = \"127.0.0.1:0\"
role = \"imaps\"
";

/// Runs `script` with the server's IMAP ports and its certificate as
/// arguments; what it printed.
fn imaplib(s: &Server, script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(s.listeners["imap"].port().to_string())
        .arg(s.listeners["imaps"].port().to_string())
        .arg(s.data().join("tls/self-signed.crt"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const PRELUDE: &str = r#"
import imaplib, ssl, sys
plain, implicit, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False  # the certificate names mx.example.org
"#;

#[test]
fn imaplib_logs_in_over_tls_and_after_starttls_only() {
    let s = Server::start(LISTENERS);
    let out = imaplib(
        &s,
        &format!(
            r#"{PRELUDE}
c = imaplib.IMAP4_SSL("127.0.0.1", implicit, ssl_context=ctx, timeout=20)
assert "IMAP4REV1" in c.capabilities and "AUTH=PLAIN" in c.capabilities, c.capabilities
try:
    c.login("alice@example.org", "wrong")
    raise SystemExit("a wrong password was taken")
except imaplib.IMAP4.error as e:
    print("refused:", e)
typ, data = c.login("alice@example.org", "Hello world!")
print("login:", typ)
typ, _ = c.noop()
print("noop:", typ)
c.logout()

c = imaplib.IMAP4("127.0.0.1", plain, timeout=20)
assert "STARTTLS" in c.capabilities and "LOGINDISABLED" in c.capabilities, c.capabilities
try:
    c.login("alice@example.org", "Hello world!")
    raise SystemExit("a login without TLS was taken")
except imaplib.IMAP4.error as e:
    print("cleartext:", e)
c.starttls(ssl_context=ctx)
typ, _ = c.authenticate("PLAIN", lambda _: b"\0alice@example.org\0Hello world!")
print("authenticate:", typ)
c.logout()
"#
        ),
    );
    assert!(out.contains("refused: b'[AUTHENTICATIONFAILED]"), "{out}");
    assert!(out.contains("login: OK"), "{out}");
    assert!(out.contains("noop: OK"), "{out}");
    assert!(out.contains("cleartext: b'[PRIVACYREQUIRED]"), "{out}");
    assert!(out.contains("authenticate: OK"), "{out}");
    s.wait_for_log("IMAP login as alice@example.org");
}

#[test]
fn imaplib_sees_delivered_mail_and_makes_folders() {
    let s = Server::start(LISTENERS);
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO sender.example");
    for i in 0..2 {
        let r = c.send_mail(
            "someone@sender.example",
            &["alice@example.org"],
            &format!("Subject: number {i}\r\n\r\nhello\r\n"),
        );
        assert_eq!(r.code, 250, "{r:?}");
    }
    s.wait_for_mail("alice@example.org", 2);
    let out = imaplib(
        &s,
        &format!(
            r#"{PRELUDE}
c = imaplib.IMAP4_SSL("127.0.0.1", implicit, ssl_context=ctx, timeout=20)
c.login("alice@example.org", "Hello world!")
typ, data = c.select("INBOX")
print("select:", typ, data)
print("uidvalidity:", c.untagged_responses.get("UIDVALIDITY"))
typ, data = c.create("Projects")
print("create:", typ)
typ, data = c.create("Projects")
print("again:", typ, data)
typ, data = c.list()
print("list:", data)
typ, data = c.select("Projects", readonly=True)
print("archive:", typ, data)
typ, data = c.select("Nowhere")
print("nowhere:", typ, data)
c.select("INBOX")
typ, data = c.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("peek:", data)
typ, data = c.fetch("2", "(RFC822)")
print("whole:", data[0][1].decode().endswith("hello\r\n"), b"\\Seen" in data[0][0], len(data[0][1]))
typ, data = c.store("1", "+FLAGS", "(\\Deleted \\Flagged)")
print("store:", data)
typ, data = c.expunge()
print("expunge:", data)
typ, data = c.fetch("1:*", "(UID FLAGS)")
print("left:", data)
c.logout()
"#
        ),
    );
    assert!(out.contains("select: OK [b'2']"), "{out}");
    assert!(out.contains("create: OK"), "{out}");
    assert!(out.contains("again: NO [b'[ALREADYEXISTS]"), "{out}");
    assert!(
        out.contains(r#"b'(\\HasNoChildren) "." INBOX'"#)
            && out.contains(r#"b'(\\HasNoChildren) "." Projects'"#)
            && out.contains(r#"b'(\\HasNoChildren \\Sent) "." Sent'"#),
        "{out}"
    );
    assert!(out.contains("archive: OK [b'0']"), "{out}");
    assert!(out.contains("nowhere: NO [b'[NONEXISTENT]"), "{out}");
    assert!(
        out.contains("b'1 (UID 1 FLAGS () RFC822.SIZE ") && out.contains("Subject: number 0"),
        "{out}"
    );
    assert!(out.contains("whole: True True"), "{out}");
    assert!(
        out.contains("store: [b'1 (FLAGS (\\\\Flagged \\\\Deleted))']"),
        "{out}"
    );
    assert!(out.contains("expunge: [b'1']"), "{out}");
    assert!(
        out.contains("left: [b'1 (UID 2 FLAGS (\\\\Seen))']"),
        "{out}"
    );
    // Selected mail moved to cur/ with its UID kept in the index.
    let maildir = s.data().join("mail/example.org/alice");
    assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
    let cur: Vec<String> = std::fs::read_dir(maildir.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert!(
        cur[0].ends_with(":2,S"),
        "read, and its flag in its name: {cur:?}"
    );
    assert!(maildir.join(".Projects/cur").is_dir());
    assert!(maildir.join(".Sent/cur").is_dir() && maildir.join(".Trash/cur").is_dir());
}

#[test]
fn idle_hears_of_an_smtp_delivery_at_once() {
    let s = Server::start(LISTENERS);
    let script = format!(
        r#"{PRELUDE}
import smtplib, socket, time
smtp_port = int(sys.argv[4])
raw = ctx.wrap_socket(socket.create_connection(("127.0.0.1", implicit), timeout=20))
f = raw.makefile("rb")
def line():
    return f.readline().decode()
def until(tag):
    while True:
        l = line()
        if l.startswith(tag):
            return l
line()
raw.sendall(b'a LOGIN alice@example.org "Hello world!"\r\n'); until("a ")
raw.sendall(b"b SELECT INBOX\r\n"); until("b ")
raw.sendall(b"c IDLE\r\n"); print("idle:", line().strip())
with smtplib.SMTP("127.0.0.1", smtp_port, timeout=20) as m:
    m.sendmail("someone@sender.example", ["alice@example.org"], b"Subject: wake up\r\n\r\nhi\r\n")
    sent = time.monotonic()
l = line()
print("woken:", l.strip(), "after %.2f s" % (time.monotonic() - sent))
raw.sendall(b"DONE\r\n"); print("done:", until("c ").strip())
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(s.listeners["imap"].port().to_string())
        .arg(s.listeners["imaps"].port().to_string())
        .arg(s.data().join("tls/self-signed.crt"))
        .arg(s.addr.port().to_string())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    assert!(stdout.contains("idle: + idling"), "{stdout}");
    assert!(stdout.contains("woken: * 1 EXISTS"), "{stdout}");
    assert!(stdout.contains("done: c OK IDLE completed"), "{stdout}");
}

#[test]
fn mail_programs_are_told_where_to_read_mail() {
    let s = Server::start(&format!(
        "{LISTENERS}[[listeners]]\naddress = \"127.0.0.1:0\"\nrole = \"http\"\n"
    ));
    let mut b = crate::common::http::Browser::new(&s, "autoconfig.example.org");
    let r = b.get(
        s.listeners["http"],
        false,
        "/mail/config-v1.1.xml?emailaddress=alice%40example.org",
    );
    assert!(
        r.body.contains("<incomingServer type=\"imap\">\n      <hostname>mx.example.org</hostname>\n      <port>993</port>\n      <socketType>SSL</socketType>"),
        "{}",
        r.body
    );
    let r = b.post_raw(
        s.listeners["http"],
        false,
        "/autodiscover/autodiscover.xml",
        "<Autodiscover><Request><EMailAddress>alice@example.org</EMailAddress></Request></Autodiscover>",
    );
    assert!(
        r.body.contains("<Type>IMAP</Type>") && r.body.contains("<Port>993</Port>"),
        "{}",
        r.body
    );
    // Apple's profile, read by Python's plistlib (an independent parser).
    let r = b.get(
        s.listeners["http"],
        false,
        "/mobileconfig?emailaddress=alice%40example.org",
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/x-apple-aspen-config")
    );
    let mut py = Command::new("python3")
        .arg("-c")
        .arg("import plistlib, sys; p = plistlib.loads(sys.stdin.buffer.read()); a = p['PayloadContent'][0]; print(p['PayloadType'], a['PayloadType'], a['EmailAccountType'], a['IncomingMailServerHostName'], a['IncomingMailServerPortNumber'], a['IncomingMailServerUseSSL'], a['OutgoingMailServerPortNumber'], a['EmailAddress'])")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), r.body.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Configuration com.apple.mail.managed EmailTypeIMAP mx.example.org 993 True 465 alice@example.org"
    );
    let again = b.get(
        s.listeners["http"],
        false,
        "/mobileconfig?emailaddress=alice%40example.org",
    );
    assert_eq!(
        again.body, r.body,
        "the same profile each time (it replaces itself)"
    );
    let r = b.get(
        s.listeners["http"],
        false,
        "/mobileconfig?emailaddress=someone%40elsewhere.example",
    );
    assert_eq!(r.status, 404);
    let shown = s.mta("dns", &["show", "example.org"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("_imaps._tcp.example.org") && shown.contains("0 1 993 mx.example.org."),
        "{shown}"
    );
}

#[test]
fn a_full_mailbox_refuses_mail_for_now_and_imap_shows_the_quota() {
    let s = Server::start(&format!("{LISTENERS}[limits]\nquota = \"3K\"\n"));
    let script = format!(
        r#"{PRELUDE}
import smtplib, time
smtp_port = int(sys.argv[4])
def deliver(size=None, body_size=2200):
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=20) as m:
        m.ehlo("sender.example")
        m.mail("someone@sender.example", ["SIZE=%d" % size] if size else [])
        code, text = m.rcpt("alice@example.org")
        if code == 250:
            lines = (b"x" * 98 + b"\r\n") * (body_size // 100)
            reply = m.data(b"Subject: filler\r\n\r\n" + lines)
            assert reply[0] == 250, reply
        return code, text.decode()
def quota(c):
    typ, data = c.getquotaroot("INBOX")
    return typ, [d.decode() for d in data[1]]
def wait_for(c, n):
    for _ in range(100):
        c.noop()
        if int(c.select("INBOX")[1][0]) == n:
            return
        time.sleep(0.1)
    raise SystemExit("mail not delivered")
c = imaplib.IMAP4_SSL("127.0.0.1", implicit, ssl_context=ctx, timeout=30)
c.login("alice@example.org", "Hello world!")
print("capability:", "QUOTA=RES-STORAGE" in c.capabilities)
print("first:", deliver())
wait_for(c, 1)
print("quota:", quota(c))
print("announced too large:", deliver(size=1000))
print("second:", deliver(body_size=1000))
wait_for(c, 2)
print("full:", deliver())
typ, data = c.append("INBOX", None, None, b"Subject: sent\r\n\r\n" + b"y" * 100 + b"\r\n")
print("append:", typ, data[0].decode())
c.store("1", "+FLAGS", "(\\Deleted)")
c.expunge()
print("after expunge:", quota(c))
print("room again:", deliver(body_size=10))
wait_for(c, 2)
print("kept:", c.select("INBOX")[1][0].decode())
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(s.listeners["imap"].port().to_string())
        .arg(s.listeners["imaps"].port().to_string())
        .arg(s.data().join("tls/self-signed.crt"))
        .arg(s.addr.port().to_string())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} {stdout}"))
            .trim()
            .to_string()
    };
    assert_eq!(line("capability:"), "True");
    assert!(line("first:").starts_with("(250,"), "{stdout}");
    // About 2.8 KB stored (our trace and Authentication-Results fields
    // added) of 3 KiB.
    assert!(line("quota:").contains(r#"'"" (STORAGE 3 3)'"#), "{stdout}");
    assert_eq!(
        line("announced too large:"),
        "(452, '4.2.2 <alice@example.org>: Mailbox full, try again later')"
    );
    assert!(line("second:").starts_with("(250,"), "{stdout}");
    assert!(line("full:").starts_with("(452, '4.2.2"), "{stdout}");
    assert!(line("append:").starts_with("NO [OVERQUOTA]"), "{stdout}");
    assert!(line("after expunge:").contains("(STORAGE 2 3)"), "{stdout}");
    assert!(line("room again:").starts_with("(250,"), "{stdout}");
    // Nothing was lost: what got 250 is there (less the one expunged).
    assert_eq!(line("kept:"), "2");
}
