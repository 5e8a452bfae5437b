//! Reading the header section of an RFC 5322 message (CRLF line ends): the
//! little the server looks at without parsing whole messages.

/// The header section, up to and including the CRLF that ends its last
/// field (the empty line not included). A message without an empty line is
/// all header; one that starts with it has none.
pub fn header_section(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") {
        return &[];
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => &message[..p + 2],
        None => message,
    }
}

/// The names of the header fields in order (nothing copied).
pub fn field_names(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    header_section(message)
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty() && line[0] != b' ' && line[0] != b'\t')
        .map(|line| {
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            &line[..colon]
        })
}

/// The header fields in order, as (name, value) with folded lines joined.
pub fn fields(message: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut out: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for line in header_section(message).split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = out.last_mut() {
                value.extend_from_slice(line);
            }
            continue;
        }
        let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let value = line.get(colon + 1..).unwrap_or_default().to_vec();
        out.push((&line[..colon], value));
    }
    out
}

/// Why the authors of a message cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthorError {
    #[error("the message has {0} From: fields; RFC 5322 allows one")]
    FromCount(usize),
    #[error("the From: field has no address")]
    NoAddress,
    #[error("the From: field is too long to check")]
    TooLong,
}

/// The addresses of the `From:` field (RFC 5322 §3.6.2), parsed with
/// mail-parser (display names, comments, quoting, encoded words and groups
/// handled as receivers do). A message without `From:` has no authors.
pub fn authors(message: &[u8]) -> Result<Vec<String>, AuthorError> {
    let header = header_section(message);
    let count = field_names(header)
        .filter(|n| n.trim_ascii().eq_ignore_ascii_case(b"from"))
        .count();
    if count == 0 {
        return Ok(Vec::new());
    }
    if count > 1 {
        return Err(AuthorError::FromCount(count));
    }
    let parsed = mail_parser::MessageParser::new()
        .parse_headers(header)
        .ok_or(AuthorError::NoAddress)?;
    let list: Vec<String> = parsed
        .from()
        .map(|a| {
            a.iter()
                .filter_map(|a| a.address.as_deref().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        return Err(AuthorError::NoAddress);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_are_the_addresses_of_the_one_from_field() {
        assert_eq!(
            authors(b"Subject: x\r\nFrom: \"A, <b@evil.example>\"\r\n <a@Example.ORG>\r\n\r\nFrom: c@d\r\n"),
            Ok(vec!["a@Example.ORG".to_string()])
        );
        assert_eq!(
            authors(b"From: a@example.net, b@example.org\r\n\r\n"),
            Ok(vec![
                "a@example.net".to_string(),
                "b@example.org".to_string()
            ])
        );
        assert_eq!(authors(b"To: a@example.net\r\n\r\n"), Ok(vec![]));
        assert_eq!(
            authors(b"From: a@example.net\r\nFROM : b@example.org\r\n\r\n"),
            Err(AuthorError::FromCount(2))
        );
        assert_eq!(
            authors(b"From: nobody\r\n\r\n"),
            Err(AuthorError::NoAddress)
        );
    }

    #[test]
    fn sections_and_folded_fields() {
        let m = b"Subject: a\r\n b\r\nFrom: x@y\r\n\r\nBody: no\r\n";
        assert_eq!(header_section(m), b"Subject: a\r\n b\r\nFrom: x@y\r\n");
        let f = fields(m);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].0, f[0].1.as_slice()), (&b"Subject"[..], &b" a b"[..]));
        assert_eq!(header_section(b"\r\nbody"), b"");
        assert_eq!(header_section(b"X: 1\r\n"), b"X: 1\r\n");
    }
}
