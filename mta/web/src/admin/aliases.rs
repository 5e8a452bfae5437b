//! Aliases: addresses that deliver to one or more others (accounts, other
//! aliases, addresses elsewhere), and catch-alls (`@domain`).

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

const HERE: &str = "/aliases";

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(HERE, get(page))
        .route("/aliases/set", post(set))
        .route("/aliases/delete", post(delete))
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
    admin_page(
        "Aliases",
        HERE,
        &session,
        html! {
            h1 { "Aliases" }
            p.lead { "Addresses without a mailbox of their own: their mail goes to the addresses listed. “@domain” catches every address of the domain that nothing else takes." }
            div.card {
                @if config.aliases.is_empty() {
                    p { "No aliases yet." }
                } @else {
                    table.stack {
                        thead { tr { th { "Alias" } th { "Delivers to" } th {} } }
                        tbody {
                            @for (alias, targets) in &config.aliases {
                                tr {
                                    td { code { (alias) } }
                                    td { @for (i, t) in targets.iter().enumerate() { @if i > 0 { ", " } code { (t) } } }
                                    td {
                                        form.inline method="post" action="/aliases/delete" {
                                            (csrf(&session))
                                            input type="hidden" name="alias" value=(alias);
                                            button.secondary.small type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "Add or change an alias" }
                form method="post" action="/aliases/set" {
                    (csrf(&session))
                    (Field { name: "alias", label: "Alias", kind: "text", value: "",
                             help: Some("An address in one of your domains (like info@example.org), or @example.org for a catch-all."), error: None, autocomplete: "off" }.render())
                    (Field { name: "targets", label: "Delivers to", kind: "textarea", value: "",
                             help: Some("One or more addresses, one per line or separated by commas."), error: None, autocomplete: "off" }.render())
                    div.actions { button type="submit" { "Save the alias" } }
                }
            }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AliasForm {
    csrf: String,
    alias: String,
    targets: String,
}

async fn set(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<AliasForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    change(&web, &headers, HERE, move |path| {
        let alias = crate::forms::text(&f.alias, "the alias", true).map_err(anyhow::Error::msg)?;
        let targets: Vec<String> =
            crate::forms::text(&f.targets, "where the alias delivers to", true)
                .map_err(anyhow::Error::msg)?
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
        mta_app::aliases::apply(
            path,
            Change::SetAlias {
                alias,
                targets: &targets,
            },
        )
    })
    .await
}

async fn delete(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<AliasForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    change(&web, &headers, HERE, move |path| {
        mta_app::aliases::apply(path, Change::DeleteAlias { alias: &f.alias })
    })
    .await
}
