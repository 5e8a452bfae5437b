//! What IMAP4rev2 (RFC 9051) adds that imap-codec does not parse yet:
//! SEARCH's RETURN options (ESEARCH, RFC 4731) with SAVE and `$`
//! (SEARCHRES, RFC 5182), and LIST's selection and return options
//! (LIST-EXTENDED, RFC 5258; LIST-STATUS, RFC 5819). A command using them
//! is read here from its raw bytes — SEARCH is handed back to the codec
//! without its RETURN, `$` replaced by the saved messages, LIST is read
//! whole — and the answers imap-types has no type for (ESEARCH) are
//! written here. Also mailbox names in modified UTF-7 (RFC 3501 §5.1.3),
//! which IMAP4rev1 clients send and the store keeps, and which IMAP4rev2
//! clients write as UTF-8.

use base64::Engine;

/// A token of a command line at the top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// An atom (or number, or `$`), as written.
    Atom(Vec<u8>),
    /// A quoted string or literal: its value.
    String(Vec<u8>),
    Open,
    Close,
}

/// A token with where it is in the command.
#[derive(Debug, Clone)]
pub(super) struct Spanned {
    pub token: Token,
    pub start: usize,
    pub end: usize,
}

/// The tokens of a command (its CRLF and literal announcements included);
/// `None` when it is not well-formed at that level.
pub(super) fn tokens(line: &[u8]) -> Option<Vec<Spanned>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let start = i;
        let token = match line[i] {
            b' ' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Token::Open
            }
            b')' => {
                i += 1;
                Token::Close
            }
            b'"' => {
                let mut value = Vec::new();
                i += 1;
                loop {
                    match *line.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            value.push(*line.get(i + 1)?);
                            i += 2;
                        }
                        b => {
                            value.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
                Token::String(value)
            }
            b'{' | b'~' => {
                let open = if line[i] == b'~' { i + 1 } else { i };
                let close = open + line[open..].iter().position(|b| *b == b'}')?;
                let digits = std::str::from_utf8(&line[open + 1..close]).ok()?;
                let n: usize = digits.trim_end_matches(['+', '-']).parse().ok()?;
                let from = close + 3; // "}\r\n"
                let value = line.get(from..from.checked_add(n)?)?.to_vec();
                i = from + n;
                Token::String(value)
            }
            _ => {
                while i < line.len() && !matches!(line[i], b' ' | b'(' | b')' | b'\r' | b'\n') {
                    // `[...]` of BODY[...] may hold spaces and parentheses.
                    if line[i] == b'[' {
                        i += line[i..].iter().position(|b| *b == b']')?;
                    }
                    i += 1;
                }
                Token::Atom(line[start..i].to_vec())
            }
        };
        out.push(Spanned {
            token,
            start,
            end: i,
        });
    }
    Some(out)
}

fn is_atom(t: &Token, word: &str) -> bool {
    matches!(t, Token::Atom(a) if a.eq_ignore_ascii_case(word.as_bytes()))
}

/// SEARCH's RETURN options (RFC 4731, RFC 5182).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub count: bool,
    pub all: bool,
    pub save: bool,
}

/// What the raw command needs before the codec reads it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pre {
    /// Nothing: the codec reads it as it is.
    AsIs,
    /// The codec reads these bytes instead (RETURN taken out, `$`
    /// replaced), and a SEARCH answers as the options say.
    Rewritten(Vec<u8>, Option<SearchReturn>),
    /// A LIST with options, read here.
    List(ListExtended),
    /// Not well-formed: the reason.
    Bad(&'static str),
}

/// LIST with selection and return options, or several patterns.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ListExtended {
    pub subscribed_only: bool,
    pub special_use_only: bool,
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
    pub return_subscribed: bool,
    /// \\HasChildren and \\HasNoChildren asked for (RETURN (CHILDREN)).
    pub return_children: bool,
    /// The special-use attributes asked for (RFC 6154: as a selection or
    /// a return option).
    pub return_special_use: bool,
    /// STATUS items asked for each folder listed (RFC 5819), upper case.
    pub status: Vec<String>,
}

/// Reads what the codec cannot in `line` (a complete command); `saved`
/// gives the text that replaces `$` (SEARCHRES) for a UID command or not.
pub(super) fn preparse(line: &[u8], saved: impl Fn(bool) -> String) -> Pre {
    // Only the commands these concern are read here (an APPEND's message
    // is never copied or scanned).
    let mut words = line.split(|b| matches!(b, b' ' | b'\r' | b'\n')).skip(1);
    let first = words.next().unwrap_or_default();
    let verb = if first.eq_ignore_ascii_case(b"UID") {
        words.next().unwrap_or_default()
    } else {
        first
    };
    const CONCERNED: [&[u8]; 8] = [
        b"SEARCH", b"LIST", b"FETCH", b"STORE", b"COPY", b"MOVE", b"EXPUNGE", b"SORT",
    ];
    if !CONCERNED.iter().any(|c| verb.eq_ignore_ascii_case(c)) {
        return Pre::AsIs;
    }
    let Some(tokens) = tokens(line) else {
        return Pre::AsIs;
    };
    let word = |i: usize| tokens.get(i).map(|t| &t.token);
    let uid = word(1).is_some_and(|t| is_atom(t, "UID"));
    let verb = if uid { 2 } else { 1 };
    if word(verb).is_some_and(|t| is_atom(t, "LIST")) {
        return match list(&tokens[verb + 1..]) {
            Some(Some(l)) => Pre::List(l),
            Some(None) => Pre::AsIs,
            None => Pre::Bad("that LIST is not well-formed"),
        };
    }
    let mut cut: Option<(usize, usize)> = None;
    let mut ret = None;
    if word(verb).is_some_and(|t| is_atom(t, "SEARCH"))
        && word(verb + 1).is_some_and(|t| is_atom(t, "RETURN"))
    {
        if word(verb + 2) != Some(&Token::Open) {
            return Pre::Bad("RETURN takes a list of options");
        }
        let mut options = SearchReturn::default();
        let mut i = verb + 3;
        loop {
            match word(i) {
                Some(Token::Close) => break,
                Some(Token::Atom(a)) => {
                    match a.to_ascii_uppercase().as_slice() {
                        b"MIN" => options.min = true,
                        b"MAX" => options.max = true,
                        b"COUNT" => options.count = true,
                        b"ALL" => options.all = true,
                        b"SAVE" => options.save = true,
                        _ => return Pre::Bad("RETURN knows MIN, MAX, COUNT, ALL and SAVE"),
                    }
                    i += 1;
                }
                _ => return Pre::Bad("RETURN takes a list of options"),
            }
        }
        // RETURN () is RETURN (ALL) (RFC 4731 §3.1).
        if options == SearchReturn::default() {
            options.all = true;
        }
        let after = tokens.get(i + 1).map_or(line.len(), |t| t.start);
        cut = Some((tokens[verb + 1].start, after));
        ret = Some(options);
    }
    let dollars: Vec<&Spanned> = tokens
        .iter()
        .filter(|t| t.token == Token::Atom(b"$".to_vec()))
        .collect();
    if cut.is_none() && dollars.is_empty() {
        return Pre::AsIs;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut at = 0;
    let mut edits: Vec<(usize, usize, Vec<u8>)> = dollars
        .iter()
        .map(|t| (t.start, t.end, saved(uid).into_bytes()))
        .collect();
    if let Some((a, b)) = cut {
        edits.push((a, b, Vec::new()));
    }
    edits.sort_by_key(|e| e.0);
    for (a, b, with) in edits {
        out.extend_from_slice(&line[at..a]);
        out.extend_from_slice(&with);
        at = b;
    }
    out.extend_from_slice(&line[at..]);
    Pre::Rewritten(out, ret)
}

/// LIST's arguments: `None` when they are not well-formed, `Some(None)`
/// for the plain form the codec reads.
fn list(args: &[Spanned]) -> Option<Option<ListExtended>> {
    let mut l = ListExtended::default();
    let mut i = 0;
    let mut extended = false;
    let string = |t: &Token| match t {
        Token::Atom(a) | Token::String(a) => Some(a.clone()),
        _ => None,
    };
    if args.first()?.token == Token::Open {
        extended = true;
        i = 1;
        loop {
            match &args.get(i)?.token {
                Token::Close => break,
                Token::Atom(a) => match a.to_ascii_uppercase().as_slice() {
                    b"SUBSCRIBED" => l.subscribed_only = true,
                    b"SPECIAL-USE" => {
                        l.special_use_only = true;
                        l.return_special_use = true;
                    }
                    // Every folder is local; children are listed anyway.
                    b"REMOTE" | b"RECURSIVEMATCH" => {}
                    _ => return None,
                },
                _ => return None,
            }
            i += 1;
        }
        i += 1;
    }
    l.reference = string(&args.get(i)?.token)?;
    i += 1;
    if args.get(i)?.token == Token::Open {
        extended = true;
        i += 1;
        loop {
            match &args.get(i)?.token {
                Token::Close => break,
                t => l.patterns.push(string(t)?),
            }
            i += 1;
        }
    } else {
        l.patterns.push(string(&args.get(i)?.token)?);
    }
    i += 1;
    if let Some(t) = args.get(i) {
        if !is_atom(&t.token, "RETURN") || args.get(i + 1)?.token != Token::Open {
            return None;
        }
        extended = true;
        i += 2;
        loop {
            match &args.get(i)?.token {
                Token::Close => break,
                Token::Atom(a) => match a.to_ascii_uppercase().as_slice() {
                    b"SUBSCRIBED" => l.return_subscribed = true,
                    b"CHILDREN" => l.return_children = true,
                    b"SPECIAL-USE" => l.return_special_use = true,
                    b"STATUS" => {
                        if args.get(i + 1)?.token != Token::Open {
                            return None;
                        }
                        i += 2;
                        loop {
                            match &args.get(i)?.token {
                                Token::Close => break,
                                Token::Atom(item) => l
                                    .status
                                    .push(String::from_utf8_lossy(item).to_ascii_uppercase()),
                                _ => return None,
                            }
                            i += 1;
                        }
                    }
                    _ => return None,
                },
                _ => return None,
            }
            i += 1;
        }
        if args.len() != i + 1 {
            return None;
        }
    }
    Some(extended.then_some(l))
}

/// `numbers` as sequence-set text (`1:3,7`); a set naming no message when
/// empty (for `$` with nothing saved).
pub(super) fn set_text(mut numbers: Vec<u32>) -> String {
    numbers.sort_unstable();
    numbers.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            numbers[i].to_string()
        } else {
            format!("{}:{}", numbers[i], numbers[j])
        });
        i = j + 1;
    }
    if parts.is_empty() {
        // No message has this number (UIDs stop below it).
        u32::MAX.to_string()
    } else {
        parts.join(",")
    }
}

/// The ESEARCH answer (RFC 4731 §3.1) to the command tagged `tag`.
pub(super) fn esearch(
    tag: &str,
    uid: bool,
    options: &SearchReturn,
    found: &[u32],
    modseq: Option<u64>,
) -> Vec<u8> {
    let mut out = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        out.push_str(" UID");
    }
    if let (true, Some(min)) = (options.min, found.iter().min()) {
        out.push_str(&format!(" MIN {min}"));
    }
    if let (true, Some(max)) = (options.max, found.iter().max()) {
        out.push_str(&format!(" MAX {max}"));
    }
    if options.count {
        out.push_str(&format!(" COUNT {}", found.len()));
    }
    if options.all && !found.is_empty() {
        out.push_str(&format!(" ALL {}", set_text(found.to_vec())));
    }
    if let (Some(m), false) = (modseq, found.is_empty()) {
        out.push_str(&format!(" MODSEQ {m}"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A mailbox name in modified UTF-7 (RFC 3501 §5.1.3), as IMAP4rev1
/// clients write it and the store keeps it.
pub(super) fn to_utf7(name: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        out.push('&');
        out.push_str(&text.replace('/', ","));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// A modified UTF-7 name in UTF-8 (as IMAP4rev2 clients read it); `None`
/// when it is not valid modified UTF-7.
pub(super) fn from_utf7(name: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let dash = after.find('-')?;
        let encoded = &after[..dash];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(encoded.replace(',', "/"))
                .ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[dash + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(uid: bool) -> String {
        if uid { "4:5".into() } else { "2".into() }
    }

    #[test]
    fn search_return_is_taken_out_and_dollar_replaced() {
        let pre = preparse(b"a UID SEARCH RETURN (MIN COUNT SAVE) UNSEEN\r\n", saved);
        assert_eq!(
            pre,
            Pre::Rewritten(
                b"a UID SEARCH UNSEEN\r\n".to_vec(),
                Some(SearchReturn {
                    min: true,
                    count: true,
                    save: true,
                    ..Default::default()
                })
            )
        );
        let Pre::Rewritten(_, Some(all)) = preparse(b"a SEARCH RETURN () ALL\r\n", saved) else {
            panic!()
        };
        assert!(all.all);
        assert_eq!(
            preparse(b"b FETCH $ (FLAGS BODY[HEADER.FIELDS (A $)])\r\n", saved),
            Pre::Rewritten(
                b"b FETCH 2 (FLAGS BODY[HEADER.FIELDS (A $)])\r\n".to_vec(),
                None
            )
        );
        assert_eq!(
            preparse(b"c UID COPY $ \"$\"\r\n", saved),
            Pre::Rewritten(b"c UID COPY 4:5 \"$\"\r\n".to_vec(), None)
        );
        assert_eq!(preparse(b"d FETCH 1 (FLAGS)\r\n", saved), Pre::AsIs);
        // An APPEND's message is not read here, `$` or not.
        assert_eq!(preparse(b"a APPEND INBOX {3}\r\n$ $\r\n", saved), Pre::AsIs);
        assert_eq!(
            preparse(b"e SEARCH RETURN (BOGUS) ALL\r\n", saved),
            Pre::Bad("RETURN knows MIN, MAX, COUNT, ALL and SAVE")
        );
    }

    #[test]
    fn list_with_options_is_read_here() {
        assert_eq!(preparse(b"a LIST \"\" *\r\n", saved), Pre::AsIs);
        let Pre::List(l) = preparse(
            b"a LIST (SUBSCRIBED) \"\" (INBOX {4}\r\nSent) RETURN (CHILDREN STATUS (MESSAGES unseen))\r\n",
            saved,
        ) else {
            panic!()
        };
        assert!(l.subscribed_only);
        assert_eq!(l.patterns, [b"INBOX".to_vec(), b"Sent".to_vec()]);
        assert_eq!(l.status, ["MESSAGES", "UNSEEN"]);
        assert!(matches!(
            preparse(b"a LIST \"\" * RETURN (NONSENSE)\r\n", saved),
            Pre::Bad(_)
        ));
    }

    #[test]
    fn esearch_answers() {
        let all = SearchReturn {
            all: true,
            ..Default::default()
        };
        assert_eq!(
            esearch("t", true, &all, &[3, 1, 2, 7], Some(9)),
            b"* ESEARCH (TAG \"t\") UID ALL 1:3,7 MODSEQ 9\r\n"
        );
        assert_eq!(
            esearch("t", false, &all, &[], None),
            b"* ESEARCH (TAG \"t\")\r\n"
        );
        let counted = SearchReturn {
            min: true,
            max: true,
            count: true,
            ..Default::default()
        };
        assert_eq!(
            esearch("t", false, &counted, &[5, 9], None),
            b"* ESEARCH (TAG \"t\") MIN 5 MAX 9 COUNT 2\r\n"
        );
    }

    #[test]
    fn modified_utf7_both_ways() {
        // RFC 3501 §5.1.3's example, and Dovecot's name for "Отправленные".
        assert_eq!(
            to_utf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            to_utf7("Отправленные"),
            "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"
        );
        assert_eq!(to_utf7("A&B"), "A&-B");
        for name in [
            "~peter/mail/台北/日本語",
            "Отправленные",
            "A&B",
            "plain",
            "😀 mail",
        ] {
            assert_eq!(from_utf7(&to_utf7(name)).as_deref(), Some(name));
        }
        assert_eq!(from_utf7("&Jjo-!"), Some("☺!".into()));
        assert_eq!(from_utf7("&A"), None);
    }
}
