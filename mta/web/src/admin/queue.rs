//! The queue: messages waiting for delivery (deferred, held, damaged), one
//! message whole, and retry, hold, release and delete — the operations of
//! `mta queue`, through the same `admin::execute`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::html;
use mta_app::admin::{Command, execute};
use mta_store::envelope::{QueueId, Status, Target};
use serde::Deserialize;

use super::{admin_page, csrf, guard, guard_post};
use crate::{Conn, Web};

const HERE: &str = "/queue";

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(HERE, get(page))
        .route("/queue/{id}", get(show))
        .route("/queue/act", post(act))
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
    let queue = web.queue.clone();
    let listed = tokio::task::spawn_blocking(move || queue.list())
        .await
        .expect("no panic");
    admin_page(
        "Queue",
        HERE,
        &session,
        html! {
            h1 { "Queue" }
            p.lead { "Mail not delivered yet: it is tried again with growing pauses, and returned to its sender if it cannot be delivered for days." }
            div.card {
                @match &listed {
                    Err(e) => p.error { "The queue cannot be read: " (format!("{e:#}")) },
                    Ok(list) if list.is_empty() => p { "The queue is empty: everything was delivered." },
                    Ok(list) => {
                        table.stack {
                            thead { tr { th { "Message" } th { "From" } th { "To" } th { "Size" } th {} } }
                            tbody {
                                @for env in list {
                                    tr {
                                        td {
                                            a href={"/queue/" (env.id)} { code { (env.id) } }
                                            @if env.held { " " span.badge.missing { "held" } }
                                        }
                                        td { code { @if env.from.is_empty() { "<>" } @else { (env.from) } } }
                                        td {
                                            @for r in &env.recipients {
                                                @let to = match &r.target {
                                                    Target::Local { delivered_to, .. } => delivered_to,
                                                    Target::Remote { address } => address,
                                                };
                                                div {
                                                    code { (to) } " "
                                                    @if !r.original.eq_ignore_ascii_case(to) { span.help { "(for " (r.original) ") " } }
                                                    @match r.status {
                                                        Status::Pending => span.badge.missing { "waiting" },
                                                        Status::Delivered => span.badge.ok { "delivered" },
                                                        Status::Failed => span.badge.wrong { "failed" },
                                                    }
                                                    @if let Some(e) = &r.last_error { br; span.help { (e) } }
                                                }
                                            }
                                        }
                                        td { (env.size) }
                                        td {
                                            form.inline method="post" action="/queue/act" {
                                                (csrf(&session))
                                                input type="hidden" name="id" value=(env.id);
                                                @if env.held {
                                                    button.secondary.small type="submit" name="action" value="release" { "Release" }
                                                } @else {
                                                    button.secondary.small type="submit" name="action" value="retry" { "Retry now" }
                                                    " "
                                                    button.secondary.small type="submit" name="action" value="hold" { "Hold" }
                                                }
                                                " "
                                                button.danger.small type="submit" name="action" value="delete" { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn show(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match guard(&web, &conn, &headers, HERE) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Ok(id) = id.parse::<QueueId>() else {
        return Redirect::to(HERE).into_response();
    };
    let queue = web.queue.clone();
    let shown = tokio::task::spawn_blocking(move || execute(&queue, None, Command::Show(id)))
        .await
        .expect("no panic");
    admin_page(
        "Message",
        HERE,
        &session,
        html! {
            h1 { "Message " code { (id) } }
            p { a href=(HERE) { "Back to the queue" } }
            div.card {
                @match shown {
                    Ok(text) => pre.message { (text) },
                    Err(e) => p.error { (format!("{e:#}")) },
                }
            }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ActForm {
    csrf: String,
    id: String,
    action: String,
}

async fn act(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(f): Form<ActForm>,
) -> Response {
    if let Err(r) = guard_post(&web, &conn, &headers, HERE, &f.csrf) {
        return r.into_response();
    }
    let command = format!("{} {}", f.action, f.id).parse::<Command>();
    let command = match command {
        Ok(
            c @ (Command::Retry(_) | Command::Hold(_) | Command::Release(_) | Command::Delete(_)),
        ) => c,
        _ => {
            web.sessions.flash(
                &headers,
                false,
                "That is not something the queue page can do.".into(),
            );
            return Redirect::to(HERE).into_response();
        }
    };
    let queue = web.queue.clone();
    let schedule = web.schedule.lock().expect("schedule").clone();
    let done = tokio::task::spawn_blocking(move || execute(&queue, Some(&schedule), command))
        .await
        .expect("no panic");
    match done {
        Ok(text) => web.sessions.flash(&headers, true, text.trim().to_string()),
        Err(e) => web.sessions.flash(&headers, false, format!("{e:#}")),
    }
    Redirect::to(HERE).into_response()
}
