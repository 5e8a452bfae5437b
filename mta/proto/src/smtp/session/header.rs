//! The header section of a message as it streams past the session.

/// The longest header line (and `From:` field) the scan keeps; longer ones
/// are cut, and a cut `From:` refuses a submission.
const MAX_SCANNED_FIELD: usize = 16 * 1024;

/// The header section as it streams past: what the session's checks need
/// (hop count, `From:` for submission, `Date:`/`Message-ID:` presence), in
/// bounded memory whatever the size of the message.
#[derive(Debug, Default)]
pub(super) struct HeaderScan {
    done: bool,
    /// The current line, up to [`MAX_SCANNED_FIELD`] bytes.
    line: Vec<u8>,
    line_cut: bool,
    /// The lines so far belong to the first `From:` field.
    in_from: bool,
    /// The message has no header section (it starts with an empty line).
    pub(super) empty: bool,
    fields: usize,
    pub(super) received: usize,
    pub(super) date: bool,
    pub(super) message_id: bool,
    from_fields: usize,
    /// The first `From:` field, its lines as received.
    from: Vec<u8>,
    from_cut: bool,
}

impl HeaderScan {
    pub(super) fn feed(&mut self, mut data: &[u8]) {
        while !self.done && !data.is_empty() {
            let end = data.iter().position(|&b| b == b'\n').map(|i| i + 1);
            let part = &data[..end.unwrap_or(data.len())];
            data = &data[part.len()..];
            let room = MAX_SCANNED_FIELD.saturating_sub(self.line.len());
            self.line_cut |= part.len() > room;
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            if end.is_some() {
                self.end_line();
            }
        }
    }

    /// The end of the message: a last line without a line end counts.
    pub(super) fn finish(&mut self) {
        if !self.done && !self.line.is_empty() {
            self.end_line();
        }
        self.done = true;
    }

    pub(super) fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let cut = std::mem::take(&mut self.line_cut);
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            self.empty = self.fields == 0;
            self.done = true;
            return;
        }
        if text[0] == b' ' || text[0] == b'\t' {
            if self.in_from {
                self.keep_from(&line, cut);
            }
            return;
        }
        self.in_from = false;
        self.fields += 1;
        let colon = text.iter().position(|&b| b == b':').unwrap_or(text.len());
        let name = text[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"received") {
            self.received += 1;
        } else if name.eq_ignore_ascii_case(b"date") {
            self.date = true;
        } else if name.eq_ignore_ascii_case(b"message-id") {
            self.message_id = true;
        } else if name.eq_ignore_ascii_case(b"from") {
            self.from_fields += 1;
            if self.from_fields == 1 {
                self.in_from = true;
                self.keep_from(&line, cut);
            }
        }
    }

    pub(super) fn keep_from(&mut self, line: &[u8], cut: bool) {
        let room = MAX_SCANNED_FIELD.saturating_sub(self.from.len());
        self.from_cut |= cut || line.len() > room;
        self.from.extend_from_slice(&line[..line.len().min(room)]);
    }

    /// The addresses of the `From:` field (see [`crate::message::authors`]).
    pub(super) fn authors(&self) -> Result<Vec<String>, crate::message::AuthorError> {
        use crate::message::AuthorError;
        if self.from_fields > 1 {
            return Err(AuthorError::FromCount(self.from_fields));
        }
        if self.from_cut {
            return Err(AuthorError::TooLong);
        }
        let mut field = self.from.clone();
        if !field.ends_with(b"\n") {
            field.extend_from_slice(b"\r\n");
        }
        field.extend_from_slice(b"\r\n");
        crate::message::authors(&field)
    }
}
