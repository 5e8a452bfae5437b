//! The commands on the messages of the selected folder: FETCH (flags,
//! UID, size, arrival, MODSEQ, ENVELOPE, BODYSTRUCTURE, the message and its
//! sections, partial; CHANGEDSINCE and VANISHED), STORE (UNCHANGEDSINCE),
//! APPEND, COPY, MOVE, EXPUNGE and CLOSE, and their UID forms.

use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::imap_types::command::{CommandBody, FetchModifier, StoreModifier};
use imap_codec::imap_types::core::{IString, Literal, NString, Tag, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
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

/// Bytes as an IMAP literal. NUL cannot be sent in one: it becomes 0x80,
/// as Dovecot does.
fn literal(mut bytes: Vec<u8>) -> NString<'static> {
    for b in bytes.iter_mut().filter(|b| **b == 0) {
        *b = 0x80;
    }
    NString(Some(IString::Literal(
        Literal::try_from(bytes).expect("no NUL left"),
    )))
}

/// Where the header section ends (after its empty line).
fn header_end(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4)
}

/// The header fields named (or, with `not`, the others), and the empty
/// line (RFC 9051 §6.4.5).
fn header_fields(header: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    for (i, w) in header.windows(2).enumerate() {
        if w == b"\r\n" {
            let next = header.get(i + 2).copied();
            if !matches!(next, Some(b' ' | b'\t')) {
                fields.push(&header[start..i + 2]);
                start = i + 2;
            }
        }
    }
    for field in fields {
        let Some(colon) = field.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = field[..colon].trim_ascii_end();
        let named = names.iter().any(|n| n.eq_ignore_ascii_case(name));
        if named != not {
            out.extend_from_slice(field);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The section of `message`; `None` when it names no part there.
fn section(message: &[u8], section: &Option<Section<'_>>) -> Option<Vec<u8>> {
    use crate::imap::mime::{Within, part_section};
    let end = header_end(message);
    let path = |p: &imap_codec::imap_types::fetch::Part| -> Vec<u32> {
        p.0.as_ref().iter().map(|n| n.get()).collect()
    };
    let names = |names: &Vec1<imap_codec::imap_types::core::AString<'_>>| -> Vec<Vec<u8>> {
        names.as_ref().iter().map(|n| n.as_ref().to_vec()).collect()
    };
    Some(match section {
        None => message.to_vec(),
        Some(Section::Header(None)) => message[..end].to_vec(),
        Some(Section::Text(None)) => message[end..].to_vec(),
        Some(Section::HeaderFields(None, n)) => {
            header_fields(&message[..end.saturating_sub(2)], &names(n), false)
        }
        Some(Section::HeaderFieldsNot(None, n)) => {
            header_fields(&message[..end.saturating_sub(2)], &names(n), true)
        }
        Some(Section::Part(p)) => part_section(message, &path(p), Within::Content)?,
        Some(Section::Mime(p)) => part_section(message, &path(p), Within::Mime)?,
        Some(Section::Header(Some(p))) => part_section(message, &path(p), Within::Header)?,
        Some(Section::Text(Some(p))) => part_section(message, &path(p), Within::Text)?,
        Some(Section::HeaderFields(Some(p), n)) | Some(Section::HeaderFieldsNot(Some(p), n)) => {
            let header = part_section(message, &path(p), Within::Header)?;
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            header_fields(&header[..header.len().saturating_sub(2)], &names(n), not)
        }
    })
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
        let name = match mailbox {
            imap_codec::imap_types::mailbox::Mailbox::Inbox => "INBOX".to_string(),
            imap_codec::imap_types::mailbox::Mailbox::Other(o) => {
                match String::from_utf8(o.inner().as_ref().to_vec()) {
                    Ok(n) => n,
                    Err(_) => {
                        self.no(
                            tag,
                            Some(rfc5530(b"NONEXISTENT")),
                            "there is no such folder",
                        );
                        return;
                    }
                }
            }
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
        let to = match mailbox {
            imap_codec::imap_types::mailbox::Mailbox::Inbox => "INBOX".to_string(),
            imap_codec::imap_types::mailbox::Mailbox::Other(o) => {
                String::from_utf8_lossy(o.inner().as_ref()).to_string()
            }
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
    fn chosen(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, Message)> {
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

    fn fetch(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        items: &MacroOrMessageDataItemNames<'static>,
        uid: bool,
        modifiers: &[FetchModifier],
    ) {
        let mut names: Vec<MessageDataItemName<'static>> = match items {
            MacroOrMessageDataItemNames::Macro(m) => m
                .expand()
                .into_iter()
                .map(|n| n.into_static_name())
                .collect(),
            MacroOrMessageDataItemNames::MessageDataItemNames(n) => n.clone(),
        };
        if names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. }
            )
        }) {
            self.no(
                tag,
                Some(rfc5530(b"CANNOT")),
                "that FETCH item is not served yet",
            );
            return;
        }
        let changed_since = modifiers.iter().find_map(|m| match m {
            FetchModifier::ChangedSince(m) => Some(m.get()),
            FetchModifier::Vanished => None,
        });
        let vanished = modifiers.contains(&FetchModifier::Vanished);
        if vanished && !(uid && self.qresync && changed_since.is_some()) {
            self.bad(
                Some(tag),
                "VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC",
            );
            return;
        }
        // CHANGEDSINCE implies MODSEQ; either turns CONDSTORE on.
        if changed_since.is_some() && !names.contains(&MessageDataItemName::ModSeq) {
            names.push(MessageDataItemName::ModSeq);
        }
        if names.contains(&MessageDataItemName::ModSeq) {
            self.condstore = true;
        }
        let Some(account) = self.account().map(str::to_string) else {
            return;
        };
        let (name, read_only) = match &self.selected {
            Some(s) => (s.name.clone(), s.read_only),
            None => return,
        };
        if let (true, Some(since)) = (vanished, changed_since) {
            self.vanished_since(&name, since, Some(set));
        }
        let needs_content = names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::BodyExt { .. }
                    | MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Header
                    | MessageDataItemName::Rfc822Text
                    | MessageDataItemName::Rfc822Size
                    | MessageDataItemName::InternalDate
            )
        });
        let marks_seen = !read_only
            && names.iter().any(|n| {
                matches!(
                    n,
                    MessageDataItemName::BodyExt { peek: false, .. }
                        | MessageDataItemName::Rfc822
                        | MessageDataItemName::Rfc822Text
                )
            });
        for (seq, mut message) in self.chosen(set, uid) {
            if changed_since.is_some_and(|since| message.modseq <= since) {
                continue;
            }
            let content = if needs_content {
                match self.mailboxes.read(&account, &name, message.uid) {
                    Ok(c) => Some(c),
                    // Expunged meanwhile: nothing to say about it.
                    Err(_) => continue,
                }
            } else {
                None
            };
            let mut flags_changed = false;
            if marks_seen && !message.flags.seen {
                let flags = Flags {
                    seen: true,
                    ..message.flags
                };
                if let Ok(modseq) = self
                    .mailboxes
                    .set_flags(&account, &name, message.uid, flags)
                {
                    message.flags = flags;
                    message.modseq = modseq;
                    flags_changed = true;
                    self.remember(&message);
                }
            }
            let mut out: Vec<MessageDataItem<'static>> = Vec::new();
            for n in &names {
                let (bytes, arrived) = content
                    .as_ref()
                    .map_or((&[][..], 0), |(b, a)| (b.as_slice(), *a));
                out.push(match n {
                    MessageDataItemName::Uid => continue,
                    MessageDataItemName::Flags => continue,
                    MessageDataItemName::Rfc822Size => {
                        MessageDataItem::Rfc822Size(u32::try_from(bytes.len()).unwrap_or(u32::MAX))
                    }
                    MessageDataItemName::InternalDate => {
                        let at = chrono::DateTime::from_timestamp(arrived, 0)
                            .unwrap_or_default()
                            .fixed_offset();
                        match DateTime::try_from(at) {
                            Ok(d) => MessageDataItem::InternalDate(d),
                            Err(_) => continue,
                        }
                    }
                    MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(bytes.to_vec())),
                    MessageDataItemName::Rfc822Header => MessageDataItem::Rfc822Header(literal(
                        section(bytes, &Some(Section::Header(None))).unwrap_or_default(),
                    )),
                    MessageDataItemName::Rfc822Text => MessageDataItem::Rfc822Text(literal(
                        section(bytes, &Some(Section::Text(None))).unwrap_or_default(),
                    )),
                    MessageDataItemName::BodyExt {
                        section: wanted,
                        partial,
                        ..
                    } => {
                        let mut data = section(bytes, wanted).unwrap_or_default();
                        let origin = partial.map(|(origin, length)| {
                            let start = (origin as usize).min(data.len());
                            let end = start.saturating_add(length.get() as usize).min(data.len());
                            data = data[start..end].to_vec();
                            origin
                        });
                        MessageDataItem::BodyExt {
                            section: wanted.clone(),
                            origin,
                            data: literal(data),
                        }
                    }
                    MessageDataItemName::Envelope => {
                        let end = crate::imap::mime::header_end(bytes);
                        MessageDataItem::Envelope(crate::imap::mime::envelope(&bytes[..end]))
                    }
                    MessageDataItemName::BodyStructure => MessageDataItem::BodyStructure(
                        crate::imap::mime::body_structure(bytes, true),
                    ),
                    MessageDataItemName::Body => {
                        MessageDataItem::Body(crate::imap::mime::body_structure(bytes, false))
                    }
                    MessageDataItemName::ModSeq => match NonZeroU64::new(message.modseq) {
                        Some(m) => MessageDataItem::ModSeq(m),
                        None => continue,
                    },
                    _ => continue,
                });
            }
            // FLAGS and UID where asked (and UID always for UID FETCH,
            // FLAGS when \Seen was just set: RFC 9051 §6.4.5).
            if flags_changed || names.contains(&MessageDataItemName::Flags) {
                out.insert(
                    0,
                    MessageDataItem::Flags(flag_list(message.flags, self.is_recent(message.uid))),
                );
                // With CONDSTORE, flags come with their MODSEQ (§3.2).
                if self.condstore
                    && !names.contains(&MessageDataItemName::ModSeq)
                    && let Some(m) = NonZeroU64::new(message.modseq)
                {
                    out.push(MessageDataItem::ModSeq(m));
                }
            }
            if (uid || names.contains(&MessageDataItemName::Uid))
                && let Some(u) = NonZeroU32::new(message.uid)
            {
                out.insert(0, MessageDataItem::Uid(u));
            }
            let (Some(seq), Ok(items)) = (NonZeroU32::new(seq), Vec1::try_from(out)) else {
                continue;
            };
            self.respond(&Response::Data(Data::Fetch { seq, items }));
        }
        self.ok(
            tag,
            None,
            if uid {
                "UID FETCH completed"
            } else {
                "FETCH completed"
            },
        );
    }

    pub(super) fn is_recent(&self, uid: u32) -> bool {
        self.selected
            .as_ref()
            .is_some_and(|s| s.recent.contains(&uid))
    }

    /// The client now knows `message` as it is.
    fn remember(&mut self, message: &Message) {
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

/// `MessageDataItemName<'_>` from a macro's expansion, owned.
trait IntoStaticName {
    fn into_static_name(self) -> MessageDataItemName<'static>;
}

impl IntoStaticName for MessageDataItemName<'_> {
    fn into_static_name(self) -> MessageDataItemName<'static> {
        use imap_codec::imap_types::IntoStatic;
        self.into_static()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_picked_with_their_continuation_lines() {
        let header = b"From: a@b\r\nSubject: one\r\n two\r\nTo: c@d\r\n";
        let names = vec![b"subject".to_vec(), b"TO".to_vec()];
        assert_eq!(
            header_fields(header, &names, false),
            b"Subject: one\r\n two\r\nTo: c@d\r\n\r\n"
        );
        assert_eq!(header_fields(header, &names, true), b"From: a@b\r\n\r\n");
    }

    #[test]
    fn sections_of_a_message() {
        let m = b"Subject: hi\r\n\r\nbody\r\n";
        assert_eq!(section(m, &None).unwrap(), m);
        assert_eq!(
            section(m, &Some(Section::Header(None))).unwrap(),
            b"Subject: hi\r\n\r\n"
        );
        assert_eq!(section(m, &Some(Section::Text(None))).unwrap(), b"body\r\n");
    }

    #[test]
    fn nul_cannot_be_sent_and_becomes_0x80() {
        let NString(Some(IString::Literal(l))) = literal(b"a\0b".to_vec()) else {
            panic!("a literal");
        };
        assert_eq!(l.as_ref(), b"a\x80b");
    }
}
