//! Peer-supplied text made safe to log: control characters (CR and LF
//! above all, which would start a forged log line) are shown escaped.
//! Everything a client or a remote server says passes through here before
//! it reaches a log line.

use std::borrow::Cow;

/// The structured fields of the per-message and per-recipient summary
/// lines (journal fields QUEUE_ID, FROM …). On standard error they are not
/// repeated: the line's text already says them, Postfix-style.
pub const SUMMARY_FIELDS: &[&str] = &[
    "queue_id", "client", "from", "to", "orig_to", "relay", "delay", "status", "size", "nrcpt",
];

/// `text` with every control character (C0, DEL, C1, and the Unicode line
/// and paragraph separators) escaped as `\r`, `\n`, `\t` or `\u{…}`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_controls_are_escaped_and_plain_text_is_kept() {
        assert_eq!(escape("alice@example.org"), "alice@example.org");
        assert!(matches!(escape("plain ünïcode"), Cow::Borrowed(_)));
        assert_eq!(
            escape("x\r\nJan 1 mta: forged\u{1b}[2J\u{85}\u{2028}"),
            "x\\r\\nJan 1 mta: forged\\u{1b}[2J\\u{85}\\u{2028}"
        );
    }
}
