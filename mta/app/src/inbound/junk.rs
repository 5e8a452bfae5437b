//! Mail the checks find suspect but not refused (DMARC `p=quarantine`, an
//! SPF `fail`) is filed in the recipient's `Junk` folder, as a spam filter
//! and a Sieve `fileinto` would: the intake marks the message with our own
//! field (`X-Mailbox-Junk: <why>`), fields of that name from outside being
//! removed first, and each local delivery reads the mark and the account's
//! allow-list (`allow = [...]` of the account) to pick the folder.

use std::ops::Range;

/// The field that marks a message for Junk; only ours survive intake.
pub const FIELD: &str = "X-Mailbox-Junk";
/// The folder (RFC 6154 `\Junk`, made at the first IMAP login too).
pub const FOLDER: &str = "Junk";

/// The mark, to put in front of the message (`why` is our own text).
pub fn mark(why: &str) -> String {
    let why: String = why.chars().filter(|c| !c.is_control()).take(400).collect();
    format!("{FIELD}: {why}\r\n")
}

/// What a delivery needs to know of a message from a stranger: why it
/// belongs in Junk (if it does) and who it says it is from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filing {
    pub junk: Option<String>,
    /// The address of the `From:` field, if there is one.
    pub from: Option<String>,
}

impl Filing {
    /// Reads the header section at the start of `message`.
    pub fn of(message: &[u8]) -> Filing {
        let mut filing = Filing::default();
        for range in fields(message) {
            let field = &message[range];
            if let Some(value) = value_of(field, FIELD) {
                filing.junk.get_or_insert_with(|| unfold(value));
            } else if let Some(value) = value_of(field, "From")
                && filing.from.is_none()
            {
                filing.from = address_in(&unfold(value));
            }
        }
        filing
    }
}

/// The byte ranges of the fields of `message`'s header section,
/// continuation lines included.
pub fn fields(message: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let line_end = move |at: usize| {
        message[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |p| at + p + 1)
    };
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= message.len() {
            return None;
        }
        let end = line_end(at);
        let line = &message[at..end];
        if line == b"\r\n" || line == b"\n" {
            at = message.len();
            return None; // the end of the header section
        }
        let mut field_end = end;
        while field_end < message.len() && matches!(message[field_end], b' ' | b'\t') {
            field_end = line_end(field_end);
        }
        let field = at..field_end;
        at = field_end;
        Some(field)
    })
}

/// The value of `field` if it is named `name` (any case).
pub fn value_of<'a>(field: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let n = name.len();
    (field.len() > n && field[..n].eq_ignore_ascii_case(name.as_bytes()) && field[n] == b':')
        .then(|| &field[n + 1..])
}

fn unfold(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The address in a `From:` value: inside the last `<…>`, else the value.
fn address_in(value: &str) -> Option<String> {
    let address = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value,
    };
    let address = address.trim();
    address.contains('@').then(|| address.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_and_the_author_are_read_from_the_header_section() {
        let message = format!(
            "Received: from x\r\n by mx\r\n{}From: \"Mallory\"\r\n <Mallory@Example.NET>\r\nSubject: hi\r\n\r\nX-Mailbox-Junk: in the body\r\n",
            mark("the DMARC policy of example.net quarantines this message")
        );
        let f = Filing::of(message.as_bytes());
        assert_eq!(
            f.junk.as_deref(),
            Some("the DMARC policy of example.net quarantines this message")
        );
        assert_eq!(f.from.as_deref(), Some("mallory@example.net"));
        // Not marked: the body does not count.
        let f = Filing::of(b"From: a@b.example\r\n\r\nX-Mailbox-Junk: yes\r\n");
        assert_eq!(f.junk, None);
        assert_eq!(f.from.as_deref(), Some("a@b.example"));
        assert_eq!(Filing::of(b""), Filing::default());
    }

    #[test]
    fn fields_run_over_their_continuation_lines() {
        let m = b"A: 1\r\n 2\r\nB: 3\n\tC\r\n\r\nD: 4\r\n";
        let got: Vec<&[u8]> = fields(m).map(|r| &m[r]).collect();
        assert_eq!(got, [&b"A: 1\r\n 2\r\n"[..], &b"B: 3\n\tC\r\n"[..]]);
        assert!(value_of(b"X-Mailbox-Junkie: no\r\n", FIELD).is_none());
        assert_eq!(mark("a\r\nb"), "X-Mailbox-Junk: ab\r\n");
    }
}
