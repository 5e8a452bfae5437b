//! The wizard's certificate step: Let's Encrypt on (the default: the
//! owner's address as contact, the Subscriber Agreement accepted here) or
//! not (the self-signed certificate stays).

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{current, posted, wizard};
use crate::layout::{Field, notice};
use crate::{Web, forms};

/// Let's Encrypt's Subscriber Agreement and other documents.
pub(super) const TERMS: &str = "https://letsencrypt.org/repository/";

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CertificateForm {
    csrf: String,
    way: String,
    contact: String,
    terms: String,
}

pub(super) async fn page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let (_, d) = match current(&web, &headers) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if d.relay.is_none() {
        return Redirect::to("/setup/relay").into_response();
    }
    let owner = d
        .owner
        .as_ref()
        .map(|o| o.address.clone())
        .unwrap_or_default();
    let form = match &d.acme {
        Some(None) => CertificateForm {
            csrf: d.csrf.clone(),
            way: "self-signed".into(),
            contact: owner,
            terms: String::new(),
        },
        Some(Some(contact)) => CertificateForm {
            csrf: d.csrf.clone(),
            way: "letsencrypt".into(),
            contact: contact.clone(),
            terms: "yes".into(),
        },
        None => CertificateForm {
            csrf: d.csrf.clone(),
            way: "letsencrypt".into(),
            contact: owner,
            terms: String::new(),
        },
    };
    certificate_form(&form, &d.hostname, None).into_response()
}

fn certificate_form(form: &CertificateForm, hostname: &str, error: Option<&str>) -> Markup {
    let on = form.way != "self-signed";
    wizard(
        "Certificate",
        4,
        html! {
            h1 { "Certificate" }
            p.lead { "Mail programs and browsers trust this appliance once a certificate authority vouches for " code { (hostname) } ". Let's Encrypt does that for free, and the appliance renews it by itself." }
            @if let Some(e) = error { (notice("bad", e)) }
            div.card {
                form method="post" action="/setup/certificate" {
                    input type="hidden" name="csrf" value=(form.csrf);
                    label.check {
                        input type="radio" name="way" value="letsencrypt" checked[on];
                        "Get certificates from Let's Encrypt (recommended)"
                    }
                    (Field { name: "contact", label: "Your e-mail address (optional)", kind: "email", value: &form.contact,
                             help: Some("Let's Encrypt may write to it about your account. Expiry warnings come from this appliance: its Certificate page and its log."), error: None, autocomplete: "email" }.render())
                    label.check {
                        input type="checkbox" name="terms" value="yes" checked[form.terms == "yes"];
                        "I accept Let's Encrypt's " a href=(TERMS) { "Subscriber Agreement" }
                    }
                    p.help { "Let's Encrypt checks that the name leads here, over port 80 or 443: forward at least one of them to this appliance. Until it succeeds the appliance uses a certificate of its own." }
                    label.check {
                        input type="radio" name="way" value="self-signed" checked[!on];
                        "Not now: keep the appliance's own certificate (mail programs warn)"
                    }
                    div.actions {
                        button type="submit" { "Continue" }
                        a.button.secondary href="/setup/relay" { "Back" }
                    }
                }
            }
        },
    )
}

pub(super) async fn submit(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Form(form): Form<CertificateForm>,
) -> Response {
    let (token, mut draft) = match posted(&web, &headers, &form.csrf) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if form.way == "self-signed" {
        draft.acme = Some(None);
    } else {
        let contact = forms::text(&form.contact, "an address", false).and_then(|c| {
            if c.is_empty() {
                return Ok(String::new());
            }
            mta_proto::address::Address::parse(c, true)
                .map(|a| a.to_string())
                .map_err(|e| format!("{c:?} is not an e-mail address: {e}."))
        });
        let problem = match &contact {
            Err(e) => Some(e.clone()),
            Ok(_) if form.terms != "yes" => Some(
                "Accept the Subscriber Agreement to get certificates, or choose “Not now”.".into(),
            ),
            Ok(_) => None,
        };
        let (Ok(contact), None) = (contact, &problem) else {
            let shown = CertificateForm {
                csrf: draft.csrf.clone(),
                ..form
            };
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                certificate_form(&shown, &draft.hostname, problem.as_deref()),
            )
                .into_response();
        };
        draft.acme = Some(Some(contact));
    }
    web.setup.save(&token, draft);
    Redirect::to("/setup/summary").into_response()
}
