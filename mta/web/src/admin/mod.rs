//! The owner's admin pages (HTTPS, after login): accounts, aliases,
//! domains, outgoing mail (relays), the certificate, the queue, activity,
//! the log and updates. Every change is a POST carrying the session's
//! CSRF token, goes through `mta-app`'s edit of the configuration (the
//! path `mta user` takes: comments kept, validated whole, atomic), then
//! reloads the server; the page that follows says what happened.

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use crate::layout::{Menu, notice, shell};
use crate::login::admin;
use crate::session::Session;
use crate::{Conn, Web, forms};

mod accounts;
mod activity;
mod aliases;
mod certificate;
mod domains;
mod queue;
mod relays;
mod reports;
mod update;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .merge(accounts::routes())
        .merge(activity::routes())
        .merge(certificate::routes())
        .merge(aliases::routes())
        .merge(domains::routes())
        .merge(queue::routes())
        .merge(relays::routes())
        .merge(reports::routes())
        .merge(update::routes())
}

/// The session of an admin page's request, or the answer that sends the
/// browser elsewhere.
fn guard(web: &Web, conn: &Conn, headers: &HeaderMap, here: &str) -> Result<Session, Redirect> {
    admin(web, conn, headers, here)
}

/// A form's POST: the session, if its CSRF token is the session's.
fn guard_post(
    web: &Web,
    conn: &Conn,
    headers: &HeaderMap,
    here: &str,
    csrf: &str,
) -> Result<Session, Redirect> {
    let session = guard(web, conn, headers, here)?;
    if !forms::same(csrf, &session.csrf) {
        web.sessions.flash(
            headers,
            false,
            "That form had expired (or came from another page); nothing was changed. Try again."
                .into(),
        );
        return Err(Redirect::to(here));
    }
    Ok(session)
}

/// An admin page with its flash message on top.
fn admin_page(title: &str, here: &str, session: &Session, body: Markup) -> Response {
    shell(
        title,
        Some(Menu {
            here,
            csrf: &session.csrf,
        }),
        false,
        html! {
            @if let Some((ok, text)) = &session.flash {
                (notice(if *ok { "ok" } else { "bad" }, text))
            }
            (body)
        },
    )
    .into_response()
}

/// Runs a configuration change off the event loop, reloads on success, and
/// leaves what happened for the next page.
async fn change(
    web: &Web,
    headers: &HeaderMap,
    here: &str,
    edit: impl FnOnce(&std::path::Path) -> anyhow::Result<String> + Send + 'static,
) -> Response {
    let path = web.settings.get().config.path.clone();
    let done = tokio::task::spawn_blocking(move || edit(&path))
        .await
        .expect("edits do not panic");
    let outcome = done.and_then(|text| web.settings.reload().map(|()| text));
    match outcome {
        Ok(text) => {
            tracing::info!("admin: {text}");
            web.sessions.flash(headers, true, capitalised(&text));
        }
        Err(e) => web
            .sessions
            .flash(headers, false, format!("Nothing was changed: {e:#}")),
    }
    Redirect::to(here).into_response()
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The hidden CSRF field of a form.
fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}
