//! The HTTPS API `cargo xtask deploy` speaks: `PUT /api/update` with the
//! owner's credentials (HTTP Basic, checked through the same limiter as
//! every login) and a bundle as the body, streamed to the data partition
//! and checked as it comes (`mta_app::update`); `?force=1` allows a
//! downgrade. The answer is one line of text a person can read.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use base64::Engine;
use futures_util::StreamExt;
use mta_app::update::UpdateError;
use mta_proto::sasl::AuthOutcome;
use serde::Deserialize;

use crate::{Conn, Web};

/// How long the client may pause while sending, and the whole upload.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Received bytes written to the disk at a time.
const BATCH: usize = 1 << 20;

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

fn refusal(e: &UpdateError) -> StatusCode {
    match e {
        UpdateError::Busy => StatusCode::CONFLICT,
        UpdateError::NoKey => StatusCode::SERVICE_UNAVAILABLE,
        UpdateError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        UpdateError::NoRoom => StatusCode::INSUFFICIENT_STORAGE,
        UpdateError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        UpdateError::Bundle(_) => StatusCode::UNPROCESSABLE_ENTITY,
    }
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
    let upload = match web.update.begin(force) {
        Ok(u) => u,
        Err(e) => return text(refusal(&e), e.to_string()),
    };
    // A refused bundle is still read to its end (within the limits), so
    // the client, still sending, hears why.
    let received = tokio::time::timeout(UPLOAD_TIMEOUT, async {
        let mut stream = body.into_data_stream();
        let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
        let mut upload = Some(upload);
        let mut refused: Option<Response> = None;
        let mut total: u64 = 0;
        loop {
            let chunk = match tokio::time::timeout(CHUNK_TIMEOUT, stream.next()).await {
                Err(_) => {
                    return Err(text(
                        StatusCode::REQUEST_TIMEOUT,
                        "the upload stalled".into(),
                    ));
                }
                Ok(None) => None,
                Ok(Some(Err(e))) => {
                    return Err(text(
                        StatusCode::BAD_REQUEST,
                        format!("the upload broke off: {e}"),
                    ));
                }
                Ok(Some(Ok(chunk))) => Some(chunk),
            };
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                total += chunk.len() as u64;
                if total > mta_app::update::MAX_BUNDLE + (1 << 20) {
                    // Past any bundle: not worth reading on.
                    return Err(refused.unwrap_or_else(|| {
                        text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            UpdateError::TooLarge.to_string(),
                        )
                    }));
                }
                if upload.is_some() {
                    batch.extend_from_slice(&chunk);
                }
            }
            let flush = batch.len() >= BATCH || (done && !batch.is_empty());
            if flush && let Some(mut receiving) = upload.take() {
                let bytes = std::mem::take(&mut batch);
                let (back, pushed) = tokio::task::spawn_blocking(move || {
                    let pushed = receiving.push(&bytes);
                    (receiving, pushed)
                })
                .await
                .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                match pushed {
                    Ok(()) => upload = Some(back),
                    // Dropped: what was stored goes.
                    Err(e) => refused = Some(text(refusal(&e), e.to_string())),
                }
            }
            if done {
                return match (upload, refused) {
                    (_, Some(response)) => Err(response),
                    (Some(upload), None) => Ok(upload),
                    (None, None) => {
                        Err(text(StatusCode::INTERNAL_SERVER_ERROR, "no upload".into()))
                    }
                };
            }
        }
    })
    .await;
    let upload = match received {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "the upload took too long".into(),
            );
        }
        Ok(Err(response)) => return response,
        Ok(Ok(upload)) => upload,
    };
    match tokio::task::spawn_blocking(move || upload.finish()).await {
        Ok(Ok(manifest)) => text(
            StatusCode::OK,
            format!(
                "version {} accepted; the appliance installs it and restarts (about a minute)",
                manifest.version
            ),
        ),
        Ok(Err(e)) => text(refusal(&e), e.to_string()),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
