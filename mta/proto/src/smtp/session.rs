//! The SMTP server session as a pure state machine (RFC 5321, with RFC 1870
//! SIZE, 2920 PIPELINING, 3030 CHUNKING, 3207 STARTTLS, 6152 8BITMIME, 6531
//! SMTPUTF8, 2034 ENHANCEDSTATUSCODES).
//!
//! It is fed bytes ([`Session::receive`]) and asked what to do next
//! ([`Session::process`]); the replies to write accumulate in
//! [`Session::take_output`]. It never reads a socket, a clock or the disk:
//! the adapter (the `mta` binary's `serve`) does that, and gives the time
//! and new queue ids through a [`Clock`] and the address directory through
//! the [`Directory`] trait, which is what makes every limit below testable
//! without a network (and every reply reproducible).
//!
//! Limits, all explicit: command lines of 512 octets and text lines of 1000
//! (RFC 5321 §4.5.3.1), the configured message size and recipient count, and a
//! maximum number of errors before the client is dropped. Bare LF and bare CR
//! are refused everywhere outside BDAT chunks (the SMTP smuggling class).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::address::{Address, AddressError, split_path};
pub use crate::sasl::AuthOutcome;
use crate::sasl::{self, Credentials, Mechanism};

/// RFC 5321 §4.5.3.1.4, CRLF included.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 5321 §4.5.3.1.6, CRLF included.
pub const MAX_TEXT_LINE: usize = 1000;

/// The time and new queue ids, from outside: the session reads no clock.
pub trait Clock: Send + Sync {
    /// Now, for the trace fields and the arrival time.
    fn now(&self) -> chrono::DateTime<chrono::FixedOffset>;
    /// An id for a message just received (the queue's id; shown, like the
    /// queue shows it, as 16 hex digits).
    fn queue_id(&self) -> u64;
}

/// What the session asks of the address directory: who receives mail here,
/// who may send as whom, and whether a login is still valid. Answers come
/// from memory (no I/O), so the session stays a pure state machine.
pub trait Directory: Send + Sync {
    /// Where one copy of a message goes (an account's mailbox, another
    /// domain's address); opaque to the session.
    type Target: Clone + PartialEq + std::fmt::Debug + Send + Sync;
    type Error: std::fmt::Display;
    /// Resolves an envelope recipient.
    fn lookup(&self, rcpt: &Address) -> Result<Lookup<Self::Target>, Self::Error>;
    /// Where mail an authenticated user sends to another domain goes.
    fn remote(&self, rcpt: &Address) -> Self::Target;
    /// Two targets that are one mailbox, which gets one copy.
    fn same_mailbox(&self, a: &Self::Target, b: &Self::Target) -> bool;
    /// What identifies the account's current password (`None`: gone or no
    /// login): a change ends the account's logins at their next `MAIL`.
    fn credential(&self, account: &str) -> Option<String>;
    /// Whether `account` may use `sender` (envelope or `From:`).
    fn may_send_as(&self, account: &str, sender: &Address) -> bool;
    /// The domain of the bare `RCPT TO:<postmaster>` (RFC 5321 §4.5.1).
    fn primary_domain(&self) -> Option<&str>;
    /// Whether `target`'s mailbox has room for a message of `size` bytes
    /// (0: the size is not known yet) under its quota.
    fn has_room(&self, target: &Self::Target, size: u64) -> bool;
}

/// The directory's answer for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Ours: deliver to these targets.
    Deliver(Vec<T>),
    /// Not one of our domains.
    NotLocal,
    /// One of our domains, but no such address.
    Unknown,
    /// One of our domains, and an address we refuse, for this reason (a
    /// bounce address that was not made here or has expired).
    Refused(String),
}

/// Which service a listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail from the world to our domains.
    Mx,
    /// Port 587: users sending mail; STARTTLS, then AUTH, before MAIL.
    Submission,
    /// Port 465: the same over implicit TLS (RFC 8314).
    Submissions,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Mx => "mx",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }
}

/// What the session needs from the listener it runs on.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_errors: u32,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// A certificate is loaded, so STARTTLS can be offered.
    pub tls_available: bool,
    /// MX (anyone, our domains only) or submission (authenticated users,
    /// any destination).
    pub role: Role,
    /// Name the authenticated user in the Received header.
    pub trace_user: bool,
}

/// RFC 4954 §4: an AUTH response line may be up to 12288 octets.
const MAX_AUTH_LINE: usize = 12288;

/// More `Received:` fields than this means a mail loop (Postfix's
/// `hopcount_limit`).
pub const MAX_HOPS: usize = 50;

/// Replies waiting beyond this are written before more pipelined commands
/// are read from the buffer: a client that pipelines and never reads must
/// not make the server queue megabytes of replies for it.
const MAX_PENDING_OUTPUT: usize = 16 * 1024;

/// What the adapter must do next.
#[derive(Debug)]
pub enum Step<T> {
    /// Write the pending output, then read more input (within [`Session::timeout`]).
    NeedInput,
    /// Write the pending output, then call [`Session::process`] again:
    /// buffered commands are waiting.
    Write,
    /// Write the pending output, store the message durably, then call
    /// [`Session::submitted`] with the outcome.
    Submit(Submission<T>),
    /// Write the pending output (the `220` reply), run the TLS handshake,
    /// then call [`Session::tls_established`].
    StartTls,
    /// Write the pending output and close the connection.
    Close,
    /// Check these credentials (slowly, off the event loop), then call
    /// [`Session::auth_result`].
    Authenticate(Credentials),
}

/// A complete message ready for the queue: `prefix`, then what
/// [`Session::take_body`] handed out during the transaction, then `rest`.
#[derive(Debug)]
pub struct Submission<T> {
    /// The queue id from the [`Clock`], named in our `Received:` field.
    pub id: u64,
    /// Arrival, microseconds since the epoch.
    pub arrival: u64,
    /// The reverse path; empty for the null sender `<>`.
    pub from: String,
    /// `helo [ip]` of the client, for logs.
    pub client: String,
    /// The client's EHLO/HELO argument.
    pub helo: String,
    /// The account that logged in, for authenticated submission.
    pub auth: Option<String>,
    /// Each copy to make: the address as the client gave it in `RCPT TO`
    /// and where it goes; one per mailbox.
    pub recipients: Vec<(String, T)>,
    /// The whole message's size, our fields included.
    pub size: u64,
    /// The fields we add in front: our `Received:`, and for submission a
    /// `Date:` and `Message-ID:` when the message has none.
    pub prefix: Vec<u8>,
    /// The end of the message as received (CRLF line ends), not taken yet.
    pub rest: Vec<u8>,
    /// Which transaction of the session this is (see
    /// [`Session::transaction`]): content taken from another one is not
    /// part of it.
    pub transaction: u64,
    /// For authenticated submission: the domain of the `From:` address,
    /// which the account was checked to own (what DKIM signs for).
    pub author_domain: Option<String>,
}

/// Why the queue could not take a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeError {
    /// No room on the data partition (`452`).
    DiskFull,
    /// Any other storage failure (`451`).
    Failed,
    /// A check refused the message (`550 5.7.1` and this text).
    Rejected(String),
    /// A check asks the client to come back later (`451 4.7.1` and this
    /// text): greylisting.
    Deferred(String),
}

#[derive(Debug)]
enum State {
    Command,
    Data(DataScan),
    Bdat(BdatChunk),
    AwaitingCommit,
    Auth(Mechanism, Option<String>),
    AwaitingAuth,
    Closed,
}

#[derive(Debug, Default)]
struct DataScan {
    at_line_start: bool,
    prev_cr: bool,
    line_len: usize,
}

#[derive(Debug)]
struct BdatChunk {
    remaining: u64,
    last: bool,
    /// The reply to give once the chunk has been read and thrown away, when
    /// the BDAT command itself was refused.
    refused: Option<(u16, &'static str, String)>,
}

#[derive(Debug)]
struct Transaction<T> {
    serial: u64,
    from: Option<Address>,
    smtputf8: bool,
    recipients: Vec<(Address, Vec<T>)>,
    /// Content received and not yet taken by the adapter.
    body: Vec<u8>,
    /// All content received.
    size: u64,
    /// The size MAIL FROM announced (SIZE=; 0 when not), for quotas.
    declared: u64,
    header: HeaderScan,
    oversize: bool,
    long_line: bool,
    chunked: bool,
    /// BDAT: the last chunk ended in CR; the next byte decides.
    pending_cr: bool,
}

pub struct Session<D: Directory> {
    cfg: Arc<SessionConfig>,
    clock: Arc<dyn Clock>,
    directory: Arc<D>,
    peer: IpAddr,
    state: State,
    input: Input,
    output: Vec<u8>,
    greeted: bool,
    helo: Option<(String, bool)>,
    tls: Option<String>,
    tx: Option<Transaction<D::Target>>,
    errors: u32,
    skipping_long_line: bool,
    authenticated: Option<String>,
    /// The account's password hash at login: a reload that changes it (or
    /// removes the account) ends the login.
    credential: Option<String>,
    /// Transactions started so far.
    transactions: u64,
    /// Why this client may not send mail (a DNSBL listing): every MAIL
    /// is refused with it.
    blocked: Option<String>,
    /// Asked at each `MAIL` of a client that has not logged in: why it
    /// must wait (a rate limit), or nothing.
    gate: Option<Gate>,
}

/// See [`Session::gate`].
pub type Gate = Box<dyn FnMut() -> Option<String> + Send>;

impl<D: Directory> Session<D> {
    pub fn new(
        cfg: Arc<SessionConfig>,
        clock: Arc<dyn Clock>,
        directory: Arc<D>,
        peer: IpAddr,
    ) -> Session<D> {
        Session {
            cfg,
            clock,
            directory,
            peer,
            state: State::Command,
            input: Input::default(),
            output: Vec::new(),
            greeted: false,
            helo: None,
            tls: None,
            tx: None,
            errors: 0,
            skipping_long_line: false,
            authenticated: None,
            credential: None,
            transactions: 0,
            blocked: None,
            gate: None,
        }
    }

    /// Refuses every `MAIL` of this client with `550 5.7.1 <why>` (as
    /// postscreen's `enforce`: the session goes on, so what it wanted to
    /// send is logged).
    pub fn block(&mut self, why: String) {
        self.blocked = Some(why);
    }

    /// Asks `gate` at every `MAIL` of a client that has not logged in; an
    /// answer refuses that `MAIL` with `450 4.7.1 <answer>` (the client
    /// tries again later), as Postfix's message rate limit does.
    pub fn gate(&mut self, gate: Gate) {
        self.gate = Some(gate);
    }

    /// Replies that were errors so far (tarpitting counts them).
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// The configuration was reloaded: later commands see the new
    /// directory (a login is checked against it at the next `MAIL`).
    pub fn set_directory(&mut self, directory: Arc<D>) {
        self.directory = directory;
    }

    pub fn directory(&self) -> &Arc<D> {
        &self.directory
    }

    /// Input from the client. May be called before [`Session::greet`]: a
    /// client that talks first is refused there.
    pub fn receive(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::Closed) {
            self.input.extend(bytes);
        }
    }

    /// Sends the `220` greeting, or refuses a client that did not wait for it.
    /// The first line of a multi-line greeting (`220-`), for postscreen's
    /// pregreet test: [`Session::greet`] writes the last one.
    pub fn pregreet(&mut self) {
        let text = format!("{} ESMTP Mailbox", self.cfg.hostname);
        self.output
            .extend_from_slice(format!("220-{text}\r\n").as_bytes());
    }

    pub fn greet(&mut self) {
        self.greeted = true;
        if !self.input.is_empty() {
            self.input.clear();
            self.raw_reply(554, "5.5.0", "Error: you talked before my greeting".into());
            self.state = State::Closed;
            return;
        }
        let text = format!("{} ESMTP Mailbox", self.cfg.hostname);
        self.raw_reply(220, "", text);
    }

    /// Bytes to send to the client.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// How long the adapter may wait for the next input.
    pub fn timeout(&self) -> Duration {
        match self.state {
            State::Data(_) | State::Bdat(_) => self.cfg.data_timeout,
            _ => self.cfg.command_timeout,
        }
    }

    /// The wait from [`Session::timeout`] ran out.
    pub fn timed_out(&mut self) {
        let text = format!("{} Error: timeout exceeded", self.cfg.hostname);
        self.raw_reply(421, "4.4.2", text);
        self.state = State::Closed;
    }

    /// The connection reached its maximum length; only called between
    /// commands.
    pub fn expired(&mut self) {
        let text = format!(
            "{} Error: connection time limit reached, please reconnect",
            self.cfg.hostname
        );
        self.raw_reply(421, "4.4.2", text);
        self.state = State::Closed;
    }

    /// The server is stopping; only called between commands.
    pub fn shutdown(&mut self) {
        let text = format!(
            "{} Service shutting down, try again later",
            self.cfg.hostname
        );
        self.raw_reply(421, "4.3.2", text);
        self.state = State::Closed;
    }

    /// True while no message is being received or stored, so the adapter may
    /// end the session for a shutdown without losing anything.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Command) && self.input.is_empty()
    }

    /// The TLS handshake after `STARTTLS` succeeded. RFC 3207 §4.2: the
    /// session starts over, the client must say EHLO again.
    pub fn tls_established(&mut self, description: String) {
        self.tls = Some(description);
        self.helo = None;
        self.tx = None;
        self.authenticated = None;
        self.credential = None;
        self.input.clear();
        self.state = State::Command;
    }

    /// The queue's answer to the last [`Step::Submit`].
    pub fn submitted(&mut self, id: u64, outcome: Result<(), IntakeError>) {
        self.tx = None;
        self.state = State::Command;
        match outcome {
            Ok(()) => self.reply(250, "2.0.0", format!("Ok: queued as {id:016X}")),
            Err(IntakeError::DiskFull) => {
                self.reply(452, "4.3.1", "Insufficient system storage".into())
            }
            Err(IntakeError::Failed) => {
                self.reply(451, "4.3.0", "Error: queue file write error".into())
            }
            Err(IntakeError::Rejected(why)) => self.reply(550, "5.7.1", why),
            Err(IntakeError::Deferred(why)) => self.reply(451, "4.7.1", why),
        }
    }

    /// The adapter's verdict on the credentials of the last
    /// [`Step::Authenticate`].
    pub fn auth_result(&mut self, outcome: AuthOutcome) {
        self.state = State::Command;
        match outcome {
            AuthOutcome::Accepted(account) => {
                self.credential = self.directory.credential(&account);
                self.authenticated = Some(account);
                self.reply(235, "2.7.0", "Authentication successful".into());
            }
            AuthOutcome::Rejected => {
                self.reply(535, "5.7.8", "Error: authentication failed".into())
            }
            AuthOutcome::TryLater => self.reply(
                454,
                "4.7.0",
                "Temporary authentication failure: too many failed attempts, try again later"
                    .into(),
            ),
        }
    }

    /// The account this session logged in as.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// The open transaction's number. One call of [`Session::process`] may
    /// end a transaction and start the next (pipelining): content taken
    /// with [`Session::take_body`] belongs to the transaction numbered
    /// when it was taken.
    pub fn transaction(&self) -> Option<u64> {
        self.tx.as_ref().map(|tx| tx.serial)
    }

    /// Message content received so far and not yet taken.
    pub fn body_buffered(&self) -> usize {
        match (&self.state, &self.tx) {
            (State::Data(_) | State::Bdat(_), Some(tx)) => tx.body.len(),
            _ => 0,
        }
    }

    /// Takes the message content received so far (the adapter spools it);
    /// what is left at the end comes in [`Submission::rest`].
    pub fn take_body(&mut self) -> Vec<u8> {
        match (&self.state, &mut self.tx) {
            (State::Data(_) | State::Bdat(_), Some(tx)) => std::mem::take(&mut tx.body),
            _ => Vec::new(),
        }
    }

    /// Runs the state machine over the buffered input.
    pub fn process(&mut self) -> Step<D::Target> {
        loop {
            match &mut self.state {
                State::Closed => return Step::Close,
                State::AwaitingCommit | State::AwaitingAuth => return Step::NeedInput,
                State::Auth(..) => {
                    if let Some(step) = self.auth_line() {
                        return step;
                    }
                }
                State::Command => {
                    if !self.greeted {
                        return Step::NeedInput;
                    }
                    if self.output.len() >= MAX_PENDING_OUTPUT {
                        return Step::Write;
                    }
                    if let Some(step) = self.command_line() {
                        return step;
                    }
                }
                State::Data(_) => {
                    if let Some(step) = self.data() {
                        return step;
                    }
                }
                State::Bdat(_) => {
                    if let Some(step) = self.bdat() {
                        return step;
                    }
                }
            }
        }
    }

    fn raw_reply(&mut self, code: u16, enhanced: &str, text: String) {
        if text.is_empty() {
            // An empty challenge (AUTH PLAIN without an initial response).
            self.output
                .extend_from_slice(format!("{code} \r\n").as_bytes());
            return;
        }
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { '-' } else { ' ' };
            if enhanced.is_empty() {
                self.output
                    .extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
            } else {
                self.output
                    .extend_from_slice(format!("{code}{sep}{enhanced} {line}\r\n").as_bytes());
            }
        }
    }

    /// A reply to a command; errors count towards the limit.
    fn reply(&mut self, code: u16, enhanced: &str, text: String) {
        self.raw_reply(code, enhanced, text);
        if code >= 400 {
            self.errors += 1;
            if self.errors >= self.cfg.max_errors && !matches!(self.state, State::Closed) {
                let text = format!("{} Error: too many errors", self.cfg.hostname);
                self.raw_reply(421, "4.7.0", text);
                self.state = State::Closed;
            }
        }
    }

    fn close_with(&mut self, code: u16, enhanced: &str, text: &str) -> Step<D::Target> {
        self.raw_reply(code, enhanced, text.to_string());
        self.state = State::Closed;
        Step::Close
    }

    /// One command from the input; `None` to go on, `Some` to stop processing.
    fn command_line(&mut self) -> Option<Step<D::Target>> {
        let Some(lf) = self.input.bytes().iter().position(|&b| b == b'\n') else {
            if self.input.len() > MAX_COMMAND_LINE {
                self.input.clear();
                if !self.skipping_long_line {
                    self.skipping_long_line = true;
                    self.reply(500, "5.5.2", "Error: line too long".into());
                }
                if matches!(self.state, State::Closed) {
                    return Some(Step::Close);
                }
            }
            return Some(Step::NeedInput);
        };
        let line = self.input.take(lf + 1);
        if self.skipping_long_line {
            self.skipping_long_line = false;
            return None;
        }
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Some(self.close_with(521, "5.5.2", "Error: bare <LF> received"));
        }
        let line = &line[..line.len() - 2];
        if line.contains(&b'\r') {
            return Some(self.close_with(521, "5.5.2", "Error: bare <CR> received"));
        }
        if line.len() + 2 > MAX_COMMAND_LINE {
            self.reply(500, "5.5.2", "Error: line too long".into());
            return None;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            self.reply(500, "5.5.2", "Error: command is not valid UTF-8".into());
            return None;
        };
        let text = text.to_string();
        self.command(&text)
    }

    fn command(&mut self, line: &str) -> Option<Step<D::Target>> {
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => self.helo(arg, verb == "EHLO"),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => self.data_command(arg),
            "BDAT" => return self.bdat_command(arg),
            "RSET" => {
                self.tx = None;
                self.reply(250, "2.0.0", "Ok".into());
            }
            "NOOP" => self.reply(250, "2.0.0", "Ok".into()),
            "QUIT" => return Some(self.close_with(221, "2.0.0", "Bye")),
            "VRFY" => {
                if arg.is_empty() {
                    self.reply(501, "5.5.4", "Syntax: VRFY address".into());
                } else {
                    // RFC 5321 §3.5.3: 252 neither confirms nor denies, so
                    // VRFY cannot be used to enumerate accounts.
                    self.reply(
                        252,
                        "2.0.0",
                        "Cannot VRFY user, but will accept message and attempt delivery".into(),
                    );
                }
            }
            "EXPN" => self.reply(502, "5.5.1", "Error: EXPN is not available".into()),
            "HELP" => self.reply(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS".into(),
            ),
            "STARTTLS" => return self.starttls(arg),
            "AUTH" => return self.auth_command(arg),
            // A web browser or proxy pointed at port 25 (Postfix's
            // smtpd_forbidden_commands).
            "GET" | "POST" | "CONNECT" | "HEAD" | "PUT" => {
                return Some(self.close_with(521, "5.7.0", "Error: this is an SMTP server"));
            }
            _ => self.reply(500, "5.5.2", "Error: command not recognized".into()),
        }
        if matches!(self.state, State::Closed) {
            return Some(Step::Close);
        }
        None
    }

    /// `Close` when a reply has just closed the session.
    fn closed(&self) -> Option<Step<D::Target>> {
        matches!(self.state, State::Closed).then_some(Step::Close)
    }

    fn starttls(&mut self, arg: &str) -> Option<Step<D::Target>> {
        if !arg.is_empty() {
            self.reply(501, "5.5.4", "Syntax: STARTTLS".into());
        } else if self.tls.is_some() {
            self.reply(554, "5.5.1", "Error: TLS already active".into());
        } else if !self.cfg.tls_available {
            self.reply(454, "4.7.0", "TLS not available".into());
        } else {
            self.raw_reply(220, "2.0.0", "Ready to start TLS".into());
            // Anything the client pipelined after STARTTLS was sent in the
            // clear and must not be executed inside TLS (CVE-2011-0411).
            if !self.input.is_empty() {
                tracing::warn!(peer = %self.peer, bytes = self.input.len(), "discarding input pipelined after STARTTLS");
                self.input.clear();
            }
            return Some(Step::StartTls);
        }
        if matches!(self.state, State::Closed) {
            return Some(Step::Close);
        }
        None
    }

    fn after_reply(&mut self) -> Step<D::Target> {
        if matches!(self.state, State::Closed) {
            Step::Close
        } else {
            // Keep going over pipelined input.
            self.process()
        }
    }
}

fn sanitize_header_word(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '(' || c == ')' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// `FROM:<…>` / `TO:<…>`, case-insensitively, allowing a space after the colon.
fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| arg[keyword.len()..].trim_start())
}

/// A fixed time and numbered ids, for tests: every run gives the same
/// replies and fields.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestClock {
    ids: std::sync::atomic::AtomicU64,
}

#[cfg(test)]
impl Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00+01:00").expect("a valid time")
    }

    fn queue_id(&self) -> u64 {
        1 + self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

mod auth;
mod data;
#[cfg(test)]
pub(crate) mod fixture;
mod header;
mod helo;
mod input;
mod mail;
mod rcpt;

use header::HeaderScan;
use input::Input;

#[cfg(test)]
mod tests;
