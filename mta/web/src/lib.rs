//! Mailbox's web: the only crate that speaks HTTP. The first-boot wizard
//! (while the appliance has no owner, behind the one-time setup code shown
//! on its console), the owner's login and admin pages, and the DNS records
//! to publish.
//!
//! Pages render on the server ([maud] templates, checked at compile time)
//! and work without JavaScript; the one stylesheet and the one script are in
//! the binary. Every change to the configuration goes through
//! `mta_app::config::edit`, the same path as `mta user`.
//!
//! Not here: sockets and TLS (the `mta` binary's `serve` hands each
//! connection's requests to [`router`]), what the configuration means
//! (`mta-app`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mta_app::auth::Logins;
use mta_app::settings::Live;

mod admin;
mod api;
mod autoconfig;
mod dns;
mod forms;
mod layout;
mod login;
mod session;
mod setup;
mod upload;

/// What the web is made of: the server's parts it uses.
pub struct Parts {
    pub settings: Live,
    pub logins: Arc<Logins>,
    pub dns: Arc<mta_app::dns::Dns>,
    pub queue: mta_store::queue::Queue,
    pub schedule: std::sync::mpsc::Sender<mta_store::queue::Schedule>,
    /// The certificate's keeper: its HTTP-01 answers, its report.
    pub acme: Arc<mta_app::acme::Acme>,
    /// Where update bundles are received and handed to init.
    pub update: Arc<mta_app::update::Receiver>,
    /// The update URL checked, if any.
    pub feed: Option<Arc<mta_app::feed::Feed>>,
    /// The DMARC and TLS reports received about our domains (none: not
    /// kept).
    pub received: Option<Arc<mta_app::inbound::received::Received>>,
}

/// Everything the pages share.
pub struct Web {
    settings: Live,
    logins: Arc<Logins>,
    /// The server's one resolver (the DNS check asks it).
    dns: Arc<mta_app::dns::Dns>,
    queue: mta_store::queue::Queue,
    schedule: std::sync::Mutex<std::sync::mpsc::Sender<mta_store::queue::Schedule>>,
    acme: Arc<mta_app::acme::Acme>,
    update: Arc<mta_app::update::Receiver>,
    feed: Option<Arc<mta_app::feed::Feed>>,
    received: Option<Arc<mta_app::inbound::received::Received>>,
    setup: setup::Setup,
    sessions: session::Sessions,
    /// The port the HTTPS listener is bound to (0: none), for redirects.
    https_port: std::sync::atomic::AtomicU16,
}

impl Web {
    /// The web of the server whose settings are `settings`: while nobody
    /// owns the appliance, a setup code is made (or the one made before is
    /// kept) and written to `<data>/setup-code` for init's banner.
    pub fn new(parts: Parts) -> anyhow::Result<Web> {
        let Parts {
            settings,
            logins,
            dns,
            queue,
            schedule,
            acme,
            update,
            feed,
            received,
        } = parts;
        let config = settings.get().config.clone();
        let setup = setup::Setup::open(&config.data_dir, config.owner().is_none())?;
        Ok(Web {
            settings,
            logins,
            dns,
            queue,
            schedule: std::sync::Mutex::new(schedule),
            acme,
            update,
            feed,
            received,
            setup,
            sessions: session::Sessions::default(),
            https_port: std::sync::atomic::AtomicU16::new(0),
        })
    }

    /// The HTTPS listener is bound to `port`: plain HTTP sends people there.
    pub fn serving_https_on(&self, port: u16) {
        self.https_port
            .store(port, std::sync::atomic::Ordering::Relaxed);
    }

    fn claimed(&self) -> bool {
        self.settings.get().config.owner().is_some()
    }
}

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    /// Over TLS (port 443).
    pub secure: bool,
}

/// Forms are small: nothing a person types is longer.
const MAX_BODY: usize = 64 * 1024;

/// The routes for one connection (`conn` says where it came from).
pub fn router(web: Arc<Web>, conn: Conn) -> Router {
    let rule = (web.clone(), conn);
    Router::new()
        .route("/", get(home))
        .merge(setup::routes())
        .merge(login::routes())
        .merge(dns::routes())
        .merge(admin::routes())
        .merge(autoconfig::routes())
        .merge(api::routes())
        .route("/.well-known/acme-challenge/{token}", get(acme_challenge))
        .route("/assets/style.css", get(style))
        .route("/assets/app.js", get(script))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(rule, plain_http_rule))
        .layer(axum::Extension(conn))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(web)
}

async fn home(
    axum::extract::State(web): axum::extract::State<Arc<Web>>,
    axum::Extension(conn): axum::Extension<Conn>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !web.claimed() {
        return axum::response::Redirect::to("/setup").into_response();
    }
    if !conn.secure {
        return login::to_https(&web, &headers, "/").into_response();
    }
    axum::response::Redirect::to("/accounts").into_response()
}

/// The CA's HTTP-01 validation request (RFC 8555 §8.3): the key
/// authorization of a waiting challenge, as plain text.
async fn acme_challenge(
    axum::extract::State(web): axum::extract::State<Arc<Web>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match web.acme.http01().answer(&token) {
        Some(answer) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response()
        }
        None => (axum::http::StatusCode::NOT_FOUND, "no such challenge\n").into_response(),
    }
}

async fn not_found() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        layout::page(
            "Not found",
            maud::html! {
                h1 { "Not found" }
                p { "There is no such page. " a href="/" { "Back to the start" } }
            },
        ),
    )
        .into_response()
}

async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Paths plain HTTP still serves once a real certificate exists: the
/// MTA-STS policy and (with ACME) the HTTP-01 challenges.
const PLAIN_HTTP_PATHS: &[&str] = &["/.well-known/mta-sts.txt", "/.well-known/acme-challenge/"];

/// With a certificate browsers trust (not the self-signed one), port 80
/// only sends people to HTTPS; with the self-signed one it also serves
/// the wizard (an unclaimed box is set up by IP or `mailbox.local`, where
/// a warning would be the first thing its owner sees) and client set-up.
async fn plain_http_rule(
    axum::extract::State((web, conn)): axum::extract::State<(Arc<Web>, Conn)>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let trusted = web.settings.get().certs.issued();
    if conn.secure || !trusted || PLAIN_HTTP_PATHS.iter().any(|p| path.starts_with(p)) {
        return next.run(request).await;
    }
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    login::to_https(&web, request.headers(), &path).into_response()
}

/// The headers every answer carries: no inline script or style, no
/// framing, no type sniffing, no referrer, and nothing cached that a
/// session shows.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}
