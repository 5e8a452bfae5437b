//! The certificate: what every listener presents (names, issuer, expiry),
//! how the last request to the CA went (which challenge worked, the error,
//! names left out, the next try), a button to ask now, and turning
//! Let's Encrypt on or off.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use mta_app::acme::{Asked, Choice, when};
use serde::Deserialize;

use super::{admin_page, change, csrf, guard, guard_post};
use crate::layout::{Field, notice};
use crate::{Conn, Web};

const HERE: &str = "/certificate";
/// Where the CA's terms are (Let's Encrypt's Subscriber Agreement).
const TERMS: &str = "https://letsencrypt.org/repository/";

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(HERE, get(page))
        .route("/certificate/renew", post(renew))
        .route("/certificate/acme", post(choose))
}

async fn page(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
) -> Response {
    let session = match guard(&web, &conn, &headers, HERE) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let report = web.acme.report();
    let busy = web.acme.busy();
    let config = web.settings.get().config.clone();
    let owner = config
        .owner()
        .map(|a| a.address.to_string())
        .unwrap_or_default();
    let s = &report.status;
    admin_page(
        "Certificate",
        HERE,
        &session,
        html! {
            h1 { "Certificate" }
            p.lead { "The certificate SMTP (25, 465, 587) and this web (443) present. With Let's Encrypt it is renewed by itself, about a month before it ends." }
            @if let Some(w) = &report.warning { (notice("bad", &format!("Warning: {w}."))) }
            div.card {
                @match &report.certificate {
                    Some(c) => {
                        dl.summary {
                            dt { "Names" } dd { @for n in &c.names { code { (n) } " " } }
                            dt { "Issuer" } dd {
                                @if c.issued { (c.issuer) } @else {
                                    "this appliance itself (self-signed): mail programs and browsers warn until a CA's certificate arrives"
                                }
                            }
                            dt { "Valid" } dd { (when(c.not_before)) " to " strong { (when(c.not_after)) } }
                            dt { "SHA-256" } dd { code.fingerprint { (c.fingerprint) } }
                        }
                    }
                    None => { p { "The certificate cannot be read." } }
                }
            }
            @match &report.directory {
                Some(directory) => div.card {
                    h2 { "Let's Encrypt" }
                    @if busy { (notice("ok", "A certificate is being requested now; reload this page in a minute.")) }
                    @if let Some(e) = &s.last_error { (notice("bad", &format!("The last request failed: {e}"))) }
                    dl.summary {
                        dt { "Directory" } dd { code { (directory) } }
                        dt { "Last request" } dd { (s.last_attempt.map_or("not yet".into(), when)) }
                        @if let Some(at) = s.last_success {
                            dt { "Last issued" } dd { (when(at)) ", checked over " (s.challenge.map_or("?", |c| c.name())) }
                        }
                        @if let Some(next) = report.next {
                            dt { "Next request" } dd { (when(next)) }
                        }
                    }
                    @if !s.left_out.is_empty() {
                        p { "Left out of the certificate (asked for again later; publish their DNS records):" }
                        ul { @for (name, why) in &s.left_out { li { code { (name) } ": " (why) } } }
                    }
                    p.help { "The CA checks that each name leads here: over port 80 (HTTP-01), or over port 443 (TLS-ALPN-01) when your router forwards only that one." }
                    div.actions {
                        form.inline method="post" action="/certificate/renew" {
                            (csrf(&session))
                            button type="submit" { "Request a certificate now" }
                        }
                        form.inline method="post" action="/certificate/acme" {
                            (csrf(&session))
                            input type="hidden" name="on" value="no";
                            button.secondary type="submit" { "Turn off" }
                        }
                    }
                },
                None => div.card {
                    h2 { "Let's Encrypt" }
                    @if config.tls.is_some() {
                        p { "The configuration names certificate files of its own ([tls]); they are used instead." }
                    } @else {
                        p { "Get a certificate browsers and mail programs trust, free, renewed by itself." }
                        form method="post" action="/certificate/acme" {
                            (csrf(&session))
                            input type="hidden" name="on" value="yes";
                            (Field { name: "contact", label: "Your e-mail address (optional)", kind: "email", value: &owner,
                                     help: Some("Let's Encrypt may write to it about your account. Expiry warnings come from this appliance: this page and its log."), error: None, autocomplete: "email" }.render())
                            label.check {
                                input type="checkbox" name="terms" value="yes";
                                "I accept Let's Encrypt's " a href=(TERMS) { "Subscriber Agreement" }
                            }
                            label for="f-directory" { "Certificates from" }
                            select id="f-directory" name="directory" {
                                option value="production" { "Let's Encrypt" }
                                option value="staging" { "Let's Encrypt staging (for testing: not trusted)" }
                            }
                            div.actions { button type="submit" { "Turn on" } }
                        }
                    }
                },
            }
        },
    )
}

async fn renew(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<crate::forms::CsrfForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    let (ok, text) = match web.acme.renew_now() {
        Asked::Started => (
            true,
            "A certificate is being requested; this page shows the outcome in a minute.",
        ),
        Asked::AlreadyUnderWay => (
            true,
            "A request is already under way; this page shows the outcome in a minute.",
        ),
        Asked::Off => (false, "Let's Encrypt is off: turn it on first."),
    };
    web.sessions.flash(&headers, ok, text.into());
    Redirect::to(HERE).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AcmeForm {
    csrf: String,
    on: String,
    contact: String,
    terms: String,
    directory: String,
}

async fn choose(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<AcmeForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    let on = f.on == "yes";
    if on && f.terms != "yes" {
        web.sessions.flash(
            &headers,
            false,
            "Nothing was changed: certificates need Let's Encrypt's Subscriber Agreement accepted."
                .into(),
        );
        return Redirect::to(HERE).into_response();
    }
    let directory = if f.directory == "staging" {
        "staging"
    } else {
        "production"
    };
    let acme = web.acme.clone();
    let answer = change(&web, &headers, HERE, move |path| {
        let contact = crate::forms::text(&f.contact, "the contact address", false)
            .map_err(anyhow::Error::msg)?;
        mta_app::config::edit(path, |doc| {
            mta_app::acme::choose(
                doc,
                if on {
                    Choice::On {
                        contact: Some(contact),
                        directory,
                    }
                } else {
                    Choice::Off
                },
            )
        })
    })
    .await;
    if on {
        // The reload has happened: the request goes to the new directory.
        let _ = acme.renew_now();
    }
    answer
}
