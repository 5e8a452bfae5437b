//! The Update page: the version running, what became of the last update
//! (installed, blessed, or rolled back and why), and a form that uploads a
//! signed bundle (multipart; `app.js` adds a progress bar and shows the
//! answer in place, the form works without it). The bundle goes the way
//! the API's does (`crate::upload`).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::html;
use mta_app::update::Status;

use super::{admin_page, guard, guard_post};
use crate::layout::notice;
use crate::{Conn, Web, forms};

const HERE: &str = "/update";

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(HERE, get(page))
        .route(
            HERE,
            // The bundle is larger than any form: the upload keeps its own limit.
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/update/check", post(check_now))
}

/// Asks the update URL now (in the background: a download takes a while);
/// the page shows what it found once it is done.
async fn check_now(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<forms::CsrfForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &form.csrf) {
        return r.into_response();
    }
    let Some(feed) = web.feed.clone() else {
        return Redirect::to(HERE).into_response();
    };
    let text = if feed.checking() {
        "The update URL is being asked already; reload this page in a minute.".to_string()
    } else {
        tokio::spawn(async move { feed.check_and_record().await });
        "Asking the update URL now; reload this page to see what it found.".to_string()
    };
    web.sessions.flash(&headers, true, text);
    Redirect::to(HERE).into_response()
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
    let update = &web.update;
    let status = update.status();
    let pending = update.pending();
    admin_page(
        "Update",
        HERE,
        &session,
        html! {
            h1 { "Update" }
            p.lead { "An update is a signed bundle. It is written beside the running version and started as a trial; it is kept only if the mail server comes up healthy, otherwise the version running now comes back by itself." }
            div.card {
                dl.summary {
                    dt { "Running" } dd { "Mailbox " strong { (update.running()) } }
                    dt { "Board" } dd { code { (update.board()) } }
                    dt { "Last update" } dd {
                        @match &status {
                            None => { "none yet" }
                            Some(s) => { (super::capitalised(&s.describe())) }
                        }
                    }
                }
                @if let Some(feed) = &web.feed {
                    dl.summary {
                        dt { "Update URL" } dd { code { (feed.url()) } " — asked every " (humantime::format_duration(feed.every())) }
                        dt { "Last asked" } dd {
                            @match feed.last() {
                                None => { "not yet" }
                                Some(last) => {
                                    (mta_app::acme::when(last.at)) ": "
                                    span class=(if last.ok { "" } else { "bad" }) { (last.outcome) }
                                }
                            }
                        }
                    }
                    form method="post" action="/update/check" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button.secondary.small type="submit" disabled[feed.checking() || pending] { "Check now" }
                    }
                }
                @if let Some(Status::Failed { .. }) = &status {
                    (notice("bad", "The last update did not take; the version above runs as before, and no mail was lost. The reason is above and in the log."))
                }
            }
            div.card {
                h2 { "Install an update" }
                @if pending {
                    (notice("ok", "A bundle has been received: the appliance installs it and restarts within a minute."))
                } @else {
                    form method="post" action=(HERE) enctype="multipart/form-data" data-upload {
                        input type="hidden" name="csrf" value=(session.csrf);
                        div.field {
                            label for="f-bundle" { "Bundle file" }
                            input id="f-bundle" type="file" name="bundle" accept=".bundle" required;
                            p.help { "A " code { "mailbox-" (update.board()) "-VERSION.bundle" } " from " code { "cargo xtask bundle" } ". Its signature, board and every file are checked before anything is written." }
                        }
                        div.field {
                            label.check {
                                input type="checkbox" name="force" value="1";
                                " Install it even if it is older than the running version"
                            }
                        }
                        progress hidden max="1" value="0" {}
                        div data-upload-result role="status" {}
                        button type="submit" { "Upload and install" }
                    }
                    p.help { "From a computer with the source: " code { "cargo xtask deploy --host " (host(&headers)) } }
                }
            }
        },
    )
}

/// The host name the browser used (for the deploy hint).
fn host(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("ADDRESS")
        .to_string()
}

/// The answer: one line of text for the page's script (which asked for
/// it), the page again with the outcome on top otherwise.
fn answer(web: &Web, headers: &HeaderMap, status: StatusCode, line: String) -> Response {
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.starts_with("text/plain"));
    if wants_text {
        return (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            line + "\n",
        )
            .into_response();
    }
    web.sessions
        .flash(headers, status == StatusCode::OK, super::capitalised(&line));
    Redirect::to(HERE).into_response()
}

/// A small field's text (the CSRF token, the checkbox), bounded.
async fn small_field(field: axum::extract::multipart::Field<'_>) -> Option<String> {
    let mut field = field;
    let mut text = Vec::new();
    while let Ok(Some(chunk)) = field.chunk().await {
        text.extend_from_slice(&chunk);
        if text.len() > 1024 {
            return None;
        }
    }
    String::from_utf8(text).ok()
}

async fn upload(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let session = match guard(&web, &conn, &headers, HERE) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    // The form's fields come in its order: the token, the checkbox, the
    // file; nothing of the file is read before the token is checked.
    let mut csrf_ok = false;
    let mut force = false;
    // The form has three fields; a few more are tolerated, not many.
    for _ in 0..8 {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => {
                let line = "choose the bundle file first".to_string();
                return answer(&web, &headers, StatusCode::BAD_REQUEST, line);
            }
            Err(e) => {
                let line = format!("the upload broke off: {e}");
                return answer(&web, &headers, StatusCode::BAD_REQUEST, line);
            }
        };
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().unwrap_or("").to_string();
        match name.as_str() {
            "csrf" => {
                let token = small_field(field).await.unwrap_or_default();
                csrf_ok = forms::same(&token, &session.csrf);
            }
            "force" => force = small_field(field).await.as_deref() == Some("1"),
            "bundle" if !csrf_ok => {
                let line = "that form had expired (or came from another page); nothing was installed. Reload the page and try again".to_string();
                return answer(&web, &headers, StatusCode::FORBIDDEN, line);
            }
            "bundle" if file_name.is_empty() => {
                let line = "choose the bundle file first".to_string();
                return answer(&web, &headers, StatusCode::BAD_REQUEST, line);
            }
            "bundle" => {
                let (status, line) = match web.update.receive(force, None, field).await {
                    Ok(manifest) => {
                        tracing::info!(
                            "admin: update to version {} uploaded by {}",
                            manifest.version,
                            session.account
                        );
                        (
                            StatusCode::OK,
                            format!(
                                "version {} accepted; the appliance installs it and restarts (about a minute)",
                                manifest.version
                            ),
                        )
                    }
                    Err(e) => crate::upload::refusal(e),
                };
                return answer(&web, &headers, status, line);
            }
            // Anything else is drained and ignored.
            _ => {
                let _ = small_field(field).await;
            }
        }
    }
    let line = "this is not the Update page's form".to_string();
    answer(&web, &headers, StatusCode::BAD_REQUEST, line)
}
