//! IMAP over real TCP and TLS against Python's imaplib (an independent
//! client): log-in on 993 and, after STARTTLS, on 143; never before TLS.
//! (Issue 13 under way: mailboxes come next.)

use std::process::Command;

use crate::common::Server;

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
assert "IMAP4REV2" in c.capabilities and "AUTH=PLAIN" in c.capabilities, c.capabilities
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
