//! The wizard's questions: domains and host name, the owner's account,
//! outgoing mail. Each answer is checked (a clear message next to the field
//! and nothing kept when it is wrong) and kept in the browser's draft.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use mta_app::password::PasswordHash;
use mta_proto::address::{Address, normalise_domain};
use serde::Deserialize;

use super::{Draft, MAX_DOMAINS, MIN_STRENGTH, Owner, Relay, current, posted, wizard};
use crate::layout::Field;
use crate::{Web, forms};

// Step 2: domains and host name.

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DomainsForm {
    csrf: String,
    domains: String,
    hostname: String,
}

pub(super) async fn domains_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let (_, d) = match current(&web, &headers) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let form = DomainsForm {
        csrf: d.csrf.clone(),
        domains: d.domains.join("\n"),
        hostname: d.hostname.clone(),
    };
    domains_form(&form, None, None).into_response()
}

fn domains_form(
    form: &DomainsForm,
    domains_error: Option<&str>,
    host_error: Option<&str>,
) -> Markup {
    wizard(
        "Your domains",
        1,
        html! {
            h1 { "Your mail domains" }
            p.lead { "The part after the @ in your addresses. You must be able to change its DNS records." }
            div.card {
                form method="post" action="/setup/domains" {
                    input type="hidden" name="csrf" value=(form.csrf);
                    (Field {
                        name: "domains",
                        label: "Domains",
                        kind: "textarea",
                        value: &form.domains,
                        help: Some("One per line, for example example.org."),
                        error: domains_error,
                        autocomplete: "off",
                    }.render())
                    (Field {
                        name: "hostname",
                        label: "Host name of this server",
                        kind: "text",
                        value: &form.hostname,
                        help: Some("The name your MX record will point to. Leave it empty for mail.<your first domain>."),
                        error: host_error,
                        autocomplete: "off",
                    }.render())
                    div.actions { button type="submit" { "Continue" } }
                }
            }
        },
    )
}

pub(super) async fn domains_submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(form): Form<DomainsForm>,
) -> Response {
    let (token, mut draft) = match posted(&web, &headers, &form.csrf) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let shown = DomainsForm {
        csrf: draft.csrf.clone(),
        ..form
    };
    let domains = match parse_domains(&shown.domains) {
        Ok(d) => d,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                domains_form(&shown, Some(&e), None),
            )
                .into_response();
        }
    };
    let hostname = match parse_hostname(&shown.hostname, &domains) {
        Ok(h) => h,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                domains_form(&shown, None, Some(&e)),
            )
                .into_response();
        }
    };
    // The owner's address may no longer fit the domains.
    if draft.domains != domains {
        draft.owner = None;
    }
    draft.domains = domains;
    draft.hostname = hostname;
    web.setup.save(&token, draft);
    Redirect::to("/setup/owner").into_response()
}

fn parse_domains(text: &str) -> Result<Vec<String>, String> {
    let text = forms::text(text, "at least one domain", true)?;
    let mut out: Vec<String> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',') {
        if word.is_empty() {
            continue;
        }
        let shown = mta_proto::logsafe::escape(word);
        let domain = match normalise_domain(word) {
            Ok(d) if d.contains('.') && !d.starts_with('[') => d,
            _ => {
                return Err(format!(
                    "“{shown}” is not a domain name (like example.org)."
                ));
            }
        };
        if out.contains(&domain) {
            return Err(format!("{domain} is listed twice."));
        }
        out.push(domain);
    }
    if out.len() > MAX_DOMAINS {
        return Err(format!(
            "At most {MAX_DOMAINS} domains here; add more later in the admin pages."
        ));
    }
    Ok(out)
}

fn parse_hostname(text: &str, domains: &[String]) -> Result<String, String> {
    let text = forms::text(text, "a host name", false)?;
    if text.is_empty() {
        return Ok(format!("mail.{}", domains[0]));
    }
    match normalise_domain(text) {
        Ok(h) if h.contains('.') && !h.starts_with('[') => Ok(h),
        _ => Err(format!(
            "“{}” is not a full host name (like mail.example.org).",
            mta_proto::logsafe::escape(text)
        )),
    }
}

// Step 3: the owner.

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct OwnerForm {
    csrf: String,
    local: String,
    domain: String,
    password: String,
    confirm: String,
}

pub(super) async fn owner_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let (_, d) = match current(&web, &headers) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if d.domains.is_empty() {
        return Redirect::to("/setup/domains").into_response();
    }
    let (local, domain) = d
        .owner
        .as_ref()
        .and_then(|o| o.address.split_once('@'))
        .map(|(l, d)| (l.to_string(), d.to_string()))
        .unwrap_or_else(|| (String::new(), d.domains[0].clone()));
    let form = OwnerForm {
        csrf: d.csrf.clone(),
        local,
        domain,
        ..OwnerForm::default()
    };
    owner_form(&d, &form, &Problems::default()).into_response()
}

#[derive(Default)]
struct Problems {
    local: Option<String>,
    password: Option<String>,
    confirm: Option<String>,
}

fn owner_form(draft: &Draft, form: &OwnerForm, p: &Problems) -> Markup {
    wizard(
        "Your account",
        2,
        html! {
            h1 { "Your account" }
            p.lead { "Your own mailbox, and the login for these admin pages." }
            div.card {
                form method="post" action="/setup/owner" {
                    input type="hidden" name="csrf" value=(form.csrf);
                    (Field {
                        name: "local",
                        label: "Your address",
                        kind: "text",
                        value: &form.local,
                        help: Some("The part before the @, for example your first name."),
                        error: p.local.as_deref(),
                        autocomplete: "username",
                    }.render())
                    @if draft.domains.len() > 1 {
                        label for="f-domain" { "at" }
                        select id="f-domain" name="domain" {
                            @for d in &draft.domains {
                                option value=(d) selected[*d == form.domain] { "@" (d) }
                            }
                        }
                    } @else {
                        p.help { "@" (draft.domains[0]) }
                        input type="hidden" name="domain" value=(draft.domains[0]);
                    }
                    (Field {
                        name: "password",
                        label: "Password",
                        kind: "password",
                        value: "",
                        help: Some("Long and not used anywhere else: a few unrelated words work well. Weak passwords are refused."),
                        error: p.password.as_deref(),
                        autocomplete: "new-password",
                    }.render())
                    // Filled in as the owner types (app.js asks /setup/strength).
                    p.strength-live aria-live="polite" data-strength-for="f-password" {}
                    (Field {
                        name: "confirm",
                        label: "The password again",
                        kind: "password",
                        value: "",
                        help: None,
                        error: p.confirm.as_deref(),
                        autocomplete: "new-password",
                    }.render())
                    div.actions {
                        button type="submit" { "Continue" }
                        a.button.secondary href="/setup/domains" { "Back" }
                    }
                }
            }
        },
    )
}

/// zxcvbn's verdict on a password: its score (0–4) and what to do about
/// a weak one.
pub fn strength(password: &str, context: &[&str]) -> (u8, Option<String>) {
    let entropy = zxcvbn::zxcvbn(password, context);
    let score = entropy.score() as u8;
    let advice = entropy.feedback().map(|f| {
        let mut text = f.warning().map(|w| format!("{w} ")).unwrap_or_default();
        for s in f.suggestions() {
            text.push_str(&format!("{s} "));
        }
        text.trim().to_string()
    });
    (score, advice.filter(|a| !a.is_empty()))
}

pub fn strength_name(score: u8) -> &'static str {
    match score {
        0 | 1 => "very weak",
        2 => "weak",
        3 => "strong",
        _ => "very strong",
    }
}

pub(super) async fn owner_submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(form): Form<OwnerForm>,
) -> Response {
    let (token, mut draft) = match posted(&web, &headers, &form.csrf) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if draft.domains.is_empty() {
        return Redirect::to("/setup/domains").into_response();
    }
    let mut p = Problems::default();
    let domain = if draft.domains.contains(&form.domain) {
        form.domain.clone()
    } else {
        draft.domains[0].clone()
    };
    let address = match forms::text(&form.local, "the part before the @", true) {
        Err(e) => {
            p.local = Some(e);
            None
        }
        Ok(local) => match Address::parse(&format!("{local}@{domain}"), false) {
            Ok(a) if !local.contains('@') => Some(a),
            _ => {
                p.local =
                    Some("Use letters, digits, dots or dashes (like alice or j.smith).".into());
                None
            }
        },
    };
    let password = form.password.clone();
    let mut score = 0;
    if password.is_empty() {
        p.password = Some("Choose a password.".into());
    } else if password.len() > forms::MAX_FIELD {
        p.password = Some(format!("At most {} characters.", forms::MAX_FIELD));
    } else {
        let local = form.local.trim().to_string();
        let (s, advice) = strength(&password, &[&local, &domain, "mailbox"]);
        score = s;
        if s < MIN_STRENGTH {
            p.password = Some(format!(
                "This password is {}: it could be guessed. {}",
                strength_name(s),
                advice.unwrap_or_default()
            ));
        } else if password != form.confirm {
            p.confirm = Some("The two passwords are not the same.".into());
        }
    }
    let shown = OwnerForm {
        csrf: draft.csrf.clone(),
        domain: domain.clone(),
        password: String::new(),
        confirm: String::new(),
        ..form
    };
    let (Some(address), None, None) = (address, &p.password, &p.confirm) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            owner_form(&draft, &shown, &p),
        )
            .into_response();
    };
    if p.local.is_some() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            owner_form(&draft, &shown, &p),
        )
            .into_response();
    }
    let hash = tokio::task::spawn_blocking(move || PasswordHash::create(&password))
        .await
        .expect("hashing does not panic");
    draft.owner = Some(Owner {
        address: address.key(),
        hash: hash.as_str().to_string(),
        strength: score,
    });
    web.setup.save(&token, draft);
    Redirect::to("/setup/relay").into_response()
}

// Step 4: outgoing mail.

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RelayForm {
    csrf: String,
    /// "direct" or "relay".
    way: String,
    host: String,
    port: String,
    tls: String,
    username: String,
    password: String,
}

#[derive(Default)]
struct RelayProblems {
    host: Option<String>,
    port: Option<String>,
    login: Option<String>,
}

pub(super) async fn relay_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let (_, d) = match current(&web, &headers) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if d.owner.is_none() {
        return Redirect::to("/setup/owner").into_response();
    }
    let relay = d.relay.clone().flatten();
    let form = RelayForm {
        csrf: d.csrf.clone(),
        way: if relay.is_some() { "relay" } else { "direct" }.into(),
        host: relay.as_ref().map(|r| r.host.clone()).unwrap_or_default(),
        port: relay
            .as_ref()
            .map(|r| r.port.to_string())
            .unwrap_or_else(|| "587".into()),
        tls: if relay.as_ref().is_some_and(|r| r.implicit_tls) {
            "implicit"
        } else {
            "starttls"
        }
        .into(),
        username: relay
            .as_ref()
            .map(|r| r.username.clone())
            .unwrap_or_default(),
        password: String::new(),
    };
    relay_form(&form, &RelayProblems::default()).into_response()
}

fn relay_form(form: &RelayForm, p: &RelayProblems) -> Markup {
    wizard(
        "Outgoing mail",
        3,
        html! {
            h1 { "Outgoing mail" }
            p.lead { "Most servers deliver straight to the recipients' servers. Some Internet providers block that (port 25); then mail goes out through the provider's relay." }
            div.card {
                form method="post" action="/setup/relay" {
                    input type="hidden" name="csrf" value=(form.csrf);
                    label.check {
                        input type="radio" name="way" value="direct" checked[form.way != "relay"];
                        "Deliver directly (recommended)"
                    }
                    label.check {
                        input type="radio" name="way" value="relay" checked[form.way == "relay"];
                        "Send through my provider's relay"
                    }
                    p.help { "The relay's details are in your provider's help pages (“SMTP server”, “smarthost”)." }
                    (Field { name: "host", label: "Relay host", kind: "text", value: &form.host,
                             help: Some("For example smtp.provider.example."), error: p.host.as_deref(), autocomplete: "off" }.render())
                    (Field { name: "port", label: "Port", kind: "number", value: &form.port,
                             help: Some("587 with STARTTLS, or 465 with TLS from the start."), error: p.port.as_deref(), autocomplete: "off" }.render())
                    label for="f-tls" { "Encryption" }
                    select id="f-tls" name="tls" {
                        option value="starttls" selected[form.tls != "implicit"] { "STARTTLS (usually port 587)" }
                        option value="implicit" selected[form.tls == "implicit"] { "TLS from the start (usually port 465)" }
                    }
                    (Field { name: "username", label: "User name at the relay", kind: "text", value: &form.username,
                             help: Some("Leave both empty if the relay needs no login."), error: p.login.as_deref(), autocomplete: "off" }.render())
                    (Field { name: "password", label: "Password at the relay", kind: "password", value: "",
                             help: None, error: None, autocomplete: "off" }.render())
                    div.actions {
                        button type="submit" { "Continue" }
                        a.button.secondary href="/setup/owner" { "Back" }
                    }
                }
            }
        },
    )
}

pub(super) async fn relay_submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(form): Form<RelayForm>,
) -> Response {
    let (token, mut draft) = match posted(&web, &headers, &form.csrf) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if form.way != "relay" {
        draft.relay = Some(None);
        web.setup.save(&token, draft);
        return Redirect::to("/setup/certificate").into_response();
    }
    let mut p = RelayProblems::default();
    let host = match forms::text(&form.host, "the relay's host name", true)
        .and_then(mta_app::relays::checked_host)
    {
        Ok(h) => Some(h),
        Err(e) => {
            p.host = Some(e);
            None
        }
    };
    let port = match mta_app::relays::checked_port(&form.port) {
        Ok(n) => Some(n),
        Err(e) => {
            p.port = Some(e);
            None
        }
    };
    let username = form.username.trim().to_string();
    let password = form.password.clone();
    // A password already given is kept when only other fields change.
    let password = if password.is_empty() {
        draft
            .relay
            .clone()
            .flatten()
            .filter(|r| r.username == username)
            .map(|r| r.password)
            .unwrap_or_default()
    } else {
        password
    };
    p.login = mta_app::relays::checked_login(&username, &password, forms::MAX_FIELD).err();
    let (Some(host), Some(port), None) = (host, port, &p.login) else {
        let shown = RelayForm {
            csrf: draft.csrf.clone(),
            password: String::new(),
            ..form
        };
        return (StatusCode::UNPROCESSABLE_ENTITY, relay_form(&shown, &p)).into_response();
    };
    draft.relay = Some(Some(Relay {
        host,
        port,
        implicit_tls: form.tls == "implicit",
        username,
        password,
    }));
    web.setup.save(&token, draft);
    Redirect::to("/setup/certificate").into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct StrengthForm {
    csrf: String,
    local: String,
    domain: String,
    password: String,
}

/// The strength of a password being typed, as the owner step will judge
/// it: `<score> <words>` in plain text, for app.js.
pub(super) async fn strength_check(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(f): Form<StrengthForm>,
) -> Response {
    let Some((_, draft)) = web.setup.draft(&headers) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    if !forms::same(&f.csrf, &draft.csrf) || f.password.len() > forms::MAX_FIELD {
        return StatusCode::FORBIDDEN.into_response();
    }
    let (score, _) = strength(&f.password, &[f.local.trim(), &f.domain, "mailbox"]);
    let verdict = if score < MIN_STRENGTH {
        "too weak: it could be guessed"
    } else {
        "strong enough"
    };
    format!("{score} Strength: {} ({verdict})", strength_name(score)).into_response()
}
