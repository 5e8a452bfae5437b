//! What every form handler needs: random tokens, cookies, constant-time
//! comparison, and the limits on what a person may type.

use axum::http::HeaderMap;
use base64::Engine;

/// A form that carries nothing but the session's CSRF token (a button).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    pub csrf: String,
}

/// A fresh random token (32 bytes, URL-safe base64).
pub fn token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value: only for this site, never to scripts, over TLS
/// when the connection is; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: u64) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    if secure {
        c.push_str("; Secure");
    }
    c
}

pub use mta_app::password::same;

/// The longest text a field accepts (an address is at most 256).
pub const MAX_FIELD: usize = 1024;

/// `text` trimmed, or why it cannot be used.
pub fn text<'a>(text: &'a str, what: &str, required: bool) -> Result<&'a str, String> {
    let t = text.trim();
    if t.is_empty() && required {
        return Err(format!("Enter {what}."));
    }
    if t.len() > MAX_FIELD {
        return Err(format!(
            "That is too long (at most {MAX_FIELD} characters)."
        ));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\r') {
        return Err("That contains characters that cannot be used.".into());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; mailbox_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "mailbox_session").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "session"), None);
    }

    #[test]
    fn comparison_and_text_limits() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert_eq!(text("  x ", "a name", true), Ok("x"));
        assert!(
            text("", "a name", true)
                .unwrap_err()
                .contains("Enter a name")
        );
        assert!(text(&"x".repeat(2000), "a name", true).is_err());
        assert!(text("a\u{0}b", "a name", true).is_err());
    }
}
