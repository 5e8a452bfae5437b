//! `mta user …`: adding, changing and removing accounts, through the
//! configuration's one edit path ([`crate::config::edit`]: comments and
//! layout kept, the whole file validated before it atomically replaces the
//! old one, so a bad change never reaches the server).

use std::path::Path;

use anyhow::{Context, bail};
use toml_edit::{DocumentMut, Item, Table, value};

use crate::config::Config;
use crate::password::PasswordHash;
use mta_proto::address::Address;

/// A change to the accounts.
pub enum Change<'a> {
    Add {
        address: &'a str,
        password: &'a str,
    },
    Password {
        address: &'a str,
        password: &'a str,
    },
    Delete {
        address: &'a str,
    },
    /// The senders whose mail never goes to the account's Junk folder
    /// (addresses or domains; empty: none), replacing the list.
    Allow {
        address: &'a str,
        senders: &'a [String],
    },
}

/// The accounts as `mta user list` shows them.
pub fn list(config: &Config) -> String {
    let mut out = String::new();
    for a in &config.accounts {
        let note = if a.password.is_some() {
            ""
        } else {
            "  (no password: receives mail, cannot log in)"
        };
        out.push_str(&format!("{}{note}\n", a.address));
    }
    out
}

/// Applies `change` to the file at `path`; returns what was done.
pub fn apply(path: &Path, change: Change) -> anyhow::Result<String> {
    crate::config::edit(path, |doc| change_accounts(doc, change))
}

fn change_accounts(doc: &mut DocumentMut, change: Change) -> anyhow::Result<String> {
    let key = |a: &str| -> anyhow::Result<String> {
        Ok(Address::parse(a.trim(), true)
            .map_err(|e| anyhow::anyhow!("{a:?} is not an address: {e}"))?
            .key())
    };
    let accounts = doc
        .entry("accounts")
        .or_insert(Item::ArrayOfTables(Default::default()))
        .as_array_of_tables_mut()
        .context("`accounts` in the configuration is not a list of [[accounts]] tables")?;
    let position = |accounts: &toml_edit::ArrayOfTables, k: &str| {
        accounts.iter().position(|t| {
            t.get("address")
                .and_then(|v| v.as_str())
                .and_then(|a| Address::parse(a, true).ok())
                .is_some_and(|a| a.key() == k)
        })
    };
    let done = match change {
        Change::Add { address, password } => {
            let k = key(address)?;
            if position(accounts, &k).is_some() {
                bail!("{address} already exists");
            }
            let mut t = Table::new();
            t["address"] = value(address.trim());
            t["password"] = value(hash(password)?.as_str());
            accounts.push(t);
            format!("added {address}")
        }
        Change::Password { address, password } => {
            let k = key(address)?;
            let i = position(accounts, &k).with_context(|| format!("no account {address}"))?;
            accounts.get_mut(i).expect("found")["password"] = value(hash(password)?.as_str());
            format!("changed the password of {address}")
        }
        Change::Delete { address } => {
            let k = key(address)?;
            let i = position(accounts, &k).with_context(|| format!("no account {address}"))?;
            accounts.remove(i);
            format!("deleted {address} (its mail stays in the data directory)")
        }
        Change::Allow { address, senders } => {
            let k = key(address)?;
            let i = position(accounts, &k).with_context(|| format!("no account {address}"))?;
            let mut list = toml_edit::Array::new();
            for s in senders {
                // Checked with the whole file (the configuration's words
                // for an entry that is neither an address nor a domain).
                list.push(s.trim());
            }
            let table = accounts.get_mut(i).expect("found");
            if list.is_empty() {
                table.remove("allow");
                format!("{address} has no allowed senders now")
            } else {
                let n = list.len();
                table["allow"] = value(list);
                format!("{address} allows {n} sender(s) past Junk")
            }
        }
    };
    Ok(done)
}

fn hash(password: &str) -> anyhow::Result<PasswordHash> {
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(PasswordHash::create(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# my mail server\nhostname = \"mx.example.org\"\ndata_dir = \"/d\"\ndomains = [\"example.org\"]\n\n# the owner\n[[accounts]]\naddress = \"alice@example.org\"\n\n[aliases]\n\"info@example.org\" = \"alice@example.org\"\n";

    #[test]
    fn edits_at_the_same_time_lose_nothing() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mailbox.toml");
        std::fs::write(&path, TEXT).unwrap();
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let address = format!("user{i}@example.org");
                    apply(
                        &path,
                        Change::Add {
                            address: &address,
                            password: "pw",
                        },
                    )
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Config::load(&path).unwrap().accounts.len(), 7);
    }

    #[test]
    fn add_change_delete_keep_comments_and_validate() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mailbox.toml");
        std::fs::write(&path, TEXT).unwrap();
        apply(
            &path,
            Change::Add {
                address: "bob@example.org",
                password: "pw",
            },
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.accounts.len(), 2);
        assert!(c.accounts[1].password.as_ref().unwrap().verify("pw"));
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("# the owner")
        );

        apply(
            &path,
            Change::Password {
                address: "Bob@example.org",
                password: "new",
            },
        )
        .unwrap();
        assert!(
            Config::load(&path).unwrap().accounts[1]
                .password
                .as_ref()
                .unwrap()
                .verify("new")
        );

        assert!(
            apply(
                &path,
                Change::Add {
                    address: "bob@example.org",
                    password: "x"
                }
            )
            .is_err()
        );
        let outside = apply(
            &path,
            Change::Add {
                address: "eve@elsewhere.example",
                password: "x",
            },
        )
        .unwrap_err();
        assert!(outside.to_string().contains("not saved"), "{outside}");
        // info@ points to alice: deleting her would break the alias.
        let e = apply(
            &path,
            Change::Delete {
                address: "alice@example.org",
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("info@example.org"), "{e}");
        apply(
            &path,
            Change::Delete {
                address: "bob@example.org",
            },
        )
        .unwrap();
        assert_eq!(Config::load(&path).unwrap().accounts.len(), 1);
    }

    #[test]
    fn an_allow_list_is_set_checked_and_cleared() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("mailbox.toml");
        std::fs::write(&path, TEXT).unwrap();
        let allow = |senders: &[&str]| {
            let senders: Vec<String> = senders.iter().map(|s| s.to_string()).collect();
            apply(
                &path,
                Change::Allow {
                    address: "alice@example.org",
                    senders: &senders,
                },
            )
        };
        allow(&["friend@example.net", "example.com"]).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.accounts[0].allow, ["friend@example.net", "@example.com"]);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("# the owner")
        );
        // Not an address or a domain: refused with the checker's words,
        // nothing changed.
        let e = allow(&["not a sender"]).unwrap_err().to_string();
        assert!(e.contains("is not an address or a domain"), "{e}");
        assert_eq!(Config::load(&path).unwrap().accounts[0].allow.len(), 2);
        allow(&[]).unwrap();
        assert!(Config::load(&path).unwrap().accounts[0].allow.is_empty());
        assert!(!std::fs::read_to_string(&path).unwrap().contains("allow"));
    }
}
