//! FETCH and UID FETCH (RFC 9051 §6.4.5): flags, UID, size, arrival,
//! MODSEQ, ENVELOPE, BODYSTRUCTURE, the message and its sections, partial;
//! CHANGEDSINCE and VANISHED (RFC 7162). A FETCH of many messages is a job
//! the session works through a slice at a time: when the answers not yet
//! written reach [`OUTPUT_HIGH`], the adapter writes them before the next
//! slice is read from disk, so `FETCH 1:* BODY[]` of a large folder takes
//! the memory of one message, not of the folder.

use std::collections::VecDeque;
use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::core::{IString, Literal, LiteralMode, NString, NString8, Tag, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::Literal8;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::sequence::SequenceSet;

use super::messages::flag_list;
use super::{Session, rfc5530};
use crate::imap::store::{Flags, Message};

/// Answers held before the adapter must write them (a FETCH goes on once
/// they are written).
pub(super) const OUTPUT_HIGH: usize = 256 * 1024;

/// What a FETCH must read of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Reads {
    Nothing,
    /// The header section (and the arrival time).
    Header,
    Whole,
}

/// What item `name` needs read.
fn reads_of(name: &MessageDataItemName<'_>) -> Reads {
    match name {
        MessageDataItemName::Envelope
        | MessageDataItemName::Rfc822Header
        | MessageDataItemName::InternalDate => Reads::Header,
        MessageDataItemName::BodyExt {
            section:
                Some(
                    Section::Header(None)
                    | Section::HeaderFields(None, _)
                    | Section::HeaderFieldsNot(None, _),
                ),
            ..
        } => Reads::Header,
        MessageDataItemName::BodyExt { .. }
        | MessageDataItemName::Body
        | MessageDataItemName::BodyStructure
        | MessageDataItemName::Rfc822
        | MessageDataItemName::Rfc822Text
        | MessageDataItemName::Binary { .. }
        | MessageDataItemName::BinarySize { .. } => Reads::Whole,
        _ => Reads::Nothing,
    }
}

/// A FETCH under way: what is asked, and the messages left to answer for.
pub(super) struct FetchJob {
    tag: Tag<'static>,
    uid: bool,
    names: Vec<MessageDataItemName<'static>>,
    account: String,
    name: String,
    reads: Reads,
    wants_size: bool,
    marks_seen: bool,
    left: VecDeque<(u32, Message)>,
    /// A part BINARY could not decode (the FETCH ends NO [UNKNOWN-CTE]).
    unknown_encoding: Option<String>,
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
    pub(super) fn fetch(
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
        // What of each message must be read: the header section suffices
        // for ENVELOPE and header fields (most of a client's FETCHes).
        let reads = names.iter().map(reads_of).max().unwrap_or(Reads::Nothing);
        // RFC822.SIZE reads the message only when the store does not know it.
        let wants_size = names.contains(&MessageDataItemName::Rfc822Size);
        let marks_seen = !read_only
            && names.iter().any(|n| {
                matches!(
                    n,
                    MessageDataItemName::BodyExt { peek: false, .. }
                        | MessageDataItemName::Binary { peek: false, .. }
                        | MessageDataItemName::Rfc822
                        | MessageDataItemName::Rfc822Text
                )
            });
        let left = self
            .chosen(set, uid)
            .into_iter()
            .filter(|(_, m)| changed_since.is_none_or(|since| m.modseq > since))
            .collect();
        self.fetching = Some(FetchJob {
            tag,
            uid,
            names,
            account,
            name,
            reads,
            wants_size,
            marks_seen,
            left,
            unknown_encoding: None,
        });
    }

    /// Answers for more of the FETCH under way, until the answers not yet
    /// written reach [`OUTPUT_HIGH`]; whether some are left for later.
    pub(super) fn go_on_fetching(&mut self) -> bool {
        let Some(mut job) = self.fetching.take() else {
            return false;
        };
        while let Some((seq, message)) = job.left.pop_front() {
            self.fetch_one(&mut job, seq, message);
            if self.output.len() >= OUTPUT_HIGH {
                self.fetching = Some(job);
                return true;
            }
        }
        if let Some(encoding) = job.unknown_encoding {
            let text = format!("a part's Content-Transfer-Encoding is unknown: {encoding}");
            self.no(job.tag, Some(rfc5530(b"UNKNOWN-CTE")), &text);
            return false;
        }
        let text = if job.uid {
            "UID FETCH completed"
        } else {
            "FETCH completed"
        };
        self.ok(job.tag, None, text);
        false
    }

    /// The FETCH answer for one message (none if it is gone meanwhile).
    fn fetch_one(&mut self, job: &mut FetchJob, seq: u32, mut message: Message) {
        let (account, name, uid) = (&job.account, &job.name, message.uid);
        let reads = match (job.wants_size, message.size) {
            (true, None) => Reads::Whole,
            _ => job.reads,
        };
        let read = match reads {
            Reads::Nothing => Ok(None),
            Reads::Header => self.mailboxes.read_header(account, name, uid).map(Some),
            Reads::Whole => self.mailboxes.read(account, name, uid).map(Some),
        };
        // Expunged meanwhile: nothing to say about it.
        let Ok(content) = read else {
            return;
        };
        let mut flags_changed = false;
        if job.marks_seen && !message.flags.seen {
            let flags = Flags {
                seen: true,
                ..message.flags
            };
            if let Ok(modseq) =
                self.mailboxes
                    .set_flags(&job.account, &job.name, message.uid, flags)
            {
                message.flags = flags;
                message.modseq = modseq;
                flags_changed = true;
                self.remember(&message);
            }
        }
        let mut out: Vec<MessageDataItem<'static>> = Vec::new();
        for n in &job.names {
            let (bytes, arrived) = content
                .as_ref()
                .map_or((&[][..], 0), |(b, a)| (b.as_slice(), *a));
            out.push(match n {
                MessageDataItemName::Uid => continue,
                MessageDataItemName::Flags => continue,
                MessageDataItemName::Rfc822Size => MessageDataItem::Rfc822Size(
                    message
                        .size
                        .unwrap_or(u32::try_from(bytes.len()).unwrap_or(u32::MAX)),
                ),
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
                MessageDataItemName::BodyStructure => {
                    MessageDataItem::BodyStructure(crate::imap::mime::body_structure(bytes, true))
                }
                MessageDataItemName::Body => {
                    MessageDataItem::Body(crate::imap::mime::body_structure(bytes, false))
                }
                MessageDataItemName::ModSeq => match NonZeroU64::new(message.modseq) {
                    Some(m) => MessageDataItem::ModSeq(m),
                    None => continue,
                },
                MessageDataItemName::Binary {
                    section, partial, ..
                } => match binary_item(bytes, section, *partial, false) {
                    Ok(item) => item,
                    Err(e) => {
                        job.unknown_encoding = Some(e);
                        continue;
                    }
                },
                MessageDataItemName::BinarySize { section } => {
                    match binary_item(bytes, section, None, true) {
                        Ok(item) => item,
                        Err(e) => {
                            job.unknown_encoding = Some(e);
                            continue;
                        }
                    }
                }
            });
        }
        // FLAGS and UID where asked (and UID always for UID FETCH,
        // FLAGS when \Seen was just set: RFC 9051 §6.4.5).
        if flags_changed || job.names.contains(&MessageDataItemName::Flags) {
            out.insert(
                0,
                MessageDataItem::Flags(flag_list(message.flags, self.is_recent(message.uid))),
            );
            // With CONDSTORE, flags come with their MODSEQ (§3.2).
            if self.condstore
                && !job.names.contains(&MessageDataItemName::ModSeq)
                && let Some(m) = NonZeroU64::new(message.modseq)
            {
                out.push(MessageDataItem::ModSeq(m));
            }
        }
        if (job.uid || job.names.contains(&MessageDataItemName::Uid))
            && let Some(u) = NonZeroU32::new(message.uid)
        {
            out.insert(0, MessageDataItem::Uid(u));
        }
        let (Some(seq), Ok(items)) = (NonZeroU32::new(seq), Vec1::try_from(out)) else {
            return;
        };
        self.respond(&Response::Data(Data::Fetch { seq, items }));
    }
}

/// BINARY[section]<partial> (or BINARY.SIZE with `size_only`) of
/// `message`: the part with its transfer encoding undone; an unknown
/// encoding is the error (RFC 3516 §4.2: UNKNOWN-CTE).
fn binary_item(
    message: &[u8],
    section: &[NonZeroU32],
    partial: Option<(u32, NonZeroU32)>,
    size_only: bool,
) -> Result<MessageDataItem<'static>, String> {
    use crate::imap::mime::{BinaryError, binary_section, part_path};
    let (mut data, decoded) = match binary_section(message, &part_path(section)) {
        Ok(found) => found,
        Err(BinaryError::NoSuchPart) => (Vec::new(), false),
        Err(BinaryError::UnknownEncoding(e)) => return Err(e),
    };
    if size_only {
        return Ok(MessageDataItem::BinarySize {
            section: section.to_vec(),
            size: u32::try_from(data.len()).unwrap_or(u32::MAX),
        });
    }
    if let Some((origin, length)) = partial {
        let start = (origin as usize).min(data.len());
        let end = start.saturating_add(length.get() as usize).min(data.len());
        data = data[start..end].to_vec();
    }
    Ok(MessageDataItem::Binary {
        section: section.to_vec(),
        value: binary_value(data, decoded),
    })
}

/// BINARY's value: a literal8 (`~{n}`) when an encoding was undone (the
/// bytes may be anything; Dovecot does the same) or it holds NUL, which
/// no other literal may (RFC 3516 §4.2).
fn binary_value(data: Vec<u8>, decoded: bool) -> NString8<'static> {
    if decoded || data.contains(&0) {
        NString8::Literal8(Literal8 {
            data: data.into(),
            mode: LiteralMode::Sync,
        })
    } else {
        NString8::NString(literal(data))
    }
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
