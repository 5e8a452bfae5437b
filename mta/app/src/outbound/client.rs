//! The SMTP and LMTP client: one connection, one message to several
//! recipients, with STARTTLS (opportunistic or required), implicit TLS and
//! AUTH PLAIN for relays.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use mta_proto::sasl;

/// A failure to deliver to some or all recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 5xx (or an equivalent, such as a required extension missing).
    pub permanent: bool,
    pub message: String,
    /// A failure of TLS, as a TLS report names it (RFC 8460 §4.3).
    pub tls: Option<mail_auth::report::tlsrpt::ResultType>,
}

impl Failure {
    pub fn temporary(message: impl Into<String>) -> Failure {
        Failure {
            permanent: false,
            message: message.into(),
            tls: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            permanent: true,
            message: message.into(),
            tls: None,
        }
    }

    /// A temporary failure of TLS of this kind.
    fn tls(message: impl Into<String>, kind: mail_auth::report::tlsrpt::ResultType) -> Failure {
        Failure {
            tls: Some(kind),
            ..Failure::temporary(message)
        }
    }

    fn from_reply(context: &str, reply: &Reply) -> Failure {
        Failure {
            permanent: reply.code >= 500,
            message: format!("{context}: {}", reply.text()),
            tls: None,
        }
    }
}

/// How TLS is used on this connection.
#[derive(Clone)]
pub enum Tls {
    /// STARTTLS if offered, without certificate checks (RFC 7435); plain
    /// text otherwise.
    Opportunistic(Arc<rustls::ClientConfig>),
    /// STARTTLS is mandatory and the certificate must verify.
    Required(Arc<rustls::ClientConfig>),
    /// TLS from the first byte, verified.
    Implicit(Arc<rustls::ClientConfig>),
    /// No TLS (LMTP to a local service).
    None,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Connection {
    io: BufReader<Box<dyn Io>>,
    extensions: HashSet<String>,
    lmtp: bool,
    timeout: Duration,
    pub peer: String,
    pub tls: bool,
    /// False once the connection's state is in doubt (an RSET failed).
    pub reusable: bool,
}

/// What a recipient's delivery came to.
pub type RcptResult = Result<String, Failure>;

impl Connection {
    /// Connects, reads the greeting, says EHLO (LHLO), and secures the
    /// connection as `tls` asks.
    pub async fn open(
        addr: SocketAddr,
        server_name: &str,
        helo: &str,
        lmtp: bool,
        tls: &Tls,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Connection, Failure> {
        let tcp = connect(addr, connect_timeout).await?;
        let peer = format!("{server_name}[{}]:{}", addr.ip(), addr.port());
        let (io, secured): (Box<dyn Io>, bool) = match tls {
            Tls::Implicit(config) => (
                Box::new(handshake(tcp, config, server_name, timeout).await?),
                true,
            ),
            _ => (Box::new(tcp), false),
        };
        let mut c = Connection {
            io: BufReader::new(io),
            extensions: HashSet::new(),
            lmtp,
            timeout,
            peer,
            tls: secured,
            reusable: true,
        };
        let greeting = c.reply().await?;
        if greeting.code != 220 {
            return Err(Failure::temporary(format!(
                "{} greeted with {}",
                c.peer,
                greeting.text()
            )));
        }
        // A transport or MX record that points back at this server would
        // pass the message around in a circle (Postfix: "mail for … loops
        // back to myself").
        // Not for LMTP: a local delivery agent on this host may well greet
        // with its name (as Postfix checks only SMTP).
        let banner_name = greeting.lines[0].split_whitespace().next().unwrap_or("");
        if !lmtp && banner_name.eq_ignore_ascii_case(helo) {
            return Err(Failure::temporary(format!(
                "{} greets as {banner_name}: mail for it loops back to myself",
                c.peer
            )));
        }
        c.hello(helo).await?;
        let (config, required) = match tls {
            Tls::Opportunistic(config) => (Some(config), false),
            Tls::Required(config) => (Some(config), true),
            _ => (None, false),
        };
        if let Some(config) = config.filter(|_| !c.tls) {
            if c.extensions.contains("STARTTLS") {
                let r = c.command("STARTTLS").await?;
                if r.code != 220 {
                    if required {
                        // Temporary whatever the code: TLS is our
                        // requirement, another MX host or a later try may
                        // meet it (RFC 7672 §2.2, RFC 8461 §5).
                        return Err(Failure::tls(
                            format!("STARTTLS, which is required: {}", r.text()),
                            mail_auth::report::tlsrpt::ResultType::StartTlsNotSupported,
                        ));
                    }
                } else {
                    c = c.upgrade(config, server_name).await?;
                    c.hello(helo).await?;
                }
            } else if required {
                return Err(Failure::tls(
                    format!("{} does not offer STARTTLS, which is required", c.peer),
                    mail_auth::report::tlsrpt::ResultType::StartTlsNotSupported,
                ));
            }
        }
        Ok(c)
    }

    async fn upgrade(
        self,
        config: &Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Connection, Failure> {
        // Nothing may be buffered: it was sent before TLS.
        if !self.io.buffer().is_empty() {
            return Err(Failure::temporary(format!(
                "{} sent data after its STARTTLS reply",
                self.peer
            )));
        }
        let inner = self.io.into_inner();
        let stream = handshake(inner, config, server_name, self.timeout).await?;
        Ok(Connection {
            io: BufReader::new(Box::new(stream)),
            extensions: HashSet::new(),
            tls: true,
            reusable: true,
            ..self
        })
    }

    async fn hello(&mut self, helo: &str) -> Result<(), Failure> {
        let verb = if self.lmtp { "LHLO" } else { "EHLO" };
        let r = self.command(&format!("{verb} {helo}")).await?;
        if r.code != 250 {
            if self.lmtp {
                return Err(Failure::from_reply("LHLO", &r));
            }
            let r = self.command(&format!("HELO {helo}")).await?;
            if r.code != 250 {
                return Err(Failure::from_reply("HELO", &r));
            }
            self.extensions.clear();
            return Ok(());
        }
        self.extensions = r
            .lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|w| w.to_ascii_uppercase())
            .collect();
        if let Some(auth) = r
            .lines
            .iter()
            .find(|l| l.to_ascii_uppercase().starts_with("AUTH"))
        {
            for m in auth.split_whitespace().skip(1) {
                self.extensions
                    .insert(format!("AUTH={}", m.to_ascii_uppercase()));
            }
        }
        Ok(())
    }

    /// AUTH PLAIN (only ever over TLS).
    pub async fn authenticate(&mut self, username: &str, password: &str) -> Result<(), Failure> {
        if !self.tls {
            return Err(Failure::temporary(
                "refusing to send a password without TLS",
            ));
        }
        if !self.extensions.contains("AUTH=PLAIN") {
            return Err(Failure::temporary(format!(
                "{} does not offer AUTH PLAIN",
                self.peer
            )));
        }
        let response = sasl::encode_text(&format!("\0{username}\0{password}"));
        let r = self.command(&format!("AUTH PLAIN {response}")).await?;
        if r.code != 235 {
            // Wrong credentials are a configuration problem: keep the mail.
            return Err(Failure::temporary(format!(
                "authentication as {username} failed: {}",
                r.text()
            )));
        }
        Ok(())
    }

    /// One transaction. The outer error is for the whole message; the inner
    /// results are per recipient, in order.
    pub async fn send(
        &mut self,
        from: &str,
        recipients: &[String],
        body: &mta_store::body::Body,
    ) -> Result<Vec<RcptResult>, Failure> {
        let needs_utf8 = !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
        if needs_utf8 && !self.extensions.contains("SMTPUTF8") {
            return Err(Failure::permanent(format!(
                "{} does not support SMTPUTF8, which this message's addresses need (5.6.7)",
                self.peer
            )));
        }
        let mut mail = format!("MAIL FROM:<{from}>");
        if self.extensions.contains("SIZE") {
            mail.push_str(&format!(" SIZE={}", body.len()));
        }
        // A spooled message is not scanned first: declaring 8BITMIME for a
        // 7-bit message is harmless (RFC 6152).
        let eight_bit = body.file().is_some() || !body.head().is_ascii();
        if eight_bit && self.extensions.contains("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        let r = self.command(&mail).await?;
        if r.code != 250 {
            return Err(Failure::from_reply("MAIL FROM", &r));
        }
        let mut results: Vec<RcptResult> = Vec::new();
        for rcpt in recipients {
            let r = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            results.push(if r.code == 250 || r.code == 251 {
                Ok(String::new())
            } else {
                Err(Failure::from_reply("RCPT TO", &r))
            });
        }
        if results.iter().all(|r| r.is_err()) {
            self.reset().await;
            return Ok(results);
        }
        let r = self.command("DATA").await?;
        if r.code != 354 {
            return Err(Failure::from_reply("DATA", &r));
        }
        self.write_message(body).await?;
        if self.lmtp {
            // LMTP: one reply per accepted recipient (RFC 2033 §4.2).
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                let r = self.reply().await?;
                *result = if r.code == 250 {
                    Ok(r.text())
                } else {
                    Err(Failure::from_reply("after DATA", &r))
                };
            }
        } else {
            let r = self.reply().await?;
            if r.code != 250 {
                return Err(Failure::from_reply("after DATA", &r));
            }
            for result in results.iter_mut().filter(|r| r.is_ok()) {
                *result = Ok(r.text());
            }
        }
        Ok(results)
    }

    /// RSET: whether the connection is still good for another transaction
    /// (a live server answers at once; no need to wait `timeout`).
    pub async fn reset(&mut self) -> bool {
        let answer = tokio::time::timeout(Duration::from_secs(10), self.command("RSET")).await;
        let ok = matches!(answer, Ok(Ok(r)) if r.code == 250);
        self.reusable &= ok;
        ok
    }

    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command("QUIT")).await;
    }

    /// The message for DATA, read and dot-stuffed a chunk at a time; each
    /// chunk written within the timeout.
    async fn write_message(&mut self, body: &mta_store::body::Body) -> Result<(), Failure> {
        use tokio::io::AsyncReadExt;
        let peer = self.peer.clone();
        let mut reader = body
            .async_reader()
            .await
            .map_err(|e| Failure::temporary(format!("reading the queued message: {e}")))?;
        let mut stuffer = DotStuffer::default();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut out = Vec::with_capacity(chunk.len() + 1024);
        loop {
            let n = reader
                .read(&mut chunk)
                .await
                .map_err(|e| Failure::temporary(format!("reading the queued message: {e}")))?;
            out.clear();
            if n == 0 {
                stuffer.finish(&mut out);
                return self.write(&out).await;
            }
            stuffer.push(&chunk[..n], &mut out);
            self.write(&out)
                .await
                .map_err(|f| Failure::temporary(format!("{peer}: {}", f.message)))?;
        }
    }

    async fn command(&mut self, line: &str) -> Result<Reply, Failure> {
        // One command, whatever an address from outside held: a line end
        // inside would let it speak for us (a second guard, addresses are
        // checked before they are queued).
        if line.contains(['\r', '\n']) {
            return Err(Failure::permanent(format!(
                "{}: not sent: a line end inside the command {:?}",
                self.peer,
                mta_proto::logsafe::escape(line)
            )));
        }
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        let peer = self.peer.clone();
        let io = self.io.get_mut();
        tokio::time::timeout(self.timeout, async {
            io.write_all(data).await?;
            io.flush().await
        })
        .await
        .map_err(|_| Failure::temporary(format!("{peer}: timed out while sending")))?
        .map_err(|e| Failure::temporary(format!("{peer}: {e}")))
    }

    /// One reply, whole, within the timeout: a server that drips it out a
    /// byte at a time, sends lines without end or endless continuation
    /// lines is cut off at the limits below (RFC 5321 §4.5.3.1.5 allows
    /// 512 octets a line; generous limits, then failure).
    async fn reply(&mut self) -> Result<Reply, Failure> {
        let peer = self.peer.clone();
        let io = &mut self.io;
        tokio::time::timeout(self.timeout, read_reply(io))
            .await
            .map_err(|_| Failure::temporary(format!("{peer}: timed out waiting for a reply")))?
            .map_err(|e| Failure::temporary(format!("{peer}: {e}")))
    }
}

/// The longest reply line read, CRLF included.
pub const MAX_REPLY_LINE: usize = 4096;
/// The most lines in one reply.
pub const MAX_REPLY_LINES: usize = 100;

/// Reads one SMTP reply (RFC 5321 §4.2) from `io`, never buffering more
/// than [`MAX_REPLY_LINE`] bytes of a line or [`MAX_REPLY_LINES`] lines.
pub async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(io: &mut R) -> Result<Reply, String> {
    use tokio::io::AsyncReadExt;
    let mut lines = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *io)
            .take(MAX_REPLY_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        if line.last() != Some(&b'\n') {
            if line.len() >= MAX_REPLY_LINE {
                return Err(format!("reply line longer than {MAX_REPLY_LINE} octets"));
            }
            return Err("connection closed in the middle of a reply".into());
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(format!("reply of more than {MAX_REPLY_LINES} lines"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let code: u16 = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| format!("malformed reply {:?}", mta_proto::logsafe::escape(text)))?;
        let last = match text.as_bytes().get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => {
                return Err(format!(
                    "malformed reply {:?}",
                    mta_proto::logsafe::escape(text)
                ));
            }
        };
        // Peer text is kept escaped: it ends up in logs and bounces.
        lines.push(mta_proto::logsafe::escape(text.get(4..).unwrap_or("")).into_owned());
        if last {
            return Ok(Reply { code, lines });
        }
    }
}

/// A TCP connection within `timeout`.
pub(super) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Failure::temporary(format!("connect to {addr}: timed out")))?
        .map_err(|e| Failure::temporary(format!("connect to {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// The TLS handshake as a client, within `timeout`.
pub(super) async fn handshake<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    config: &Arc<rustls::ClientConfig>,
    server_name: &str,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<S>, Failure> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|_| {
        Failure::temporary(format!("{server_name:?} is not a valid TLS server name"))
    })?;
    tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream),
    )
    .await
    .map_err(|_| Failure::temporary(format!("TLS with {server_name}: timed out")))?
    .map_err(|e| {
        let kind = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(super::tlsrpt::result_of)
            .unwrap_or(mail_auth::report::tlsrpt::ResultType::ValidationFailure);
        Failure::tls(format!("TLS with {server_name}: {e}"), kind)
    })
}

/// The message for DATA: CRLF line ends (a bare LF or a bare CR becomes
/// CRLF, so nothing the next hop might read as a line end passes
/// unchanged), leading dots doubled, and the end marker.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut stuffer = DotStuffer::default();
    stuffer.push(body, &mut out);
    stuffer.finish(&mut out);
    out
}

/// [`dot_stuff`] over a stream of chunks.
pub struct DotStuffer {
    at_line_start: bool,
    /// The last chunk ended in CR: a LF first in the next belongs to it.
    pending_cr: bool,
    /// Nothing written yet, or the last thing written was a line end.
    ended: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            pending_cr: false,
            ended: true,
        }
    }
}

impl DotStuffer {
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        if std::mem::take(&mut self.pending_cr) && data.first() == Some(&b'\n') {
            i = 1;
        }
        while i < data.len() {
            let b = data[i];
            i += 1;
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            self.at_line_start = false;
            match b {
                b'\r' | b'\n' => {
                    if b == b'\r' {
                        match data.get(i) {
                            Some(b'\n') => i += 1,
                            None => self.pending_cr = true,
                            Some(_) => {}
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                }
                _ => out.push(b),
            }
        }
        if !data.is_empty() {
            self.ended = self.at_line_start;
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.ended {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_and_line_ends() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"x\ny"), b"x\r\ny\r\n.\r\n");
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
    }

    #[test]
    fn stuffing_in_chunks_is_the_same_as_in_one_piece() {
        let message = b"a\r\n.b\r\n\r\n..c\rd\ne\r\n.\r\nend";
        for split in 0..=message.len() {
            let (x, y) = message.split_at(split);
            let mut out = Vec::new();
            let mut s = DotStuffer::default();
            s.push(x, &mut out);
            s.push(y, &mut out);
            s.finish(&mut out);
            assert_eq!(out, dot_stuff(message), "split at {split}");
        }
        assert_eq!(
            dot_stuff(b""),
            b".\r\n",
            "the CRLF after DATA ends the empty line"
        );
    }

    #[test]
    fn bare_cr_never_reaches_the_next_hop() {
        // The smuggling payload `x<CR>.<CR><LF>`: the CR becomes a line end
        // and the dot after it is stuffed.
        assert_eq!(
            dot_stuff(b"x\r.\r\nMAIL FROM:<a@b>\r\n"),
            b"x\r\n..\r\nMAIL FROM:<a@b>\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b"a\r\rb"), b"a\r\n\r\nb\r\n.\r\n");
    }

    async fn reply_of(bytes: &[u8]) -> Result<Reply, String> {
        let mut io = tokio::io::BufReader::new(bytes);
        read_reply(&mut io).await
    }

    #[tokio::test]
    async fn replies_are_read_within_their_limits() {
        let r = reply_of(b"250-mx.example Hello\r\n250-SIZE 10\r\n250 SMTPUTF8\r\n")
            .await
            .unwrap();
        assert_eq!((r.code, r.lines.len()), (250, 3));
        let long = [b"220-".as_slice(), &vec![b'x'; 10 * MAX_REPLY_LINE]].concat();
        assert!(reply_of(&long).await.unwrap_err().contains("longer than"));
        let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
        assert!(
            reply_of(many.as_bytes())
                .await
                .unwrap_err()
                .contains("lines")
        );
        assert!(reply_of(b"2x0 nope\r\n").await.is_err());
        assert!(reply_of(b"250").await.is_err(), "no line end");
        let r = reply_of(b"550 5.1.1 no\rforged log line\r\n")
            .await
            .unwrap();
        assert_eq!(r.lines, vec!["5.1.1 no\\rforged log line"]);
    }
}
