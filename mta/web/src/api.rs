//! The HTTPS API `cargo xtask deploy` speaks: `PUT /api/update` with the
//! owner's credentials (HTTP Basic, checked through the same limiter as
//! every login) and a bundle as the body, streamed to the data partition
//! and checked as it comes (`mta_app::update`); `?force=1` allows a
//! downgrade. The answer is one line of text a person can read.

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use base64::Engine;
use mta_proto::sasl::AuthOutcome;
use serde::Deserialize;

use crate::{Conn, Web};

pub fn routes() -> Router<Arc<Web>> {
    // The bundle is larger than any form: the upload keeps its own limit.
    Router::new().route(
        "/api/update",
        put(update).layer(DefaultBodyLimit::disable()),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Options {
    force: String,
}

fn text(status: StatusCode, line: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        line + "\n",
    )
        .into_response()
}

/// The credentials of an `Authorization: Basic` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

async fn update(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Query(options): Query<Options>,
    body: Body,
) -> Response {
    if !conn.secure {
        return text(
            StatusCode::FORBIDDEN,
            "updates are accepted over HTTPS only (port 443)".into(),
        );
    }
    let Some((user, password)) = basic(&headers) else {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "log in as the owner (HTTP Basic)".into(),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Mailbox\""),
        );
        return r;
    };
    let settings = web.settings.get();
    let outcome = web
        .logins
        .login(settings.directory.clone(), conn.peer, user, password, "api")
        .await;
    match outcome {
        AuthOutcome::Accepted(account)
            if settings
                .config
                .accounts
                .iter()
                .any(|a| a.admin && a.address.key() == account) => {}
        AuthOutcome::Accepted(_) => {
            return text(
                StatusCode::FORBIDDEN,
                "only the owner may update the appliance".into(),
            );
        }
        AuthOutcome::Rejected => {
            return text(StatusCode::UNAUTHORIZED, "wrong address or password".into());
        }
        AuthOutcome::TryLater => {
            return text(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed logins from this address; wait 15 minutes".into(),
            );
        }
    }
    let force = matches!(options.force.as_str(), "1" | "true" | "yes");
    match web
        .update
        .receive(force, None, body.into_data_stream())
        .await
    {
        Ok(manifest) => text(
            StatusCode::OK,
            format!(
                "version {} accepted; the appliance installs it and restarts (about a minute)",
                manifest.version
            ),
        ),
        Err(e) => {
            let (status, line) = crate::upload::refusal(e);
            text(status, line)
        }
    }
}
