//! The owner's login to the admin pages, log-out, and the way from plain
//! HTTP to HTTPS once the appliance is claimed.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::{Markup, html};
use mta_proto::sasl::AuthOutcome;
use serde::Deserialize;

use crate::layout::{Field, notice, page};
use crate::session::{self, Session};
use crate::{Conn, Web, forms};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
}

/// The same page over HTTPS (on this host, at the HTTPS listener's port).
pub fn to_https(web: &Web, headers: &HeaderMap, path: &str) -> Redirect {
    Redirect::to(&https_url(web, headers, path))
}

/// The address of `path` over HTTPS on the host the request named.
pub fn https_url(web: &Web, headers: &HeaderMap, path: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| match h.rsplit_once(':') {
            // Not the colons of an IPv6 address in brackets.
            Some((name, port)) if !port.contains(']') => name,
            _ => h,
        })
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
        })
        .unwrap_or("mailbox.local")
        .to_string();
    let port = match web.https_port.load(std::sync::atomic::Ordering::Relaxed) {
        0 => 443,
        port => port,
    };
    let authority = if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    };
    format!("https://{authority}{path}")
}

/// The admin session of the request, or where to go instead (HTTPS, the
/// login page, the wizard).
pub fn admin(web: &Web, conn: &Conn, headers: &HeaderMap, here: &str) -> Result<Session, Redirect> {
    if !web.claimed() {
        return Err(Redirect::to("/setup"));
    }
    if !conn.secure {
        return Err(to_https(web, headers, here));
    }
    let settings = web.settings.get();
    let still = |account: &str, credential: Option<&str>| {
        settings
            .config
            .accounts
            .iter()
            .any(|a| a.admin && a.address.key() == account)
            && settings.directory.credential(account).as_deref() == credential
    };
    web.sessions
        .of(headers, still)
        .ok_or_else(|| Redirect::to(&format!("/login?next={here}")))
}

/// A path on this site to go to after the login (never another site).
fn next_path(next: &str) -> &str {
    let safe = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() < 200
        && next
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.?=&".contains(c));
    if safe { next } else { "/dns" }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Next {
    next: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    address: String,
    password: String,
    next: String,
}

async fn login_page(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Response {
    if !web.claimed() {
        return Redirect::to("/setup").into_response();
    }
    if !conn.secure {
        return to_https(
            &web,
            &headers,
            &format!("/login?next={}", next_path(&q.next)),
        )
        .into_response();
    }
    login_form("", next_path(&q.next), None).into_response()
}

fn login_form(address: &str, next: &str, error: Option<&str>) -> Markup {
    page(
        "Log in",
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { (notice("bad", e)) }
            div.card {
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    (Field { name: "address", label: "Your address", kind: "email", value: address,
                             help: None, error: None, autocomplete: "username" }.render())
                    (Field { name: "password", label: "Password", kind: "password", value: "",
                             help: None, error: None, autocomplete: "current-password" }.render())
                    div.actions { button type="submit" { "Log in" } }
                }
            }
        },
    )
}

async fn login_submit(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !web.claimed() {
        return Redirect::to("/setup").into_response();
    }
    if !conn.secure {
        return to_https(&web, &headers, "/login").into_response();
    }
    let next = next_path(&form.next).to_string();
    let address = form
        .address
        .trim()
        .chars()
        .take(forms::MAX_FIELD)
        .collect::<String>();
    let password = form
        .password
        .chars()
        .take(forms::MAX_FIELD)
        .collect::<String>();
    let settings = web.settings.get();
    let outcome = web
        .logins
        .login(
            settings.directory.clone(),
            conn.peer,
            address.clone(),
            password,
            "web",
        )
        .await;
    let refused =
        |status, text: &str| (status, login_form(&address, &next, Some(text))).into_response();
    match outcome {
        AuthOutcome::Accepted(account) => {
            let is_admin = settings
                .config
                .accounts
                .iter()
                .any(|a| a.admin && a.address.key() == account);
            if !is_admin {
                return refused(
                    StatusCode::FORBIDDEN,
                    "This account cannot use the admin pages; log in as the owner.",
                );
            }
            let token = web
                .sessions
                .start(account.clone(), settings.directory.credential(&account));
            (
                [(
                    header::SET_COOKIE,
                    forms::set_cookie(session::COOKIE, &token, true, 12 * 3600),
                )],
                Redirect::to(&next),
            )
                .into_response()
        }
        AuthOutcome::Rejected => refused(StatusCode::UNAUTHORIZED, "Wrong address or password."),
        AuthOutcome::TryLater => refused(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins from this address. Wait 15 minutes, then try again.",
        ),
    }
}

async fn logout(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(form): Form<forms::CsrfForm>,
) -> Response {
    if let Ok(session) = admin(&web, &conn, &headers, "/")
        && forms::same(&form.csrf, &session.csrf)
    {
        web.sessions.end(&headers);
    }
    (
        [(
            header::SET_COOKIE,
            forms::set_cookie(session::COOKIE, "", conn.secure, 0),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}
