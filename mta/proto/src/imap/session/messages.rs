//! The commands on the messages of the selected folder (FETCH has its own
//! file): STORE (UNCHANGEDSINCE), APPEND, COPY, MOVE, EXPUNGE and CLOSE,
//! and their UID forms.

use std::num::NonZeroU32;

use imap_codec::imap_types::command::{CommandBody, StoreModifier};
use imap_codec::imap_types::core::{Tag, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::flag::{Flag, FlagFetch, StoreResponse, StoreType};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::{Session, rfc5530};
use crate::imap::store::{Flags, Message};

/// Whether `x` is in `set`, `*` being `largest` (RFC 9051 §9: a range
/// may be given either way round).
pub(super) fn contains(set: &SequenceSet, x: u32, largest: u32) -> bool {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(v) => value(v) == x,
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            a.min(b) <= x && x <= a.max(b)
        }
    })
}

pub(super) fn flag_list(f: Flags, recent: bool) -> Vec<FlagFetch<'static>> {
    let mut list: Vec<FlagFetch<'static>> = [
        (f.answered, Flag::Answered),
        (f.flagged, Flag::Flagged),
        (f.deleted, Flag::Deleted),
        (f.seen, Flag::Seen),
        (f.draft, Flag::Draft),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, flag)| FlagFetch::Flag(flag))
    .collect();
    if recent {
        list.push(FlagFetch::Recent);
    }
    list
}

impl Session {
    /// Handles `body` if it is a command on messages; whether it was.
    pub(super) fn message_command(
        &mut self,
        tag: Tag<'static>,
        body: &CommandBody<'static>,
    ) -> bool {
        if let CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
        } = body
        {
            self.append(tag, mailbox, flags, date.as_ref(), message);
            return true;
        }
        if self.selected.is_none() {
            return false;
        }
        match body {
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(tag, charset.as_ref(), criteria, *uid),
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, sequence_set, mailbox, *uid, false),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, sequence_set, mailbox, *uid, true),
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => self.fetch(tag, sequence_set, macro_or_item_names, *uid, modifiers),
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                let unchanged_since = modifiers
                    .iter()
                    .map(|StoreModifier::UnchangedSince(u)| *u)
                    .next();
                let how = (kind, response, unchanged_since);
                self.store(tag, sequence_set, how, flags, *uid)
            }
            CommandBody::Expunge => {
                if self.expunge_deleted(None) {
                    self.ok(tag, None, "EXPUNGE completed");
                } else {
                    self.no(
                        tag,
                        Some(rfc5530(b"SERVERBUG")),
                        "the messages could not be removed",
                    );
                }
            }
            CommandBody::ExpungeUid { sequence_set } => {
                if self.expunge_deleted(Some(sequence_set)) {
                    self.ok(tag, None, "UID EXPUNGE completed");
                } else {
                    self.no(
                        tag,
                        Some(rfc5530(b"SERVERBUG")),
                        "the messages could not be removed",
                    );
                }
            }
            CommandBody::Close => {
                // Deleted messages go silently (RFC 9051 §6.4.1).
                let read_only = self.selected.as_ref().is_some_and(|s| s.read_only);
                if !read_only {
                    let out = self.output.len();
                    self.expunge_deleted(None);
                    self.output.truncate(out);
                }
                self.selected = None;
                self.saved = None;
                self.ok(tag, None, "CLOSE completed");
            }
            _ => return false,
        }
        true
    }

    fn append(
        &mut self,
        tag: Tag<'static>,
        mailbox: &imap_codec::imap_types::mailbox::Mailbox<'static>,
        flags: &[Flag<'static>],
        date: Option<&DateTime>,
        message: &imap_codec::imap_types::extensions::binary::LiteralOrLiteral8<'static>,
    ) {
        use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
        let Some(account) = self.account().map(str::to_string) else {
            return;
        };
        let Some(name) = self.name_of(mailbox) else {
            self.no(
                tag,
                Some(rfc5530(b"NONEXISTENT")),
                "there is no such folder",
            );
            return;
        };
        let bytes: &[u8] = match message {
            LiteralOrLiteral8::Literal(l) => l.as_ref(),
            LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
        };
        let flags = to_flags(flags);
        let date = date.map(|d| d.as_ref().timestamp());
        match self.mailboxes.append(&account, &name, bytes, flags, date) {
            Ok((validity, uid)) => {
                let code = match (NonZeroU32::new(validity), NonZeroU32::new(uid)) {
                    (Some(uid_validity), Some(uid)) => {
                        Some(imap_codec::imap_types::response::Code::AppendUid {
                            uid_validity,
                            uid,
                        })
                    }
                    _ => None,
                };
                self.ok(tag, code, "APPEND completed");
                // New mail in the selected folder shows at once.
                if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    let out = self.output.split_off(0);
                    self.rescan_selected();
                    let mut told = self.output.split_off(0);
                    told.extend_from_slice(&out);
                    self.output = told;
                }
            }
            Err(crate::imap::store::StoreError::NoSuchFolder) => {
                self.no(tag, Some(rfc5530(b"TRYCREATE")), "there is no such folder")
            }
            Err(e) => self.refuse(tag, e),
        }
    }

    fn copy(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        mailbox: &imap_codec::imap_types::mailbox::Mailbox<'static>,
        uid: bool,
        moving: bool,
    ) {
        let Some(account) = self.account().map(str::to_string) else {
            return;
        };
        let (from, read_only) = match &self.selected {
            Some(s) => (s.name.clone(), s.read_only),
            None => return,
        };
        if moving && read_only {
            self.no(
                tag,
                Some(imap_codec::imap_types::response::Code::ReadOnly),
                "the folder is read-only",
            );
            return;
        }
        let Some(to) = self.name_of(mailbox) else {
            self.no(tag, Some(rfc5530(b"TRYCREATE")), "there is no such folder");
            return;
        };
        let chosen = self.chosen(set, uid);
        let uids: Vec<u32> = chosen.iter().map(|(_, m)| m.uid).collect();
        let done = if uids.is_empty() {
            Ok((0, Vec::new()))
        } else if moving {
            self.mailboxes.move_messages(&account, &from, &uids, &to)
        } else {
            self.mailboxes.copy(&account, &from, &uids, &to)
        };
        let (validity, pairs) = match done {
            Ok(x) => x,
            Err(crate::imap::store::StoreError::NoSuchFolder) => {
                self.no(tag, Some(rfc5530(b"TRYCREATE")), "there is no such folder");
                return;
            }
            Err(e) => {
                self.refuse(tag, e);
                return;
            }
        };
        let code = copy_uid(validity, &pairs);
        let verb = match (moving, uid) {
            (false, false) => "COPY completed",
            (false, true) => "UID COPY completed",
            (true, false) => "MOVE completed",
            (true, true) => "UID MOVE completed",
        };
        if !moving {
            self.ok(tag, code, verb);
            return;
        }
        // MOVE (RFC 6851): the COPYUID first, untagged, then the
        // messages go from here.
        if let Some(code) = code {
            let status = imap_codec::imap_types::response::Status::ok(None, Some(code), "moved")
                .expect("valid text");
            self.respond(&Response::Status(status));
        }
        let moved: Vec<u32> = pairs.iter().map(|(from, _)| *from).collect();
        self.gone(&moved);
        self.ok(tag, None, verb);
    }

    /// The selected folder's messages in `set`, with their sequence
    /// numbers.
    pub(super) fn chosen(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, Message)> {
        let Some(selected) = &self.selected else {
            return Vec::new();
        };
        let messages = &selected.folder.messages;
        let largest = if uid {
            messages.last().map_or(0, |m| m.uid)
        } else {
            messages.len() as u32
        };
        messages
            .iter()
            .enumerate()
            .map(|(i, m)| (i as u32 + 1, m.clone()))
            .filter(|(seq, m)| contains(set, if uid { m.uid } else { *seq }, largest))
            .collect()
    }

    /// IMAP4rev1's \Recent (IMAP4rev2 has none).
    pub(super) fn is_recent(&self, uid: u32) -> bool {
        !self.rev2
            && self
                .selected
                .as_ref()
                .is_some_and(|s| s.recent.contains(&uid))
    }

    /// What `$` stands for (SEARCHRES): the saved messages by UID, or by
    /// their numbers now.
    pub(super) fn saved_text(&self, uid: bool) -> String {
        let saved = self.saved.clone().unwrap_or_default();
        let numbers = if uid {
            saved
        } else {
            let saved: std::collections::HashSet<u32> = saved.into_iter().collect();
            let messages = self.selected.as_ref().map(|s| &s.folder.messages);
            messages
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(_, m)| saved.contains(&m.uid))
                .map(|(i, _)| i as u32 + 1)
                .collect()
        };
        super::rev2::set_text(numbers)
    }

    /// The client now knows `message` as it is.
    pub(super) fn remember(&mut self, message: &Message) {
        if let Some(s) = &mut self.selected
            && let Some(m) = s.folder.messages.iter_mut().find(|m| m.uid == message.uid)
        {
            *m = message.clone();
        }
    }

    /// STORE: `how` is the kind of change, whether the answer is silent,
    /// and UNCHANGEDSINCE's MODSEQ (RFC 7162 §3.1.3).
    fn store(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        how: (&StoreType, &StoreResponse, Option<u64>),
        flags: &[Flag<'static>],
        uid: bool,
    ) {
        let (kind, response, unchanged_since) = how;
        if unchanged_since.is_some() {
            self.condstore = true;
        }
        let Some(account) = self.account().map(str::to_string) else {
            return;
        };
        let (name, read_only) = match &self.selected {
            Some(s) => (s.name.clone(), s.read_only),
            None => return,
        };
        if read_only {
            self.no(
                tag,
                Some(imap_codec::imap_types::response::Code::ReadOnly),
                "the folder is read-only",
            );
            return;
        }
        // Keywords are not kept (PERMANENTFLAGS has no \\*).
        let given = to_flags(flags);
        let apply = |old: Flags| -> Flags {
            let pick = |o: bool, g: bool| match kind {
                StoreType::Replace => g,
                StoreType::Add => o || g,
                StoreType::Remove => o && !g,
            };
            Flags {
                seen: pick(old.seen, given.seen),
                answered: pick(old.answered, given.answered),
                flagged: pick(old.flagged, given.flagged),
                deleted: pick(old.deleted, given.deleted),
                draft: pick(old.draft, given.draft),
            }
        };
        // Messages changed since the client's MODSEQ are left alone and
        // named in MODIFIED.
        let mut modified = Vec::new();
        for (seq, mut message) in self.chosen(set, uid) {
            if unchanged_since.is_some_and(|u| message.modseq > u) {
                modified.push(if uid { message.uid } else { seq });
                continue;
            }
            let new = apply(message.flags);
            let mut changed = false;
            if new != message.flags {
                match self.mailboxes.set_flags(&account, &name, message.uid, new) {
                    Ok(modseq) => {
                        message.flags = new;
                        message.modseq = modseq;
                        self.remember(&message);
                        changed = true;
                    }
                    Err(_) => continue,
                }
            }
            // Silent or not, a conditional STORE tells each new MODSEQ.
            let answer = matches!(response, StoreResponse::Answer);
            if answer || (changed && unchanged_since.is_some()) {
                self.tell(seq, &message, uid, answer);
            }
        }
        let code = super::condstore::compact(modified)
            .map(imap_codec::imap_types::response::Code::Modified);
        self.ok(
            tag,
            code,
            if uid {
                "UID STORE completed"
            } else {
                "STORE completed"
            },
        );
    }

    /// Removes the selected folder's messages flagged \Deleted (of `set`,
    /// by UID, when given), telling the client each sequence number gone;
    /// whether the store did it.
    fn expunge_deleted(&mut self, set: Option<&SequenceSet>) -> bool {
        let Some(account) = self.account().map(str::to_string) else {
            return false;
        };
        let Some(selected) = &self.selected else {
            return false;
        };
        let largest = selected.folder.messages.last().map_or(0, |m| m.uid);
        let doomed: Vec<u32> = selected
            .folder
            .messages
            .iter()
            .filter(|m| m.flags.deleted && set.is_none_or(|s| contains(s, m.uid, largest)))
            .map(|m| m.uid)
            .collect();
        if doomed.is_empty() {
            return true;
        }
        let name = selected.name.clone();
        self.remove(&account, &name, &doomed)
    }

    /// Removes messages `uids` of the selected folder `name`, telling the
    /// client each sequence number gone (highest first: each EXPUNGE
    /// renumbers the rest); whether the store did it.
    fn remove(&mut self, account: &str, name: &str, uids: &[u32]) -> bool {
        let Ok(removed) = self.mailboxes.expunge(account, name, uids) else {
            return false;
        };
        self.gone(&removed);
        true
    }

    /// Messages `removed` (UIDs) are no longer in the selected folder: the
    /// client is told each sequence number gone, highest first.
    fn gone(&mut self, removed: &[u32]) {
        if self.qresync
            && let Some(known_uids) = super::condstore::compact(removed.to_vec())
        {
            self.respond(&Response::Data(Data::Vanished {
                earlier: false,
                known_uids,
            }));
        }
        let positions: Vec<u32> = self
            .selected
            .as_ref()
            .map(|s| {
                s.folder
                    .messages
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| removed.contains(&m.uid))
                    .map(|(i, _)| i as u32 + 1)
                    .collect()
            })
            .unwrap_or_default();
        let qresync = self.qresync;
        for seq in positions.iter().rev().filter(|_| !qresync) {
            if let Some(seq) = NonZeroU32::new(*seq) {
                self.respond(&Response::Data(Data::Expunge(seq)));
            }
        }
        if let Some(s) = &mut self.selected {
            s.folder.messages.retain(|m| !removed.contains(&m.uid));
            s.recent.retain(|uid| !removed.contains(uid));
        }
    }
}

/// COPYUID (RFC 4315) for the (source, copy) UIDs.
fn copy_uid(
    validity: u32,
    pairs: &[(u32, u32)],
) -> Option<imap_codec::imap_types::response::Code<'static>> {
    use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
    let validity = NonZeroU32::new(validity)?;
    let set = |uids: Vec<u32>| -> Option<UidSet> {
        let elements: Vec<UidElement> = uids
            .into_iter()
            .filter_map(NonZeroU32::new)
            .map(UidElement::Single)
            .collect();
        Vec1::try_from(elements).ok().map(UidSet)
    };
    Some(imap_codec::imap_types::response::Code::CopyUid {
        uid_validity: validity,
        source: set(pairs.iter().map(|p| p.0).collect())?,
        destination: set(pairs.iter().map(|p| p.1).collect())?,
    })
}

/// The system flags among `flags` (keywords are not kept).
fn to_flags(flags: &[Flag<'_>]) -> Flags {
    let mut given = Flags::default();
    for f in flags {
        match f {
            Flag::Seen => given.seen = true,
            Flag::Answered => given.answered = true,
            Flag::Flagged => given.flagged = true,
            Flag::Deleted => given.deleted = true,
            Flag::Draft => given.draft = true,
            _ => {}
        }
    }
    given
}
