//! `[update]`: what updates must be and where they come from. On the
//! appliance the trusted key and the board come from the image
//! (`/etc/mailbox/update-key.pub`, os-release); a configuration may name
//! them (a server run outside the image, the tests).

use super::check::Checker;
use super::*;

impl Checker<'_> {
    pub(super) fn update(&mut self, raw: Option<&RawUpdate>) -> UpdatePolicy {
        let Some(raw) = raw else {
            return UpdatePolicy::default();
        };
        let public_key = raw.public_key.as_ref().and_then(|k| {
            let key = parse_key(k.get_ref());
            if key.is_none() {
                self.report(
                    k.span(),
                    "`public_key` is not an Ed25519 public key",
                    Some("write the 64 hex digits `cargo xtask bundle` trusts (the image's /etc/mailbox/update-key.pub)"),
                );
            }
            key
        });
        UpdatePolicy {
            public_key,
            board: raw.board.clone(),
        }
    }
}

/// 64 hex digits as a key.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    image::bundle::parse_public_key(text)
}
