//! Relays changed through the configuration's one edit path: one added or
//! replaced (by name), one removed, and which one (if any) carries all mail
//! for other domains (`[outbound] smarthost`). The whole file is checked
//! before it is replaced, so a relay that routes still use cannot go.

use std::path::Path;

use anyhow::{Context, bail};
use toml_edit::{DocumentMut, Item, Table, value};

pub struct NewRelay<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub implicit_tls: bool,
    /// `None`: no login at the relay.
    pub login: Option<(&'a str, &'a str)>,
}

/// The relay's server as typed (a host name or an address), normalised;
/// or what is wrong with it, for a person.
pub fn checked_host(text: &str) -> Result<String, String> {
    let text = text.trim();
    mta_proto::address::normalise_domain(text)
        .ok()
        .filter(|h| {
            !text.is_empty() && (h.contains('.') || text.parse::<std::net::IpAddr>().is_ok())
        })
        .ok_or_else(|| "Enter a host name like smtp.provider.example.".to_string())
}

/// The relay's port as typed.
pub fn checked_port(text: &str) -> Result<u16, String> {
    text.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{:?} is not a port number such as 587 or 465.", text.trim()))
}

/// The login at the relay: both parts or neither, of sane length and
/// characters.
pub fn checked_login(user: &str, password: &str, max: usize) -> Result<(), String> {
    if user.is_empty() != password.is_empty() {
        Err("Give both the user name and the password, or neither.".into())
    } else if user.len() > max || password.len() > max {
        Err(format!("At most {max} characters."))
    } else if user.chars().chain(password.chars()).any(|c| c.is_control()) {
        Err("That contains characters that cannot be used.".into())
    } else {
        Ok(())
    }
}

pub enum Change<'a> {
    /// Adds the relay (or replaces the one of the same name) and, with
    /// `smarthost`, sends all outgoing mail through it.
    Set {
        relay: NewRelay<'a>,
        smarthost: bool,
    },
    Remove {
        name: &'a str,
    },
    /// Outgoing mail goes to the recipients' servers directly.
    Direct,
}

pub fn apply(path: &Path, change: Change) -> anyhow::Result<String> {
    crate::config::edit(path, |doc| change_doc(doc, change))
}

fn relays(doc: &mut DocumentMut) -> anyhow::Result<&mut toml_edit::ArrayOfTables> {
    doc.entry("relays")
        .or_insert(Item::ArrayOfTables(Default::default()))
        .as_array_of_tables_mut()
        .context("`relays` in the configuration is not a list of [[relays]] tables")
}

fn outbound(doc: &mut DocumentMut) -> anyhow::Result<&mut dyn toml_edit::TableLike> {
    doc.entry("outbound")
        .or_insert(Item::Table(Table::new()))
        .as_table_like_mut()
        .context("`outbound` in the configuration is not a table")
}

/// `change` applied to a configuration document being edited (for edits
/// that change more at once, such as the setup wizard's).
pub fn change_doc(doc: &mut DocumentMut, change: Change) -> anyhow::Result<String> {
    match change {
        Change::Set { relay, smarthost } => {
            let name = relay.name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!("a relay's name is letters, digits, - and _ (like \"provider\")");
            }
            let list = relays(doc)?;
            list.retain(|t| t.get("name").and_then(|n| n.as_str()) != Some(name));
            let mut t = Table::new();
            t["name"] = value(name);
            t["host"] = value(relay.host.trim());
            t["port"] = value(i64::from(relay.port));
            t["tls"] = value(if relay.implicit_tls {
                "implicit"
            } else {
                "starttls"
            });
            if let Some((user, password)) = relay.login {
                t["username"] = value(user);
                t["password"] = value(password);
            }
            list.push(t);
            if smarthost {
                outbound(doc)?.insert("smarthost", value(name));
                Ok(format!(
                    "outgoing mail goes through {name} ({}:{})",
                    relay.host.trim(),
                    relay.port
                ))
            } else {
                Ok(format!("saved the relay {name}"))
            }
        }
        Change::Remove { name } => {
            let list = relays(doc)?;
            let before = list.len();
            list.retain(|t| t.get("name").and_then(|n| n.as_str()) != Some(name));
            if list.len() == before {
                bail!("there is no relay {name:?}");
            }
            Ok(format!("removed the relay {name}"))
        }
        Change::Direct => {
            outbound(doc)?.remove("smarthost");
            Ok("outgoing mail goes to the recipients' servers directly".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_are_set_used_and_removed_through_the_checked_edit() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("m.toml");
        std::fs::write(&path, "hostname = \"mx.example.org\"\ndata_dir = \"/d\"\ndomains = [\"example.org\"]\n[[accounts]]\naddress = \"a@example.org\"\n").unwrap();
        let relay = |name| NewRelay {
            name,
            host: "smtp.isp.example",
            port: 587,
            implicit_tls: false,
            login: Some(("me", "secret")),
        };
        apply(
            &path,
            Change::Set {
                relay: relay("isp"),
                smarthost: true,
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("smarthost = \"isp\"") && text.contains("name = \"isp\""),
            "{text}"
        );
        // In use as the smarthost: the check refuses its removal.
        let e = apply(&path, Change::Remove { name: "isp" }).unwrap_err();
        assert!(format!("{e:#}").contains("smarthost"), "{e:#}");
        apply(&path, Change::Direct).unwrap();
        apply(&path, Change::Remove { name: "isp" }).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("isp"));
        assert!(
            apply(
                &path,
                Change::Set {
                    relay: relay("bad name!"),
                    smarthost: false
                }
            )
            .is_err()
        );
    }
}
