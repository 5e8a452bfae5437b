//! Outbound delivery on loopback against independent peers (aiosmtpd for
//! SMTP/LMTP, dnslib for DNS; see peer.py): MX lookup with STARTTLS, null
//! MX, permanent failure → bounce, temporary failure → retry, a relay with
//! STARTTLS and SASL for one sender, a smarthost with implicit TLS and SASL
//! for everything, an LMTP transport, several recipients in one
//! transaction, connection reuse, MTA-STS enforcement (with a policy served
//! over HTTPS), DANE (with a DNSSEC-signed zone served from dnspython).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::peer::{Options, Peer, TestCa, self_signed};
use crate::common::{Client, Server, tcp_stub, wait_until};

const ZONE: &str = "\
example.net. 60 IN MX 10 mx.example.net.
mx.example.net. 60 IN A 127.0.0.1
example.com. 60 IN MX 0 .
";

fn mx_config(peer: &Peer) -> String {
    format!(
        "[outbound]\nport = {}\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.smtp,
        peer.dns.unwrap()
    )
}

fn submit(s: &Server, to: &[&str], subject: &str) {
    s.submit(to, &["--header", &format!("Subject: {subject}")]);
}

fn wait_queue_empty(s: &Server) {
    s.wait_queue_empty(Duration::from_secs(20));
}

#[test]
fn mx_delivery_with_starttls_all_recipients_in_one_transaction() {
    let peer = Peer::with(Options {
        tls: true,
        zone: Some(ZONE),
        ..Options::default()
    });
    let s = Server::start(&mx_config(&peer));
    submit(&s, &["one@example.net", "two@example.net"], "to the MX");
    let got = peer.wait_for(1);
    assert_eq!(got.len(), 1, "one transaction for both recipients");
    let env = &got[0].envelope;
    assert_eq!(env["mail_from"], "alice@example.org");
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["one@example.net", "two@example.net"])
    );
    assert_eq!(env["tls"], true, "opportunistic STARTTLS was not used");
    assert!(got[0].message.contains("Subject: to the MX"));
    assert!(
        got[0].message.contains("DKIM-Signature:"),
        "outbound mail is signed"
    );
    wait_queue_empty(&s);
    s.wait_for_log("relay=mx:example.net");
    s.wait_for_log("status=sent");
}

#[test]
fn a_large_message_is_relayed_intact_with_stuffed_dots() {
    let peer = Peer::with(Options {
        tls: true,
        zone: Some(ZONE),
        ..Options::default()
    });
    let s = Server::start(&mx_config(&peer));
    // About 2 MiB: spooled, then streamed out in chunks with dot-stuffing.
    let body: String = (0..60_000)
        .map(|i| {
            format!(
                "{}line {i} of a message that is relayed\n",
                if i % 3 == 0 { "." } else { "" }
            )
        })
        .collect();
    let path = s.dir.path().join("body.txt");
    std::fs::write(&path, &body).unwrap();
    let at_path = format!("@{}", path.display());
    s.submit(
        &["far@example.net"],
        &["--header", "Subject: large", "--body", &at_path],
    );
    let got = peer.wait_for(1);
    let received = got[0].message.replace("\r\n", "\n");
    assert!(received.len() > 2_000_000, "{}", received.len());
    // swaks ends the body with a line end of its own.
    let (received, body) = (received.trim_end(), body.trim_end());
    if !received.ends_with(body) {
        let at = received
            .rsplit('\n')
            .zip(body.rsplit('\n'))
            .find(|(a, b)| a != b);
        panic!("the relayed message differs from the one submitted: {at:?}");
    }
    wait_queue_empty(&s);
}

#[test]
fn permanent_failure_and_null_mx_bounce_to_the_sender() {
    let peer = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let s = Server::start(&mx_config(&peer));
    submit(
        &s,
        &["reject@example.net", "ok@example.net"],
        "partly refused",
    );
    submit(&s, &["anyone@example.com"], "null mx");
    let bounces = s.wait_for_mail("alice@example.org", 2);
    let texts: Vec<String> = bounces
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let refused = texts
        .iter()
        .find(|t| t.contains("Subject: partly refused"))
        .expect("bounce with the original headers");
    assert!(refused.contains("Return-Path: <>"), "{refused}");
    assert!(refused.contains("report-type=delivery-status"), "{refused}");
    assert!(
        refused.contains("Final-Recipient: rfc822; reject@example.net"),
        "{refused}"
    );
    assert!(refused.contains("Status: 5.1.1"), "{refused}");
    assert!(
        !refused.contains("ok@example.net\r\nAction: failed"),
        "{refused}"
    );
    assert!(refused.contains("DKIM-Signature:"), "bounces are signed");
    let null = texts
        .iter()
        .find(|t| t.contains("Subject: null mx"))
        .unwrap();
    assert!(
        null.contains("Status: 5.1.10") && null.contains("null MX"),
        "{null}"
    );
    // The accepted recipient got its copy; nothing is left queued.
    let got = peer.wait_for(1);
    assert_eq!(
        got[0].envelope["rcpt_tos"],
        serde_json::json!(["ok@example.net"])
    );
    wait_queue_empty(&s);
}

#[test]
fn temporary_failure_is_retried_then_delivered() {
    let peer = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "{}[queue]\nretry_min = \"1s\"\n",
        mx_config(&peer)
    ));
    submit(&s, &["defer@example.net"], "later");
    s.wait_for_log("status=deferred");
    let got = peer.wait_for(1);
    assert_eq!(
        got[0].envelope["rcpt_tos"],
        serde_json::json!(["defer@example.net"])
    );
    wait_queue_empty(&s);
    assert!(
        s.maildir("alice@example.org").is_empty(),
        "no bounce for a temporary failure"
    );
}

#[test]
fn sender_route_uses_the_relay_with_tls_and_sasl() {
    let relay = Peer::with(Options {
        tls: true,
        auth: Some("relayuser:relaypass"),
        ..Options::default()
    });
    let config = format!(
        "[[relays]]\nname = \"isp\"\nhost = \"127.0.0.1:{}\"\ntls = \"starttls\"\nusername = \"relayuser\"\npassword = \"relaypass\"\nca = \"{}\"\n\n[[sender_routes]]\nsender = \"alice@example.org\"\nrelay = \"isp\"\n",
        relay.smtp,
        relay.cert.as_ref().unwrap().display()
    );
    let s = Server::start(&config);
    submit(&s, &["someone@far-away.example"], "via the relay");
    s.wait_for_log("status=");
    let deferred = s.log_lines("status=deferred");
    assert!(deferred.is_empty(), "{deferred:?}");
    let got = relay.wait_for(1);
    assert_eq!(got[0].envelope["tls"], true);
    assert_eq!(got[0].envelope["login"], "relayuser");
    assert_eq!(
        got[0].envelope["rcpt_tos"],
        serde_json::json!(["someone@far-away.example"])
    );
    wait_queue_empty(&s);
    s.wait_for_log("relay=relay:isp");
}

#[test]
fn smarthost_with_implicit_tls_and_sasl_takes_all_outbound_mail() {
    let relay = Peer::with(Options {
        tls: true,
        implicit_tls: true,
        auth: Some("isp-user:isp-pass"),
        ..Options::default()
    });
    let config = format!(
        "[outbound]\nnameservers = [\"127.0.0.1:{}\"]\nsmarthost = \"isp\"\n\n[[relays]]\nname = \"isp\"\nhost = \"127.0.0.1:{}\"\ntls = \"implicit\"\nusername = \"isp-user\"\npassword = \"isp-pass\"\nca = \"{}\"\n",
        crate::common::refusing_dns(),
        relay.smtp,
        relay.cert.as_ref().unwrap().display()
    );
    let s = Server::start(&config);
    submit(
        &s,
        &["one@far-away.example", "two@elsewhere.example"],
        "via the smarthost",
    );
    let got = relay.wait_for(1);
    assert_eq!(got[0].envelope["login"], "isp-user");
    assert_eq!(
        got[0].envelope["rcpt_tos"],
        serde_json::json!(["one@far-away.example", "two@elsewhere.example"]),
        "both domains go through the one smarthost, in one transaction"
    );
    wait_queue_empty(&s);
    s.wait_for_log("relay=relay:isp");
    s.wait_for_log("(TLS verified)");
}

#[test]
fn lmtp_transport_for_one_local_address() {
    let lmtp = Peer::with(Options {
        lmtp: true,
        ..Options::default()
    });
    let config = format!(
        "[[transports]]\nrecipient = \"restricted@example.org\"\nvia = \"lmtp:127.0.0.1:{}\"\n",
        lmtp.smtp
    );
    let s = Server::start(&config);
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO sender.example");
    let r = c.send_mail(
        "someone@sender.example",
        &["restricted@example.org", "bob@example.org"],
        "Subject: tokens\r\n\r\nx\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = lmtp.wait_for(1);
    assert_eq!(
        got[0].envelope["rcpt_tos"],
        serde_json::json!(["restricted@example.org"])
    );
    s.wait_for_mail("bob@example.org", 1);
    wait_queue_empty(&s);
}

#[test]
fn undeliverable_mail_warns_once_then_expires_with_a_bounce() {
    // The MX exists but nothing listens on the port: every attempt is
    // deferred (connection refused).
    let zone =
        "nowhere.example. 60 IN MX 10 mx.nowhere.example.\nmx.nowhere.example. 60 IN A 127.0.0.1\n";
    let dns = Peer::with(Options {
        zone: Some(zone),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "[outbound]\nport = 9\nnameservers = [\"127.0.0.1:{}\"]\n[queue]\nretry_min = \"1s\"\nretry_max = \"1s\"\ndelay_warning = \"1s\"\nmax_age = \"4s\"\n",
        dns.dns.unwrap()
    ));
    submit(&s, &["someone@nowhere.example"], "doomed");
    s.wait_for_mail("alice@example.org", 2);
    std::thread::sleep(Duration::from_secs(2));
    let texts: Vec<String> = s
        .maildir("alice@example.org")
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert_eq!(
        texts.len(),
        2,
        "one warning and one bounce, no more: {texts:?}"
    );
    let warning = texts
        .iter()
        .find(|t| t.contains("Subject: Delayed Mail"))
        .expect("a delay warning");
    assert!(warning.contains("Action: delayed"), "{warning}");
    let bounce = texts
        .iter()
        .find(|t| t.contains("Subject: Undelivered Mail"))
        .expect("a bounce");
    assert!(bounce.contains("Action: failed\nStatus: 4.4.7"), "{bounce}");
    assert!(bounce.contains("Subject: doomed"), "{bounce}");
    wait_queue_empty(&s);
}

#[test]
fn connections_to_one_destination_are_limited() {
    let peer = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let s = Server::start(&format!("{}per_destination = 2\n", mx_config(&peer)));
    // Ten messages at once, each held 0.3 s by the peer.
    for n in 0..10 {
        submit(&s, &[&format!("slow{n}@example.net")], "slow");
    }
    peer.wait_for(10);
    let (_, max) = peer.connections();
    assert!(max <= 2, "{max} connections to one domain at once");
    assert!(max >= 1);
    wait_queue_empty(&s);
}

#[test]
fn one_connection_carries_several_messages() {
    let peer = Peer::with(Options {
        tls: true,
        zone: Some(ZONE),
        ..Options::default()
    });
    let s = Server::start(&format!(
        "{}per_destination = 1\n[queue]\nretry_min = \"1h\"\n",
        mx_config(&peer)
    ));
    // Each recipient is deferred once, so five messages wait in the queue
    // for the same destination; a flush then sends them one after another.
    for n in 0..5 {
        submit(&s, &[&format!("defer{n}@example.net")], "reused");
    }
    wait_until(
        Duration::from_secs(20),
        || "not all deferred".into(),
        || (s.log_lines("status=deferred").len() >= 5).then_some(()),
    );
    let (before, _) = peer.connections();
    let (ok, out) = s.queue(&["flush"]);
    assert!(ok, "{out}");
    let got = peer.wait_for(5);
    assert_eq!(got.len(), 5, "one transaction per message");
    assert!(got.iter().all(|r| r.envelope["tls"] == true));
    wait_queue_empty(&s);
    let (after, _) = peer.connections();
    assert!(
        after - before <= 1,
        "{} connections for 5 messages to one destination",
        after - before
    );
    s.wait_for_log("conn_use=5");
}

/// example.net publishes an MTA-STS policy in enforce mode naming only
/// mx.example.net, while its DNS (as an attacker could) also offers
/// rogue.example.net, preferred.
const STS_ZONE: &str = "\
example.net. 60 IN MX 5 rogue.example.net.
example.net. 60 IN MX 10 mx.example.net.
rogue.example.net. 60 IN A 127.0.0.1
mx.example.net. 60 IN A 127.0.0.1
_mta-sts.example.net. 60 IN TXT \"v=STSv1; id=2026112101\"
mta-sts.example.net. 60 IN A 127.0.0.1
_smtp._tls.example.net. 60 IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@example.net,https://tlsrpt.example.net/v1\"
";

const STS_POLICY: &str =
    "version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n";

fn sts_peer(ca: &TestCa, smtp_tls: Options<'static>) -> Peer {
    let (cert, key) = ca.issue(&["mta-sts.example.net"]);
    Peer::with(Options {
        zone: Some(STS_ZONE),
        sts: Some((STS_POLICY, cert, key)),
        ..smtp_tls
    })
}

fn sts_config(peer: &Peer, ca: &TestCa) -> String {
    format!(
        "{}mta_sts_port = {}\nca = \"{}\"\n",
        mx_config(peer),
        peer.https.unwrap(),
        ca.pem.display()
    )
}

#[test]
fn mta_sts_enforce_refuses_a_bad_certificate() {
    let ca = TestCa::new();
    // The MX host offers STARTTLS, but with a self-signed certificate for
    // another name: good enough for opportunistic TLS, not for the policy.
    let peer = sts_peer(
        &ca,
        Options {
            tls: true,
            ..Options::default()
        },
    );
    let s = Server::start(&sts_config(&peer, &ca));
    submit(&s, &["someone@example.net"], "must not leave unverified");
    s.wait_for_log("status=deferred");
    assert!(
        s.log_contains("rogue.example.net is not an MX host in the MTA-STS policy"),
        "the unlisted MX host was not skipped"
    );
    assert!(
        s.log_contains("certificate"),
        "the deferral does not name the certificate"
    );
    assert_eq!(peer.sts_fetches(), 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        peer.received().is_empty(),
        "the message was handed over despite the policy"
    );
    let (ok, list) = s.queue(&["list"]);
    assert!(ok && list.contains("someone@example.net"), "{list}");
}

/// example.net under its enforced policy, its MX host with a certificate
/// the test CA issued for both names (rogue.example.net is still not in
/// the policy); the server delivering there (it reads the CA's file: the
/// CA lives as long as they do).
fn verified_sts() -> (TestCa, Peer, Server) {
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["mx.example.net", "rogue.example.net"]);
    let peer = sts_peer(
        &ca,
        Options {
            tls_files: Some((cert, key)),
            ..Options::default()
        },
    );
    let s = Server::start(&sts_config(&peer, &ca));
    (ca, peer, s)
}

#[test]
fn mta_sts_enforce_delivers_over_verified_tls_to_listed_hosts() {
    let (_ca, peer, s) = verified_sts();
    submit(&s, &["one@example.net"], "first");
    peer.wait_for(1);
    submit(&s, &["two@example.net"], "second");
    let got = peer.wait_for(2);
    assert!(got.iter().all(|r| r.envelope["tls"] == true));
    wait_queue_empty(&s);
    s.wait_for_log("rogue.example.net is not an MX host in the MTA-STS policy");
    s.wait_for_log("mx.example.net[127.0.0.1]");
    assert!(!s.log_contains("status=deferred"));
    // The second message used the cached policy.
    assert_eq!(peer.sts_fetches(), 1);
}

/// The TLS report in the message argv[1] (RFC 8460 §5.3), read with
/// Python's email, gzip and json: its headers and the JSON.
const READ_TLS_REPORT: &str = r#"
import email, email.policy, gzip, json, sys
msg = email.message_from_string(open(sys.argv[1]).read(), policy=email.policy.default)
part = next(p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip")
print(json.dumps({
    "type": msg.get_content_type(),
    "report-type": msg.get_param("report-type"),
    "domain": str(msg["TLS-Report-Domain"]),
    "submitter": str(msg["TLS-Report-Submitter"]),
    "report": json.loads(gzip.decompress(part.get_payload(decode=True))),
}))
"#;

#[test]
fn a_tls_report_counts_the_sessions_under_the_policy_and_goes_to_the_domain() {
    let (_ca, peer, s) = verified_sts();
    submit(&s, &["one@example.net"], "first");
    peer.wait_for(1);
    wait_queue_empty(&s);
    // rogue.example.net, not in the policy, was skipped (a failure); the
    // session with mx.example.net succeeded.
    let said = s.send_reports();
    assert!(
        said.contains("the TLS report of example.net for")
            && said.contains("(2 sessions) sent to tlsrpt@example.net"),
        "{said}"
    );
    let got = peer.wait_for(2);
    assert_eq!(got[1].envelope["mail_from"], "postmaster@example.org");
    assert_eq!(
        got[1].envelope["rcpt_tos"],
        serde_json::json!(["tlsrpt@example.net"])
    );
    let read: serde_json::Value = serde_json::from_str(&crate::common::python_on_file(
        READ_TLS_REPORT,
        &got[1].message,
        &[],
    ))
    .unwrap();
    assert_eq!(read["type"], "multipart/report", "{read}");
    assert_eq!(read["report-type"], "tlsrpt", "{read}");
    assert_eq!(read["domain"], "example.net");
    assert_eq!(read["submitter"], "mx.example.org");
    let report = &read["report"];
    assert_eq!(report["organization-name"], "mx.example.org");
    assert_eq!(report["contact-info"], "postmaster@example.org");
    let policy = &report["policies"][0];
    assert_eq!(policy["policy"]["policy-type"], "sts", "{report}");
    assert_eq!(policy["policy"]["policy-domain"], "example.net");
    assert_eq!(
        policy["policy"]["mx-host"],
        serde_json::json!(["mx.example.net"])
    );
    assert!(
        policy["policy"]["policy-string"]
            .as_array()
            .unwrap()
            .contains(&"mode: enforce".into()),
        "{report}"
    );
    assert_eq!(
        policy["summary"]["total-successful-session-count"], 1,
        "{report}"
    );
    assert_eq!(
        policy["summary"]["total-failure-session-count"], 1,
        "{report}"
    );
    let failure = &policy["failure-details"][0];
    assert_eq!(failure["result-type"], "validation-failure");
    assert_eq!(failure["receiving-mx-hostname"], "rogue.example.net");
}

/// A signed root zone in which example.net's MX host publishes a DANE-EE
/// TLSA record (3 1 1: SHA-256 of the key) on the test's SMTP port, and so
/// does bare.example, a domain without MX records (its own host).
/// Without a key, the same zone without TLSA records.
fn dane_zone(tlsa_key: Option<&rcgen::KeyPair>) -> String {
    let hash = tlsa_key.map(|key| {
        let spki = rcgen::PublicKeyData::subject_public_key_info(key);
        ring::digest::digest(&ring::digest::SHA256, &spki)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    let tlsa = |host: &str| match &hash {
        Some(hash) => format!("_{{SMTP_PORT}}._tcp.{host}. 60 IN TLSA 3 1 1 {hash}\n"),
        None => String::new(),
    };
    format!(
        ". 3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
. 3600 IN NS ns.test.
ns.test. 60 IN A 127.0.0.1
example.net. 60 IN MX 10 mx.example.net.
mx.example.net. 60 IN A 127.0.0.1
{}bare.example. 60 IN A 127.0.0.1
{}",
        tlsa("mx.example.net"),
        tlsa("bare.example")
    )
}

/// The MX host's certificate is self-signed, for another name: what DANE-EE
/// accepts when the record pins its key, and WebPKI never would.
const MX_CERT: &[&str] = &["not-the-mx.example"];

fn dane_config(peer: &Peer) -> String {
    format!(
        "{}trust_anchor = \"{}\"\n",
        mx_config(peer),
        peer.anchor().display()
    )
}

#[test]
fn dane_ee_record_authenticates_the_mx_host() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert, pem_key) = self_signed(dir.path(), MX_CERT);
    let zone = dane_zone(Some(&key));
    let peer = Peer::with(Options {
        signed_zone: Some(&zone),
        tls_files: Some((cert, pem_key)),
        ..Options::default()
    });
    let s = Server::start(&dane_config(&peer));
    submit(
        &s,
        &["someone@example.net", "someone@bare.example"],
        "pinned",
    );
    let got = peer.wait_for(2);
    assert!(got.iter().all(|r| r.envelope["tls"] == true));
    wait_queue_empty(&s);
    s.wait_for_log("DNSSEC validation works");
    s.wait_for_log(&format!(
        "mx.example.net[127.0.0.1]:{} (TLS verified by DANE)",
        peer.smtp
    ));
    s.wait_for_log(&format!(
        "bare.example[127.0.0.1]:{} (TLS verified by DANE)",
        peer.smtp
    ));
}

#[test]
fn dane_refuses_a_certificate_the_tlsa_records_do_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, pem_key) = self_signed(dir.path(), MX_CERT);
    // The record pins another key than the one the server presents.
    let zone = dane_zone(Some(&rcgen::KeyPair::generate().unwrap()));
    let peer = Peer::with(Options {
        signed_zone: Some(&zone),
        tls_files: Some((cert, pem_key)),
        ..Options::default()
    });
    let s = Server::start(&dane_config(&peer));
    submit(&s, &["someone@example.net"], "not to an impostor");
    s.wait_for_log("status=deferred");
    assert!(
        s.log_contains("matches none of the TLSA records"),
        "the deferral does not name DANE"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        peer.received().is_empty(),
        "the message went to a server the TLSA records do not match"
    );
}

#[test]
fn signed_domain_without_tlsa_records_gets_opportunistic_tls() {
    // The TLSA lookup is answered NXDOMAIN with NSEC proofs: a secure
    // denial, so DANE does not apply and delivery goes on as usual.
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, pem_key) = self_signed(dir.path(), MX_CERT);
    let zone = dane_zone(None);
    let peer = Peer::with(Options {
        signed_zone: Some(&zone),
        tls_files: Some((cert, pem_key)),
        ..Options::default()
    });
    let s = Server::start(&dane_config(&peer));
    submit(&s, &["someone@example.net"], "no dane here");
    let got = peer.wait_for(1);
    assert_eq!(got[0].envelope["tls"], true);
    wait_queue_empty(&s);
    s.wait_for_log("DNSSEC validation works");
    assert!(!s.log_contains("verified by DANE"));
    assert!(!s.log_contains("status=deferred"));
}

#[test]
fn forged_tlsa_records_defer_instead_of_downgrading() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert, pem_key) = self_signed(dir.path(), MX_CERT);
    let zone = dane_zone(Some(&key));
    let peer = Peer::with(Options {
        signed_zone: Some(&zone),
        tamper: true,
        tls_files: Some((cert, pem_key)),
        ..Options::default()
    });
    let s = Server::start(&dane_config(&peer));
    submit(&s, &["someone@example.net"], "bogus");
    s.wait_for_log("status=deferred");
    assert!(
        s.log_contains("TLSA records of mx.example.net"),
        "the deferral does not name the TLSA lookup"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(peer.received().is_empty(), "delivered despite bogus DNSSEC");
}

/// Sends one message from outside to `to` over the MX listener.
fn receive(s: &Server, to: &[&str], subject: &str) {
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO sender.example");
    let r = c.send_mail(
        "someone@sender.example",
        to,
        &format!("Subject: {subject}\r\n\r\nx\r\n"),
    );
    assert_eq!(r.code, 250, "{r:?}");
}

#[test]
fn each_hand_over_is_recorded_when_it_happens() {
    let peer = Peer::with(Options::default());
    // A server that takes the connection and never says a word.
    let silent: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let held = silent.clone();
    let stalled = tcp_stub(move |stream| held.lock().unwrap().push(stream));
    let config = format!(
        "[[transports]]\nrecipient = \"fast@example.org\"\nvia = \"smtp:127.0.0.1:{}\"\n\n[[transports]]\nrecipient = \"stalled@example.org\"\nvia = \"smtp:127.0.0.1:{stalled}\"\n",
        peer.smtp
    );
    let mut s = Server::start(&config);
    receive(
        &s,
        &["fast@example.org", "stalled@example.org"],
        "two routes",
    );
    let got = peer.wait_for(1);
    assert_eq!(
        got[0].envelope["rcpt_tos"],
        serde_json::json!(["fast@example.org"])
    );
    // The first hand-over is on record while the second route still waits.
    let list = wait_until(
        Duration::from_secs(10),
        || format!("the hand-over was not recorded: {}", s.queue(&["list"]).1),
        || {
            let (_, list) = s.queue(&["list"]);
            list.contains("-> fast@example.org (delivered")
                .then_some(list)
        },
    );
    assert!(
        list.contains("-> stalled@example.org (pending, 0 attempts"),
        "{list}"
    );
    assert_eq!(silent.lock().unwrap().len(), 1);

    // A crash now, and the restarted server works the queue: only the
    // stalled route is attempted again.
    s.restart();
    wait_until(
        Duration::from_secs(20),
        || "the restarted server did not try the stalled route again".into(),
        || (silent.lock().unwrap().len() >= 2).then_some(()),
    );
    // Routes are tried in recipient order: had the first been pending
    // still, the peer would have its second copy by now.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(peer.received().len(), 1, "the message was sent twice");
    let (_, list) = s.queue(&["list"]);
    assert!(list.contains("-> fast@example.org (delivered"), "{list}");
}

/// A line-based SMTP server that accepts everything; the lines it
/// received so far, and its port.
fn smtp_stub(greeting: &'static str) -> (Arc<Mutex<Vec<String>>>, u16) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let lines = seen.clone();
    let port = tcp_stub(move |stream| {
        let mut out = stream.try_clone().unwrap();
        if out.write_all(greeting.as_bytes()).is_err() {
            return;
        }
        let mut in_data = false;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            lines.lock().unwrap().push(line.clone());
            let reply: &[u8] = match line.to_ascii_uppercase().as_str() {
                "." if in_data => {
                    in_data = false;
                    b"250 2.0.0 taken\r\n"
                }
                _ if in_data => continue,
                "DATA" => {
                    in_data = true;
                    b"354 go ahead\r\n"
                }
                "QUIT" => b"221 bye\r\n",
                _ => b"250 ok\r\n",
            };
            if out.write_all(reply).is_err() {
                return;
            }
        }
    });
    (seen, port)
}

#[test]
fn a_transport_back_to_ourselves_is_refused_as_a_loop() {
    // It greets with our own host name: it is us, or claims to be.
    let (seen, port) = smtp_stub("220 mx.example.org ESMTP\r\n");
    let s = Server::start(&format!(
        "[[transports]]\nrecipient = \"circle@example.org\"\nvia = \"smtp:127.0.0.1:{port}\"\n"
    ));
    receive(&s, &["circle@example.org"], "round and round");
    s.wait_for_log("loops back to myself");
    s.wait_for_log("status=deferred");
    let (_, list) = s.queue(&["list"]);
    assert!(
        list.contains("-> circle@example.org (pending") && list.contains("loops back to myself"),
        "{list}"
    );
    let seen = seen.lock().unwrap();
    assert!(
        !seen
            .iter()
            .any(|l| l.to_ascii_uppercase().starts_with("MAIL")),
        "the message went in a circle: {seen:?}"
    );
}

/// The memory the process has used at most, from /proc.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kb * 1024
}

#[test]
fn an_endless_reply_line_is_cut_off() {
    // A greeting line that never ends: 128 MiB of "x" without a line end
    // (more than the memory bound below), and the connection kept open.
    let port = tcp_stub(|mut stream| {
        let chunk = vec![b'x'; 64 * 1024];
        if stream.write_all(b"220-").is_err() {
            return;
        }
        for _ in 0..2048 {
            if stream.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = stream.read(&mut [0; 1]);
    });
    let s = Server::start(&format!(
        "[[transports]]\nrecipient = \"flood@example.org\"\nvia = \"smtp:127.0.0.1:{port}\"\n"
    ));
    receive(&s, &["flood@example.org"], "into the flood");
    s.wait_for_log("reply line longer than");
    s.wait_for_log("status=deferred");
    let (_, list) = s.queue(&["list"]);
    assert!(
        list.contains("-> flood@example.org (pending") && list.contains("reply line longer than"),
        "{list}"
    );
    let peak = peak_memory(s.pid());
    assert!(
        peak < 100 << 20,
        "the server used {} MiB at most",
        peak >> 20
    );
}
