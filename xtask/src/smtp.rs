//! The client side of SMTP that the benchmark and the end-to-end test need:
//! reading a reply and checking its code.

use std::io::BufRead;

use anyhow::bail;

/// Reads one reply, all its lines, and checks that it has `code`; returns
/// its text.
pub fn expect(reader: &mut impl BufRead, code: u16) -> anyhow::Result<String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("connection closed while waiting for {code}");
        }
        text.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            if !line.starts_with(&code.to_string()) {
                bail!("expected {code}, got {}", text.trim_end());
            }
            return Ok(text);
        }
    }
}
