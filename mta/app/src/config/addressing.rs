//! Who receives mail: the host name, `domains`, `recipient_delimiter`,
//! `[[accounts]]`, `[aliases]`, `postmaster`, and the checks that need
//! the whole picture (every alias leads to a mailbox).

use super::check::Checker;
use super::*;

impl Checker<'_> {
    /// The host name MX records point to: a fully qualified domain name.
    pub(super) fn hostname(&mut self, raw: &Spanned<String>) -> String {
        match normalise_domain(raw.get_ref()) {
            Ok(h) if h.contains('.') && !h.starts_with('[') => h,
            _ => {
                self.report(
                    raw.span(),
                    format!(
                        "hostname {:?} is not a fully qualified domain name",
                        raw.get_ref()
                    ),
                    Some("use the name your MX record points to, such as \"mail.example.org\""),
                );
                String::new()
            }
        }
    }

    pub(super) fn data_dir(&mut self, raw: &Spanned<String>) -> PathBuf {
        let data_dir = PathBuf::from(raw.get_ref());
        if !data_dir.is_absolute() {
            self.report(
                raw.span(),
                format!("data_dir {:?} is not an absolute path", raw.get_ref()),
                None,
            );
        }
        data_dir
    }

    /// The domains we receive mail for: at least one, each once.
    pub(super) fn domains(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        let mut domains: Vec<String> = Vec::new();
        if raw.get_ref().is_empty() {
            self.report(
                raw.span(),
                "no domains: the server would accept mail for nobody",
                Some("list the domains you receive mail for, such as domains = [\"example.org\"]"),
            );
        }
        for d in raw.get_ref() {
            match normalise_domain(d.get_ref()) {
                Ok(n) if !n.starts_with('[') => {
                    if domains.contains(&n) {
                        self.report(d.span(), format!("domain {n:?} is listed twice"), None);
                    } else {
                        domains.push(n);
                    }
                }
                _ => self.report(
                    d.span(),
                    format!("{:?} is not a domain name", d.get_ref()),
                    None,
                ),
            }
        }
        domains
    }

    /// Plus-addressing: `+` unless set; empty turns it off.
    pub(super) fn recipient_delimiter(&mut self, raw: Option<&Spanned<String>>) -> String {
        let Some(d) = raw else {
            return "+".to_string();
        };
        let bad = d
            .get_ref()
            .chars()
            .any(|c| c == '@' || c.is_whitespace() || c.is_control());
        if bad {
            self.report(
                d.span(),
                format!(
                    "recipient_delimiter {:?} may not contain @ or spaces",
                    d.get_ref()
                ),
                Some("use \"+\" (the default), \"-\", or \"\" to turn plus-addressing off"),
            );
        }
        d.get_ref().clone()
    }

    /// Checks that need the whole picture: every local alias target and the
    /// postmaster must lead to a mailbox, aliases must not loop, and mail
    /// must have somewhere to go.
    pub(super) fn whole_picture(
        &mut self,
        config: &Config,
        raw: &RawConfig,
        alias_spans: &BTreeMap<String, Range<usize>>,
    ) {
        let directory = config.directory();
        for (key, targets) in &config.aliases {
            for t in targets {
                if let Err(e) = directory.resolve_target(t) {
                    let span = alias_spans.get(key).cloned().unwrap_or(0..0);
                    self.report(
                        span,
                        format!("alias {key}: {e}"),
                        Some("point it to an account or to an address in another domain"),
                    );
                }
            }
        }
        if config.accounts.is_empty()
            && !config
                .aliases
                .values()
                .flatten()
                .any(|a| !config.is_local_domain(a.domain()))
        {
            self.report(
                raw.domains.span(),
                "no accounts: mail for these domains would have nowhere to go",
                Some("add an [[accounts]] entry"),
            );
        }
        if let (Some(pm), Some(span)) = (
            &config.postmaster,
            raw.postmaster.as_ref().map(|p| p.span()),
        ) && let Err(e) = directory.resolve_target(pm)
        {
            self.report(span, format!("postmaster {pm}: {e}"), None);
        }
    }
}

impl Checker<'_> {
    /// An address, or a problem reported for it.
    pub(super) fn address(&mut self, s: &Spanned<String>, what: &str) -> Option<Address> {
        match Address::parse(s.get_ref(), true) {
            Ok(a) => Some(a),
            Err(e) => {
                self.report(
                    s.span(),
                    format!("{what} {:?} is not an address: {e}", s.get_ref()),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn accounts(&mut self, raw: &[RawAccount], domains: &[String]) -> Vec<Account> {
        let mut accounts: Vec<Account> = Vec::new();
        for raw_account in raw {
            let Some(address) = self.address(&raw_account.address, "account") else {
                continue;
            };
            if !domains.iter().any(|d| d == address.domain()) {
                self.report(
                    raw_account.address.span(),
                    format!("account {address} is not in one of the domains"),
                    Some("add its domain to `domains` or fix the address"),
                );
            }
            let local = address.local().to_lowercase();
            if local.starts_with('.') || local.contains('/') || local.starts_with('"') {
                self.report(
                    raw_account.address.span(),
                    format!("account {address}: the local part cannot name a mail folder"),
                    Some("use letters, digits, dots, dashes and underscores"),
                );
            }
            if accounts.iter().any(|a| a.address.key() == address.key()) {
                self.report(
                    raw_account.address.span(),
                    format!("account {address} is defined twice"),
                    None,
                );
            }
            let password = match &raw_account.password {
                None => None,
                Some(p) => match PasswordHash::parse(p.get_ref()) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        self.report(
                            p.span(),
                            format!("the password of {address} is not a usable hash: {e}"),
                            Some("store a hash, never the password: run `mta hash-password` (argon2id) or `mkpasswd -m sha-512`"),
                        );
                        None
                    }
                },
            };
            let mut send_as = Vec::new();
            for pattern in raw_account.send_as.iter().flatten() {
                let text = pattern.get_ref().trim();
                let valid = match text.strip_prefix("*@").or_else(|| text.strip_prefix('@')) {
                    Some(domain) => normalise_domain(domain).is_ok(),
                    None => Address::parse(text, true).is_ok(),
                };
                if valid {
                    send_as.push(text.trim_start_matches('*').to_lowercase());
                } else {
                    self.report(
                        pattern.span(),
                        format!("send_as {text:?} is not an address or *@domain"),
                        None,
                    );
                }
            }
            let mut allow = Vec::new();
            for sender in raw_account.allow.iter().flatten() {
                match allowed_sender(sender.get_ref()) {
                    Some(s) => allow.push(s),
                    None => self.report(
                        sender.span(),
                        format!("allow {:?} is not an address or a domain", sender.get_ref()),
                        Some("write friend@example.net, or example.net for all of that domain"),
                    ),
                }
            }
            if raw_account.admin == Some(true) && password.is_none() {
                self.report(
                    raw_account.address.span(),
                    format!("{address} has the admin role but no password: it could not log in"),
                    Some("give it a password (`mta user passwd`) or remove `admin = true`"),
                );
            }
            let quota = raw_account
                .quota
                .is_some()
                .then(|| self.size(&raw_account.quota, 0, "quota"));
            accounts.push(Account {
                address,
                password,
                send_as,
                allow,
                admin: raw_account.admin.unwrap_or(false),
                quota,
            });
        }
        accounts
    }

    /// The aliases, and where each is defined (for later problems).
    #[allow(clippy::type_complexity)]
    pub(super) fn aliases(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
        domains: &[String],
    ) -> (
        BTreeMap<String, Vec<Address>>,
        BTreeMap<String, Range<usize>>,
    ) {
        let mut aliases: BTreeMap<String, Vec<Address>> = BTreeMap::new();
        let mut alias_spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
        for (key, value) in raw {
            let key_text = key.get_ref().trim();
            let key_norm = if let Some(domain) = key_text.strip_prefix('@') {
                match normalise_domain(domain) {
                    Ok(d) => Some(format!("@{d}")),
                    Err(_) => None,
                }
            } else {
                Address::parse(key_text, true).ok().map(|a| a.key())
            };
            let Some(key_norm) = key_norm else {
                self.report(
                    key.span(),
                    format!("alias {key_text:?} is not an address or an @domain catch-all"),
                    None,
                );
                continue;
            };
            let domain = key_norm.rsplit('@').next().unwrap_or_default();
            if !domains.iter().any(|d| d == domain) {
                self.report(
                    key.span(),
                    format!("alias {key_text:?} is not in one of the domains"),
                    Some(
                        "aliases can only be defined for the domains this server receives mail for",
                    ),
                );
            }
            let texts: Vec<(String, Range<usize>)> = match value.get_ref() {
                toml::Value::String(s) => vec![(s.clone(), value.span())],
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| (v.as_str().unwrap_or("\u{0}").to_string(), value.span()))
                    .collect(),
                _ => vec![("\u{0}".to_string(), value.span())],
            };
            if texts.is_empty() {
                self.report(
                    value.span(),
                    format!("alias {key_text:?} has no targets"),
                    None,
                );
            }
            let mut targets = Vec::new();
            for (t, span) in texts {
                match Address::parse(&t, true) {
                    Ok(a) => targets.push(a),
                    Err(e) => self.report(
                        span,
                        format!("target {t:?} of alias {key_text:?} is not an address: {e}"),
                        Some("targets are full addresses: \"alice@example.org\" or a list of them"),
                    ),
                }
            }
            if aliases.contains_key(&key_norm) {
                self.report(
                    key.span(),
                    format!("alias {key_text:?} is defined twice"),
                    None,
                );
            }
            alias_spans.insert(key_norm.clone(), value.span());
            aliases.insert(key_norm, targets);
        }
        (aliases, alias_spans)
    }
}

/// An entry of an account's allow-list as kept: a lower-case address, or
/// `@domain` for a whole domain (written `domain`, `@domain` or `*@domain`).
pub fn allowed_sender(text: &str) -> Option<String> {
    let text = text.trim();
    if text.contains('@') && !text.starts_with('@') && !text.starts_with("*@") {
        return Address::parse(text, true).ok().map(|a| a.key());
    }
    let domain = text.trim_start_matches('*').trim_start_matches('@');
    normalise_domain(domain).ok().map(|d| format!("@{d}"))
}
