//! A message's structure as IMAP describes it: ENVELOPE (RFC 9051
//! §7.5.2, from the raw header fields: encoded words are left as they
//! are, as Dovecot does) and BODYSTRUCTURE / BODY (the MIME tree from
//! mail-parser, sizes and line counts from the raw bytes). Input is the
//! message as IMAP sends it (CRLF line ends).

use std::num::NonZeroU32;

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{IString, NString, Vec1};
use imap_codec::imap_types::envelope::{Address, Envelope};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// Nested parts described at most this deep (a message of 10 000 nested
/// multiparts must not take the stack).
const MAX_DEPTH: usize = 16;

fn istring(text: &str) -> IString<'static> {
    IString::try_from(text.to_string())
        .unwrap_or_else(|_| IString::try_from(text.replace('\0', "").to_string()).expect("text"))
}

fn nstring(text: Option<&str>) -> NString<'static> {
    NString(text.map(istring))
}

/// The header fields of `header` (raw bytes up to the empty line): name
/// and value, unfolded (CRLF dropped), without the space after the colon.
pub fn fields(header: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut folded = false;
    for line in header.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, value)) = out.last_mut() {
                value.push_str(&String::from_utf8_lossy(line));
                folded = true;
            }
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(line[..colon].trim_ascii()).into_owned();
        let value = String::from_utf8_lossy(line[colon + 1..].trim_ascii()).into_owned();
        out.push((name, value));
    }
    if folded {
        for (_, value) in &mut out {
            let trimmed = value.trim_end();
            if trimmed.len() != value.len() {
                *value = trimmed.to_string();
            }
        }
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The end of the header section (after its empty line).
pub fn header_end(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") {
        return 2;
    }
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4)
}

/// ENVELOPE of the message whose header section is `header`.
pub fn envelope(header: &[u8]) -> Envelope<'static> {
    let f = fields(header);
    let list = |name: &str| field(&f, name).map(addresses).unwrap_or_default();
    let from = list("From");
    let or_from = |v: Vec<Address<'static>>| if v.is_empty() { from.clone() } else { v };
    Envelope {
        date: nstring(field(&f, "Date")),
        subject: nstring(field(&f, "Subject")),
        sender: or_from(list("Sender")),
        reply_to: or_from(list("Reply-To")),
        from: from.clone(),
        to: list("To"),
        cc: list("Cc"),
        bcc: list("Bcc"),
        in_reply_to: nstring(field(&f, "In-Reply-To")),
        message_id: nstring(field(&f, "Message-ID")),
    }
}

/// Tokens of an address list: words (atoms, quoted strings unquoted),
/// comments, and the specials that matter.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Comment(String),
    Special(char),
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {}
            '"' => {
                let mut word = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(c) = chars.next() {
                                word.push(c);
                            }
                        }
                        c => word.push(c),
                    }
                }
                out.push(Token::Word(word));
            }
            '(' => {
                let mut depth = 1;
                let mut comment = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        '\\' => {
                            if let Some(c) = chars.next() {
                                comment.push(c);
                            }
                            continue;
                        }
                        _ => {}
                    }
                    comment.push(c);
                }
                out.push(Token::Comment(comment));
            }
            '<' | '>' | '@' | ',' | ';' | ':' | '.' => out.push(Token::Special(c)),
            c => {
                let mut word = String::from(c);
                while let Some(&c) = chars.peek() {
                    if " \t\r\n\"(<>@,;:.".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    out
}

fn address(
    name: Option<String>,
    adl: Option<String>,
    mailbox: Option<String>,
    host: Option<String>,
) -> Address<'static> {
    Address {
        name: nstring(name.as_deref()),
        adl: nstring(adl.as_deref()),
        mailbox: nstring(mailbox.as_deref()),
        host: nstring(host.as_deref()),
    }
}

/// An address list (RFC 5322 §3.4) as ENVELOPE's address structures;
/// groups as their start and end markers.
fn addresses(text: &str) -> Vec<Address<'static>> {
    let tokens = tokens(text);
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_group = false;
    while i < tokens.len() {
        // One mailbox (or a group's start) up to `,` or `;` at depth 0.
        let start = i;
        let mut angle = false;
        while i < tokens.len() {
            match &tokens[i] {
                Token::Special('<') => angle = true,
                Token::Special('>') => angle = false,
                Token::Special(',') | Token::Special(';') if !angle => break,
                Token::Special(':') if !angle && !in_group => break,
                _ => {}
            }
            i += 1;
        }
        let item = &tokens[start..i];
        let ended_by = tokens.get(i).cloned();
        i += 1;
        if let Some(Token::Special(':')) = ended_by {
            let name = phrase(item);
            out.push(address(None, None, Some(name), None));
            in_group = true;
            continue;
        }
        if let Some(a) = mailbox(item) {
            out.push(a);
        }
        if in_group && matches!(ended_by, Some(Token::Special(';'))) {
            out.push(address(None, None, None, None));
            in_group = false;
        }
    }
    if in_group {
        out.push(address(None, None, None, None));
    }
    out
}

/// Words joined by single spaces (and dots kept tight).
fn phrase(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut glue = false;
    for t in tokens {
        match t {
            Token::Word(w) => {
                if !out.is_empty() && !glue {
                    out.push(' ');
                }
                out.push_str(w);
                glue = false;
            }
            Token::Special('.') => {
                out.push('.');
                glue = true;
            }
            _ => {}
        }
    }
    out
}

/// `local@domain` from tokens (dots kept tight).
fn addr_spec(tokens: &[Token]) -> (Option<String>, Option<String>) {
    let at = tokens.iter().position(|t| *t == Token::Special('@'));
    let join = |ts: &[Token]| {
        let s: String = ts
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.as_str()),
                Token::Special('.') => Some("."),
                _ => None,
            })
            .collect();
        (!s.is_empty()).then_some(s)
    };
    match at {
        Some(at) => (join(&tokens[..at]), join(&tokens[at + 1..])),
        None => (join(tokens), None),
    }
}

fn mailbox(item: &[Token]) -> Option<Address<'static>> {
    if item.iter().all(|t| matches!(t, Token::Comment(_))) {
        return None;
    }
    if let Some(open) = item.iter().position(|t| *t == Token::Special('<')) {
        let close = item
            .iter()
            .position(|t| *t == Token::Special('>'))
            .unwrap_or(item.len());
        let name = phrase(&item[..open]);
        let inner = &item[open + 1..close.max(open + 1)];
        // A source route: `@a,@b:` before the address.
        let (adl, spec) = match inner.iter().position(|t| *t == Token::Special(':')) {
            Some(colon) => {
                let route: String = inner[..colon]
                    .iter()
                    .map(|t| match t {
                        Token::Word(w) => w.clone(),
                        Token::Special(c) => c.to_string(),
                        Token::Comment(_) => String::new(),
                    })
                    .collect();
                (Some(route), &inner[colon + 1..])
            }
            None => (None, inner),
        };
        let (local, host) = addr_spec(spec);
        return Some(address(
            (!name.is_empty()).then_some(name),
            adl,
            local,
            host,
        ));
    }
    let words: Vec<Token> = item
        .iter()
        .filter(|t| !matches!(t, Token::Comment(_)))
        .cloned()
        .collect();
    let name = item.iter().rev().find_map(|t| match t {
        Token::Comment(c) => Some(c.trim().to_string()),
        _ => None,
    });
    let (local, host) = addr_spec(&words);
    Some(address(name.filter(|n| !n.is_empty()), None, local, host))
}

/// BODYSTRUCTURE (with `extended`) or BODY of `message`.
pub fn body_structure(message: &[u8], extended: bool) -> BodyStructure<'static> {
    match MessageParser::new().parse(message) {
        Some(parsed) => part(&parsed, message, 0, extended, 0),
        None => text_plain(message, extended),
    }
}

/// What a message without headers is: text/plain, all of it.
fn text_plain(body: &[u8], extended: bool) -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istring("charset"), istring("us-ascii"))],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring("7bit"),
                size: body.len() as u32,
            },
            specific: SpecificFields::Text {
                subtype: istring("plain"),
                number_of_lines: lines(body),
            },
        },
        extension_data: extended.then_some(SinglePartExtensionData {
            md5: NString(None),
            tail: None,
        }),
    }
}

fn lines(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|b| **b == b'\n').count() as u32
}

/// The parameters of a Content-Type (or Content-Disposition) value as
/// written: `; name=value` or `; name="quoted"`, names in lower case,
/// values as given (RFC 2045 §5.1).
fn raw_params(value: &str) -> Vec<(IString<'static>, IString<'static>)> {
    let mut out = Vec::new();
    let mut rest = match value.find(';') {
        Some(i) => &value[i + 1..],
        None => return out,
    };
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq]
            .trim()
            .trim_start_matches(';')
            .trim()
            .to_ascii_lowercase();
        let after = rest[eq + 1..].trim_start();
        let (val, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => {
                        if let Some((_, c)) = chars.next() {
                            v.push(c);
                        }
                    }
                    c => v.push(c),
                }
            }
            (v, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        if !name.is_empty() {
            out.push((istring(&name), istring(&val)));
        }
        match next.find(';') {
            Some(i) => rest = &next[i + 1..],
            None => break,
        }
    }
    out
}

/// Content-Disposition's type and parameters, as written.
fn disposition(
    header: &[(String, String)],
) -> Option<(IString<'static>, Vec<(IString<'static>, IString<'static>)>)> {
    let value = field(header, "Content-Disposition")?;
    let kind = value.split(';').next().unwrap_or("").trim();
    (!kind.is_empty()).then(|| (istring(kind), raw_params(value)))
}

fn extension_tail(header: &[(String, String)]) -> Option<Disposition<'static>> {
    Some(Disposition {
        disposition: disposition(header),
        tail: Some(Language {
            language: field(header, "Content-Language")
                .map(|l| l.split(',').map(|x| istring(x.trim())).collect())
                .unwrap_or_default(),
            tail: Some(Location {
                location: nstring(field(header, "Content-Location")),
                extensions: Vec::new(),
            }),
        }),
    })
}

/// Part `id` of `message`, whose offsets are into `raw`.
fn part(
    message: &Message<'_>,
    raw: &[u8],
    id: usize,
    extended: bool,
    depth: usize,
) -> BodyStructure<'static> {
    let Some(p) = message.parts.get(id) else {
        return text_plain(b"", extended);
    };
    let (hs, bs, be) = (
        p.offset_header as usize,
        p.offset_body as usize,
        p.offset_end as usize,
    );
    let header = fields(raw.get(hs..bs).unwrap_or_default());
    let body = raw.get(bs..be).unwrap_or_default();
    let ct = p.content_type();
    match &p.body {
        PartType::Multipart(children) if depth < MAX_DEPTH => {
            let bodies: Vec<BodyStructure<'static>> = children
                .iter()
                .map(|c| part(message, raw, *c as usize, extended, depth + 1))
                .collect();
            let subtype = ct.and_then(|c| c.c_subtype.as_deref()).unwrap_or("mixed");
            match Vec1::try_from(bodies) {
                Ok(bodies) => BodyStructure::Multi {
                    bodies,
                    subtype: istring(subtype),
                    extension_data: extended.then(|| MultiPartExtensionData {
                        parameter_list: field(&header, "Content-Type")
                            .map(raw_params)
                            .unwrap_or_default(),
                        tail: extension_tail(&header),
                    }),
                },
                Err(_) => text_plain(body, extended),
            }
        }
        _ => {
            let (r#type, subtype) = match ct {
                Some(c) => (
                    c.c_type.to_string(),
                    c.c_subtype.as_deref().unwrap_or("").to_string(),
                ),
                None => ("text".to_string(), "plain".to_string()),
            };
            let mut parameter_list = field(&header, "Content-Type")
                .map(raw_params)
                .unwrap_or_default();
            // RFC 2045 §5.2: text without a charset is US-ASCII (as
            // Dovecot says it).
            let has_charset = parameter_list
                .iter()
                .any(|(n, _)| n.as_ref().eq_ignore_ascii_case(b"charset"));
            if r#type.eq_ignore_ascii_case("text") && !has_charset {
                parameter_list.push((istring("charset"), istring("us-ascii")));
            }
            let basic = BasicFields {
                parameter_list,
                id: nstring(field(&header, "Content-ID")),
                description: nstring(field(&header, "Content-Description")),
                content_transfer_encoding: istring(
                    field(&header, "Content-Transfer-Encoding").unwrap_or("7bit"),
                ),
                size: body.len() as u32,
            };
            let specific = match (&p.body, r#type.to_ascii_lowercase().as_str()) {
                (PartType::Message(inner), _) if depth < MAX_DEPTH => {
                    // An unencoded nested message's offsets are into the
                    // outer buffer; a decoded one's into its own.
                    let start = inner.parts.first().map_or(0, |p| p.offset_header as usize);
                    let inner_raw = inner_raw(inner, raw);
                    let rest = inner_raw.get(start..).unwrap_or_default();
                    let header = &rest[..header_end(rest)];
                    SpecificFields::Message {
                        envelope: Box::new(envelope(header)),
                        body_structure: Box::new(part(inner, inner_raw, 0, extended, depth + 1)),
                        number_of_lines: lines(body),
                    }
                }
                (_, "text") => SpecificFields::Text {
                    subtype: istring(&subtype),
                    number_of_lines: lines(body),
                },
                _ => SpecificFields::Basic {
                    r#type: istring(&r#type),
                    subtype: istring(&subtype),
                },
            };
            BodyStructure::Single {
                body: Body { basic, specific },
                extension_data: extended.then(|| SinglePartExtensionData {
                    md5: nstring(field(&header, "Content-MD5")),
                    tail: extension_tail(&header),
                }),
            }
        }
    }
}

/// The raw buffer a nested message's offsets point into: the outer one
/// for a message that was not transfer-encoded, its own otherwise.
fn inner_raw<'a>(inner: &'a Message<'a>, outer: &'a [u8]) -> &'a [u8] {
    let start = inner.parts.first().map_or(0, |p| p.offset_header as usize);
    if start == 0 {
        inner.raw_message()
    } else {
        outer
    }
}

/// What a section names within a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within {
    /// The part's content (`BODY[1.2]`).
    Content,
    /// Its MIME header (`BODY[1.2.MIME]`).
    Mime,
    /// The header of the message it encapsulates (`BODY[2.HEADER]`).
    Header,
    /// The body of the message it encapsulates (`BODY[2.TEXT]`).
    Text,
}

/// The bytes of part `path` of `message` (RFC 9051 §6.4.5); `None` when
/// there is no such part.
pub fn part_section(message: &[u8], path: &[u32], within: Within) -> Option<Vec<u8>> {
    let parsed = MessageParser::new().parse(message)?;
    let mut msg: &Message<'_> = &parsed;
    let mut raw: &[u8] = message;
    let mut at: Option<usize> = None;
    for (depth, &n) in path.iter().enumerate() {
        if depth >= MAX_DEPTH || n == 0 {
            return None;
        }
        let container = match at {
            None => 0,
            Some(id) => match &msg.parts.get(id)?.body {
                PartType::Message(inner) => {
                    raw = inner_raw(inner, raw);
                    msg = inner;
                    0
                }
                PartType::Multipart(_) => id,
                // A part that is neither has only itself as part 1 (as a
                // message that is not multipart does; Dovecot agrees).
                _ if n == 1 => continue,
                _ => return None,
            },
        };
        at = Some(match &msg.parts.get(container)?.body {
            PartType::Multipart(children) => *children.get(n as usize - 1)? as usize,
            _ if n == 1 => container,
            _ => return None,
        });
    }
    let p = msg.parts.get(at?)?;
    let slice = |a: u32, b: u32| raw.get(a as usize..b as usize).map(<[u8]>::to_vec);
    match within {
        Within::Content => slice(p.offset_body, p.offset_end),
        Within::Mime => slice(p.offset_header, p.offset_body),
        Within::Header | Within::Text => {
            let PartType::Message(inner) = &p.body else {
                return None;
            };
            let raw = inner_raw(inner, raw);
            let root = inner.parts.first()?;
            let whole = raw.get(root.offset_header as usize..root.offset_end as usize)?;
            let end = header_end(whole);
            Some(if within == Within::Header {
                whole[..end].to_vec()
            } else {
                whole[end..].to_vec()
            })
        }
    }
}

/// Why BINARY cannot give a part (RFC 3516 §4.2).
#[derive(Debug, PartialEq, Eq)]
pub enum BinaryError {
    NoSuchPart,
    /// Its Content-Transfer-Encoding is not one we know (UNKNOWN-CTE).
    UnknownEncoding(String),
}

/// Part `path` of `message` with its Content-Transfer-Encoding undone
/// (BINARY, RFC 3516): base64 and quoted-printable decoded, 7bit, 8bit and
/// binary as they are; the whole message for an empty path. With it,
/// whether an encoding was undone.
pub fn binary_section(message: &[u8], path: &[u32]) -> Result<(Vec<u8>, bool), BinaryError> {
    use mail_parser::decoders::{base64::base64_decode, quoted_printable::quoted_printable_decode};
    if path.is_empty() {
        return Ok((message.to_vec(), false));
    }
    let mime = part_section(message, path, Within::Mime).ok_or(BinaryError::NoSuchPart)?;
    let content = part_section(message, path, Within::Content).ok_or(BinaryError::NoSuchPart)?;
    let encoding = fields(&mime)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Transfer-Encoding"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let decoded = match encoding.as_str() {
        "" | "7bit" | "8bit" | "binary" => return Ok((content, false)),
        "base64" => {
            let text: Vec<u8> = content
                .into_iter()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64_decode(&text)
        }
        "quoted-printable" => quoted_printable_decode(&content),
        other => return Err(BinaryError::UnknownEncoding(other.to_string())),
    };
    decoded
        .map(|d| (d, true))
        .ok_or_else(|| BinaryError::UnknownEncoding(format!("{encoding} that does not decode")))
}

/// The non-zero part number path, as imap-types has it.
pub fn part_path(path: &[NonZeroU32]) -> Vec<u32> {
    path.iter().map(|n| n.get()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::ResponseCodec;
    use imap_codec::encode::Encoder;
    use imap_codec::imap_types::fetch::MessageDataItem;
    use imap_codec::imap_types::response::{Data, Response};

    fn shown(item: MessageDataItem<'static>) -> String {
        let r = Response::Data(Data::Fetch {
            seq: NonZeroU32::new(1).unwrap(),
            items: Vec1::try_from(vec![item]).unwrap(),
        });
        let bytes = ResponseCodec::default().encode(&r).dump();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn envelope_keeps_encoded_words_and_reads_groups() {
        let header = b"From: \"Al Ice\" <al@example.org>\r\nTo: bob@example.net, \"=?utf-8?q?J=C3=B6rg?=\" <j@x.de>\r\nCc: Team: carol@example.com, dave@example.com;\r\nSubject: =?utf-8?q?h=C3=A9llo?= world\r\nMessage-ID: <a@b>\r\n\r\n";
        let e = shown(MessageDataItem::Envelope(envelope(header)));
        assert_eq!(
            e,
            "* 1 FETCH (ENVELOPE (NIL \"=?utf-8?q?h=C3=A9llo?= world\" ((\"Al Ice\" NIL \"al\" \"example.org\")) ((\"Al Ice\" NIL \"al\" \"example.org\")) ((\"Al Ice\" NIL \"al\" \"example.org\")) ((NIL NIL \"bob\" \"example.net\")(\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.de\")) ((NIL NIL \"Team\" NIL)(NIL NIL \"carol\" \"example.com\")(NIL NIL \"dave\" \"example.com\")(NIL NIL NIL NIL)) NIL NIL \"<a@b>\"))\r\n"
        );
    }

    #[test]
    fn sections_of_parts_and_of_nested_messages() {
        let m = b"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--x--\r\n";
        let get = |path: &[u32], w| part_section(m, path, w).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(get(&[1], Within::Content).as_deref(), Some("first"));
        assert_eq!(
            get(&[1], Within::Mime).as_deref(),
            Some("Content-Type: text/plain\r\n\r\n")
        );
        assert_eq!(
            get(&[2], Within::Content).as_deref(),
            Some("Subject: inner\r\n\r\ninner body")
        );
        assert_eq!(
            get(&[2], Within::Header).as_deref(),
            Some("Subject: inner\r\n\r\n")
        );
        assert_eq!(get(&[2], Within::Text).as_deref(), Some("inner body"));
        assert_eq!(get(&[2, 1], Within::Content).as_deref(), Some("inner body"));
        assert_eq!(get(&[3], Within::Content), None);
        assert_eq!(get(&[1, 1], Within::Content).as_deref(), Some("first"));
        assert_eq!(get(&[1, 2], Within::Content), None);
        // A message that is not multipart: part 1 is its body.
        let single = b"Subject: s\r\n\r\nbody\r\n";
        assert_eq!(
            part_section(single, &[1], Within::Content).unwrap(),
            b"body\r\n"
        );
    }

    #[test]
    fn bodystructure_of_a_multipart_alternative() {
        // imap-codec writes the grammar's "TEXT"; Dovecot copies the
        // header's "text": RFC 9051's ABNF strings are case-insensitive.
        let m = b"Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>hi</p>\r\n--b1--\r\n";
        let b = shown(MessageDataItem::BodyStructure(body_structure(m, true)));
        assert_eq!(
            b,
            "* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 2 0 NIL NIL NIL NIL)(\"TEXT\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 9 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"b1\") NIL NIL NIL))\r\n"
        );
    }

    #[test]
    fn binary_undoes_the_transfer_encoding() {
        let m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nsoft\r\n--b\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n/w==\r\n--b\r\n\
Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n";
        assert_eq!(
            binary_section(m, &[1]).unwrap(),
            ("café soft".as_bytes().to_vec(), true)
        );
        assert_eq!(binary_section(m, &[2]).unwrap(), (vec![0, 1, 2, 255], true));
        assert_eq!(
            binary_section(m, &[3]),
            Err(BinaryError::UnknownEncoding("x-uuencode".into()))
        );
        assert_eq!(binary_section(m, &[4]), Err(BinaryError::NoSuchPart));
        assert_eq!(binary_section(m, &[]).unwrap(), (m.to_vec(), false));
    }
}
