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

#[cfg(test)]
mod tests {
    use super::*;

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
