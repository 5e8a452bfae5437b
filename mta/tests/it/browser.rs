//! The wizard and the admin pages driven by a real browser (headless
//! Chromium): what a new owner does, page by page, with a screenshot of
//! each at desktop and phone width in `target/screenshots/`.

use std::time::Duration;

use crate::acme::{ZONE, base, wait_issued};
use crate::common::pebble::{self, Pebble, free_port};
use crate::common::peer::{Options, Peer};
use crate::common::webdriver::Driver;
use crate::common::{Client, FIRST_BOOT_CONFIG, Server, wait_until};

const PASSWORD: &str = "correct horse battery staple 42";

#[test]
fn a_new_owner_sets_up_the_appliance_in_a_browser() {
    // The DNS as a new owner has it: the MX published, SPF not yet right.
    let zone = "example.org. 60 IN MX 10 mail.example.org.\nmail.example.org. 60 IN A 127.0.0.1\nexample.org. 60 IN TXT \"v=spf1 a -all\"\n";
    let peer = Peer::with(Options {
        zone: Some(zone),
        ..Options::default()
    });
    let s = Server::start_with(
        FIRST_BOOT_CONFIG,
        &format!(
            "[[transports]]\nrecipient = \"elsewhere.example\"\nvia = \"smtp:127.0.0.1:{}\"\n[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
            peer.smtp,
            peer.dns.unwrap()
        ),
    );
    let http = format!("http://127.0.0.1:{}", s.listeners["http"].port());
    let https = format!("https://127.0.0.1:{}", s.listeners["https"].port());
    let b = Driver::start();

    // Refused without the code.
    b.go(&format!("{http}/"));
    b.wait_url(|u| u.ends_with("/setup"));
    b.screenshot("01-setup-code");
    b.go(&format!("{http}/setup/domains"));
    b.wait_url(|u| u.ends_with("/setup"));
    b.fill("#f-code", "AAAA-BBBB");
    b.click("button[type=submit]");
    b.wait_text(".error", "not the code");
    b.screenshot("02-setup-code-wrong");

    // Claimed with it.
    let code = std::fs::read_to_string(s.data().join("setup-code")).unwrap();
    b.fill("#f-code", code.trim());
    b.click("button[type=submit]");
    b.wait_url(|u| u.ends_with("/setup/domains"));
    b.screenshot("03-setup-domains");
    b.fill("#f-domains", "example.org");
    b.click("button[type=submit]");
    b.wait_url(|u| u.ends_with("/setup/owner"));
    b.fill("#f-local", "owner");
    b.fill("#f-password", "password1");
    // The strength shows as the owner types.
    b.wait_text(".strength-live", "too weak");
    b.fill("#f-confirm", "password1");
    b.click("button[type=submit]");
    b.wait_text(".error", "could be guessed");
    b.screenshot("04-setup-owner-weak");
    b.fill("#f-password", PASSWORD);
    b.wait_text(".strength-live", "strong enough");
    b.fill("#f-confirm", PASSWORD);
    b.click("button[type=submit]");
    b.wait_url(|u| u.ends_with("/setup/relay"));
    b.screenshot("05-setup-relay");
    b.click("button[type=submit]");
    b.wait_url(|u| u.ends_with("/setup/certificate"));
    b.click("input[name=terms]");
    b.screenshot("05b-setup-certificate");
    b.click("button[type=submit]");
    b.wait_url(|u| u.ends_with("/setup/summary"));
    b.wait_text("dl.summary", "owner@example.org");
    b.screenshot("06-setup-summary");
    b.click("button[type=submit]");
    b.wait_text(".notice.ok", "configuration is saved");
    b.screenshot("07-setup-done");
    b.click("a.button");

    // To HTTPS, to log in, to the DNS records.
    b.wait_url(|u| u.starts_with(&format!("{https}/login")));
    b.screenshot("07b-login");
    b.log_in("owner@example.org", PASSWORD);
    b.wait_url(|u| u.ends_with("/dns"));
    for record in [
        "_dmarc.example.org",
        "._domainkey.example.org",
        "10 mail.example.org.",
    ] {
        b.wait_text("main", record);
    }
    b.screenshot("08-dns");

    // An account and an alias.
    b.go(&format!("{https}/accounts"));
    b.fill("#f-address", "bob@example.org");
    b.fill("#f-password", PASSWORD);
    b.click("form[action='/accounts/add'] button[type=submit]");
    b.wait_text(".notice.ok", "Added bob@example.org");
    b.screenshot("09-accounts");
    b.go(&format!("{https}/aliases"));
    b.fill("#f-alias", "team@example.org");
    b.fill("#f-targets", "bob@example.org\ndefer-me@elsewhere.example");
    b.click("form[action='/aliases/set'] button[type=submit]");
    b.wait_text(".notice.ok", "Added team@example.org");
    b.screenshot("10-aliases");

    // Mail to the alias: bob's copy arrives, the other waits in the queue.
    let mut c = Client::greeted(s.addr);
    c.cmd("EHLO sender.example");
    let r = c.send_mail(
        "someone@sender.example",
        &["team@example.org"],
        "Subject: for the team\r\n\r\nhello\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    s.wait_for_mail("bob@example.org", 1);
    s.wait_for_log("status=deferred");
    b.go(&format!("{https}/queue"));
    b.wait_text("main", "defer-me@elsewhere.example");
    b.screenshot("11-queue");
    b.click("button[value=retry]");
    b.wait_text(".notice.ok", "delivery of");
    wait_until(
        Duration::from_secs(20),
        || "the peer has nothing".to_string(),
        || (!peer.received().is_empty()).then_some(()),
    );
    b.go(&format!("{https}/queue"));
    wait_until(
        Duration::from_secs(20),
        || "the queue page still lists the message".to_string(),
        || {
            b.go(&format!("{https}/queue"));
            b.source().contains("The queue is empty").then_some(())
        },
    );
    b.screenshot("12-queue-empty");
    b.go(&format!("{https}/domains"));
    b.screenshot("13-domains");
    b.go(&format!("{https}/relays"));
    b.wait_text("main", "Mail for other domains goes directly");
    b.screenshot("16-relays");
    b.go(&format!("{https}/dns?check=1"));
    b.wait_text(".notice.bad", "need your attention");
    b.wait_text("table.records", "v=spf1 a -all");
    b.screenshot("17-dns-check");
    // The graph counts what happened; the log shows it, filtered.
    b.go(&format!("{https}/activity"));
    b.wait_text("figure.chart figcaption", "The last day");
    let last_day = b.text("table.stack tbody tr");
    // Received 1; sent 2 (bob's copy, then the other after the retry);
    // deferred 1; bounced and rejected none.
    assert_eq!(last_day, "last day 1 2 1 0 0");
    b.screenshot("14-activity");
    // What the inbound checks did: nothing here (loopback is trusted).
    let checks = b.text("main");
    assert!(checks.contains("Inbound checks"), "{checks}");
    b.go(&format!("{https}/reports"));
    b.wait_text("main", "No report has arrived yet");
    b.screenshot("14b-reports");
    b.go(&format!("{https}/log?q=status%3Ddeferred"));
    b.wait_text("pre.log", "defer-me@elsewhere.example");
    assert!(
        !b.text("pre.log").contains("status=sent"),
        "the filter keeps only matching lines"
    );
    b.screenshot("15-log");

    // Log-out ends the session.
    b.click("form.logout button");
    b.wait_url(|u| u.ends_with("/login"));
    b.go(&format!("{https}/accounts"));
    b.wait_url(|u| u.contains("/login"));
}

#[test]
fn the_certificate_page_tells_a_failed_request_and_then_the_new_certificate() {
    let dns = Peer::with(Options {
        zone: Some(ZONE),
        ..Options::default()
    });
    let (http, https) = (free_port(), free_port());
    // First the CA cannot reach the appliance on either port.
    let unreachable = || pebble::Options {
        http_port: free_port(),
        tls_port: free_port(),
        dns: dns.dns.unwrap(),
        nonce_reject: 0,
        validity: None,
        authz_reuse: 0,
    };
    let mut ca = Pebble::start(unreachable());
    let s = Server::start_with(
        &base(http, https),
        &format!(
            "{}[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
            ca.acme_config(),
            dns.dns.unwrap()
        ),
    );
    s.wait_for_log("no certificate from");
    let site = format!("https://127.0.0.1:{https}");
    let b = Driver::start();
    b.go(&format!("{site}/certificate"));
    b.log_in("owner@example.org", crate::common::PASSWORD);
    b.wait_url(|u| u.ends_with("/certificate"));
    b.wait_text(
        ".notice.bad",
        "could not confirm that mx.example.org leads here",
    );
    b.wait_text("dl.summary", "self-signed");
    b.screenshot("18-certificate-failed");

    // The router is fixed; the owner checks the DNS, which asks again at
    // once (the host name resolves, the certificate is still our own).
    ca.restart(pebble::Options {
        http_port: http,
        tls_port: https,
        ..unreachable()
    });
    b.go(&format!("{site}/dns?check=1"));
    b.wait_text(".notice.ok", "a certificate is being requested");
    wait_issued(&s, 0, Duration::from_secs(60));
    b.go(&format!("{site}/certificate"));
    b.wait_text("dl.summary", "Pebble Intermediate CA");
    b.wait_text("main", "checked over HTTP-01 (port 80)");
    b.screenshot("19-certificate");
}
