//! Domains: adding one (its DKIM keys are made, its records are on the DNS
//! page) and removing one that has no accounts left; DKIM keys rotated.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use mta_app::aliases::Change;
use serde::Deserialize;

use super::{admin_page, change, csrf, guard, guard_post};
use crate::layout::Field;
use crate::{Conn, Web};

const HERE: &str = "/domains";

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(HERE, get(page))
        .route("/domains/add", post(add))
        .route("/domains/remove", post(remove))
        .route("/domains/rotate", post(rotate))
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
    let settings = web.settings.get();
    let config = settings.config.clone();
    let keys: Vec<(String, String)> = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || {
            settings
                .config
                .domains
                .iter()
                .map(|d| {
                    let selectors = settings
                        .dkim
                        .of(d)
                        .map(|k| {
                            k.iter()
                                .map(|k| k.selector.clone())
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_else(|e| format!("no keys: {e:#}"));
                    (d.clone(), selectors)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    };
    admin_page(
        "Domains",
        HERE,
        &session,
        html! {
            h1 { "Domains" }
            p.lead { "The domains this server receives mail for. Each needs its DNS records (see DNS records)." }
            div.card {
                table.stack {
                    thead { tr { th { "Domain" } th { "Accounts" } th { "DKIM keys" } th {} } }
                    tbody {
                        @for (domain, selectors) in &keys {
                            @let accounts = config.accounts.iter().filter(|a| a.address.domain() == domain).count();
                            tr {
                                td { code { (domain) } }
                                td { (accounts) }
                                td {
                                    code { (selectors) }
                                    form.inline method="post" action="/domains/rotate" {
                                        (csrf(&session))
                                        input type="hidden" name="domain" value=(domain);
                                        " "
                                        button.secondary.small type="submit" { "Rotate" }
                                    }
                                }
                                td {
                                    @if accounts == 0 {
                                        form.inline method="post" action="/domains/remove" {
                                            (csrf(&session))
                                            input type="hidden" name="domain" value=(domain);
                                            button.secondary.small type="submit" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p.help { "Rotating makes new DKIM keys that sign from now on; publish their records (DNS records page) and keep the old ones for a few days." }
            }
            div.card {
                h2 { "Add a domain" }
                form method="post" action="/domains/add" {
                    (csrf(&session))
                    (Field { name: "domain", label: "Domain", kind: "text", value: "",
                             help: Some("Like example.net. Then add accounts or aliases in it and publish its DNS records."), error: None, autocomplete: "off" }.render())
                    div.actions { button type="submit" { "Add the domain" } }
                }
            }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DomainForm {
    csrf: String,
    domain: String,
}

async fn add(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<DomainForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    let data_dir = web.settings.get().config.data_dir.clone();
    change(&web, &headers, HERE, move |path| {
        let domain = crate::forms::text(&f.domain, "a domain", true).map_err(anyhow::Error::msg)?;
        let done = mta_app::aliases::apply(path, Change::AddDomain { domain })?;
        let normal =
            mta_proto::address::normalise_domain(domain).map_err(|e| anyhow::anyhow!("{e}"))?;
        mta_app::dkim::Keys::new(&data_dir).of(&normal)?;
        Ok(done)
    })
    .await
}

async fn remove(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<DomainForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    change(&web, &headers, HERE, move |path| {
        mta_app::aliases::apply(path, Change::RemoveDomain { domain: &f.domain })
    })
    .await
}

async fn rotate(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<DomainForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    let settings = web.settings.get();
    change(&web, &headers, HERE, move |_| {
        if !settings.config.is_local_domain(&f.domain) {
            anyhow::bail!("{} is not one of the domains", f.domain);
        }
        let new = settings.dkim.rotate(&f.domain)?;
        let names: Vec<&str> = new.iter().map(|k| k.selector.as_str()).collect();
        Ok(format!(
            "new DKIM keys {} for {} sign from now on; publish their records",
            names.join(", "),
            f.domain
        ))
    })
    .await
}
