//! The commands of the authenticated and selected states that deal with
//! folders: SELECT and EXAMINE, LIST, CREATE, NOOP and CHECK (new mail and
//! expunges reported), UNSELECT.

use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::imap_types::command::{CommandBody, SelectParameter};
use imap_codec::imap_types::core::{Atom, IString, QuotedChar, Tag};
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::{Flag, FlagNameAttribute, FlagPerm};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{Code, Data, Response, Status};
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};

use super::{Selected, Session, rfc5530};
use crate::imap::store::{Folder, StoreError};

/// The name a client gave, as the store knows it.
fn raw_name_of(mailbox: &Mailbox<'_>) -> Option<String> {
    match mailbox {
        Mailbox::Inbox => Some("INBOX".into()),
        Mailbox::Other(other) => String::from_utf8(other.inner().as_ref().to_vec()).ok(),
    }
}

/// Whether `name` matches the LIST `pattern` (`*` anything, `%` anything
/// but the separator; RFC 9051 §6.3.9).
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| matches(rest, &name[i..])),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|i| *i == 0 || name[i - 1] != b'.')
            .any(|i| matches(rest, &name[i..])),
        Some((c, rest)) => name
            .split_first()
            .is_some_and(|(n, name)| n == c && matches(rest, name)),
    }
}

/// STATUS items of `folder`, in one order whatever the request's (as
/// Dovecot does; RFC 9051 leaves it free).
pub(super) fn status_items(
    folder: &Folder,
    wanted: &[StatusDataItemName],
    size: Option<u64>,
) -> Vec<StatusDataItem> {
    let mut wanted = wanted.to_vec();
    wanted.sort_by_key(|i| match i {
        StatusDataItemName::Messages => 0,
        StatusDataItemName::Recent => 1,
        StatusDataItemName::UidNext => 2,
        StatusDataItemName::UidValidity => 3,
        StatusDataItemName::Unseen => 4,
        StatusDataItemName::HighestModSeq => 5,
        StatusDataItemName::Size => 6,
        _ => 7,
    });
    wanted.dedup();
    let count = |f: &dyn Fn(&crate::imap::store::Message) -> bool| {
        folder.messages.iter().filter(|m| f(m)).count() as u32
    };
    wanted
        .iter()
        .filter_map(|item| {
            Some(match item {
                StatusDataItemName::Messages => {
                    StatusDataItem::Messages(folder.messages.len() as u32)
                }
                StatusDataItemName::Recent => StatusDataItem::Recent(folder.recent.len() as u32),
                StatusDataItemName::Unseen => StatusDataItem::Unseen(count(&|m| !m.flags.seen)),
                StatusDataItemName::UidNext => {
                    StatusDataItem::UidNext(NonZeroU32::new(folder.uid_next)?)
                }
                StatusDataItemName::UidValidity => {
                    StatusDataItem::UidValidity(NonZeroU32::new(folder.uid_validity)?)
                }
                StatusDataItemName::HighestModSeq => {
                    StatusDataItem::HighestModSeq(NonZeroU64::new(folder.highest_modseq)?.get())
                }
                StatusDataItemName::Deleted => StatusDataItem::Deleted(count(&|m| m.flags.deleted)),
                StatusDataItemName::Size => StatusDataItem::Size(size?),
                _ => return None,
            })
        })
        .collect()
}

/// The special-use attribute of folder `name` (RFC 6154), if it has one.
pub(super) fn special_of(name: &str) -> Option<FlagNameAttribute<'static>> {
    crate::imap::store::SPECIAL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, attribute)| FlagNameAttribute::from(Atom::try_from(*attribute).expect("an atom")))
}

/// The LIST/LSUB pattern: reference and wildcard joined.
fn pattern_of(reference: &Mailbox<'_>, wildcard: &ListMailbox<'_>) -> Vec<u8> {
    let reference = raw_name_of(reference).unwrap_or_default().into_bytes();
    joined(
        &reference,
        match wildcard {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        },
    )
}

/// A reference and a pattern as one pattern (INBOX is no reference).
pub(super) fn joined(reference: &[u8], pattern: &[u8]) -> Vec<u8> {
    let mut full = reference.to_vec();
    if full.eq_ignore_ascii_case(b"INBOX") {
        full.clear();
    }
    full.extend_from_slice(pattern);
    full
}

/// Whether folder `name` is listed for `pattern` (INBOX in any case).
pub(super) fn listed(pattern: &[u8], name: &str) -> bool {
    if name == "INBOX" {
        matches(&pattern.to_ascii_uppercase(), b"INBOX")
    } else {
        matches(pattern, name.as_bytes())
    }
}

impl Session {
    /// Handles `body` if it is a folder command; whether it was.
    pub(super) fn folder_command(
        &mut self,
        tag: Tag<'static>,
        body: &CommandBody<'static>,
    ) -> bool {
        let Some(account) = self.account().map(str::to_string) else {
            return false;
        };
        match body {
            CommandBody::Select {
                mailbox,
                parameters,
            }
            | CommandBody::Examine {
                mailbox,
                parameters,
            } => {
                let read_only = matches!(body, CommandBody::Examine { .. });
                let resync = parameters.iter().find_map(|p| match p {
                    SelectParameter::QResync {
                        uid_validity,
                        mod_sequence_value,
                        known_uids,
                        ..
                    } => Some((
                        uid_validity.get(),
                        mod_sequence_value.get(),
                        known_uids.clone(),
                    )),
                    SelectParameter::CondStore => None,
                });
                if resync.is_some() && !self.qresync {
                    self.bad(Some(tag), "QRESYNC needs ENABLE QRESYNC first");
                    return true;
                }
                if !parameters.is_empty() {
                    self.condstore = true;
                }
                // Whatever happens, the folder selected before is not any
                // more (RFC 9051 §6.3.2; RFC 7162 §3.2.11 says so).
                if (self.qresync || self.rev2) && self.selected.is_some() {
                    self.untagged_ok(Code::Closed, "the folder before is closed");
                }
                self.selected = None;
                self.saved = None;
                let Some(name) = self.name_of(mailbox) else {
                    self.no(
                        tag,
                        Some(rfc5530(b"NONEXISTENT")),
                        "there is no such folder",
                    );
                    return true;
                };
                match self.mailboxes.open(&account, &name) {
                    Ok(folder) => self.select(tag, name, folder, read_only, resync),
                    Err(e) => self.refuse(tag, e),
                }
            }
            CommandBody::Create { mailbox } => match self.name_of(mailbox) {
                Some(name) if name.eq_ignore_ascii_case("INBOX") => {
                    self.no(tag, Some(rfc5530(b"ALREADYEXISTS")), "INBOX exists already")
                }
                Some(name) => {
                    let name = name.trim_end_matches('.').to_string();
                    match self.mailboxes.create(&account, &name) {
                        Ok(()) => self.ok(tag, None, "CREATE completed"),
                        Err(e) => self.refuse(tag, e),
                    }
                }
                None => self.no(tag, None, "that is not a folder name"),
            },
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                let wildcard: Vec<u8> = match mailbox_wildcard {
                    ListMailbox::Token(t) => t.as_ref().to_vec(),
                    ListMailbox::String(s) => s.as_ref().to_vec(),
                };
                if wildcard.is_empty() {
                    // The hierarchy separator and the root (RFC 9051 §6.3.9).
                    self.respond(&Response::Data(Data::List {
                        items: vec![FlagNameAttribute::Noselect],
                        delimiter: Some(QuotedChar::unvalidated('.')),
                        mailbox: Mailbox::try_from("").expect("an empty name"),
                    }));
                    self.ok(tag, None, "LIST completed");
                    return true;
                }
                // Matched as the client writes names (UTF-8 under
                // IMAP4rev2: a pattern may end inside an encoded run).
                let full = pattern_of(reference, mailbox_wildcard);
                match self.mailboxes.folders(&account) {
                    Ok(folders) => {
                        let shown: Vec<&String> = folders
                            .iter()
                            .filter(|f| listed(&full, &self.wire_name(f)))
                            .collect();
                        for folder in shown {
                            self.list_line(folder, &folders, (true, true), Vec::new());
                        }
                        self.ok(tag, None, "LIST completed");
                    }
                    Err(e) => self.refuse(tag, e),
                }
            }
            CommandBody::Noop | CommandBody::Check if self.selected.is_some() => {
                self.rescan();
                let text = if matches!(body, CommandBody::Noop) {
                    "NOOP completed"
                } else {
                    "CHECK completed"
                };
                self.ok(tag, None, text);
            }
            CommandBody::Unselect if self.selected.is_some() => {
                self.selected = None;
                self.saved = None;
                self.ok(tag, None, "UNSELECT completed");
            }
            CommandBody::Delete { mailbox } => match self.name_of(mailbox) {
                Some(name) => {
                    if self.selected.as_ref().is_some_and(|s| s.name == name) {
                        self.selected = None;
                    }
                    match self.mailboxes.delete(&account, &name) {
                        Ok(()) => self.ok(tag, None, "DELETE completed"),
                        Err(e) => self.refuse(tag, e),
                    }
                }
                None => self.no(
                    tag,
                    Some(rfc5530(b"NONEXISTENT")),
                    "there is no such folder",
                ),
            },
            CommandBody::Rename { from, to } => match (self.name_of(from), self.name_of(to)) {
                (Some(from), Some(to)) => match self.mailboxes.rename(&account, &from, &to) {
                    Ok(()) => self.ok(tag, None, "RENAME completed"),
                    Err(e) => self.refuse(tag, e),
                },
                _ => self.no(tag, None, "that is not a folder name"),
            },
            CommandBody::Subscribe { mailbox } | CommandBody::Unsubscribe { mailbox } => {
                let on = matches!(body, CommandBody::Subscribe { .. });
                match self.name_of(mailbox) {
                    Some(name) => match self.mailboxes.subscribe(&account, &name, on) {
                        Ok(()) => self.ok(
                            tag,
                            None,
                            if on {
                                "SUBSCRIBE completed"
                            } else {
                                "UNSUBSCRIBE completed"
                            },
                        ),
                        Err(e) => self.refuse(tag, e),
                    },
                    None => self.no(tag, None, "that is not a folder name"),
                }
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                let pattern = pattern_of(reference, mailbox_wildcard);
                match self.mailboxes.subscriptions(&account) {
                    Ok(names) => {
                        for name in names {
                            if !listed(&pattern, &name) {
                                continue;
                            }
                            let items = special_of(&name).into_iter().collect();
                            let Ok(mailbox) = Mailbox::try_from(self.wire_name(&name)) else {
                                continue;
                            };
                            self.respond(&Response::Data(Data::Lsub {
                                items,
                                delimiter: Some(QuotedChar::unvalidated('.')),
                                mailbox,
                            }));
                        }
                        self.ok(tag, None, "LSUB completed");
                    }
                    Err(e) => self.refuse(tag, e),
                }
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => {
                if item_names.contains(&StatusDataItemName::HighestModSeq) {
                    self.condstore = true;
                }
                let Some(name) = self.name_of(mailbox) else {
                    self.no(
                        tag,
                        Some(rfc5530(b"NONEXISTENT")),
                        "there is no such folder",
                    );
                    return true;
                };
                match self.mailboxes.look(&account, &name) {
                    Ok(folder) => {
                        let size = item_names
                            .contains(&StatusDataItemName::Size)
                            .then(|| self.folder_size(&account, &name, &folder));
                        let items = status_items(&folder, item_names.as_ref(), size);
                        self.respond(&Response::Data(Data::Status {
                            mailbox: mailbox.clone(),
                            items: items.into(),
                        }));
                        self.ok(tag, None, "STATUS completed");
                    }
                    Err(e) => self.refuse(tag, e),
                }
            }
            CommandBody::Namespace => {
                let personal = vec![Namespace {
                    prefix: IString::try_from("").expect("empty"),
                    delimiter: Some(QuotedChar::unvalidated('.')),
                    extensions: Vec::new(),
                }];
                self.respond(&Response::Data(Data::Namespace {
                    personal,
                    other: Vec::new(),
                    shared: Vec::new(),
                }));
                self.ok(tag, None, "NAMESPACE completed");
            }
            CommandBody::Unselect | CommandBody::Close | CommandBody::Check
                if self.selected.is_none() =>
            {
                self.bad(Some(tag), "no folder is selected");
            }
            _ => return false,
        }
        true
    }

    /// The name a client gave, as the store knows it (modified UTF-7, as
    /// IMAP4rev1 clients write it; IMAP4rev2 clients write UTF-8).
    pub(super) fn name_of(&self, mailbox: &Mailbox<'_>) -> Option<String> {
        let name = raw_name_of(mailbox)?;
        Some(if self.rev2 {
            super::rev2::to_utf7(&name)
        } else {
            name
        })
    }

    /// STATUS SIZE: the sum of the messages' RFC822.SIZE (read for those
    /// the store cannot tell).
    pub(super) fn folder_size(&self, account: &str, name: &str, folder: &Folder) -> u64 {
        folder
            .messages
            .iter()
            .map(|m| match m.size {
                Some(size) => u64::from(size),
                None => self
                    .mailboxes
                    .read(account, name, m.uid)
                    .map_or(0, |(bytes, _)| bytes.len() as u64),
            })
            .sum()
    }

    /// A stored name as the client reads it.
    pub(super) fn wire_name(&self, stored: &str) -> String {
        if self.rev2 {
            super::rev2::from_utf7(stored).unwrap_or_else(|| stored.to_string())
        } else {
            stored.to_string()
        }
    }

    /// One LIST answer for `folder` (of `folders`): with `children`,
    /// whether it has folders below it (RFC 9051 §7.3.1, RFC 3348); with
    /// `special`, its special use (RFC 6154); and `extra`.
    pub(super) fn list_line(
        &mut self,
        folder: &str,
        folders: &[String],
        (children, special): (bool, bool),
        extra: Vec<FlagNameAttribute<'static>>,
    ) {
        let Ok(mailbox) = Mailbox::try_from(self.wire_name(folder)) else {
            return;
        };
        let mut items = Vec::new();
        if children {
            let below = format!("{folder}.");
            let attribute = if folders.iter().any(|f| f.starts_with(&below)) {
                "HasChildren"
            } else {
                "HasNoChildren"
            };
            items.push(FlagNameAttribute::from(
                Atom::try_from(attribute).expect("an atom"),
            ));
        }
        if special {
            items.extend(special_of(folder));
        }
        items.extend(extra);
        self.respond(&Response::Data(Data::List {
            items,
            delimiter: Some(QuotedChar::unvalidated('.')),
            mailbox,
        }));
    }

    pub(super) fn refuse(&mut self, tag: Tag<'static>, e: StoreError) {
        let code = match e {
            StoreError::NoSuchFolder => Some(rfc5530(b"NONEXISTENT")),
            StoreError::Exists => Some(rfc5530(b"ALREADYEXISTS")),
            StoreError::Invalid(_) => Some(rfc5530(b"CANNOT")),
            StoreError::Failed => Some(rfc5530(b"SERVERBUG")),
            StoreError::OverQuota => Some(Code::OverQuota),
        };
        self.no(tag, code, &e.to_string());
    }

    fn select(
        &mut self,
        tag: Tag<'static>,
        name: String,
        folder: Folder,
        read_only: bool,
        resync: Option<(u32, u64, Option<SequenceSet>)>,
    ) {
        let system = || {
            vec![
                Flag::Answered,
                Flag::Flagged,
                Flag::Deleted,
                Flag::Seen,
                Flag::Draft,
            ]
        };
        self.respond(&Response::Data(Data::Flags(system())));
        let permanent = if read_only {
            Vec::new()
        } else {
            system().into_iter().map(FlagPerm::Flag).collect()
        };
        self.untagged_ok(Code::PermanentFlags(permanent), "flags that stay");
        self.respond(&Response::Data(Data::Exists(folder.messages.len() as u32)));
        if !self.rev2 {
            self.respond(&Response::Data(Data::Recent(folder.recent.len() as u32)));
        }
        if let Some(v) = NonZeroU32::new(folder.uid_validity) {
            self.untagged_ok(Code::UidValidity(v), "UIDs valid");
        }
        if let Some(n) = NonZeroU32::new(folder.uid_next) {
            self.untagged_ok(Code::UidNext(n), "the next UID");
        }
        if let Some(m) = NonZeroU64::new(folder.highest_modseq) {
            self.untagged_ok(Code::HighestModSeq(m), "the highest MODSEQ");
        }
        if let Some((validity, since, known)) = resync {
            self.resync(&name, &folder, validity, since, known.as_ref());
        }
        let (code, text) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        self.ok(tag, Some(code), text);
        self.selected = Some(Selected {
            name,
            read_only,
            recent: folder.recent.iter().copied().collect(),
            folder,
        });
    }

    fn untagged_ok(&mut self, code: Code<'_>, text: &str) {
        let status = Status::ok(None, Some(code), text).expect("valid text");
        self.respond(&Response::Status(status));
    }

    /// The selected folder brought up to date (after an APPEND to it).
    pub(super) fn rescan_selected(&mut self) {
        self.rescan();
    }

    /// The selected folder brought up to date: messages gone are reported
    /// (EXPUNGE, highest number first, or one VANISHED with QRESYNC), then
    /// the new count (EXISTS), then the flags other sessions changed.
    fn rescan(&mut self) {
        let (Some(account), Some(selected)) = (self.account().map(str::to_string), &self.selected)
        else {
            return;
        };
        let Ok(now) = self.mailboxes.open(&account, &selected.name) else {
            return;
        };
        let before = selected.folder.messages.clone();
        let gone: Vec<u32> = before
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                now.messages
                    .binary_search_by_key(&m.uid, |n| n.uid)
                    .is_err()
            })
            .map(|(i, _)| i as u32 + 1)
            .collect();
        let count = before.len() as u32 - gone.len() as u32;
        if self.qresync {
            let uids = gone
                .iter()
                .map(|seq| before[*seq as usize - 1].uid)
                .collect();
            if let Some(known_uids) = super::condstore::compact(uids) {
                self.respond(&Response::Data(Data::Vanished {
                    earlier: false,
                    known_uids,
                }));
            }
        } else {
            for seq in gone.iter().rev().filter_map(|s| NonZeroU32::new(*s)) {
                self.respond(&Response::Data(Data::Expunge(seq)));
            }
        }
        if now.messages.len() as u32 != count || !gone.is_empty() {
            self.respond(&Response::Data(Data::Exists(now.messages.len() as u32)));
        }
        self.tell_flag_changes(&before, &now.messages);
        let mut recent = 0;
        if let Some(selected) = &mut self.selected {
            selected.recent.extend(now.recent.iter().copied());
            selected
                .recent
                .retain(|uid| now.messages.binary_search_by_key(uid, |m| m.uid).is_ok());
            recent = selected.recent.len() as u32;
            selected.folder = now;
        }
        if !self.rev2
            && !self
                .selected
                .as_ref()
                .is_some_and(|s| s.folder.recent.is_empty())
        {
            self.respond(&Response::Data(Data::Recent(recent)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn list_patterns_match_as_rfc_9051_says() {
        assert!(matches(b"*", b"Archive.2026"));
        assert!(matches(b"%", b"Archive"));
        assert!(!matches(b"%", b"Archive.2026"));
        assert!(matches(b"Archive.%", b"Archive.2026"));
        assert!(matches(b"A*6", b"Archive.2026"));
        assert!(!matches(b"Sent", b"Sent.Old"));
        assert!(matches(b"", b""));
    }
}
