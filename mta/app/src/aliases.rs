//! Aliases and domains changed through the configuration's one edit path
//! ([`crate::config::edit`]), for the admin pages (and any later CLI):
//! an alias set to one or more targets or removed, a domain added or
//! removed. The whole file is validated before it is replaced, so an alias
//! that leads nowhere or a domain that still has accounts is refused with
//! the checker's own words.

use std::path::Path;

use anyhow::{Context, bail};
use toml_edit::{Array, DocumentMut, Item, Table, value};

use mta_proto::address::{Address, normalise_domain};

/// A change to the aliases or the domains.
pub enum Change<'a> {
    /// `alias` (an address, or `@domain` for a catch-all) delivers to
    /// `targets` (replacing what it did).
    SetAlias {
        alias: &'a str,
        targets: &'a [String],
    },
    DeleteAlias {
        alias: &'a str,
    },
    AddDomain {
        domain: &'a str,
    },
    RemoveDomain {
        domain: &'a str,
    },
}

pub fn apply(path: &Path, change: Change) -> anyhow::Result<String> {
    crate::config::edit(path, |doc| change_doc(doc, change))
}

/// The key an alias is written under: a lower-case address, or `@domain`.
pub fn alias_key(alias: &str) -> anyhow::Result<String> {
    let alias = alias.trim();
    if let Some(domain) = alias.strip_prefix('@') {
        let d = normalise_domain(domain)
            .map_err(|e| anyhow::anyhow!("{alias:?} is not @domain: {e}"))?;
        return Ok(format!("@{d}"));
    }
    Ok(Address::parse(alias, true)
        .map_err(|e| anyhow::anyhow!("{alias:?} is not an address: {e}"))?
        .key())
}

fn change_doc(doc: &mut DocumentMut, change: Change) -> anyhow::Result<String> {
    match change {
        Change::SetAlias { alias, targets } => {
            let key = alias_key(alias)?;
            if targets.is_empty() {
                bail!("an alias needs at least one target");
            }
            let mut list = Array::new();
            for t in targets {
                let a = Address::parse(t.trim(), true)
                    .map_err(|e| anyhow::anyhow!("target {t:?} is not an address: {e}"))?;
                list.push(a.to_string());
            }
            let aliases = doc
                .entry("aliases")
                .or_insert(Item::Table(Table::new()))
                .as_table_like_mut()
                .context("`aliases` in the configuration is not a table")?;
            let existed = aliases.contains_key(&key);
            aliases.insert(&key, value(list));
            Ok(if existed {
                format!("changed {key}")
            } else {
                format!("added {key}")
            })
        }
        Change::DeleteAlias { alias } => {
            let key = alias_key(alias)?;
            let removed = doc
                .get_mut("aliases")
                .and_then(Item::as_table_like_mut)
                .and_then(|t| t.remove(&key));
            if removed.is_none() {
                bail!("there is no alias {key}");
            }
            Ok(format!("deleted {key}"))
        }
        Change::AddDomain { domain } => {
            let d = normalise_domain(domain)
                .map_err(|e| anyhow::anyhow!("{domain:?} is not a domain: {e}"))?;
            if !d.contains('.') || d.starts_with('[') {
                bail!("{d:?} is not a domain name like example.org");
            }
            let list = doc["domains"]
                .as_array_mut()
                .context("`domains` in the configuration is not a list")?;
            if list.iter().any(|v| v.as_str() == Some(d.as_str())) {
                bail!("{d} is already one of the domains");
            }
            list.push(d.as_str());
            Ok(format!("added {d}"))
        }
        Change::RemoveDomain { domain } => {
            let d = normalise_domain(domain)
                .map_err(|e| anyhow::anyhow!("{domain:?} is not a domain: {e}"))?;
            let in_domain =
                |address: &str| Address::parse(address, true).is_ok_and(|a| a.domain() == d);
            let accounts: Vec<String> = doc
                .get("accounts")
                .and_then(Item::as_array_of_tables)
                .into_iter()
                .flat_map(|a| a.iter())
                .filter_map(|t| t.get("address").and_then(|a| a.as_str()))
                .filter(|a| in_domain(a))
                .map(str::to_string)
                .collect();
            if !accounts.is_empty() {
                bail!(
                    "{d} still has accounts ({}): delete them first",
                    accounts.join(", ")
                );
            }
            if let Some(aliases) = doc.get_mut("aliases").and_then(Item::as_table_like_mut) {
                let gone: Vec<String> = aliases
                    .iter()
                    .map(|(k, _)| k.to_string())
                    .filter(|k| k.rsplit_once('@').is_some_and(|(_, x)| x == d))
                    .collect();
                for k in gone {
                    aliases.remove(&k);
                }
            }
            let list = doc["domains"]
                .as_array_mut()
                .context("`domains` in the configuration is not a list")?;
            let before = list.len();
            list.retain(|v| v.as_str() != Some(d.as_str()));
            if list.len() == before {
                bail!("{d} is not one of the domains");
            }
            Ok(format!("removed {d} (and its aliases)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
hostname = "mx.example.org"
data_dir = "/d"
domains = ["example.org", "example.net"]
# the owner
[[accounts]]
address = "alice@example.org"
[aliases]
"old@example.net" = "alice@example.org"
"#;

    #[test]
    fn aliases_and_domains_change_through_the_checked_edit() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("m.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let targets = vec![
            "alice@example.org".to_string(),
            "friend@elsewhere.example".to_string(),
        ];
        assert_eq!(
            apply(
                &path,
                Change::SetAlias {
                    alias: "Team@Example.org",
                    targets: &targets
                }
            )
            .unwrap(),
            "added team@example.org"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# the owner"), "comments kept: {text}");
        assert!(
            text.contains(
                "\"team@example.org\" = [\"alice@example.org\", \"friend@elsewhere.example\"]"
            ),
            "{text}"
        );
        // An alias to a local address nobody has is refused whole.
        let nobody = vec!["nobody@example.org".to_string()];
        let e = apply(
            &path,
            Change::SetAlias {
                alias: "x@example.org",
                targets: &nobody,
            },
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("neither an account nor an alias"),
            "{e:#}"
        );
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .contains("x@example.org")
        );
        // A catch-all.
        apply(
            &path,
            Change::SetAlias {
                alias: "@example.net",
                targets: &["alice@example.org".to_string()],
            },
        )
        .unwrap();
        // A domain with accounts stays; one with only aliases goes with them.
        let e = apply(
            &path,
            Change::RemoveDomain {
                domain: "example.org",
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("still has accounts"), "{e}");
        assert_eq!(
            apply(
                &path,
                Change::RemoveDomain {
                    domain: "example.net"
                }
            )
            .unwrap(),
            "removed example.net (and its aliases)"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("example.net"), "{text}");
        apply(
            &path,
            Change::AddDomain {
                domain: "Example.COM",
            },
        )
        .unwrap();
        assert!(
            apply(
                &path,
                Change::AddDomain {
                    domain: "example.com"
                }
            )
            .unwrap_err()
            .to_string()
            .contains("already")
        );
        assert!(
            apply(
                &path,
                Change::DeleteAlias {
                    alias: "team@example.org"
                }
            )
            .is_ok()
        );
        assert!(
            apply(
                &path,
                Change::DeleteAlias {
                    alias: "team@example.org"
                }
            )
            .is_err()
        );
    }
}
