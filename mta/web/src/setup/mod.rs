//! The first-boot wizard. While no account has the admin role the
//! appliance is unclaimed: it makes a one-time setup code, writes it to
//! `<data>/setup-code` (owner-only; init shows it on the console), and the
//! wizard does nothing before that code is entered — a stranger on the LAN
//! cannot claim the box. Wrong codes are limited like logins.
//!
//! Steps: code → domains and host name → the owner's account → an optional
//! relay → certificates from Let's Encrypt (on unless declined) → summary.
//! What is entered is kept here, per browser (a cookie), until the last
//! step writes the configuration in one atomic edit
//! (validated as a whole, as `mta check-config` does), makes the DKIM keys
//! and reloads the server. A power cut before that edit leaves the old
//! configuration; after it, the new one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::{Markup, html};
use mta_app::auth::Guess;
use serde::Deserialize;

use crate::layout::{Field, notice, page};
use crate::{Conn, Web, forms};

mod certificate;
mod finish;
mod steps;

pub(crate) use steps::{strength, strength_name};

/// Letters and digits that cannot be mistaken for each other on a screen.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const CODE_LEN: usize = 8;
const COOKIE: &str = "mailbox_setup";
/// Wizards in progress at once (each browser that entered the code).
const MAX_DRAFTS: usize = 8;
const DRAFT_LIFETIME: Duration = Duration::from_secs(3600);
const MAX_DOMAINS: usize = 20;
/// zxcvbn's score (0–4) a password needs: 3 is "safely unguessable".
pub(crate) const MIN_STRENGTH: u8 = 3;

pub struct Setup {
    path: PathBuf,
    /// The code while the appliance is unclaimed (`XXXX-XXXX`).
    code: Mutex<Option<String>>,
    drafts: Mutex<HashMap<String, Draft>>,
}

/// What the wizard has been told so far.
#[derive(Clone)]
struct Draft {
    csrf: String,
    started: Instant,
    domains: Vec<String>,
    hostname: String,
    owner: Option<Owner>,
    /// `None` until the relay step is done; `Some(None)`: direct delivery.
    relay: Option<Option<Relay>>,
    /// `None` until the certificate step is done; `Some(None)`: no
    /// Let's Encrypt; `Some(Some(contact))`: on, terms accepted.
    acme: Option<Option<String>>,
}

#[derive(Clone)]
struct Owner {
    address: String,
    hash: String,
    strength: u8,
}

#[derive(Clone)]
struct Relay {
    host: String,
    port: u16,
    implicit_tls: bool,
    username: String,
    password: String,
}

impl Setup {
    pub fn open(data_dir: &Path, unclaimed: bool) -> anyhow::Result<Setup> {
        let path = data_dir.join("setup-code");
        let code = if unclaimed {
            // A restart keeps the code the console already shows.
            let kept = std::fs::read_to_string(&path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|c| well_formed(c));
            Some(match kept {
                Some(code) => code,
                None => {
                    let code = generate();
                    mta_store::fsutil::write_atomically(
                        &path,
                        format!("{code}\n").as_bytes(),
                        0o600,
                    )?;
                    code
                }
            })
        } else {
            let _ = std::fs::remove_file(&path);
            None
        };
        if code.is_some() {
            tracing::info!(
                "no owner yet: the setup wizard waits for the code shown on the console"
            );
        }
        Ok(Setup {
            path,
            code: Mutex::new(code),
            drafts: Mutex::new(HashMap::new()),
        })
    }

    fn matches(&self, guess: &str) -> bool {
        let guess: String = guess
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        match &*self.code.lock().expect("setup code") {
            Some(code) => forms::same(&guess, &code.replace('-', "")),
            None => false,
        }
    }

    /// The wizard of this browser, if it entered the code.
    fn draft(&self, headers: &HeaderMap) -> Option<(String, Draft)> {
        let token = forms::cookie(headers, COOKIE)?;
        let mut drafts = self.drafts.lock().expect("drafts");
        drafts.retain(|_, d| d.started.elapsed() < DRAFT_LIFETIME);
        let draft = drafts.get(&token)?.clone();
        Some((token, draft))
    }

    fn start(&self) -> String {
        let token = forms::token();
        let mut drafts = self.drafts.lock().expect("drafts");
        drafts.retain(|_, d| d.started.elapsed() < DRAFT_LIFETIME);
        if drafts.len() >= MAX_DRAFTS
            && let Some(oldest) = drafts
                .iter()
                .min_by_key(|(_, d)| d.started)
                .map(|(t, _)| t.clone())
        {
            drafts.remove(&oldest);
        }
        drafts.insert(
            token.clone(),
            Draft {
                csrf: forms::token(),
                started: Instant::now(),
                domains: Vec::new(),
                hostname: String::new(),
                owner: None,
                relay: None,
                acme: None,
            },
        );
        token
    }

    fn save(&self, token: &str, draft: Draft) {
        self.drafts
            .lock()
            .expect("drafts")
            .insert(token.to_string(), draft);
    }

    /// The appliance has an owner: the code is spent.
    fn claimed(&self) {
        *self.code.lock().expect("setup code") = None;
        self.drafts.lock().expect("drafts").clear();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn generate() -> String {
    let mut code = String::new();
    for i in 0..CODE_LEN {
        if i == CODE_LEN / 2 {
            code.push('-');
        }
        let n: usize = rand::random_range(0..ALPHABET.len());
        code.push(char::from(ALPHABET[n]));
    }
    code
}

fn well_formed(code: &str) -> bool {
    code.len() == CODE_LEN + 1
        && code.bytes().enumerate().all(|(i, b)| {
            if i == CODE_LEN / 2 {
                b == b'-'
            } else {
                ALPHABET.contains(&b)
            }
        })
}

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/setup", get(code_page).post(code_submit))
        .route(
            "/setup/domains",
            get(steps::domains_page).post(steps::domains_submit),
        )
        .route(
            "/setup/owner",
            get(steps::owner_page).post(steps::owner_submit),
        )
        .route(
            "/setup/relay",
            get(steps::relay_page).post(steps::relay_submit),
        )
        .route(
            "/setup/certificate",
            get(certificate::page).post(certificate::submit),
        )
        .route("/setup/strength", post(steps::strength_check))
        .route("/setup/summary", get(finish::summary_page))
        .route("/setup/finish", post(finish::finish))
}

const STEPS: [&str; 6] = [
    "Code",
    "Domains",
    "Owner",
    "Outgoing mail",
    "Certificate",
    "Summary",
];

fn wizard(title: &str, step: usize, body: Markup) -> Markup {
    page(
        title,
        html! {
            ol.steps aria-label="Setup steps" {
                @for (i, name) in STEPS.iter().enumerate() {
                    li class=[if i < step { Some("done") } else if i == step { Some("now") } else { None }]
                        aria-current=[(i == step).then_some("step")] { (i + 1) ". " (name) }
                }
            }
            (body)
        },
    )
}

/// The browser's draft, or where the request goes instead when the wizard
/// is not (or no longer) the page to show.
fn current(web: &Web, headers: &HeaderMap) -> Result<(String, Draft), Box<Response>> {
    if web.claimed() {
        return Err(Box::new(Redirect::to("/").into_response()));
    }
    web.setup
        .draft(headers)
        .ok_or_else(|| Box::new(Redirect::to("/setup").into_response()))
}

/// A step's POST: the browser's draft, if the form's CSRF token is its.
fn posted(web: &Web, headers: &HeaderMap, csrf: &str) -> Result<(String, Draft), Box<Response>> {
    let (token, draft) = current(web, headers)?;
    if !forms::same(csrf, &draft.csrf) {
        return Err(Box::new(expired()));
    }
    Ok((token, draft))
}

fn expired() -> Response {
    (
        StatusCode::BAD_REQUEST,
        wizard(
            "Form expired",
            0,
            html! {
                (notice("bad", "This form has expired or was not sent from this page. Nothing was changed."))
                p { a.button href="/setup" { "Start again" } }
            },
        ),
    )
        .into_response()
}

// Step 1: the code.

#[derive(Deserialize, Default)]
#[serde(default)]
struct CodeForm {
    code: String,
}

async fn code_page(State(web): State<Arc<Web>>) -> Response {
    if web.claimed() {
        return Redirect::to("/").into_response();
    }
    code_form(None).into_response()
}

fn code_form(error: Option<&str>) -> Markup {
    wizard(
        "Set up your Mailbox",
        0,
        html! {
            h1 { "Set up your Mailbox" }
            p.lead { "A few questions and your own mail server is ready." }
            div.card {
                form method="post" action="/setup" {
                    (Field {
                        name: "code",
                        label: "Setup code",
                        kind: "text",
                        value: "",
                        help: Some("The code is shown on the appliance's screen (or its serial console), under “setup code”. It proves you are the one holding the box."),
                        error,
                        autocomplete: "one-time-code",
                    }.render())
                    div.actions { button type="submit" { "Continue" } }
                }
            }
        },
    )
}

async fn code_submit(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    Form(form): Form<CodeForm>,
) -> Response {
    if web.claimed() {
        return Redirect::to("/").into_response();
    }
    let guess = form.code.chars().take(64).collect::<String>();
    match web
        .logins
        .guess(conn.peer.ip(), "setup code", || web.setup.matches(&guess))
        .await
    {
        Guess::Right => {
            let token = web.setup.start();
            tracing::info!(
                "client={}: setup code accepted, the wizard starts",
                conn.peer
            );
            (
                [(
                    header::SET_COOKIE,
                    forms::set_cookie(COOKIE, &token, conn.secure, 3600),
                )],
                Redirect::to("/setup/domains"),
            )
                .into_response()
        }
        Guess::Wrong => (
            StatusCode::FORBIDDEN,
            code_form(Some(
                "That is not the code on the appliance's screen. Check it and try again.",
            )),
        )
            .into_response(),
        Guess::TryLater => (
            StatusCode::TOO_MANY_REQUESTS,
            code_form(Some(
                "Too many wrong codes from this address. Wait 15 minutes, then try again.",
            )),
        )
            .into_response(),
    }
}
