//! Forwarding through aliases to other domains (issue 16): a stranger's
//! envelope sender is rewritten with SRS into the alias's domain — read
//! back by srslib, an independent implementation of Mail::SRS's scheme,
//! with our secret — and a bounce to the rewritten address comes back and
//! goes on to the original sender; addresses srslib makes with our secret
//! (SRS0 and SRS1) are taken, forged, changed and expired ones refused;
//! the owner's own mail is forwarded with its sender as it is. The other
//! domains' MX is an aiosmtpd peer, their DNS a dnslib one (peer.py).

use crate::common::peer::{Options, Peer};
use crate::common::{AS_STRANGER, Client, Server, python, python_on_file};

/// Every other domain's mail goes to the peer on loopback.
const ZONE: &str = "\
elsewhere.example. 60 IN MX 10 mx.elsewhere.example.
mx.elsewhere.example. 60 IN A 127.0.0.1
sender.example. 60 IN MX 10 mx.elsewhere.example.
third.example. 60 IN MX 10 mx.elsewhere.example.
first.example. 60 IN MX 10 mx.elsewhere.example.
";

/// srslib with the secret argv[2]: `forward SENDER DOMAIN [DAYS_AGO]`
/// prints the rewritten address; `reverse ADDRESS` prints the address it
/// leads back to, or the name of srslib's error.
const SRSLIB: &str = r#"
import sys, time
import srslib
secret, command = sys.argv[1], sys.argv[2]
srs = srslib.SRS(secret)
if command == "forward":
    if len(sys.argv) > 5:
        ago = int(sys.argv[5]) * 86400
        srs._time_fn = lambda: time.time() - ago
    print(srs.forward(sys.argv[3], sys.argv[4]))
else:
    try:
        print(srs.reverse(sys.argv[3]))
    except srslib.Error as e:
        print(type(e).__name__)
"#;

fn srslib(secret: &str, args: &[&str]) -> String {
    let mut all = vec![secret, args[0]];
    all.extend(&args[1..]);
    python(SRSLIB, &all).trim().to_string()
}

/// The secret the server made for itself (the first line signs).
fn secret_of(s: &Server) -> String {
    let text = std::fs::read_to_string(s.data().join("srs.secret")).unwrap();
    text.lines().next().unwrap().to_string()
}

fn dsn(to: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.elsewhere.example\r\nTo: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\r\n\
         someone@elsewhere.example: mailbox unavailable\r\n"
    )
}

#[test]
fn forwarded_mail_leaves_with_an_srs_sender_and_its_bounce_comes_back_to_the_sender() {
    let peer = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "[outbound]\nport = {}\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.smtp,
        peer.dns.unwrap()
    ));
    // A stranger writes to friend@example.org, an alias of
    // someone@elsewhere.example.
    let mut c = Client::greeted(s.addr);
    assert_eq!(c.cmd("EHLO mx.sender.example").code, 250);
    let text = "From: dave@sender.example\r\nTo: friend@example.org\r\nSubject: fwd\r\n\r\nHi.\r\n";
    let r = c.send_mail("dave@sender.example", &["friend@example.org"], text);
    assert_eq!(r.code, 250, "{r:?}");
    let got = peer.wait_for(1);
    let env = &got[0].envelope;
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["someone@elsewhere.example"])
    );
    let srs_sender = env["mail_from"].as_str().unwrap().to_string();
    assert!(
        srs_sender.starts_with("SRS0=") && srs_sender.ends_with("=sender.example=dave@example.org"),
        "{srs_sender}"
    );
    assert!(got[0].message.contains("Subject: fwd"));
    s.wait_for_log(&format!(
        "forwarded to someone@elsewhere.example from <{srs_sender}>"
    ));

    // An independent implementation reads it with our secret.
    let secret = secret_of(&s);
    assert_eq!(
        srslib(&secret, &["reverse", &srs_sender]),
        "dave@sender.example"
    );
    assert_eq!(
        srslib("another secret", &["reverse", &srs_sender]),
        "InvalidHashError"
    );

    // The destination bounces it: the bounce comes back to the rewritten
    // address and goes on to dave, still from the null sender.
    let r = c.send_mail("", &[&srs_sender], &dsn(&srs_sender));
    assert_eq!(r.code, 250, "{r:?}");
    let got = peer.wait_for(2);
    let bounce = &got[1];
    // aiosmtpd writes the null sender as it came.
    assert_eq!(bounce.envelope["mail_from"], "<>");
    assert_eq!(
        bounce.envelope["rcpt_tos"],
        serde_json::json!(["dave@sender.example"])
    );
    assert!(
        bounce
            .message
            .contains("Subject: Undelivered Mail Returned to Sender")
    );

    // A changed hash, a changed sender, an unknown secret: refused at RCPT.
    let (local, _) = srs_sender.rsplit_once('@').unwrap();
    let hash = &local[5..9];
    let flipped: String = hash
        .chars()
        // Another hash even read without case, as the check reads it.
        .map(|ch| {
            if ch.eq_ignore_ascii_case(&'a') {
                'B'
            } else {
                'A'
            }
        })
        .collect();
    let forged = srs_sender.replacen(hash, &flipped, 1);
    let changed = srs_sender.replace("=dave@", "=mallory@");
    let foreign = srslib(
        "not our secret",
        &["forward", "eve@third.example", "example.org"],
    );
    assert_eq!(c.cmd("MAIL FROM:<>").code, 250);
    for address in [&forged, &changed, &foreign] {
        let r = c.cmd(&format!("RCPT TO:<{address}>"));
        assert_eq!(r.code, 550, "{address}: {r:?}");
        assert!(r.text.contains("5.1.1"), "{r:?}");
        assert!(r.text.contains("was not made here"), "{r:?}");
    }
    // srslib's address with our secret, 30 days old: too old.
    let stale = srslib(
        &secret,
        &["forward", "eve@third.example", "example.org", "30"],
    );
    let r = c.cmd(&format!("RCPT TO:<{stale}>"));
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text.contains("more than 21 days old"), "{r:?}");
    // srslib's, fresh, and the SRS1 it makes of another forwarder's SRS0
    // (a bounce for it goes to that forwarder, first.example): two
    // domains, two deliveries.
    let fresh = srslib(&secret, &["forward", "eve@third.example", "example.org"]);
    let theirs = "SRS0=abcd=AB=orig.example=frank@first.example";
    let srs1 = srslib(&secret, &["forward", theirs, "example.org"]);
    assert!(srs1.starts_with("SRS1="), "{srs1}");
    c.cmd("RSET");
    let r = c.send_mail("", &[&fresh, &srs1], &dsn(&fresh));
    assert_eq!(r.code, 250, "{r:?}");
    let got = peer.wait_for(4);
    let mut rcpts: Vec<&str> = got[2..]
        .iter()
        .flat_map(|m| m.envelope["rcpt_tos"].as_array().unwrap())
        .map(|v| v.as_str().unwrap())
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, [theirs, "eve@third.example"]);

    // The owner's own mail to the alias keeps its sender: ours already.
    s.submit(&["friend@example.org"], &["--header", "Subject: mine"]);
    let got = peer.wait_for(5);
    assert_eq!(got[4].envelope["mail_from"], "alice@example.org");
    assert!(got[4].message.contains("Subject: mine"));
}

/// dkimpy's ARC verification of the file argv[1] against the DNS records
/// argv[2] (JSON): prints the chain's validation and dkimpy's comment.
const ARC_VERIFY: &str = r#"
import dkim, json, sys
message = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
records = json.loads(sys.argv[2])
def dnsfunc(name, timeout=5):
    return records.get(name.decode().rstrip("."), "").encode()
cv, results, comment = dkim.arc_verify(message, dnsfunc=dnsfunc)
print(cv.decode(), comment)
"#;

fn arc_verify(message: &str, records: &[(String, String)]) -> String {
    let json: serde_json::Map<String, serde_json::Value> = records
        .iter()
        .map(|(n, v)| (n.clone(), v.clone().into()))
        .collect();
    python_on_file(
        ARC_VERIFY,
        message,
        &[&serde_json::Value::Object(json).to_string()],
    )
}

#[test]
fn forwarded_mail_is_arc_sealed_and_dkimpy_verifies_the_chain() {
    let zone = format!("{ZONE}sender.example. 60 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n");
    let peer = Peer::with(Options {
        zone: Some(&zone),
        ..Options::default()
    });
    // Checked as a stranger's mail (loopback is trusted by default).
    let s = Server::start(&format!(
        "{AS_STRANGER}[outbound]\nport = {}\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.smtp,
        peer.dns.unwrap()
    ));
    let mut c = Client::greeted(s.addr);
    assert_eq!(c.cmd("EHLO mx.sender.example").code, 250);
    let text = "From: dave@sender.example\r\nTo: friend@example.org, alice@example.org\r\n\
                Subject: sealed\r\nMessage-ID: <sealed@sender.example>\r\n\r\nHi.\r\n";
    let r = c.send_mail(
        "dave@sender.example",
        &["friend@example.org", "alice@example.org"],
        text,
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = peer.wait_for(1);
    let forwarded = &got[0].message;
    assert!(
        forwarded.contains("ARC-Seal: i=1; a=rsa-sha256;"),
        "{forwarded}"
    );
    assert!(forwarded.contains("cv=none"), "{forwarded}");
    assert!(forwarded.contains("d=example.org"), "{forwarded}");
    assert!(
        forwarded.contains("ARC-Authentication-Results: i=1; mx.example.org;"),
        "{forwarded}"
    );
    let records = crate::dkim::records(&s);
    let verdict = arc_verify(forwarded, &records);
    assert!(verdict.starts_with("pass"), "{verdict}");
    // A change on the way breaks it: the test can tell.
    let changed = arc_verify(&forwarded.replace("Hi.", "Bye."), &records);
    assert!(changed.starts_with("fail"), "{changed}");
    s.wait_for_log("arc-sealed-by=example.org");
}
