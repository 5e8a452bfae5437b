//! `[update]`: what updates must be and where they come from. On the
//! appliance the trusted key and the board come from the image
//! (`/etc/mailbox/update-key.pub`, os-release); a configuration may name
//! them (a server run outside the image, the tests). `url` and
//! `check_every`: where new versions are looked for, and how often.

use std::time::Duration;

use super::check::Checker;
use super::*;

/// How often the update URL is asked, unless configured.
const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);
const MIN_CHECK_EVERY: Duration = Duration::from_secs(10);

impl Checker<'_> {
    pub(super) fn update(&mut self, raw: Option<&RawUpdate>) -> UpdatePolicy {
        let Some(raw) = raw else {
            return UpdatePolicy {
                check_every: DEFAULT_CHECK_EVERY,
                ..UpdatePolicy::default()
            };
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
        let url = raw.url.as_ref().and_then(|u| {
            let text = u.get_ref().trim();
            let ok = (text.starts_with("https://") || text.starts_with("http://"))
                && text.len() <= 2000
                && !text.contains(char::is_whitespace);
            if !ok {
                self.report(
                    u.span(),
                    format!("`url` = {text:?} is not an http or https address"),
                    Some("write the address of the directory the bundles are published in, such as \"https://updates.example.org/mailbox/\""),
                );
                return None;
            }
            Some(if text.ends_with('/') {
                text.to_string()
            } else {
                format!("{text}/")
            })
        });
        let mut check_every = self.duration(&raw.check_every, DEFAULT_CHECK_EVERY, "check_every");
        if check_every < MIN_CHECK_EVERY {
            if let Some(v) = &raw.check_every {
                self.report(
                    v.span(),
                    format!("`check_every` = {:?} is too often", v.get_ref()),
                    Some("ask at most every ten seconds (\"10s\"); once a day (\"1d\") is plenty"),
                );
            }
            check_every = DEFAULT_CHECK_EVERY;
        }
        UpdatePolicy {
            public_key,
            board: raw.board.clone(),
            url,
            check_every,
        }
    }
}

/// 64 hex digits as a key.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    image::bundle::parse_public_key(text)
}
