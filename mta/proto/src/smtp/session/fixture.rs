//! A directory for the session's tests: `example.org` with the accounts
//! alice (password `Hello world!`) and bob (no login), the alias `both`,
//! and plus-addressing with `+` — the rules of the real directory
//! (`mta-app`) that the session's behaviour depends on, and no more.

use std::collections::BTreeMap;

use super::{Directory, Lookup};
use crate::address::Address;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Local {
        account: String,
        delivered_to: String,
    },
    Remote {
        address: String,
    },
}

#[derive(Clone)]
pub(crate) struct Fixture {
    /// Account → password (`None`: cannot log in).
    accounts: BTreeMap<String, Option<String>>,
    aliases: BTreeMap<String, Vec<String>>,
    /// Account → bytes left under its quota (none: no quota).
    room: BTreeMap<String, u64>,
}

impl Default for Fixture {
    fn default() -> Fixture {
        Fixture {
            accounts: [
                (
                    "alice@example.org".to_string(),
                    Some("Hello world!".to_string()),
                ),
                ("bob@example.org".to_string(), None),
            ]
            .into(),
            aliases: [(
                "both@example.org".to_string(),
                vec![
                    "alice@example.org".to_string(),
                    "bob@example.org".to_string(),
                ],
            )]
            .into(),
            room: BTreeMap::new(),
        }
    }
}

impl Fixture {
    /// The account's password changed.
    pub(crate) fn with_password(mut self, account: &str, password: &str) -> Fixture {
        self.accounts
            .insert(account.to_string(), Some(password.to_string()));
        self
    }

    /// The account has a quota with `bytes` left.
    pub(crate) fn with_room(mut self, account: &str, bytes: u64) -> Fixture {
        self.room.insert(account.to_string(), bytes);
        self
    }

    /// The account was deleted.
    pub(crate) fn without(mut self, account: &str) -> Fixture {
        self.accounts.remove(account);
        self
    }

    pub(crate) fn with_alias(mut self, alias: &str, targets: &[&str]) -> Fixture {
        self.aliases.insert(
            alias.to_string(),
            targets.iter().map(|t| t.to_string()).collect(),
        );
        self
    }

    /// The harness's password check: the account that logs in.
    pub(crate) fn verify_password(&self, username: &str, password: &str) -> Option<String> {
        let account = username.to_lowercase();
        (self.accounts.get(&account)?.as_deref()? == password).then_some(account)
    }

    fn targets(&self, rcpt: &Address) -> Vec<Target> {
        let key = rcpt.key();
        let base = match key.split_once('@') {
            Some((local, domain)) => match local.split_once('+') {
                Some((user, _)) => format!("{user}@{domain}"),
                None => key.clone(),
            },
            None => key.clone(),
        };
        if self.accounts.contains_key(&base) {
            return vec![Target::Local {
                account: base,
                delivered_to: rcpt.to_string(),
            }];
        }
        let Some(targets) = self.aliases.get(&base) else {
            return Vec::new();
        };
        targets
            .iter()
            .map(|t| match self.accounts.contains_key(t) {
                true => Target::Local {
                    account: t.clone(),
                    delivered_to: t.clone(),
                },
                false => Target::Remote { address: t.clone() },
            })
            .collect()
    }
}

impl Directory for Fixture {
    type Target = Target;
    type Error = std::convert::Infallible;

    fn lookup(&self, rcpt: &Address) -> Result<Lookup<Target>, Self::Error> {
        if rcpt.domain() != "example.org" {
            return Ok(Lookup::NotLocal);
        }
        let targets = self.targets(rcpt);
        Ok(match targets.is_empty() {
            true => Lookup::Unknown,
            false => Lookup::Deliver(targets),
        })
    }

    fn remote(&self, rcpt: &Address) -> Target {
        Target::Remote {
            address: rcpt.to_string(),
        }
    }

    fn same_mailbox(&self, a: &Target, b: &Target) -> bool {
        matches!((a, b), (Target::Local { account: x, .. }, Target::Local { account: y, .. }) if x == y)
    }

    fn credential(&self, account: &str) -> Option<String> {
        self.accounts.get(account)?.clone()
    }

    fn has_room(&self, target: &Target, size: u64) -> bool {
        match target {
            Target::Local { account, .. } => self
                .room
                .get(account)
                .is_none_or(|left| *left > 0 && size <= *left),
            Target::Remote { .. } => true,
        }
    }

    fn may_send_as(&self, account: &str, sender: &Address) -> bool {
        self.targets(sender)
            .iter()
            .any(|t| matches!(t, Target::Local { account: a, .. } if a == account))
    }

    fn primary_domain(&self) -> Option<&str> {
        Some("example.org")
    }
}
