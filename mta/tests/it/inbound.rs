//! Mail from strangers on port 25 is authenticated (issue 16): messages
//! signed by dkimpy (RSA and Ed25519) verified by us, a tampered one not;
//! SPF and DMARC from a test DNS server (dnslib); the
//! `Authentication-Results:` field read back with Python's `authres`; a
//! domain whose DMARC policy is `reject` refused at the end of DATA;
//! `quarantine` and SPF failures filed in Junk unless the account allows
//! the sender; greylisting; DNSBL scoring; HELO and sender sanity.

use crate::common::peer::{Options, Peer};
use crate::common::{AS_STRANGER, Client, Server, python};

/// Makes an RSA and an Ed25519 key with Python; (JSON with the private
/// keys, the DKIM TXT values).
const KEYGEN: &str = r#"
import base64, json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
import nacl.signing
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
der = rsa_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
ed = nacl.signing.SigningKey.generate()
print(json.dumps({
    "rsa_pem": pem.decode(),
    "rsa_txt": "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode(),
    "ed_seed": base64.b64encode(bytes(ed)).decode(),
    "ed_txt": "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(ed.verify_key)).decode(),
}))
"#;

/// Signs messages with dkimpy and sends them with smtplib; prints one line
/// per message: its subject and the server's reply code.
const SEND: &str = r#"
import base64, json, smtplib, sys
import dkim
port, keys = int(sys.argv[1]), json.loads(sys.argv[2])
def message(sender, subject):
    return ("From: %s\r\nTo: alice@example.org\r\nSubject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\nHello from a stranger.\r\n" % (sender, subject, subject.replace(" ", "-"))).encode()
def sign(msg, selector, key, algorithm):
    sig = dkim.sign(msg, selector, b"example.net", key, signature_algorithm=algorithm,
                    canonicalize=(b"relaxed", b"relaxed"), include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + msg
rsa = sign(message("bob@example.net", "signed rsa"), b"rsa", keys["rsa_pem"].encode(), b"rsa-sha256")
ed = sign(message("bob@example.net", "signed ed25519"), b"ed", base64.b64encode(base64.b64decode(keys["ed_seed"])), b"ed25519-sha256")
# One bit of the body changed, and a signed header field changed.
tampered = sign(message("bob@example.net", "tampered"), b"rsa", keys["rsa_pem"].encode(), b"rsa-sha256").replace(b"Hello from", b"Hullo from")
retitled = sign(message("bob@example.net", "retitled"), b"ed", base64.b64encode(base64.b64decode(keys["ed_seed"])), b"ed25519-sha256").replace(b"Subject: retitled", b"Subject: retitlex")
forged = message("ceo@strict.example", "forged")
# A stranger's message that claims our checks passed it.
claims = b"Authentication-Results: mx.example.org;\r\n\tdkim=pass header.d=bank.example\r\n" + message("bob@example.net", "claims")
# Forwarded by fwd.example, which checked it and sealed an ARC set (dkimpy
# seals with RSA only).
forwarded = sign(message("bob@example.net", "forwarded"), b"rsa", keys["rsa_pem"].encode(), b"rsa-sha256")
forwarded = b"Authentication-Results: fwd.example; dkim=pass header.d=example.net; spf=pass smtp.mailfrom=bob@example.net\r\n" + forwarded
forwarded = b"".join(dkim.arc_sign(forwarded, b"arc", b"fwd.example", keys["rsa_pem"].encode(), b"fwd.example")) + forwarded
for sender, msg, helo in [("bob@example.net", rsa, "mx.example.net"), ("bob@example.net", ed, "mx.example.net"),
                          ("bob@example.net", tampered, "mx.example.net"), ("bob@example.net", retitled, "mx.example.net"),
                          ("bob@example.net", forwarded, "mx.example.net"), ("bob@example.net", claims, "mx.example.net"), ("ceo@strict.example", forged, "mx.example.net")]:
    s = smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=60)
    try:
        s.sendmail(sender, ["alice@example.org"], msg)
        code = 250
    except smtplib.SMTPDataError as e:
        code = e.smtp_code
        print("refused", e.smtp_error.decode(), file=sys.stderr)
    s.quit()
    print(msg.split(b"Subject: ")[1].split(b"\r\n")[0].decode(), code)
"#;

/// Parses each stored message's `Authentication-Results:` fields with
/// authres; the one of the authserv-id given first must be there once;
/// prints `subject|authserv-id|method=result …` per message.
const PARSE: &str = r#"
import email, sys
import authres
for path in sys.argv[2:]:
    msg = email.message_from_bytes(open(path, "rb").read())
    fields = [authres.AuthenticationResultsHeader.parse("Authentication-Results: " + f)
              for f in msg.get_all("Authentication-Results")]
    ours = [h for h in fields if h.authserv_id == sys.argv[1]]
    assert len(ours) == 1, [str(h) for h in fields]
    header = ours[0]
    results = " ".join("%s=%s" % (r.method, r.result) for r in header.results)
    print("%s|%s|%s" % (msg["Subject"], header.authserv_id, results))
"#;

#[test]
fn dkim_spf_and_dmarc_of_strangers_are_checked_and_reported() {
    let keys = python::<&str>(KEYGEN, &[]);
    let v: serde_json::Value = serde_json::from_str(&keys).unwrap();
    let txt = |key: &str| {
        // dnslib's zone syntax: long TXT values as several strings.
        let value = v[key].as_str().unwrap();
        value
            .as_bytes()
            .chunks(200)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let zone = format!(
        "example.net. 60 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n\
         mx.example.net. 60 IN A 127.0.0.1\n\
         mx.example.net. 60 IN TXT \"v=spf1 a -all\"\n\
         _dmarc.example.net. 60 IN TXT \"v=DMARC1; p=quarantine\"\n\
         rsa._domainkey.example.net. 60 IN TXT {}\n\
         arc._domainkey.fwd.example. 60 IN TXT {}\n\
         ed._domainkey.example.net. 60 IN TXT {}\n\
         strict.example. 60 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n\
         _dmarc.strict.example. 60 IN TXT \"v=DMARC1; p=reject\"\n",
        txt("rsa_txt"),
        txt("rsa_txt"),
        txt("ed_txt")
    );
    let zone: &'static str = Box::leak(zone.into_boxed_str());
    let peer = Peer::with(Options {
        zone: Some(zone),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.dns.unwrap()
    ));
    let sent = python(SEND, &[&s.addr.port().to_string(), keys.trim()]);
    assert_eq!(
        sent.lines().collect::<Vec<_>>(),
        [
            "signed rsa 250",
            "signed ed25519 250",
            "tampered 250",
            "retitlex 250",
            "forwarded 250",
            "claims 250",
            "forged 550"
        ],
        "the checks logged: {:#?}",
        s.log_lines("spf(helo)=")
    );
    assert!(
        s.log_contains("rejected: ") && s.log_contains("strict.example rejects this message"),
        "the refusal is logged with its reason"
    );
    let files = s.wait_for_mail("alice@example.org", 6);
    let paths: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let parsed = python(PARSE, &[&["mx.example.org"], &paths[..]].concat());
    let mut lines: Vec<&str> = parsed.lines().collect();
    lines.sort();
    // authres reads back what we wrote: our host as authserv-id, each
    // method's result (SPF for HELO, then MAIL FROM); one field of ours
    // only (the stranger's claim to be us is gone). A signed header
    // changed fails; a body that no longer matches its hash is `neutral`
    // (mail-auth's word for a signature it had to ignore, RFC 6376
    // §6.1.3): neither is a pass, and DMARC passes on SPF alone.
    assert_eq!(
        lines,
        [
            "claims|mx.example.org|spf=pass spf=pass arc=none dmarc=pass",
            "forwarded|mx.example.org|spf=pass spf=pass dkim=pass arc=pass dmarc=pass",
            "retitlex|mx.example.org|spf=pass spf=pass dkim=fail arc=none dmarc=pass",
            "signed ed25519|mx.example.org|spf=pass spf=pass dkim=pass arc=none dmarc=pass",
            "signed rsa|mx.example.org|spf=pass spf=pass dkim=pass arc=none dmarc=pass",
            "tampered|mx.example.org|spf=pass spf=pass dkim=neutral arc=none dmarc=pass",
        ],
        "{parsed}"
    );
}

/// Sends plain messages with smtplib: argv[2] is a JSON list of
/// [MAIL FROM, From field, subject, [recipients]]; prints `subject code`.
const SEND_PLAIN: &str = r#"
import json, smtplib, sys
port = int(sys.argv[1])
for sender, author, subject, rcpts in json.loads(sys.argv[2]):
    msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\n" % (author, ", ".join(rcpts), subject)).encode()
    if subject == "claims junk":
        msg = b"X-Mailbox-Junk: yes, to hide in your spam folder\r\n" + msg
    msg += b"\r\nHello.\r\n"
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="mx.sender.example", timeout=60)
    try:
        s.sendmail(sender, rcpts, msg)
        code = 250
    except smtplib.SMTPDataError as e:
        code = e.smtp_code
    s.quit()
    print(subject, code)
"#;

#[test]
fn quarantine_and_spf_failures_go_to_junk_unless_the_account_allows_the_sender() {
    // 127.0.0.1 sends for ok.example only.
    let zone = "ok.example. 60 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n\
                quarantine.example. 60 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n\
                _dmarc.quarantine.example. 60 IN TXT \"v=DMARC1; p=quarantine\"\n\
                hardfail.example. 60 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n\
                softfail.example. 60 IN TXT \"v=spf1 ip4:192.0.2.1 ~all\"\n\
                friend.example. 60 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n\
                _dmarc.friend.example. 60 IN TXT \"v=DMARC1; p=quarantine\"\n";
    let peer = Peer::with(Options {
        zone: Some(zone),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "[[accounts]]\naddress = \"carol@example.org\"\nallow = [\"friend.example\", \"boss@hardfail.example\"]\n\
         [outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.dns.unwrap()
    ));
    let both = ["alice@example.org", "carol@example.org"];
    let messages = serde_json::json!([
        ["a@ok.example", "a@ok.example", "spf passes", both],
        [
            "a@quarantine.example",
            "a@quarantine.example",
            "dmarc quarantine",
            both
        ],
        [
            "a@hardfail.example",
            "a@hardfail.example",
            "spf fails",
            both
        ],
        [
            "a@softfail.example",
            "a@softfail.example",
            "spf softfails",
            both
        ],
        [
            "a@friend.example",
            "Friend <a@friend.example>",
            "from a friend",
            both
        ],
        [
            "boss@hardfail.example",
            "boss@hardfail.example",
            "from the boss",
            both
        ],
        ["a@ok.example", "a@ok.example", "claims junk", both],
    ]);
    let sent = python(
        SEND_PLAIN,
        &[&s.addr.port().to_string(), &messages.to_string()],
    );
    assert!(sent.lines().all(|l| l.ends_with(" 250")), "{sent}");
    let subjects = |files: Vec<std::path::PathBuf>| {
        let mut found: Vec<String> = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                let subject = text
                    .split("Subject: ")
                    .nth(1)
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap();
                let marks = text.matches("X-Mailbox-Junk:").count();
                format!("{subject} ({marks} marks)")
            })
            .collect();
        found.sort();
        found
    };
    // alice allows no one: the quarantined and the SPF failure go to Junk
    // (a soft fail does not), marked with why; a stranger's own mark is
    // removed and does not send its message there.
    s.wait_for_mail("carol@example.org", 5);
    crate::common::wait_until(
        std::time::Duration::from_secs(20),
        || format!("deliveries: {:#?}", s.log_lines("delivered to maildir")),
        || (s.log_lines("delivered to maildir").len() >= 14).then_some(()),
    );
    assert_eq!(
        subjects(s.maildir("alice@example.org")),
        [
            "claims junk (0 marks)",
            "spf passes (0 marks)",
            "spf softfails (0 marks)"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
    );
    assert_eq!(
        subjects(s.folder("alice@example.org", Some("Junk"))),
        [
            "dmarc quarantine (1 marks)",
            "from a friend (1 marks)",
            "from the boss (1 marks)",
            "spf fails (1 marks)"
        ]
    );
    // carol allows friend.example and the boss: theirs stay in her INBOX.
    assert_eq!(
        subjects(s.folder("carol@example.org", Some("Junk"))),
        ["dmarc quarantine (1 marks)", "spf fails (1 marks)"]
    );
    assert_eq!(s.maildir("carol@example.org").len(), 5);
    let junk = std::fs::read_to_string(&s.folder("alice@example.org", Some("Junk"))[0]).unwrap();
    assert!(
        junk.contains(
            "X-Mailbox-Junk: the DMARC policy of quarantine.example quarantines this message"
        ),
        "{junk}"
    );
    assert!(
        s.log_contains("folder Junk: the SPF record of hardfail.example does not allow 127.0.0.1")
    );
}

#[test]
fn greylisting_defers_a_new_triplet_and_takes_the_retry_after_the_delay_across_a_restart() {
    // Loopback, where the tests come from, is trusted by default.
    // The sender's domain exists (the sanity check asks).
    let peer = Peer::with(Options {
        zone: Some("sender.example. 60 IN A 127.0.0.1\n"),
        ..Options::default()
    });
    let mut s = Server::start(&format!(
        "[inbound]\ntrusted_networks = []\ngreylist = \"10s\"\n[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.dns.unwrap()
    ));
    let text = "From: a@sender.example\r\nSubject: grey\r\n\r\nHello.\r\n";
    let send = |s: &Server, from: &str, to: &str| {
        let mut c = Client::greeted(s.addr);
        assert_eq!(c.cmd("EHLO mx.sender.example").code, 250);
        c.send_mail(from, &[to], text)
    };
    let r = send(&s, "a@sender.example", "alice@example.org");
    let first = std::time::Instant::now();
    assert!(r.text.starts_with("451 4.7.1 Greylisted"), "{r:?}");
    assert!(r.text.contains("try again in 10 seconds"), "{r:?}");
    s.wait_for_log("greylisted for 10 s");
    // The triplet is remembered across a restart: too soon is still too soon.
    s.restart();
    let r = send(&s, "a@sender.example", "alice@example.org");
    assert_eq!(r.code, 451, "{r:?}");
    // The delay, and a second for the whole seconds the server counts in.
    std::thread::sleep(std::time::Duration::from_secs(11).saturating_sub(first.elapsed()));
    // The retry after the delay is taken, and delivered.
    let r = send(&s, "A@Sender.example", "alice@example.org");
    assert_eq!(r.code, 250, "{r:?}");
    s.wait_for_mail("alice@example.org", 1);
    // Known now: at once. Another recipient is another triplet.
    assert_eq!(send(&s, "a@sender.example", "alice@example.org").code, 250);
    assert_eq!(send(&s, "a@sender.example", "bob@example.org").code, 451);
    // Nothing of a deferred attempt was kept.
    assert_eq!(s.wait_for_mail("alice@example.org", 2).len(), 2);
    assert!(s.maildir("bob@example.org").is_empty());
}

#[test]
fn a_client_listed_by_dnsbls_over_the_threshold_may_not_send_mail() {
    // 127.0.0.1 is listed by two zones of three; a third lists no one.
    let zone = "1.0.0.127.big.example. 60 IN A 127.0.0.2\n\
                1.0.0.127.small.example. 60 IN A 127.0.0.4\n\
                1.0.0.127.refusing.example. 60 IN A 127.255.255.254\n\
                sender.example. 60 IN A 127.0.0.1\n";
    let peer = Peer::with(Options {
        zone: Some(zone),
        ..Options::default()
    });
    let config = |extra: &str| {
        format!(
            "[inbound]\ntrusted_networks = []\npregreet = \"0s\"\ngreylist = \"0s\"\n{extra}\n\
             [outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
            peer.dns.unwrap()
        )
    };
    let text = "From: a@sender.example\r\nSubject: listed\r\n\r\nHello.\r\n";
    let s = Server::start(&config(
        "dnsbl = [\"big.example*2\", \"small.example\", \"refusing.example*5\", \"silent.example*5\"]",
    ));
    let mut c = Client::greeted(s.addr);
    assert_eq!(c.cmd("EHLO mx.sender.example").code, 250);
    let r = c.cmd("MAIL FROM:<a@sender.example>");
    assert!(
        r.text.starts_with("550 5.7.1 Service unavailable; client [127.0.0.1] blocked using big.example, small.example"),
        "{r:?}"
    );
    s.wait_for_log("127.0.0.1");
    s.wait_for_log(
        "listed by big.example, small.example (score 3, threshold 3): its mail is refused",
    );
    // Below the threshold: served.
    let s = Server::start(&config("dnsbl = [\"big.example*2\"]"));
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO mx.sender.example");
    assert_eq!(
        c.send_mail("a@sender.example", &["alice@example.org"], text)
            .code,
        250
    );
    // On the allow-list: served however listed.
    let s = Server::start(&config(
        "dnsbl = [\"big.example*5\"]\ndnsbl_allow = [\"127.0.0.0/30\"]",
    ));
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO mx.sender.example");
    assert_eq!(
        c.send_mail("a@sender.example", &["alice@example.org"], text)
            .code,
        250
    );
}

#[test]
fn a_stranger_needs_a_proper_helo_name_and_a_sender_domain_that_takes_mail() {
    let zone = "exists.example. 60 IN MX 10 mx.exists.example.\n\
                mx.exists.example. 60 IN A 127.0.0.1\n\
                address.example. 60 IN A 127.0.0.1\n\
                null.example. 60 IN MX 0 .\n";
    let peer = Peer::with(Options {
        zone: Some(zone),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "{AS_STRANGER}[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.dns.unwrap()
    ));
    let text = "From: a@exists.example\r\nSubject: sanity\r\n\r\nHello.\r\n";
    let send = |helo: &str, from: &str| {
        let mut c = Client::greeted(s.addr);
        assert_eq!(c.cmd(&format!("EHLO {helo}")).code, 250);
        c.send_mail(from, &["alice@example.org"], text)
    };
    for (helo, from, code, says) in [
        (
            "localhost",
            "a@exists.example",
            550,
            "localhost is not a fully-qualified host name",
        ),
        (
            "mx.example.org",
            "a@exists.example",
            550,
            "the HELO name mx.example.org is ours",
        ),
        (
            "bad_helo!.example",
            "a@exists.example",
            550,
            "is not a valid host name",
        ),
        (
            "mail.sender.example",
            "a@gone.example",
            550,
            "the sender domain gone.example",
        ),
        (
            "mail.sender.example",
            "a@null.example",
            550,
            "accepts no mail (null MX)",
        ),
        ("mail.sender.example", "a@exists.example", 250, ""),
        ("mail.sender.example", "a@address.example", 250, ""),
        ("[127.0.0.1]", "", 250, ""),
    ] {
        let r = send(helo, from);
        assert_eq!(r.code, code, "{helo} <{from}>: {r:?}");
        assert!(r.text.contains(says), "{helo} <{from}>: {r:?}");
        if code == 550 {
            assert!(r.text.starts_with("550 5.7.1"), "{r:?}");
        }
    }
    s.wait_for_mail("alice@example.org", 3);
    s.wait_for_log("rejected: the sender domain gone.example");
}

#[test]
fn authenticated_submission_is_not_checked() {
    let s = Server::start("");
    s.submit(&["alice@example.org"], &["--header", "Subject: from us"]);
    let files = s.wait_for_mail("alice@example.org", 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(!text.contains("Authentication-Results:"), "{text}");
}
