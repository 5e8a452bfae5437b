//! Password hashes stored in the configuration: argon2id (what Mailbox writes)
//! and the `$5$`/`$6$` SHA-crypt hashes that `mkpasswd` and old Dovecot or
//! PostfixAdmin setups produce. Plain-text passwords are never accepted.

use std::fmt;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// The longest password checked, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    text: String,
    scheme: Scheme,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Argon2,
    ShaCrypt,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("it is not an argon2 ($argon2id$…) or SHA-crypt ($5$…, $6$…) hash")]
    UnknownScheme,
    #[error("the hash is malformed")]
    Malformed,
}

impl fmt::Debug for PasswordHash {
    // Hashes are secrets too: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({:?}, …)", self.scheme)
    }
}

impl PasswordHash {
    pub fn parse(text: &str) -> Result<PasswordHash, HashError> {
        let scheme = if text.starts_with("$argon2") {
            argon2::PasswordHash::new(text).map_err(|_| HashError::Malformed)?;
            Scheme::Argon2
        } else if text.starts_with("$5$") || text.starts_with("$6$") {
            sha_crypt::PasswordHashRef::new(text).map_err(|_| HashError::Malformed)?;
            Scheme::ShaCrypt
        } else {
            return Err(HashError::UnknownScheme);
        };
        Ok(PasswordHash {
            text: text.to_string(),
            scheme,
        })
    }

    /// Hashes a new password with argon2id and a random salt.
    pub fn create(password: &str) -> PasswordHash {
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .expect("argon2 with default parameters cannot fail");
        PasswordHash {
            text: hash.to_string(),
            scheme: Scheme::Argon2,
        }
    }

    /// A fixed hash to verify against when the user does not exist, so a
    /// login attempt for an unknown user takes as long as one for a known
    /// user (no user enumeration by timing).
    pub fn dummy() -> PasswordHash {
        static DUMMY: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
        DUMMY
            .get_or_init(|| PasswordHash::create("no such user"))
            .clone()
    }

    /// Constant-time check of `password` against this hash. Passwords
    /// longer than [`MAX_PASSWORD_LEN`] fail without hashing: SHA-crypt's
    /// cost grows with the length, and no one types that much.
    pub fn verify(&self, password: &str) -> bool {
        if password.len() > MAX_PASSWORD_LEN {
            return false;
        }
        match self.scheme {
            Scheme::Argon2 => Argon2::default()
                .verify_password(password.as_bytes(), self.text.as_str())
                .is_ok(),
            Scheme::ShaCrypt => sha_crypt::ShaCrypt::default()
                .verify_password(password.as_bytes(), self.text.as_str())
                .is_ok(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Equal, in time that does not depend on where they differ (secrets:
/// tokens, codes, hashes).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let h = PasswordHash::create("correct horse");
        assert!(h.as_str().starts_with("$argon2id$"));
        let parsed = PasswordHash::parse(h.as_str()).unwrap();
        assert!(parsed.verify("correct horse"));
        assert!(!parsed.verify("wrong horse"));
    }

    #[test]
    fn sha512_crypt_reference_vector_verifies() {
        // The example from the SHA-crypt specification (Drepper).
        let h = PasswordHash::parse(
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        )
        .unwrap();
        assert!(h.verify("Hello world!"));
        assert!(!h.verify("Hello world"));
    }

    #[test]
    fn sha256_crypt_reference_vector_verifies() {
        let h = PasswordHash::parse("$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5")
            .unwrap();
        assert!(h.verify("Hello world!"));
    }

    #[test]
    fn overlong_passwords_fail_without_hashing() {
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        // Even the right password: it is refused before any hashing.
        assert!(!PasswordHash::create(&long).verify(&long));
        let limit = "x".repeat(MAX_PASSWORD_LEN);
        assert!(PasswordHash::create(&limit).verify(&limit));
    }

    #[test]
    fn plain_text_is_refused() {
        assert!(matches!(
            PasswordHash::parse("hunter2"),
            Err(HashError::UnknownScheme)
        ));
        assert!(PasswordHash::parse("$6$").is_err());
    }

    #[test]
    fn debug_does_not_show_the_hash() {
        let h = PasswordHash::create("x");
        assert!(!format!("{h:?}").contains("argon2id$"));
    }
}
