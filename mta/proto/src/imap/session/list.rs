//! LIST with selection and return options (LIST-EXTENDED, RFC 5258) and
//! STATUS with it (LIST-STATUS, RFC 5819), read by `rev2.rs`: several
//! patterns, only subscribed or special-use folders, \Subscribed and
//! \NonExistent, child and special-use attributes when asked for (as
//! Dovecot gives them), and a STATUS answer after each folder listed.

use imap_codec::imap_types::core::{Atom, Tag};
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::status::StatusDataItemName;

use super::Session;
use super::rev2::ListExtended;

fn attribute(name: &str) -> FlagNameAttribute<'static> {
    FlagNameAttribute::from(Atom::try_from(name.to_string()).expect("an atom"))
}

/// A STATUS item's name as LIST-STATUS gives it.
fn status_item(name: &str) -> Option<StatusDataItemName> {
    Some(match name {
        "MESSAGES" => StatusDataItemName::Messages,
        "RECENT" => StatusDataItemName::Recent,
        "UIDNEXT" => StatusDataItemName::UidNext,
        "UIDVALIDITY" => StatusDataItemName::UidValidity,
        "UNSEEN" => StatusDataItemName::Unseen,
        "DELETED" => StatusDataItemName::Deleted,
        "HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
        "SIZE" => StatusDataItemName::Size,
        _ => return None,
    })
}

impl Session {
    pub(super) fn list_extended(&mut self, tag: Tag<'static>, l: ListExtended) {
        let Some(account) = self.account().map(str::to_string) else {
            return;
        };
        let mut items = Vec::new();
        for name in &l.status {
            match status_item(name) {
                Some(item) => items.push(item),
                None => {
                    let known =
                        "MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN, DELETED, SIZE and HIGHESTMODSEQ";
                    self.bad(Some(tag), &format!("LIST-STATUS knows {known}"));
                    return;
                }
            }
        }
        if items.contains(&StatusDataItemName::HighestModSeq) {
            self.condstore = true;
        }
        let (folders, subscribed) = match (
            self.mailboxes.folders(&account),
            self.mailboxes.subscriptions(&account),
        ) {
            (Ok(f), Ok(s)) => (f, s),
            (Err(e), _) | (_, Err(e)) => {
                self.refuse(tag, e);
                return;
            }
        };
        // Matched as the client writes names (UTF-8 under IMAP4rev2).
        let patterns: Vec<Vec<u8>> = l
            .patterns
            .iter()
            .map(|p| super::folders::joined(&l.reference, p))
            .collect();
        let matched = |name: &str| {
            let shown = self.wire_name(name);
            patterns.iter().any(|p| super::folders::listed(p, &shown))
        };
        // The folders, and with SUBSCRIBED those subscribed to that no
        // longer exist (\NonExistent).
        let mut names: Vec<String> = if l.subscribed_only {
            subscribed.clone()
        } else {
            folders.clone()
        };
        names.retain(|n| matched(n));
        if l.special_use_only {
            names.retain(|n| super::folders::special_of(n).is_some());
        }
        let wants_subscribed = l.subscribed_only || l.return_subscribed;
        for name in names {
            let exists = folders.contains(&name);
            let mut extra = Vec::new();
            if wants_subscribed && subscribed.contains(&name) {
                extra.push(attribute("Subscribed"));
            }
            if !exists {
                extra.push(attribute("NonExistent"));
            }
            let asked = (l.return_children, l.return_special_use);
            self.list_line(&name, &folders, asked, extra);
            if exists && !items.is_empty() {
                // A folder that cannot be read is listed without it.
                if let Ok(folder) = self.mailboxes.look(&account, &name)
                    && let Ok(mailbox) = Mailbox::try_from(self.wire_name(&name))
                {
                    let size = items
                        .contains(&StatusDataItemName::Size)
                        .then(|| self.folder_size(&account, &name, &folder));
                    let status = super::folders::status_items(&folder, &items, size);
                    self.respond(&Response::Data(Data::Status {
                        mailbox,
                        items: status.into(),
                    }));
                }
            }
        }
        self.ok(tag, None, "LIST completed");
    }
}
