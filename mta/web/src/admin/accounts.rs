//! Accounts: the list with each mailbox's size, adding one, a new password,
//! and deleting one after a confirmation.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use mta_app::accounts::Change;
use serde::Deserialize;

use super::{admin_page, change, csrf, guard, guard_post};
use crate::layout::Field;
use crate::setup::{MIN_STRENGTH, strength, strength_name};
use crate::{Conn, Web};

const HERE: &str = "/accounts";

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(HERE, get(page))
        .route("/accounts/add", post(add))
        .route("/accounts/password", post(password))
        .route("/accounts/delete", post(delete))
        .route("/accounts/allow", post(allow))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Confirm {
    delete: String,
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

async fn page(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Query(q): Query<Confirm>,
) -> Response {
    let session = match guard(&web, &conn, &headers, HERE) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let config = web.settings.get().config.clone();
    // What each mailbox takes (every folder; counted by the Maildirs the
    // server shares, at most every few minutes) and may take.
    let usage: Vec<(u64, Option<u64>)> = {
        let settings = web.settings.get();
        tokio::task::spawn_blocking(move || {
            settings
                .config
                .accounts
                .iter()
                .map(|a| {
                    let key = a.address.key();
                    let used = settings.maildirs.usage(&key).map_or(0, |u| u.bytes);
                    (used, settings.directory.quota_of(&key))
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    };
    admin_page(
        "Accounts",
        HERE,
        &session,
        html! {
            h1 { "Accounts" }
            p.lead { "Each account has a mailbox and can send mail with its password. Mail that fails its sender's checks goes to the Junk folder, unless its sender is one the account never wants there: addresses, or whole domains, separated by commas." }
            div.card {
                table.stack {
                    thead { tr { th { "Address" } th { "Mailbox" } th { "Password" } th { "Never in Junk" } th {} } }
                    tbody {
                        @for (a, (used, quota)) in config.accounts.iter().zip(usage) {
                            @let key = a.address.key();
                            tr {
                                td {
                                    code { (a.address) } @if a.admin { " " span.badge.ok { "owner" } }
                                    @if config.serves_imap() {
                                        " " a.small href={"/mobileconfig?emailaddress=" (key)} title="A profile that sets up Mail on an iPhone, iPad or Mac" { "Apple profile" }
                                    }
                                }
                                td {
                                    (human(used))
                                    @if let Some(limit) = quota {
                                        " of " (human(limit))
                                        @if used >= limit { " " span.badge.wrong title="New mail waits with its sender until mail is deleted" { "full" } }
                                    }
                                }
                                td {
                                    form.inline method="post" action="/accounts/password" {
                                        (csrf(&session))
                                        input type="hidden" name="address" value=(key);
                                        input type="password" name="password" placeholder="New password" aria-label={"New password for " (key)} autocomplete="new-password";
                                        button.secondary.small type="submit" { "Set" }
                                    }
                                }
                                td {
                                    @let shown: Vec<&str> = a.allow.iter().map(|s| s.strip_prefix('@').unwrap_or(s)).collect();
                                    form.inline method="post" action="/accounts/allow" {
                                        (csrf(&session))
                                        input type="hidden" name="address" value=(key);
                                        input type="text" name="senders" value=(shown.join(", ")) placeholder="friend@example.net, example.com" aria-label={"Senders whose mail to " (key) " never goes to Junk"} autocomplete="off";
                                        button.secondary.small type="submit" { "Save" }
                                    }
                                }
                                td {
                                    @if q.delete == key {
                                        form.inline method="post" action="/accounts/delete" {
                                            (csrf(&session))
                                            input type="hidden" name="address" value=(key);
                                            span.error { "Delete " (key) "? Its mail stays on the disk. " }
                                            button.danger.small type="submit" { "Delete" }
                                            " "
                                            a href=(HERE) { "Cancel" }
                                        }
                                    } @else if !a.admin {
                                        a.button.secondary.small href={"/accounts?delete=" (key)} { "Delete…" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "Add an account" }
                form method="post" action="/accounts/add" {
                    (csrf(&session))
                    (Field { name: "address", label: "Address", kind: "email", value: "",
                             help: Some(&format!("In one of your domains: {}.", config.domains.join(", "))), error: None, autocomplete: "off" }.render())
                    (Field { name: "password", label: "Password", kind: "password", value: "",
                             help: Some("Weak passwords are refused."), error: None, autocomplete: "new-password" }.render())
                    div.actions { button type="submit" { "Add the account" } }
                }
            }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AccountForm {
    csrf: String,
    address: String,
    password: String,
}

/// The password, if strong enough for an account called `address`.
fn checked_password(address: &str, password: &str) -> anyhow::Result<()> {
    if password.len() > crate::forms::MAX_FIELD {
        anyhow::bail!("the password is too long");
    }
    let (local, domain) = address.split_once('@').unwrap_or((address, ""));
    let (score, advice) = strength(password, &[local, domain, "mailbox"]);
    if score < MIN_STRENGTH {
        anyhow::bail!(
            "the password is {}: it could be guessed. {}",
            strength_name(score),
            advice.unwrap_or_default()
        );
    }
    Ok(())
}

async fn add(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<AccountForm>,
) -> Response {
    with_password(&web, &conn, &headers, f, true).await
}

async fn password(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<AccountForm>,
) -> Response {
    with_password(&web, &conn, &headers, f, false).await
}

/// A new account (`new`) or a new password for one, if strong enough.
async fn with_password(
    web: &Web,
    conn: &Conn,
    headers: &HeaderMap,
    f: AccountForm,
    new: bool,
) -> Response {
    if let Err(r) = guard_post(web, conn, headers, HERE, &f.csrf) {
        return r.into_response();
    }
    change(web, headers, HERE, move |path| {
        checked_password(f.address.trim(), &f.password)?;
        let (address, password) = (f.address.as_str(), f.password.as_str());
        let change = if new {
            Change::Add { address, password }
        } else {
            Change::Password { address, password }
        };
        mta_app::accounts::apply(path, change)
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AllowForm {
    csrf: String,
    address: String,
    senders: String,
}

/// The most senders an account may list (the field is at most
/// `MAX_FIELD` long anyway).
const MAX_SENDERS: usize = 100;

async fn allow(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<AllowForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    change(&web, &headers, HERE, move |path| {
        if f.senders.len() > crate::forms::MAX_FIELD {
            anyhow::bail!("the list is too long");
        }
        let senders: Vec<String> = f
            .senders
            .split([',', ' ', '\n', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if senders.len() > MAX_SENDERS {
            anyhow::bail!("at most {MAX_SENDERS} senders");
        }
        mta_app::accounts::apply(
            path,
            Change::Allow {
                address: &f.address,
                senders: &senders,
            },
        )
    })
    .await
}

async fn delete(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<AccountForm>,
) -> Response {
    let session = match guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if f.address.trim().eq_ignore_ascii_case(&session.account) {
        web.sessions.flash(
            &headers,
            false,
            "You cannot delete the account you are logged in with.".into(),
        );
        return axum::response::Redirect::to(HERE).into_response();
    }
    change(&web, &headers, HERE, move |path| {
        mta_app::accounts::apply(
            path,
            Change::Delete {
                address: &f.address,
            },
        )
    })
    .await
}
