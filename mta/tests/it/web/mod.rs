//! The web over real HTTP and HTTPS: the first-boot wizard behind the setup
//! code, the configuration it writes, the owner's login and the DNS page.

use crate::common::http::{Browser, Page};
use crate::common::{Client, FIRST_BOOT_CONFIG, Server};

mod clients;

const PASSWORD: &str = "correct horse battery staple 42";

struct Web {
    s: Server,
    b: Browser,
}

impl Web {
    fn start() -> Web {
        let s = Server::start_with(FIRST_BOOT_CONFIG, "");
        let b = Browser::new(&s, "mailbox.local");
        Web { s, b }
    }

    fn http(&mut self, path: &str) -> Page {
        let addr = self.s.listeners["http"];
        self.b.get(addr, false, path)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let addr = self.s.listeners["http"];
        self.b.post(addr, false, path, form)
    }

    fn https(&mut self, path: &str) -> Page {
        let addr = self.s.listeners["https"];
        self.b.get(addr, true, path)
    }

    fn post_https(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let addr = self.s.listeners["https"];
        self.b.post(addr, true, path, form)
    }

    fn code(&self) -> String {
        std::fs::read_to_string(self.s.data().join("setup-code"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The wizard from the code to the summary, with `domains`.
    fn through_the_wizard(&mut self, domains: &str) -> String {
        let code = self.code();
        let r = self.post("/setup", &[("code", &code.to_lowercase())]);
        assert_eq!((r.status, r.location()), (303, "/setup/domains"), "{r:?}");
        let csrf = self.http("/setup/domains").input("csrf");
        let r = self.post(
            "/setup/domains",
            &[("csrf", &csrf), ("domains", domains), ("hostname", "")],
        );
        assert_eq!(r.location(), "/setup/owner", "{r:?}");
        let r = self.post(
            "/setup/owner",
            &[
                ("csrf", &csrf),
                ("local", "owner"),
                ("domain", "example.org"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        );
        assert_eq!(r.location(), "/setup/relay", "{r:?}");
        let r = self.post("/setup/relay", &[("csrf", &csrf), ("way", "direct")]);
        assert_eq!(r.location(), "/setup/certificate", "{r:?}");
        // Let's Encrypt is the default, and needs its terms accepted.
        let page = self.http("/setup/certificate");
        assert!(
            page.body.contains("value=\"owner@example.org\""),
            "{}",
            page.body
        );
        let r = self.post(
            "/setup/certificate",
            &[
                ("csrf", &csrf),
                ("way", "letsencrypt"),
                ("contact", "owner@example.org"),
            ],
        );
        assert_eq!(r.status, 422, "{r:?}");
        assert!(
            r.body.contains("Accept the Subscriber Agreement"),
            "{}",
            r.body
        );
        let r = self.post(
            "/setup/certificate",
            &[("csrf", &csrf), ("way", "self-signed")],
        );
        assert_eq!(r.location(), "/setup/summary", "{r:?}");
        csrf
    }
}

#[test]
fn the_wizard_does_nothing_without_the_setup_code() {
    let mut w = Web::start();
    let code_file = w.s.data().join("setup-code");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&code_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the code is the owner's only");
    assert!(
        w.code().len() == 9 && w.code().as_bytes()[4] == b'-',
        "{}",
        w.code()
    );

    let r = w.http("/");
    assert_eq!((r.status, r.location()), (303, "/setup"));
    // Later steps without the code go back to the first.
    let r = w.http("/setup/domains");
    assert_eq!(r.location(), "/setup");
    let r = w.post(
        "/setup/domains",
        &[("csrf", ""), ("domains", "evil.example")],
    );
    assert_eq!(r.location(), "/setup");
    let r = w.post("/setup/finish", &[("csrf", "")]);
    assert_eq!(r.location(), "/setup");

    let r = w.post("/setup", &[("code", "AAAA-AAAA")]);
    assert_eq!(r.status, 403);
    assert!(
        r.texts("error").iter().any(|e| e.contains("not the code")),
        "{:?}",
        r.texts("error")
    );
    assert!(w.b.cookie("mailbox_setup").is_none());
    let config = std::fs::read_to_string(&w.s.config).unwrap();
    assert!(config.contains("postmaster@mailbox.local") && !config.contains("admin"));
}

#[test]
fn wrong_setup_codes_are_limited_per_source() {
    let mut w = Web::start();
    for _ in 0..5 {
        assert_eq!(w.post("/setup", &[("code", "WRONG-CODE")]).status, 403);
    }
    // Now even the right code waits: the source is over its limit.
    let code = w.code();
    let r = w.post("/setup", &[("code", &code)]);
    assert_eq!(r.status, 429, "{r:?}");
    assert!(
        r.texts("error")
            .iter()
            .any(|e| e.contains("Too many wrong codes"))
    );
}

#[test]
fn bad_answers_are_explained_and_change_nothing() {
    let mut w = Web::start();
    let code = w.code();
    w.post("/setup", &[("code", &code)]);
    let csrf = w.http("/setup/domains").input("csrf");
    let r = w.post(
        "/setup/domains",
        &[
            ("csrf", &csrf),
            ("domains", "not a domain!"),
            ("hostname", ""),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(
        r.texts("error")[0].contains("is not a domain name"),
        "{:?}",
        r.texts("error")
    );
    let r = w.post(
        "/setup/domains",
        &[("csrf", &csrf), ("domains", "example.org\nexample.org")],
    );
    assert!(r.texts("error")[0].contains("listed twice"));
    let r = w.post("/setup/domains", &[("csrf", &csrf), ("domains", "")]);
    assert!(r.texts("error")[0].contains("Enter at least one domain"));
    let r = w.post(
        "/setup/domains",
        &[("csrf", "stale"), ("domains", "example.org")],
    );
    assert_eq!(r.status, 400, "a missing or stale CSRF token");
    let r = w.post(
        "/setup/domains",
        &[
            ("csrf", &csrf),
            ("domains", "example.org"),
            ("hostname", "mail.example.org"),
        ],
    );
    assert_eq!(r.location(), "/setup/owner");

    let owner = |password: &str, confirm: &str| {
        vec![
            ("local".to_string(), "owner".to_string()),
            ("password".into(), password.into()),
            ("confirm".into(), confirm.into()),
        ]
    };
    for (form, expected) in [
        (owner("password", "password"), "very weak"),
        (
            owner("example.org2026", "example.org2026"),
            "could be guessed",
        ),
        (owner(PASSWORD, "something else"), "not the same"),
        (owner("", ""), "Choose a password"),
    ] {
        let mut fields: Vec<(&str, &str)> = vec![("csrf", &csrf), ("domain", "example.org")];
        fields.extend(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let r = w.post("/setup/owner", &fields);
        assert_eq!(r.status, 422, "{fields:?}");
        assert!(
            r.texts("error").iter().any(|e| e.contains(expected)),
            "{expected}: {:?}",
            r.texts("error")
        );
    }
    let r = w.post(
        "/setup/owner",
        &[
            ("csrf", &csrf),
            ("local", "a b@c"),
            ("domain", "example.org"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    );
    assert!(
        r.texts("error")[0].contains("Use letters"),
        "{:?}",
        r.texts("error")
    );

    let r = w.post(
        "/setup/owner",
        &[
            ("csrf", &csrf),
            ("local", "owner"),
            ("domain", "example.org"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    );
    assert_eq!(r.location(), "/setup/relay");
    let r = w.post(
        "/setup/relay",
        &[
            ("csrf", &csrf),
            ("way", "relay"),
            ("host", "smtp.provider.example"),
            ("port", "99999"),
            ("username", "me"),
            ("password", ""),
        ],
    );
    assert_eq!(r.status, 422);
    let errors = r.texts("error");
    assert!(
        errors.iter().any(|e| e.contains("port number")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("both the user name and the password")),
        "{errors:?}"
    );
    let config = std::fs::read_to_string(&w.s.config).unwrap();
    assert!(
        !config.contains("example.org"),
        "nothing is written before the last step"
    );
}

#[test]
fn the_wizard_sets_the_appliance_up_and_the_owner_logs_in() {
    let mut w = Web::start();
    let csrf = w.through_the_wizard("example.org\nExample.NET");
    let r = w.post(
        "/setup/certificate",
        &[
            ("csrf", &csrf),
            ("way", "letsencrypt"),
            ("contact", "owner@example.org"),
            ("terms", "yes"),
        ],
    );
    assert_eq!(r.location(), "/setup/summary", "{r:?}");
    let summary = w.http("/setup/summary");
    assert!(
        summary.body.contains("example.org, example.net")
            && summary.body.contains("owner@example.org")
            && summary
                .body
                .contains("from Let's Encrypt, contact owner@example.org"),
        "{}",
        summary.body
    );
    // Over plain HTTP the last step says what comes next, with a link to
    // log in over HTTPS.
    let r = w.post("/setup/finish", &[("csrf", &csrf)]);
    assert_eq!(r.status, 200, "{r:?}");
    let https = w.s.listeners["https"];
    let next = format!("https://mailbox.local:{}/login?next=/dns", https.port());
    assert!(r.body.contains(&format!("href=\"{next}\"")), "{}", r.body);
    assert!(r.texts("notice ok")[0].contains("configuration is saved"));

    // The configuration: the owner's, valid, written whole.
    let config = std::fs::read_to_string(&w.s.config).unwrap();
    assert!(
        config.contains("hostname = \"mail.example.org\""),
        "{config}"
    );
    assert!(
        config.contains("domains = [\"example.org\", \"example.net\"]"),
        "{config}"
    );
    assert!(
        config.contains("admin = true") && !config.contains("mailbox.local\""),
        "{config}"
    );
    assert!(
        config.contains("[acme]\ncontact = \"owner@example.org\"\nterms_accepted = true"),
        "{config}"
    );
    let check = w.s.mta("check-config", &[]);
    assert!(check.status.success(), "{check:?}");
    assert!(!w.s.data().join("setup-code").exists(), "the code is spent");
    assert!(w.s.data().join("dkim/example.net").is_dir());

    // Claimed: the wizard is gone, plain HTTP leads to HTTPS.
    assert_eq!(w.http("/setup").location(), "/");
    assert!(w.http("/").location().starts_with("https://"));
    assert!(w.http("/dns").location().starts_with("https://"));
    let code = "AAAA-AAAA";
    assert_eq!(w.post("/setup", &[("code", code)]).location(), "/");

    // The owner logs in; a wrong password does not.
    assert_eq!(w.https("/dns").location(), "/login?next=/dns");
    let r = w.post_https(
        "/login",
        &[
            ("address", "owner@example.org"),
            ("password", "wrong"),
            ("next", "/dns"),
        ],
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Wrong address or password"));
    let r = w.post_https(
        "/login",
        &[
            ("address", "owner@example.org"),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
        ],
    );
    assert_eq!(
        (r.status, r.location()),
        (303, "/dns"),
        "only paths on this site"
    );
    let cookie = r.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let dns = w.https("/dns");
    assert_eq!(dns.status, 200);
    for record in [
        "_dmarc.example.org",
        "._domainkey.example.net",
        "10 mail.example.org.",
        "v=spf1 mx -all",
        "_submissions._tcp.example.org",
    ] {
        assert!(
            dns.body.contains(record),
            "{record} missing from the DNS page"
        );
    }
    let csp = dns.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let zone = w.https("/dns/zone/example.org");
    assert!(
        zone.body
            .contains("example.org. 3600 IN MX 10 mail.example.org."),
        "{}",
        zone.body
    );

    // The server runs on the new configuration: mail for the owner arrives.
    let mut c = Client::greeted(w.s.addr);
    c.cmd("EHLO sender.example");
    let r = c.send_mail(
        "someone@sender.example",
        &["owner@example.org"],
        "Subject: hello\r\n\r\nwelcome\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(w.s.wait_for_mail("owner@example.org", 1).len(), 1);

    // Log-out needs the session's CSRF token, then the session is gone.
    let token = dns.input("csrf");
    let r = w.post_https("/logout", &[("csrf", &token)]);
    assert_eq!(r.location(), "/login");
    assert_eq!(w.https("/dns").location(), "/login?next=/dns");
}

/// Some records right, some missing, some wrong (mx.example.org is the
/// host name of the test configuration).
const CHECK_ZONE: &str = "\
example.org. 60 IN MX 10 {host}.
{host}. 60 IN A 127.0.0.1
example.org. 60 IN TXT \"v=spf1 a -all\"
_dmarc.example.org. 60 IN TXT \"v=DMARC1; p=quarantine; rua=mailto:alice@example.org\"
autoconfig.example.org. 60 IN CNAME {host}.
_submissions._tcp.example.org. 60 IN SRV 0 1 465 {host}.
_submission._tcp.example.org. 60 IN SRV 0 1 25 elsewhere.example.
1.0.0.127.in-addr.arpa. 60 IN PTR localhost.
";

#[test]
fn the_dns_check_tells_right_missing_and_wrong_records_apart() {
    let zone = CHECK_ZONE.replace("{host}", "mx.example.org");
    let peer = crate::common::peer::Peer::with(crate::common::peer::Options {
        zone: Some(&zone),
        ..Default::default()
    });
    let s = Server::start(&format!(
        "[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.dns.unwrap()
    ));
    let out = s.mta("dns", &["check", "example.org"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "something is wrong: {text}");
    let verdict = |kind: &str, name: &str| {
        text.lines()
            .find(|l| {
                l.split_whitespace().nth(1) == Some(kind)
                    && l.split_whitespace().nth(2) == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} {name} in {text}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(verdict("MX", "example.org"), "ok");
    assert_eq!(verdict("A", "mx.example.org"), "ok");
    assert_eq!(verdict("TXT", "example.org"), "wrong");
    assert_eq!(verdict("TXT", "_dmarc.example.org"), "ok");
    assert_eq!(verdict("CNAME", "autoconfig.example.org"), "ok");
    assert_eq!(verdict("CNAME", "autodiscover.example.org"), "missing");
    assert_eq!(verdict("SRV", "_submissions._tcp.example.org"), "ok");
    assert_eq!(verdict("SRV", "_submission._tcp.example.org"), "wrong");
    assert_eq!(verdict("CAA", "example.org"), "missing");
    assert_eq!(verdict("PTR", "(your"), "wrong");
    assert!(text.contains("found:    \"v=spf1 a -all\""), "{text}");
    assert!(text.contains("expected: v=spf1 mx -all"), "{text}");
    assert!(text.contains("found:    127.0.0.1 → localhost."), "{text}");
    // Both DKIM records are missing, and are named.
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("missing  TXT") && l.contains("._domainkey.example.org"))
            .count(),
        2,
        "{text}"
    );
}

impl Web {
    /// A claimed appliance (example.org, owner@example.org) with the owner
    /// logged in over HTTPS; `extra` goes into the configuration.
    fn claimed(extra: &str) -> Web {
        let s = Server::start_with(FIRST_BOOT_CONFIG, extra);
        let b = Browser::new(&s, "mailbox.local");
        let mut w = Web { s, b };
        let csrf = w.through_the_wizard("example.org");
        w.post("/setup/finish", &[("csrf", &csrf)]);
        let r = w.post_https(
            "/login",
            &[
                ("address", "owner@example.org"),
                ("password", PASSWORD),
                ("next", "/accounts"),
            ],
        );
        assert_eq!(r.location(), "/accounts", "{r:?}");
        w
    }

    /// The session's CSRF token (from the log-out form of any admin page).
    fn csrf(&mut self) -> String {
        self.https("/accounts").input("csrf")
    }

    /// POSTs `form` to an admin `path`; returns the flash message of the
    /// page it leads to (ok, text).
    fn act(&mut self, path: &str, form: &[(&str, &str)]) -> (bool, String) {
        let r = self.post_https(path, form);
        assert_eq!(r.status, 303, "{r:?}");
        let page = self.https(r.location());
        let ok = page.texts("notice ok");
        let bad = page.texts("notice bad");
        match (ok.first(), bad.first()) {
            (Some(t), None) => (true, t.clone()),
            (None, Some(t)) => (false, t.clone()),
            _ => panic!("no single message after {path}: {}", page.body),
        }
    }
}

#[test]
fn the_admin_pages_change_accounts_and_aliases_and_refuse_bad_input() {
    let mut w = Web::claimed("");
    let csrf = w.csrf();
    let (ok, text) = w.act(
        "/accounts/add",
        &[
            ("csrf", &csrf),
            ("address", "bob@example.org"),
            ("password", "bob"),
        ],
    );
    assert!(!ok && text.contains("could be guessed"), "{text}");
    let (ok, text) = w.act(
        "/accounts/add",
        &[
            ("csrf", "stale"),
            ("address", "bob@example.org"),
            ("password", PASSWORD),
        ],
    );
    assert!(!ok && text.contains("nothing was changed"), "{text}");
    let (ok, text) = w.act(
        "/accounts/add",
        &[
            ("csrf", &csrf),
            ("address", "bob@elsewhere.example"),
            ("password", PASSWORD),
        ],
    );
    assert!(
        !ok && text.contains("is not in one of the domains"),
        "{text}"
    );
    assert!(
        !std::fs::read_to_string(&w.s.config)
            .unwrap()
            .contains("bob@")
    );
    let (ok, text) = w.act(
        "/accounts/add",
        &[
            ("csrf", &csrf),
            ("address", "bob@example.org"),
            ("password", PASSWORD),
        ],
    );
    assert!(ok && text.contains("Added bob@example.org"), "{text}");
    let (ok, text) = w.act(
        "/accounts/add",
        &[
            ("csrf", &csrf),
            ("address", "bob@example.org"),
            ("password", PASSWORD),
        ],
    );
    assert!(!ok && text.contains("already exists"), "{text}");

    let (ok, text) = w.act(
        "/aliases/set",
        &[
            ("csrf", &csrf),
            ("alias", "team@example.org"),
            ("targets", "nobody@example.org"),
        ],
    );
    assert!(
        !ok && text.contains("neither an account nor an alias"),
        "{text}"
    );
    let (ok, text) = w.act(
        "/aliases/set",
        &[
            ("csrf", &csrf),
            ("alias", "team@example.org"),
            ("targets", "bob@example.org, owner@example.org"),
        ],
    );
    assert!(ok, "{text}");
    let (ok, _) = w.act(
        "/aliases/set",
        &[
            ("csrf", &csrf),
            ("alias", "@example.org"),
            ("targets", "owner@example.org"),
        ],
    );
    assert!(ok, "a catch-all");
    let aliases = w.https("/aliases");
    assert!(aliases.body.contains("team@example.org") && aliases.body.contains("@example.org"));
    assert!(
        w.s.mta("check-config", &[]).status.success(),
        "the file stays valid"
    );

    // Mail to the alias reaches both accounts.
    let mut c = Client::greeted(w.s.addr);
    c.cmd("EHLO sender.example");
    assert_eq!(
        c.send_mail(
            "x@sender.example",
            &["team@example.org"],
            "Subject: team\r\n\r\nhi\r\n"
        )
        .code,
        250
    );
    w.s.wait_for_mail("bob@example.org", 1);
    w.s.wait_for_mail("owner@example.org", 1);

    // Without the catch-all, an alias that names bob keeps bob.
    w.act(
        "/aliases/delete",
        &[("csrf", &csrf), ("alias", "@example.org")],
    );
    // Deleting asks first; the owner cannot delete itself.
    let confirm = w.https("/accounts?delete=bob@example.org");
    assert!(confirm.body.contains("Delete bob@example.org?"));
    let (ok, text) = w.act(
        "/accounts/delete",
        &[("csrf", &csrf), ("address", "owner@example.org")],
    );
    assert!(!ok && text.contains("logged in with"), "{text}");
    let (ok, text) = w.act(
        "/accounts/delete",
        &[("csrf", &csrf), ("address", "bob@example.org")],
    );
    assert!(
        !ok && text.contains("neither an account nor an alias"),
        "the alias still names bob: {text}"
    );
    w.act(
        "/aliases/delete",
        &[("csrf", &csrf), ("alias", "team@example.org")],
    );
    let (ok, text) = w.act(
        "/accounts/delete",
        &[("csrf", &csrf), ("address", "bob@example.org")],
    );
    assert!(ok && text.contains("Deleted bob@example.org"), "{text}");

    // Senders whose mail never goes to the owner's Junk folder.
    let allow = |w: &mut Web, senders: &str| {
        w.act(
            "/accounts/allow",
            &[
                ("csrf", &csrf),
                ("address", "owner@example.org"),
                ("senders", senders),
            ],
        )
    };
    let (ok, text) = allow(&mut w, "Friend@Example.NET, example.com");
    assert!(ok && text.contains("allows 2 sender(s)"), "{text}");
    let page = w.https("/accounts");
    assert_eq!(page.input("senders"), "friend@example.net, example.com");
    let (ok, text) = allow(&mut w, "friend@example.net, not a sender!");
    assert!(
        !ok && text.contains("is not an address or a domain"),
        "{text}"
    );
    assert_eq!(
        w.https("/accounts").input("senders"),
        "friend@example.net, example.com",
        "a refused list changes nothing"
    );
    let (ok, text) = allow(&mut w, "");
    assert!(ok && text.contains("no allowed senders"), "{text}");
}

#[test]
fn a_deferred_message_shows_in_the_queue_page_and_goes_when_retried() {
    let peer = crate::common::peer::Peer::with(crate::common::peer::Options::default());
    let mut w = Web::claimed(&format!(
        "[[transports]]\nrecipient = \"elsewhere.example\"\nvia = \"smtp:127.0.0.1:{}\"\n",
        peer.smtp
    ));
    let csrf = w.csrf();
    let (ok, text) = w.act(
        "/aliases/set",
        &[
            ("csrf", &csrf),
            ("alias", "friend@example.org"),
            ("targets", "defer-me@elsewhere.example"),
        ],
    );
    assert!(ok, "{text}");
    let mut c = Client::greeted(w.s.addr);
    c.cmd("EHLO sender.example");
    assert_eq!(
        c.send_mail(
            "x@sender.example",
            &["friend@example.org"],
            "Subject: later\r\n\r\nhi\r\n"
        )
        .code,
        250
    );
    w.s.wait_for_log("status=deferred");
    let queue = w.https("/queue");
    assert!(
        queue.body.contains("friend@example.org") && queue.body.contains("waiting"),
        "{}",
        queue.body
    );
    let id = queue
        .body
        .split("href=\"/queue/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let shown = w.https(&format!("/queue/{id}"));
    assert!(shown.body.contains("Subject: later"), "{}", shown.body);
    let (ok, text) = w.act(
        "/queue/act",
        &[("csrf", &csrf), ("id", &id), ("action", "explode")],
    );
    assert!(!ok, "{text}");
    let (ok, text) = w.act(
        "/queue/act",
        &[("csrf", &csrf), ("id", &id), ("action", "retry")],
    );
    assert!(ok && text.contains("delivery of"), "{text}");
    w.s.wait_queue_empty(std::time::Duration::from_secs(20));
    assert_eq!(peer.received().len(), 1);
    assert!(w.https("/queue").body.contains("The queue is empty"));
}

#[test]
fn outgoing_mail_can_go_through_a_relay_and_back_to_direct() {
    let mut w = Web::claimed("");
    let csrf = w.csrf();
    let relay = |port: &'static str, user: &'static str| {
        vec![
            ("name", "provider"),
            ("host", "smtp.provider.example"),
            ("port", port),
            ("tls", "starttls"),
            ("username", user),
            ("password", if user.is_empty() { "" } else { "secret" }),
        ]
    };
    let mut form = relay("0", "me");
    form.push(("csrf", &csrf));
    let (ok, text) = w.act("/relays/set", &form);
    assert!(!ok && text.contains("not a port number"), "{text}");
    let mut form = relay("587", "me");
    form[5] = ("password", "");
    form.push(("csrf", &csrf));
    let (ok, text) = w.act("/relays/set", &form);
    assert!(
        !ok && text.contains("both the user name and the password"),
        "{text}"
    );
    let mut form = relay("587", "me");
    form.push(("csrf", &csrf));
    let (ok, text) = w.act("/relays/set", &form);
    assert!(ok && text.contains("goes through provider"), "{text}");
    let config = std::fs::read_to_string(&w.s.config).unwrap();
    assert!(
        config.contains("smarthost = \"provider\"") && config.contains("username = \"me\""),
        "{config}"
    );
    assert!(
        w.https("/dns")
            .body
            .contains("v=spf1 mx a:smtp.provider.example -all"),
        "the SPF record names the relay"
    );
    let (ok, text) = w.act("/relays/direct", &[("csrf", &csrf)]);
    assert!(ok && text.contains("directly"), "{text}");
    let (ok, _) = w.act("/relays/remove", &[("csrf", &csrf), ("name", "provider")]);
    assert!(ok);
    assert!(
        !std::fs::read_to_string(&w.s.config)
            .unwrap()
            .contains("provider")
    );
}

#[test]
fn the_dns_page_shows_the_same_verdicts() {
    // The wizard names the host mail.example.org.
    let zone = CHECK_ZONE.replace("{host}", "mail.example.org");
    let peer = crate::common::peer::Peer::with(crate::common::peer::Options {
        zone: Some(&zone),
        ..Default::default()
    });
    let mut w = Web::claimed(&format!(
        "[outbound]\nnameservers = [\"127.0.0.1:{}\"]\n",
        peer.dns.unwrap()
    ));
    let page = w.https("/dns?check=1");
    assert_eq!(page.status, 200);
    let row = |name: &str, kind: &str| -> String {
        let needle = format!("<code>{name}</code></td><td>{kind}</td>");
        let at = page
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no {kind} {name} row"));
        let start = page.body[..at].rfind("<tr>").unwrap();
        let end = at + page.body[at..].find("</tr>").unwrap();
        page.body[start..end].to_string()
    };
    let badge = |row: &str| {
        row.split("class=\"badge ")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(badge(&row("example.org", "MX")), "ok");
    let spf = row("example.org", "TXT");
    assert_eq!(badge(&spf), "wrong");
    assert!(
        spf.contains("v=spf1 a -all") && spf.contains("Change it"),
        "found and what to do: {spf}"
    );
    assert_eq!(badge(&row("autodiscover.example.org", "CNAME")), "missing");
    assert_eq!(badge(&row("_dmarc.example.org", "TXT")), "ok");
    assert!(page.texts("notice bad")[0].contains("need your attention"));
}

#[test]
fn with_an_issued_certificate_plain_http_only_leads_to_https() {
    let ca = crate::common::peer::TestCa::new();
    let (cert, key) = ca.issue(&["mail.example.org"]);
    let s = Server::start_with(
        FIRST_BOOT_CONFIG,
        &format!(
            "[tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let http = s.listeners["http"];
    let mut b = crate::common::http::Browser::new(&s, "mailbox.local");
    let https = s.listeners["https"].port();
    for path in ["/", "/setup", "/mail/config-v1.1.xml"] {
        let r = b.get(http, false, path);
        assert_eq!(
            (r.status, r.location()),
            (303, format!("https://mailbox.local:{https}{path}").as_str()),
            "{path}"
        );
    }
    // What must stay on port 80: ACME's challenges (none waits here) and
    // the MTA-STS policy.
    let r = b.get(http, false, "/.well-known/acme-challenge/some-token");
    assert_eq!(r.status, 404, "not redirected: {r:?}");
    let r = b.get(http, false, "/.well-known/mta-sts.txt");
    assert_eq!(r.status, 200);
    assert!(
        r.body.starts_with("version: STSv1\r\nmode: testing\r\n"),
        "{:?}",
        r.body
    );
}
