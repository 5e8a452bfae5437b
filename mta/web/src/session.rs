//! The owner's logins to the admin pages: a random token in a cookie
//! (`Secure; HttpOnly; SameSite=Strict`) naming a session kept here, with
//! its own CSRF token that every form must send back. Sessions end after
//! 12 hours, at log-out, or when the account loses its admin role or its
//! password changes; at most [`MAX_SESSIONS`] exist (the oldest go).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::forms;

pub const COOKIE: &str = "mailbox_session";
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
pub const MAX_SESSIONS: usize = 64;

#[derive(Debug, Clone)]
pub struct Session {
    pub account: String,
    pub csrf: String,
    /// The password hash at login: a change ends the session.
    credential: Option<String>,
    started: Instant,
    /// What the last change did, shown once on the next page: (ok, text).
    pub flash: Option<(bool, String)>,
}

#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `account`; returns its token.
    pub fn start(&self, account: String, credential: Option<String>) -> String {
        let token = forms::token();
        let mut map = self.by_token.lock().expect("sessions");
        map.retain(|_, s| s.started.elapsed() < LIFETIME);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(t, _)| t.clone())
                .expect("not empty");
            map.remove(&oldest);
        }
        map.insert(
            token.clone(),
            Session {
                account,
                csrf: forms::token(),
                credential,
                started: Instant::now(),
                flash: None,
            },
        );
        token
    }

    /// The session of the request, if it is valid: `still` says whether the
    /// account may still be in (admin role, same password hash).
    pub fn of(
        &self,
        headers: &HeaderMap,
        still: impl Fn(&str, Option<&str>) -> bool,
    ) -> Option<Session> {
        let token = forms::cookie(headers, COOKIE)?;
        let mut map = self.by_token.lock().expect("sessions");
        let session = map.get(&token)?;
        if session.started.elapsed() >= LIFETIME
            || !still(&session.account, session.credential.as_deref())
        {
            map.remove(&token);
            return None;
        }
        let shown = session.clone();
        if let Some(s) = map.get_mut(&token) {
            s.flash = None;
        }
        Some(shown)
    }

    /// A message for the next page of the request's session.
    pub fn flash(&self, headers: &HeaderMap, ok: bool, text: String) {
        if let Some(token) = forms::cookie(headers, COOKIE)
            && let Some(s) = self.by_token.lock().expect("sessions").get_mut(&token)
        {
            s.flash = Some((ok, text));
        }
    }

    pub fn end(&self, headers: &HeaderMap) {
        if let Some(token) = forms::cookie(headers, COOKIE) {
            self.by_token.lock().expect("sessions").remove(&token);
        }
    }
}
