//! SASL for SMTP AUTH (RFC 4954) and the SMTP client (later IMAP): the PLAIN (RFC 4616) and LOGIN exchanges.
//! Decoding only; checking the password is the directory's job, and
//! refusing AUTH outside TLS is the session's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The adapter's verdict on a login (the password check is not a
/// protocol's: it is slow, limited and done off the event loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The account (lower-case address) that logged in.
    Accepted(String),
    Rejected,
    /// Too many failures from this client or for this account.
    TryLater,
}

/// Mechanisms offered (only ever under TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// What the client sent. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials({}, {:?}, …)",
            self.mechanism.name(),
            self.username
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("the response is not valid base64")]
    Base64,
    #[error("the response is not valid UTF-8")]
    Utf8,
    #[error("the PLAIN response must be authzid NUL authcid NUL password")]
    PlainFormat,
    #[error("acting as another user (authorization identity) is not allowed")]
    Authzid,
}

pub fn decode_text(b64: &str) -> Result<String, SaslError> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|_| SaslError::Base64)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Utf8)
}

pub fn encode_text(text: &str) -> String {
    STANDARD.encode(text)
}

/// `[authzid] NUL authcid NUL passwd`
pub fn decode_plain(b64: &str) -> Result<Credentials, SaslError> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|_| SaslError::Base64)?;
    let parts: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
    let [authzid, authcid, password] = parts.as_slice() else {
        return Err(SaslError::PlainFormat);
    };
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| SaslError::Utf8)
    };
    let (authzid, username, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if username.is_empty() {
        return Err(SaslError::PlainFormat);
    }
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(&username) {
        return Err(SaslError::Authzid);
    }
    Ok(Credentials {
        mechanism: Mechanism::Plain,
        username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_authzid() {
        let c = decode_plain(&STANDARD.encode("\0alice@example.org\0secret")).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice@example.org", "secret")
        );
        assert!(decode_plain(&STANDARD.encode("alice@example.org\0alice@example.org\0s")).is_ok());
        assert_eq!(
            decode_plain(&STANDARD.encode("bob@example.org\0alice@example.org\0s")),
            Err(SaslError::Authzid)
        );
        assert_eq!(
            decode_plain(&STANDARD.encode("nopassword")),
            Err(SaslError::PlainFormat)
        );
        assert_eq!(decode_plain("!!!"), Err(SaslError::Base64));
    }

    #[test]
    fn debug_hides_the_password() {
        let c = decode_plain(&STANDARD.encode("\0a@b.c\0hunter2")).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
