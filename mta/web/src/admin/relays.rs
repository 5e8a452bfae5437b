//! Outgoing mail: directly to the recipients' servers, or through a relay
//! (an Internet provider's smarthost when port 25 is blocked); the relays
//! known, with the one in use marked.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use mta_app::relays::{Change, NewRelay};
use serde::Deserialize;

use super::{admin_page, change, csrf, guard, guard_post};
use crate::layout::Field;
use crate::{Conn, Web};

const HERE: &str = "/relays";

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(HERE, get(page))
        .route("/relays/set", post(set))
        .route("/relays/remove", post(remove))
        .route("/relays/direct", post(direct))
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
    let config = web.settings.get().config.clone();
    let smarthost = config.outbound.smarthost.clone();
    admin_page(
        "Outgoing mail",
        HERE,
        &session,
        html! {
            h1 { "Outgoing mail" }
            div.card {
                @match &smarthost {
                    None => p { "Mail for other domains goes " strong { "directly" } " to the recipients' servers." },
                    Some(name) => {
                        p { "Mail for other domains goes through the relay " strong { (name) } "." }
                        form.inline method="post" action="/relays/direct" {
                            (csrf(&session))
                            button.secondary.small type="submit" { "Deliver directly instead" }
                        }
                    }
                }
                @if !config.outbound.relays.is_empty() {
                    table.stack {
                        thead { tr { th { "Relay" } th { "Server" } th { "Login" } th {} } }
                        tbody {
                            @for r in &config.outbound.relays {
                                tr {
                                    td { code { (r.name) } @if smarthost.as_deref() == Some(r.name.as_str()) { " " span.badge.ok { "in use" } } }
                                    td { code { (r.host) ":" (r.port) } " " @if r.implicit_tls { "(TLS)" } @else { "(STARTTLS)" } }
                                    td { @if let Some(u) = &r.username { code { (u) } } @else { "none" } }
                                    td {
                                        form.inline method="post" action="/relays/remove" {
                                            (csrf(&session))
                                            input type="hidden" name="name" value=(r.name);
                                            button.secondary.small type="submit" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "Send through a relay" }
                p.help { "Your Internet provider's help pages name it (“SMTP server”, “smarthost”). Saving it here sends all outgoing mail through it; the SPF record on the DNS page then names it too." }
                form method="post" action="/relays/set" {
                    (csrf(&session))
                    (Field { name: "name", label: "Name", kind: "text", value: "provider", help: Some("Letters, digits, - and _."), error: None, autocomplete: "off" }.render())
                    (Field { name: "host", label: "Server", kind: "text", value: "", help: Some("For example smtp.provider.example."), error: None, autocomplete: "off" }.render())
                    (Field { name: "port", label: "Port", kind: "number", value: "587", help: None, error: None, autocomplete: "off" }.render())
                    label for="f-tls" { "Encryption" }
                    select id="f-tls" name="tls" {
                        option value="starttls" { "STARTTLS (usually port 587)" }
                        option value="implicit" { "TLS from the start (usually port 465)" }
                    }
                    (Field { name: "username", label: "User name", kind: "text", value: "", help: Some("Leave both empty if the relay needs no login."), error: None, autocomplete: "off" }.render())
                    (Field { name: "password", label: "Password", kind: "password", value: "", help: None, error: None, autocomplete: "off" }.render())
                    div.actions { button type="submit" { "Send mail through this relay" } }
                }
            }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RelayForm {
    csrf: String,
    name: String,
    host: String,
    port: String,
    tls: String,
    username: String,
    password: String,
}

async fn set(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<RelayForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    change(&web, &headers, HERE, move |path| {
        let host = crate::forms::text(&f.host, "the relay's server", true)
            .and_then(mta_app::relays::checked_host)
            .map_err(anyhow::Error::msg)?;
        let port = mta_app::relays::checked_port(&f.port).map_err(anyhow::Error::msg)?;
        let (user, password) = (f.username.trim(), f.password.as_str());
        mta_app::relays::checked_login(user, password, crate::forms::MAX_FIELD)
            .map_err(anyhow::Error::msg)?;
        let relay = NewRelay {
            name: &f.name,
            host: &host,
            port,
            implicit_tls: f.tls == "implicit",
            login: (!user.is_empty()).then_some((user, password)),
        };
        mta_app::relays::apply(
            path,
            Change::Set {
                relay,
                smarthost: true,
            },
        )
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NameForm {
    csrf: String,
    name: String,
}

async fn remove(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<NameForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    change(&web, &headers, HERE, move |path| {
        mta_app::relays::apply(path, Change::Remove { name: &f.name })
    })
    .await
}

async fn direct(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<NameForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    change(&web, &headers, HERE, |path| {
        mta_app::relays::apply(path, Change::Direct)
    })
    .await
}
