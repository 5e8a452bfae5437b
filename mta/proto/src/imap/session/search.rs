//! SEARCH and UID SEARCH (RFC 9051 §6.4.4) over the selected folder:
//! flags, sets, sizes, dates (arrival and Date:), header fields and text,
//! matched case-insensitively after MIME decoding (encoded words, transfer
//! encodings and charsets), as Dovecot matches them. Charsets: US-ASCII
//! and UTF-8.

use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::imap_types::core::{Charset, Tag, Vec1};
use imap_codec::imap_types::response::{Code, Data, Response};
use imap_codec::imap_types::search::SearchKey;
use mail_parser::{MessageParser, MimeHeaders};

use super::Session;
use super::messages::contains;
use crate::imap::store::Message;

/// What is known of one message while a search runs; its content is read
/// only when a key needs it.
struct Candidate<'a> {
    seq: u32,
    message: &'a Message,
    recent: bool,
    content: Option<Option<(Vec<u8>, i64)>>,
    /// Its header section, when only that was needed.
    header: Option<Option<(Vec<u8>, i64)>>,
}

/// Whether `key` has a MODSEQ key anywhere in it.
fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(k) => uses_modseq(k),
        _ => false,
    }
}

fn lower(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_lowercase()
}

impl Session {
    pub(super) fn search(
        &mut self,
        tag: Tag<'static>,
        charset: Option<&Charset<'_>>,
        criteria: &Vec1<SearchKey<'static>>,
        uid: bool,
    ) {
        if let Some(c) = charset {
            let name = c.as_ref().to_ascii_uppercase();
            if name != "UTF-8" && name != "US-ASCII" {
                let code = Code::badcharset(vec![
                    Charset::try_from("UTF-8").expect("a charset"),
                    Charset::try_from("US-ASCII").expect("a charset"),
                ]);
                self.no(tag, Some(code), "search in UTF-8 or US-ASCII");
                return;
            }
        }
        let (Some(account), Some(selected)) = (self.account().map(str::to_string), &self.selected)
        else {
            return;
        };
        let name = selected.name.clone();
        let messages = selected.folder.messages.clone();
        let recent = selected.recent.clone();
        let count = messages.len() as u32;
        let largest_uid = messages.last().map_or(0, |m| m.uid);
        // A MODSEQ key turns CONDSTORE on and the answer ends with the
        // highest MODSEQ found (RFC 7162 §3.1.5).
        let by_modseq = criteria.as_ref().iter().any(uses_modseq);
        self.condstore |= by_modseq;
        let mut highest = 0;
        let mut found = Vec::new();
        let mut found_uids = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let mut c = Candidate {
                seq: i as u32 + 1,
                message,
                recent: recent.contains(&message.uid),
                content: None,
                header: None,
            };
            let all = criteria
                .as_ref()
                .iter()
                .all(|k| self.matches(&account, &name, &mut c, k, count, largest_uid));
            if all {
                found.push(if uid { message.uid } else { c.seq });
                found_uids.push(message.uid);
                highest = highest.max(message.modseq);
            }
        }
        // RETURN (…) asked for, or IMAP4rev2 on: ESEARCH (RFC 4731, RFC
        // 9051 §6.4.4); SAVE keeps the result for `$` (RFC 5182).
        let ret = self.search_return.take().or_else(|| {
            self.rev2.then(|| super::rev2::SearchReturn {
                all: true,
                ..Default::default()
            })
        });
        if let Some(ret) = ret {
            if ret.save {
                // With MIN or MAX alone, only those are saved (§2.1).
                let keep: Vec<u32> = if (ret.min || ret.max) && !ret.all && !ret.count {
                    let (lo, hi) = (found_uids.first(), found_uids.last());
                    [lo.filter(|_| ret.min), hi.filter(|_| ret.max)]
                        .into_iter()
                        .flatten()
                        .copied()
                        .collect()
                } else {
                    found_uids.clone()
                };
                self.saved = Some(keep);
            }
            let only_save = !(ret.min || ret.max || ret.count || ret.all);
            if !only_save {
                let modseq = (by_modseq && highest > 0).then_some(highest);
                let text = String::from_utf8_lossy(tag.as_ref().as_bytes()).to_string();
                let answer = super::rev2::esearch(&text, uid, &ret, &found, modseq);
                self.output.extend_from_slice(&answer);
            }
            let text = if uid {
                "UID SEARCH completed"
            } else {
                "SEARCH completed"
            };
            self.ok(tag, None, text);
            return;
        }
        let numbers: Vec<NonZeroU32> = found.into_iter().filter_map(NonZeroU32::new).collect();
        let modseq = NonZeroU64::new(highest).filter(|_| by_modseq);
        self.respond(&Response::Data(Data::Search(numbers, modseq)));
        self.ok(
            tag,
            None,
            if uid {
                "UID SEARCH completed"
            } else {
                "SEARCH completed"
            },
        );
    }

    fn content<'c>(
        &self,
        account: &str,
        name: &str,
        c: &'c mut Candidate<'_>,
    ) -> Option<&'c (Vec<u8>, i64)> {
        if c.content.is_none() {
            c.content = Some(self.mailboxes.read(account, name, c.message.uid).ok());
        }
        c.content.as_ref().and_then(Option::as_ref)
    }

    /// The candidate's RFC822.SIZE: known to the store, or read.
    fn size(&self, account: &str, name: &str, c: &mut Candidate<'_>) -> Option<u64> {
        match c.message.size {
            Some(size) => Some(u64::from(size)),
            None => self
                .content(account, name, c)
                .map(|(bytes, _)| bytes.len() as u64),
        }
    }

    /// The header section of the candidate (of its content when that was
    /// read already), and when it arrived.
    fn header<'c>(
        &self,
        account: &str,
        name: &str,
        c: &'c mut Candidate<'_>,
    ) -> Option<(&'c [u8], i64)> {
        if c.content.as_ref().is_some_and(Option::is_some) {
            let (bytes, arrived) = c.content.as_ref()?.as_ref()?;
            let end = crate::imap::mime::header_end(bytes);
            return Some((&bytes[..end], *arrived));
        }
        if c.header.is_none() {
            c.header = Some(
                self.mailboxes
                    .read_header(account, name, c.message.uid)
                    .ok(),
            );
        }
        let (bytes, arrived) = c.header.as_ref()?.as_ref()?;
        Some((bytes.as_slice(), *arrived))
    }

    fn matches(
        &self,
        account: &str,
        name: &str,
        c: &mut Candidate<'_>,
        key: &SearchKey<'_>,
        count: u32,
        largest_uid: u32,
    ) -> bool {
        let f = c.message.flags;
        let text = |k: &dyn AsRef<[u8]>| lower(k.as_ref());
        match key {
            SearchKey::And(keys) => keys
                .as_ref()
                .iter()
                .all(|k| self.matches(account, name, c, k, count, largest_uid)),
            SearchKey::Or(a, b) => {
                self.matches(account, name, c, a, count, largest_uid)
                    || self.matches(account, name, c, b, count, largest_uid)
            }
            SearchKey::Not(k) => !self.matches(account, name, c, k, count, largest_uid),
            SearchKey::SequenceSet(set) => contains(set, c.seq, count),
            SearchKey::Uid(set) => contains(set, c.message.uid, largest_uid),
            SearchKey::All => true,
            SearchKey::Answered => f.answered,
            SearchKey::Unanswered => !f.answered,
            SearchKey::Deleted => f.deleted,
            SearchKey::Undeleted => !f.deleted,
            SearchKey::Draft => f.draft,
            SearchKey::Undraft => !f.draft,
            SearchKey::Flagged => f.flagged,
            SearchKey::Unflagged => !f.flagged,
            SearchKey::Seen => f.seen,
            SearchKey::Unseen => !f.seen,
            SearchKey::Recent => c.recent,
            SearchKey::New => c.recent && !f.seen,
            SearchKey::Old => !c.recent,
            // No keywords are kept.
            SearchKey::Keyword(_) => false,
            SearchKey::Unkeyword(_) => true,
            SearchKey::ModSequence { modseq, .. } => c.message.modseq >= *modseq,
            SearchKey::Larger(n) => self
                .size(account, name, c)
                .is_some_and(|size| size > u64::from(*n)),
            SearchKey::Smaller(n) => self
                .size(account, name, c)
                .is_some_and(|size| size < u64::from(*n)),
            SearchKey::Before(d) | SearchKey::On(d) | SearchKey::Since(d) => {
                let Some((_, arrived)) = self.header(account, name, c) else {
                    return false;
                };
                let Some(day) =
                    chrono::DateTime::from_timestamp(arrived, 0).map(|t| t.date_naive())
                else {
                    return false;
                };
                let d = *d.as_ref();
                match key {
                    SearchKey::Before(_) => day < d,
                    SearchKey::On(_) => day == d,
                    _ => day >= d,
                }
            }
            SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
                let Some((bytes, _)) = self.header(account, name, c) else {
                    return false;
                };
                let sent = MessageParser::new()
                    .parse_headers(bytes)
                    .and_then(|m| m.date().cloned())
                    .and_then(|sent| {
                        chrono::NaiveDate::from_ymd_opt(
                            i32::from(sent.year),
                            u32::from(sent.month),
                            u32::from(sent.day),
                        )
                    });
                // Without a valid Date: the message counts as sent at the
                // epoch (before any date asked for), as Dovecot has it.
                let Some(day) = sent.or(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)) else {
                    return false;
                };
                let d = *d.as_ref();
                match key {
                    SearchKey::SentBefore(_) => day < d,
                    SearchKey::SentOn(_) => day == d,
                    _ => day >= d,
                }
            }
            SearchKey::Header(field, value) => {
                let (field, value) = (
                    String::from_utf8_lossy(field.as_ref()).to_string(),
                    text(value),
                );
                self.header_has(account, name, c, &field, &value)
            }
            SearchKey::From(v) => self.header_has(account, name, c, "From", &text(v)),
            SearchKey::To(v) => self.header_has(account, name, c, "To", &text(v)),
            SearchKey::Cc(v) => self.header_has(account, name, c, "Cc", &text(v)),
            SearchKey::Bcc(v) => self.header_has(account, name, c, "Bcc", &text(v)),
            SearchKey::Subject(v) => self.header_has(account, name, c, "Subject", &text(v)),
            SearchKey::Body(v) => self.body_has(account, name, c, &text(v)),
            SearchKey::Text(v) => {
                // Anywhere: the raw message (nested messages' headers
                // included), then decoded text and header fields.
                let v = text(v);
                self.content(account, name, c)
                    .is_some_and(|(b, _)| lower(b).contains(&v))
                    || self.body_has(account, name, c, &v)
                    || self.any_header_has(account, name, c, &v)
            }
        }
    }

    /// Whether a header field `field` contains `needle` (lower case), raw
    /// or with its encoded words decoded; an empty needle matches any
    /// message with the field.
    fn header_has(
        &self,
        account: &str,
        name: &str,
        c: &mut Candidate<'_>,
        field: &str,
        needle: &str,
    ) -> bool {
        let Some((header, _)) = self.header(account, name, c) else {
            return false;
        };
        let raw_fields = crate::imap::mime::fields(header);
        let present: Vec<&String> = raw_fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(field))
            .map(|(_, v)| v)
            .collect();
        if present.is_empty() {
            return false;
        }
        if needle.is_empty() || present.iter().any(|v| v.to_lowercase().contains(needle)) {
            return true;
        }
        // Decoded (encoded words, address forms): only the fields named,
        // each parsed alone.
        present.iter().any(|value| {
            let one = format!("{field}: {value}\r\n\r\n");
            MessageParser::new()
                .parse_headers(one.as_bytes())
                .is_some_and(|parsed| {
                    parsed
                        .headers()
                        .iter()
                        .any(|h| decoded(&h.value).to_lowercase().contains(needle))
                })
        })
    }

    fn any_header_has(
        &self,
        account: &str,
        name: &str,
        c: &mut Candidate<'_>,
        needle: &str,
    ) -> bool {
        let Some((bytes, _)) = self.content(account, name, c) else {
            return false;
        };
        let end = crate::imap::mime::header_end(bytes);
        if lower(&bytes[..end]).contains(needle) {
            return true;
        }
        MessageParser::new()
            .parse_headers(&bytes[..end])
            .is_some_and(|m| {
                m.headers()
                    .iter()
                    .any(|h| decoded(&h.value).to_lowercase().contains(needle))
            })
    }

    /// Whether the text of the body (every text part, decoded) contains
    /// `needle` (lower case).
    fn body_has(&self, account: &str, name: &str, c: &mut Candidate<'_>, needle: &str) -> bool {
        let Some((bytes, _)) = self.content(account, name, c) else {
            return false;
        };
        let Some(parsed) = MessageParser::new().parse(bytes.as_slice()) else {
            return false;
        };
        let end = crate::imap::mime::header_end(bytes);
        if needle.is_empty() {
            return true;
        }
        parsed.parts.iter().enumerate().any(|(i, p)| {
            let text = match &p.body {
                mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) => t.to_lowercase(),
                mail_parser::PartType::Binary(b) | mail_parser::PartType::InlineBinary(b)
                    if p.content_type()
                        .is_none_or(|ct| ct.c_type.eq_ignore_ascii_case("text")) =>
                {
                    lower(b)
                }
                _ => return false,
            };
            // The root part of a message that is not multipart is its
            // body; for multiparts the parts are.
            (i > 0 || p.offset_body as usize >= end.saturating_sub(2)) && text.contains(needle)
        })
    }
}

/// A header value as text, encoded words decoded.
fn decoded(value: &mail_parser::HeaderValue<'_>) -> String {
    use mail_parser::HeaderValue;
    match value {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        HeaderValue::Address(a) => a
            .iter()
            .map(|a| {
                format!(
                    "{} <{}>",
                    a.name.as_deref().unwrap_or(""),
                    a.address.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}
