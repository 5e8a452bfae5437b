//! The SMTP and LMTP client: one connection, one message to several
//! recipients, with STARTTLS (opportunistic or required), implicit TLS and
//! AUTH PLAIN for relays.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::smtp::sasl;

/// A failure to deliver to some or all recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 5xx (or an equivalent, such as a required extension missing).
    pub permanent: bool,
    pub message: String,
}

impl Failure {
    pub fn temporary(message: impl Into<String>) -> Failure {
        Failure {
            permanent: false,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            permanent: true,
            message: message.into(),
        }
    }

    fn from_reply(context: &str, reply: &Reply) -> Failure {
        Failure {
            permanent: reply.code >= 500,
            message: format!("{context}: {}", reply.text()),
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
                        return Err(Failure::temporary(format!(
                            "STARTTLS, which is required: {}",
                            r.text()
                        )));
                    }
                } else {
                    c = c.upgrade(config, server_name).await?;
                    c.hello(helo).await?;
                }
            } else if required {
                return Err(Failure::temporary(format!(
                    "{} does not offer STARTTLS, which is required",
                    c.peer
                )));
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
        body: &[u8],
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
        if !body.is_ascii() && self.extensions.contains("8BITMIME") {
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
        self.write(&dot_stuff(body)).await?;
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

    async fn command(&mut self, line: &str) -> Result<Reply, Failure> {
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

    async fn reply(&mut self) -> Result<Reply, Failure> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(self.timeout, self.io.read_line(&mut line))
                .await
                .map_err(|_| {
                    Failure::temporary(format!("{}: timed out waiting for a reply", self.peer))
                })?
                .map_err(|e| Failure::temporary(format!("{}: {e}", self.peer)))?;
            if n == 0 {
                return Err(Failure::temporary(format!(
                    "{}: connection closed",
                    self.peer
                )));
            }
            if line.len() > 4096 || lines.len() > 100 {
                return Err(Failure::temporary(format!("{}: reply too long", self.peer)));
            }
            let line = line.trim_end();
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| {
                Failure::temporary(format!("{}: malformed reply {line:?}", self.peer))
            })?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Ok(Reply { code, lines });
            }
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
    .map_err(|e| Failure::temporary(format!("TLS with {server_name}: {e}")))
}

/// The message for DATA: CRLF line ends (bare LF from BDAT becomes CRLF),
/// leading dots doubled, and the end marker.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
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
}
