//! Who receives mail here: domains, accounts, aliases, catch-alls,
//! plus-addressing and the always-routable postmaster and abuse addresses.
//!
//! Pure data built from the configuration's addressing part ([`Parts`]; it
//! imports nothing of the configuration); the SMTP session asks it at `RCPT`
//! time and the queue stores the answer. It touches the disk only to learn
//! whether a mailbox with a quota is full (its usage, counted by the
//! [`Maildirs`] at most every few minutes and kept up to date meanwhile).

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use crate::password::PasswordHash;
use crate::srs::Srs;
use mta_proto::address::Address;
use mta_store::maildir::Maildirs;

pub use mta_store::envelope::Target;

/// The answer for one recipient: ours (and its targets), not ours, unknown.
pub type Lookup = mta_proto::smtp::session::Lookup<Target>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{0} leads to an alias loop (or more than {MAX_DEPTH} levels of aliases)")]
    Loop(String),
    #[error("{0} is in a local domain but is neither an account nor an alias")]
    Unknown(String),
}

const MAX_DEPTH: usize = 10;

/// What the SMTP session asks (the same answers as the methods of the same
/// names).
impl mta_proto::smtp::session::Directory for Directory {
    type Target = Target;
    type Error = ResolveError;

    fn lookup(&self, rcpt: &Address) -> Result<Lookup, ResolveError> {
        Directory::lookup(self, rcpt)
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
        Directory::credential(self, account)
    }

    fn may_send_as(&self, account: &str, sender: &Address) -> bool {
        Directory::may_send_as(self, account, sender)
    }

    fn primary_domain(&self) -> Option<&str> {
        Directory::primary_domain(self)
    }

    fn has_room(&self, target: &Target, size: u64) -> bool {
        let Target::Local { account, .. } = target else {
            return true;
        };
        match self.quota_use(account) {
            Some((used, limit)) => used < limit && used.saturating_add(size) <= limit,
            None => true,
        }
    }
}

/// An account that receives mail (and may log in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub address: Address,
    pub password: Option<PasswordHash>,
    /// Extra sender addresses this account may use when submitting:
    /// addresses, or `*@domain` for a whole domain.
    pub send_as: Vec<String>,
    /// Senders whose mail is never put in Junk for this account: lower-case
    /// addresses, and `@domain` for whole domains.
    pub allow: Vec<String>,
    /// The owner: may log in to the admin web.
    pub admin: bool,
    /// What its mail may take, in bytes (0: no limit); `None`: the
    /// default of `[limits] quota`.
    pub quota: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Directory {
    domains: HashSet<String>,
    /// lower-case address → the account as configured
    accounts: HashMap<String, Account>,
    aliases: HashMap<String, Vec<Address>>,
    delimiter: String,
    postmaster: Option<Address>,
    first_account: Option<Address>,
    /// Addresses (and whole local domains) that a transport hands to
    /// another server, such as an LMTP service: they exist without an
    /// account.
    routed: HashSet<String>,
    /// `[limits] quota`: what an account's mail may take unless it says.
    default_quota: u64,
    /// Where the accounts' usage is known (quota checks; none: no checks).
    maildirs: Option<Maildirs>,
    /// What reads bounce addresses of forwarded mail (none: nothing is
    /// rewritten, and `SRS0=…` is an ordinary local part).
    srs: Option<Arc<Srs>>,
}

/// What a directory is made of (the checked configuration's addressing
/// part; the configuration's `Config::directory` fills it in).
pub struct Parts<'a> {
    pub domains: &'a [String],
    pub accounts: &'a [Account],
    pub aliases: &'a std::collections::BTreeMap<String, Vec<Address>>,
    pub recipient_delimiter: &'a str,
    pub postmaster: Option<&'a Address>,
    /// Addresses and domains a transport hands to another server.
    pub routed: Vec<String>,
    /// `[limits] quota` (0: no limit).
    pub quota: u64,
}

impl Directory {
    pub fn new(parts: Parts<'_>) -> Directory {
        Directory {
            domains: parts.domains.iter().cloned().collect(),
            accounts: parts
                .accounts
                .iter()
                .map(|a| (a.address.key(), a.clone()))
                .collect(),
            aliases: parts
                .aliases
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            delimiter: parts.recipient_delimiter.to_string(),
            postmaster: parts.postmaster.cloned(),
            first_account: parts.accounts.first().map(|a| a.address.clone()),
            routed: parts.routed.into_iter().collect(),
            default_quota: parts.quota,
            maildirs: None,
            srs: None,
        }
    }

    /// The directory, checking quotas against the usage `maildirs` knows.
    pub fn with_usage(self, maildirs: Maildirs) -> Directory {
        Directory {
            maildirs: Some(maildirs),
            ..self
        }
    }

    /// The directory, sending bounces to the senders `srs` rewrote back to
    /// them.
    pub fn with_srs(self, srs: Arc<Srs>) -> Directory {
        Directory {
            srs: Some(srs),
            ..self
        }
    }

    /// What `account`'s mail may take (bytes), if it has a limit.
    pub fn quota_of(&self, account: &str) -> Option<u64> {
        let a = self.accounts.get(account)?;
        Some(a.quota.unwrap_or(self.default_quota)).filter(|q| *q > 0)
    }

    /// `account`'s usage and its limit (bytes), if it has a limit; a usage
    /// that cannot be counted is logged and counts as none.
    pub fn quota_use(&self, account: &str) -> Option<(u64, u64)> {
        let limit = self.quota_of(account)?;
        let used = match self.maildirs.as_ref()?.usage(account) {
            Ok(u) => u.bytes,
            Err(e) => {
                tracing::warn!("the mail of {account} cannot be counted: {e}");
                0
            }
        };
        Some((used, limit))
    }

    /// Checks a login; returns the account (lower-case address). Unknown
    /// users cost as much time as wrong passwords, so the answer does not
    /// tell which accounts exist.
    pub fn verify_password(&self, username: &str, password: &str) -> Option<String> {
        let key = Address::parse(username.trim(), true).ok().map(|a| a.key());
        match key
            .as_ref()
            .and_then(|k| self.accounts.get(k)?.password.as_ref())
        {
            Some(hash) => hash.verify(password).then(|| key.expect("found by key")),
            None => {
                self.decoy(username).verify(password);
                None
            }
        }
    }

    /// The hash an unknown user's password is checked against: one of the
    /// real accounts' hashes, always the same for one name, so an unknown
    /// user costs what a known one of the same scheme and parameters costs
    /// (a `$6$` account answers faster than argon2). The result is thrown
    /// away.
    fn decoy(&self, username: &str) -> PasswordHash {
        use std::hash::{Hash, Hasher};
        let mut hashes: Vec<&PasswordHash> = self
            .accounts
            .values()
            .filter_map(|a| a.password.as_ref())
            .collect();
        if hashes.is_empty() {
            return PasswordHash::dummy();
        }
        hashes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        username.to_lowercase().hash(&mut h);
        hashes[h.finish() as usize % hashes.len()].clone()
    }

    /// The account (lower-case address) a login name refers to, if it
    /// exists.
    pub fn account_of(&self, username: &str) -> Option<String> {
        let key = Address::parse(username.trim(), true).ok()?.key();
        self.accounts.contains_key(&key).then_some(key)
    }

    /// What identifies the account's current password (its hash), or `None`
    /// when the account does not exist or cannot log in. A session compares
    /// it with the one at login to notice a changed password or a deleted
    /// account after a reload.
    pub fn credential(&self, account: &str) -> Option<String> {
        Some(
            self.accounts
                .get(account)?
                .password
                .as_ref()?
                .as_str()
                .to_string(),
        )
    }

    /// Whether `account` may use `sender` as its envelope sender: its own
    /// address and plus-forms, aliases that deliver to it, and its `send_as`.
    /// Whether `account` allow-lists one of `senders` (addresses, any
    /// case): its mail then never goes to Junk.
    pub fn allows(&self, account: &str, senders: &[&str]) -> bool {
        let Some(a) = self.accounts.get(account) else {
            return false;
        };
        senders.iter().any(|sender| {
            let sender = sender.to_lowercase();
            let domain = sender.rsplit_once('@').map(|(_, d)| d);
            a.allow.iter().any(|entry| match entry.strip_prefix('@') {
                Some(d) => domain == Some(d),
                None => *entry == sender,
            })
        })
    }

    pub fn may_send_as(&self, account: &str, sender: &Address) -> bool {
        let key = sender.key();
        if key == account {
            return true;
        }
        if let Some(patterns) = self.accounts.get(account).map(|a| &a.send_as) {
            let domain = format!("@{}", sender.domain());
            if patterns.iter().any(|p| *p == key || *p == domain) {
                return true;
            }
        }
        match self.lookup(sender) {
            Ok(Lookup::Deliver(targets)) => targets
                .iter()
                .any(|t| matches!(t, Target::Local { account: a, .. } if a == account)),
            _ => false,
        }
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.contains(domain)
    }

    /// The domain of the alias `original` (as in `RCPT TO`) when its copy
    /// for `address` is forwarded to another domain: `original` in one of
    /// ours, `address` not. That domain rewrites the sender (SRS) and
    /// seals the message (ARC).
    pub fn forwarding_domain(&self, original: &str, address: &str) -> Option<String> {
        let domain_of = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        let (alias, target) = (domain_of(original)?, domain_of(address)?);
        (!original.eq_ignore_ascii_case(address)
            && self.is_local_domain(&alias)
            && !self.is_local_domain(&target))
        .then_some(alias)
    }

    /// The first local domain, for the bare `RCPT TO:<postmaster>` of RFC 5321.
    pub fn primary_domain(&self) -> Option<&str> {
        self.first_account.as_ref().map(|a| a.domain())
    }

    /// Resolves an envelope recipient.
    pub fn lookup(&self, rcpt: &Address) -> Result<Lookup, ResolveError> {
        if !self.is_local_domain(rcpt.domain()) {
            return Ok(Lookup::NotLocal);
        }
        if let Some(srs) = &self.srs {
            match srs.reverse(rcpt.local(), mta_store::envelope::now_secs()) {
                Ok(None) => {}
                Ok(Some(sender)) => return Ok(self.bounce_to(&sender)),
                Err(e) => return Ok(Lookup::Refused(e.to_string())),
            }
        }
        let mut out = Vec::new();
        if !self.resolve(rcpt, 0, false, &mut out)? {
            return Ok(Lookup::Unknown);
        }
        Ok(Lookup::Deliver(dedupe(out)))
    }

    /// Where a bounce to a rewritten sender goes: the sender it was (or,
    /// for an address rewritten twice, the first forwarder), which may be
    /// one of ours when an account's mail was forwarded by another server.
    fn bounce_to(&self, sender: &str) -> Lookup {
        let Ok(address) = Address::parse(sender, true) else {
            return Lookup::Refused(format!("{sender:?} is not an address to bounce to"));
        };
        if !self.is_local_domain(address.domain()) {
            return Lookup::Deliver(vec![Target::Remote {
                address: address.to_string(),
            }]);
        }
        let mut out = Vec::new();
        match self.resolve(&address, 1, false, &mut out) {
            Ok(true) => Lookup::Deliver(dedupe(out)),
            _ => Lookup::Unknown,
        }
    }

    /// Resolves an alias target (configuration check and expansion).
    pub fn resolve_target(&self, target: &Address) -> Result<Vec<Target>, ResolveError> {
        let mut out = Vec::new();
        self.expand_target(target, 1, &mut out)?;
        Ok(dedupe(out))
    }

    fn expand_target(
        &self,
        t: &Address,
        depth: usize,
        out: &mut Vec<Target>,
    ) -> Result<(), ResolveError> {
        if !self.is_local_domain(t.domain()) {
            out.push(Target::Remote {
                address: t.to_string(),
            });
            return Ok(());
        }
        if self.resolve(t, depth, true, out)? {
            Ok(())
        } else {
            Err(ResolveError::Unknown(t.to_string()))
        }
    }

    /// Appends the targets of a local-domain address; false when nobody has it.
    /// `account_first` makes an account win over an alias of the same name, so
    /// an alias may list its own address to keep a copy.
    fn resolve(
        &self,
        a: &Address,
        depth: usize,
        account_first: bool,
        out: &mut Vec<Target>,
    ) -> Result<bool, ResolveError> {
        if depth > MAX_DEPTH {
            return Err(ResolveError::Loop(a.to_string()));
        }
        let key = a.key();
        if self.routed.contains(&key) || self.routed.contains(a.domain()) {
            out.push(Target::Remote {
                address: a.to_string(),
            });
            return Ok(true);
        }
        let shown = |account: &Address| {
            if depth == 0 {
                a.to_string()
            } else {
                account.to_string()
            }
        };
        let try_exact = |key: &str, out: &mut Vec<Target>| -> Result<bool, ResolveError> {
            let account = self.accounts.get(key).map(|a| &a.address);
            let alias = self.aliases.get(key);
            match (account, alias) {
                (Some(acc), _) if account_first || alias.is_none() => {
                    out.push(Target::Local {
                        account: acc.key(),
                        delivered_to: shown(acc),
                    });
                    Ok(true)
                }
                (_, Some(targets)) => {
                    for t in targets {
                        self.expand_target(t, depth + 1, out)?;
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        if try_exact(&key, out)? {
            return Ok(true);
        }
        // Plus-addressing: alice+lists@ → alice@.
        if let Some(base) = self.base_local(a.local()) {
            let base_key = format!("{}@{}", base.to_lowercase(), a.domain());
            if try_exact(&base_key, out)? {
                return Ok(true);
            }
        }
        let lower = a.local().to_lowercase();
        let is_role = lower == "postmaster" || lower == "abuse";
        if is_role && let Some(pm) = &self.postmaster {
            self.expand_target(pm, depth + 1, out)?;
            return Ok(true);
        }
        if let Some(targets) = self.aliases.get(&format!("@{}", a.domain())) {
            for t in targets {
                self.expand_target(t, depth + 1, out)?;
            }
            return Ok(true);
        }
        if is_role {
            // RFC 5321 §4.5.1: postmaster must always be deliverable; RFC 2142
            // asks the same of abuse. Without a configured one, the first
            // account (the owner who set the box up) receives them.
            let owner = self
                .accounts
                .values()
                .map(|acc| &acc.address)
                .find(|acc| acc.domain() == a.domain())
                .or(self.first_account.as_ref());
            if let Some(owner) = owner {
                out.push(Target::Local {
                    account: owner.key(),
                    delivered_to: owner.to_string(),
                });
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn base_local<'a>(&self, local: &'a str) -> Option<&'a str> {
        if self.delimiter.is_empty() || local.starts_with('"') {
            return None;
        }
        let pos = local.find(|c| self.delimiter.contains(c))?;
        (pos > 0).then(|| &local[..pos])
    }
}

fn dedupe(targets: Vec<Target>) -> Vec<Target> {
    let mut seen = HashSet::new();
    targets
        .into_iter()
        .filter(|t| seen.insert(t.dedupe_key()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dir() -> Directory {
        let text = r#"
hostname = "mail.example.org"
data_dir = "/d"
domains = ["example.org", "example.net"]
[[accounts]]
address = "alice@example.org"
[[accounts]]
address = "bob@example.org"
[[accounts]]
address = "carol@example.net"
[aliases]
"team@example.org" = ["alice@example.org", "bob@example.org", "team2@example.org"]
"team2@example.org" = ["bob@example.org", "dave@elsewhere.example"]
"alice@example.org" = ["alice@example.org", "bob@example.org"]
"@example.net" = "carol@example.net"
"#;
        crate::config::Config::parse(Path::new("t.toml"), text)
            .unwrap()
            .directory()
    }

    fn a(s: &str) -> Address {
        Address::parse(s, false).unwrap()
    }

    fn local(account: &str, shown: &str) -> Target {
        Target::Local {
            account: account.into(),
            delivered_to: shown.into(),
        }
    }

    #[test]
    fn account_resolves_case_insensitively() {
        assert_eq!(
            dir().lookup(&a("Bob@Example.org")).unwrap(),
            Lookup::Deliver(vec![local("bob@example.org", "Bob@example.org")])
        );
    }

    #[test]
    fn plus_address_goes_to_the_base_account() {
        assert_eq!(
            dir().lookup(&a("bob+lists@example.org")).unwrap(),
            Lookup::Deliver(vec![local("bob@example.org", "bob+lists@example.org")])
        );
    }

    #[test]
    fn nested_aliases_expand_once_per_target() {
        let Lookup::Deliver(t) = dir().lookup(&a("team@example.org")).unwrap() else {
            panic!()
        };
        assert_eq!(
            t,
            vec![
                local("alice@example.org", "alice@example.org"),
                local("bob@example.org", "bob@example.org"),
                Target::Remote {
                    address: "dave@elsewhere.example".into()
                },
            ]
        );
    }

    #[test]
    fn alias_listing_its_own_account_keeps_a_copy() {
        let Lookup::Deliver(t) = dir().lookup(&a("alice@example.org")).unwrap() else {
            panic!()
        };
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn catch_all_and_unknown_and_foreign() {
        assert_eq!(
            dir().lookup(&a("anything@example.net")).unwrap(),
            Lookup::Deliver(vec![local("carol@example.net", "carol@example.net")])
        );
        assert_eq!(
            dir().lookup(&a("nobody@example.org")).unwrap(),
            Lookup::Unknown
        );
        assert_eq!(
            dir().lookup(&a("x@elsewhere.example")).unwrap(),
            Lookup::NotLocal
        );
    }

    #[test]
    fn senders_an_account_owns() {
        let d = dir();
        assert!(d.may_send_as("alice@example.org", &a("Alice@example.org")));
        assert!(d.may_send_as("alice@example.org", &a("alice+x@example.org")));
        assert!(
            d.may_send_as("bob@example.org", &a("team@example.org")),
            "alias delivering to bob"
        );
        assert!(!d.may_send_as("alice@example.org", &a("bob@example.org")));
        assert!(!d.may_send_as("alice@example.org", &a("ceo@elsewhere.example")));
    }

    #[test]
    fn postmaster_and_abuse_are_always_routable() {
        for addr in ["postmaster@example.org", "ABUSE@example.org"] {
            assert!(
                matches!(dir().lookup(&a(addr)).unwrap(), Lookup::Deliver(_)),
                "{addr}"
            );
        }
    }
}
