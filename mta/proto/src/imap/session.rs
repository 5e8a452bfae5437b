//! The IMAP server session, sans-I/O: framing, login and the rest here,
//! folders in `session/folders.rs`, messages in `session/messages.rs`,
//! SEARCH in `session/search.rs`, CONDSTORE/QRESYNC in
//! `session/condstore.rs`, QUOTA in `session/quota.rs`. Bytes in,
//! responses and [`Step`]s out, like the SMTP session: the adapter writes
//! [`Session::take_output`], runs TLS and checks passwords off the event
//! loop.
//!
//! Lines and literals are framed by imap-codec's fragmentizer and each
//! command is parsed by its `CommandCodec`; responses are written with its
//! encoders. Every command has a size limit, a synchronizing literal gets
//! its `+` only when it fits, and a client that keeps sending what cannot
//! be parsed is disconnected.

use imap_codec::encode::Encoder;
use imap_codec::fragmentizer::{
    DecodeMessageError, FragmentInfo, Fragmentizer, LiteralAnnouncement,
};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{Atom, IString, LiteralMode, NString, Tag, Vec1};
use imap_codec::imap_types::response::{
    Capability, Code, CodeOther, CommandContinuationRequest, Data, Greeting, Response, Status,
};
use imap_codec::{
    AuthenticateDataCodec, CommandCodec, GreetingCodec, IdleDoneCodec, ResponseCodec,
};

use std::sync::Arc;

use crate::imap::store::{Folder, Mailboxes};
use crate::sasl::{AuthOutcome, Credentials, Mechanism};

mod condstore;
mod fetch;
mod folders;
mod list;
mod messages;
mod quota;
mod rev2;
mod search;

/// A response code of RFC 5530 (the codec has no variants for them).
fn rfc5530(code: &'static [u8]) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(code))
}

/// What the session is told about its server.
#[derive(Debug, Clone)]
pub struct Config {
    pub hostname: String,
    /// The largest command, literals included (APPEND's message aside).
    pub max_command: u32,
    /// The largest message APPEND takes (the SMTP message size limit).
    pub max_append: u32,
    /// Commands that cannot be parsed before the connection is closed.
    pub max_errors: u32,
}

/// What the adapter does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write the pending output, then read more input.
    NeedInput,
    /// Write the pending output (`OK Begin TLS`), run the TLS handshake,
    /// then call [`Session::tls_established`].
    StartTls,
    /// Check these credentials (slowly, off the event loop), then call
    /// [`Session::auth_result`].
    Authenticate(Credentials),
    /// Write the pending output, then read more input; meanwhile call
    /// [`Session::tick`] about every [`IDLE_TICK`]: the client IDLEs and
    /// hears of new mail as it comes.
    Idle,
    /// Write the pending output, then call [`Session::process`] again
    /// without reading: a long answer goes on (its memory stays bounded).
    Flush,
    /// Write the pending output and close the connection.
    Close,
}

/// How often an IDLE session looks for new mail (RFC 9051 §6.3.13: new
/// mail within a second or so).
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug)]
enum State {
    NotAuthenticated,
    /// AUTHENTICATE PLAIN is waiting for the client's response.
    AuthenticateData(Tag<'static>),
    /// The password is being checked; the command's tag.
    AwaitingAuth(Tag<'static>),
    Authenticated(String),
    Closed,
}

/// The folder a SELECT or EXAMINE opened.
struct Selected {
    name: String,
    read_only: bool,
    /// As the client was last told.
    folder: Folder,
    /// The UIDs this session is first to see (\\Recent).
    recent: std::collections::BTreeSet<u32>,
}

pub struct Session {
    cfg: Config,
    mailboxes: Arc<dyn Mailboxes>,
    selected: Option<Selected>,
    state: State,
    input: Fragmentizer,
    output: Vec<u8>,
    tls: bool,
    errors: u32,
    /// IDLE's tag while the client idles.
    idling: Option<Tag<'static>>,
    /// CONDSTORE is on (RFC 7162 §3.1): MODSEQs in FETCH answers.
    condstore: bool,
    /// QRESYNC is enabled (RFC 7162 §3.2.3): VANISHED for expunges.
    qresync: bool,
    /// A FETCH under way, answered a slice at a time.
    fetching: Option<fetch::FetchJob>,
    /// IMAP4rev2 is enabled (RFC 9051): no \\Recent, ESEARCH answers,
    /// mailbox names in UTF-8.
    rev2: bool,
    /// The UIDs a SEARCH saved (SEARCHRES, RFC 5182): what `$` names.
    saved: Option<Vec<u32>>,
    /// The RETURN options of the SEARCH being run (ESEARCH).
    search_return: Option<rev2::SearchReturn>,
}

impl Session {
    /// A session on a new connection; `tls`: the connection is already
    /// encrypted (port 993).
    pub fn new(cfg: Config, tls: bool, mailboxes: Arc<dyn Mailboxes>) -> Session {
        let input = Fragmentizer::new(cfg.max_command.saturating_add(cfg.max_append));
        Session {
            cfg,
            mailboxes,
            selected: None,
            state: State::NotAuthenticated,
            input,
            output: Vec::new(),
            tls,
            errors: 0,
            idling: None,
            condstore: false,
            qresync: false,
            fetching: None,
            rev2: false,
            saved: None,
            search_return: None,
        }
    }

    /// The greeting, with the capabilities (RFC 9051 §7.1.1).
    pub fn greet(&mut self) {
        let text = format!("{} IMAP ready", self.cfg.hostname);
        let greeting = Greeting::ok(Some(Code::Capability(self.capabilities())), &text)
            .unwrap_or_else(|_| Greeting::ok(None, "IMAP ready").expect("a valid greeting"));
        self.output
            .extend_from_slice(&GreetingCodec::default().encode(&greeting).dump());
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::Closed) {
            self.input.enqueue_bytes(bytes);
        }
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The account logged in, if any.
    pub fn account(&self) -> Option<&str> {
        match &self.state {
            State::Authenticated(a) => Some(a),
            _ => None,
        }
    }

    fn capabilities(&self) -> Vec1<Capability<'static>> {
        let atom = |a: &str| Capability::from(Atom::try_from(a.to_string()).expect("an atom"));
        let mut caps = vec![
            Capability::Imap4Rev1,
            atom("IMAP4rev2"),
            Capability::LiteralMinus,
            Capability::SaslIr,
            Capability::Enable,
            Capability::Id,
            Capability::Idle,
            Capability::Unselect,
            Capability::from(Atom::try_from("SPECIAL-USE").expect("an atom")),
            Capability::Move,
            Capability::Binary,
            atom("ESEARCH"),
            atom("SEARCHRES"),
            Capability::ListExtended,
            atom("LIST-STATUS"),
            atom("STATUS=SIZE"),
            Capability::CondStore,
            Capability::QResync,
            Capability::Quota,
            Capability::QuotaRes(imap_codec::imap_types::extensions::quota::Resource::Storage),
            Capability::from(Atom::try_from("UIDPLUS").expect("an atom")),
            Capability::from(Atom::try_from("NAMESPACE").expect("an atom")),
            Capability::from(
                Atom::try_from(format!("APPENDLIMIT={}", self.cfg.max_append)).expect("an atom"),
            ),
        ];
        if self.tls {
            caps.push(Capability::Auth(AuthMechanism::Plain));
        } else {
            caps.push(Capability::StartTls);
            caps.push(Capability::LoginDisabled);
        }
        Vec1::try_from(caps).expect("not empty")
    }

    fn respond(&mut self, response: &Response<'_>) {
        self.output
            .extend_from_slice(&ResponseCodec::default().encode(response).dump());
    }

    fn status(&mut self, status: Status<'_>) {
        self.respond(&Response::Status(status));
    }

    fn ok(&mut self, tag: Tag<'_>, code: Option<Code<'_>>, text: &str) {
        let status = Status::ok(Some(tag), code, text).expect("valid text");
        self.status(status);
    }

    fn no(&mut self, tag: Tag<'_>, code: Option<Code<'_>>, text: &str) {
        let status = Status::no(Some(tag), code, text).expect("valid text");
        self.status(status);
    }

    fn bad(&mut self, tag: Option<Tag<'_>>, text: &str) {
        let status = Status::bad(tag, None, text).expect("valid text");
        self.status(status);
    }

    fn bye(&mut self, text: &str) {
        let bye = Status::bye(None, text).expect("valid text");
        self.status(bye);
    }

    /// TLS is up (after [`Step::StartTls`]): what was read before it is
    /// dropped (RFC 9051 §6.2.1: no command injection).
    pub fn tls_established(&mut self) {
        self.tls = true;
        self.input = Fragmentizer::new(self.cfg.max_command.saturating_add(self.cfg.max_append));
    }

    /// The verdict on the credentials of [`Step::Authenticate`].
    pub fn auth_result(&mut self, outcome: AuthOutcome) {
        let State::AwaitingAuth(tag) = std::mem::replace(&mut self.state, State::NotAuthenticated)
        else {
            return;
        };
        match outcome {
            AuthOutcome::Accepted(account) => {
                // The special folders, made once (RFC 6154); a failure
                // here is the store's to log, not the login's. Junk may
                // have been made by a delivery before the first login: an
                // account that has never subscribed to anything gets them
                // all subscribed.
                let folders = self.mailboxes.folders(&account).unwrap_or_default();
                let first = !matches!(
                    self.mailboxes.subscriptions(&account),
                    Ok(s) if !s.is_empty()
                );
                for (name, _) in crate::imap::store::SPECIAL {
                    let missing = !folders.iter().any(|f| f == name);
                    if missing {
                        let _ = self.mailboxes.create(&account, name);
                    }
                    if missing || first {
                        let _ = self.mailboxes.subscribe(&account, name, true);
                    }
                }
                self.state = State::Authenticated(account);
                let caps = self.capabilities();
                self.ok(tag, Some(Code::Capability(caps)), "logged in");
            }
            AuthOutcome::Rejected => self.no(
                tag,
                Some(rfc5530(b"AUTHENTICATIONFAILED")),
                "wrong user name or password",
            ),
            AuthOutcome::TryLater => self.no(
                tag,
                Some(rfc5530(b"UNAVAILABLE")),
                "too many failed logins: try later",
            ),
        }
    }

    /// Handles what has arrived, up to the next thing the adapter must do.
    pub fn process(&mut self) -> Step {
        loop {
            if matches!(self.state, State::Closed) {
                return Step::Close;
            }
            if matches!(self.state, State::AwaitingAuth(_)) {
                return Step::NeedInput;
            }
            if self.fetching.is_some() {
                if self.go_on_fetching() {
                    return Step::Flush;
                }
                continue;
            }
            let Some(fragment) = self.input.progress() else {
                return if self.idling.is_some() {
                    Step::Idle
                } else {
                    Step::NeedInput
                };
            };
            if let FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode, length }),
                ..
            } = fragment
            {
                // APPEND's message may be as large as a message may be;
                // anything else as a command.
                let appending = self.account().is_some() && {
                    let line = self.input.message_bytes();
                    let words: Vec<&[u8]> = line.splitn(3, |b| *b == b' ').collect();
                    words
                        .get(1)
                        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
                };
                let limit = if appending {
                    self.cfg.max_append
                } else {
                    self.cfg.max_command
                };
                let fits = length <= limit;
                match (mode, fits) {
                    (LiteralMode::Sync, true) => {
                        let more =
                            CommandContinuationRequest::basic(None, "go on").expect("valid text");
                        self.respond(&Response::CommandContinuationRequest(more));
                    }
                    (LiteralMode::Sync, false) => {
                        let tag = self.input.decode_tag().map(|t| t.into_static());
                        if appending {
                            let status = Status::no(
                                tag,
                                Some(rfc5530(b"TOOBIG")),
                                "the message is larger than the limit",
                            )
                            .expect("valid text");
                            self.status(status);
                        } else {
                            self.bad(tag, "that literal is too long");
                        }
                        self.input.skip_message();
                    }
                    // Sent without waiting (LITERAL-, at most 4096 bytes):
                    // drained, and refused when the command completes.
                    (LiteralMode::NonSync, _) if length > 4096 => self.input.poison_message(),
                    (LiteralMode::NonSync, _) => {}
                }
                continue;
            }
            if !self.input.is_message_complete() {
                continue;
            }
            if let Some(step) = self.message() {
                return step;
            }
        }
    }

    /// While the client IDLEs: what changed in the selected folder.
    pub fn tick(&mut self) {
        if self.idling.is_some() && self.selected.is_some() {
            self.rescan_selected();
        }
    }

    /// One complete message, decoded as the state expects.
    fn message(&mut self) -> Option<Step> {
        if let Some(tag) = self.idling.take() {
            match self.input.decode_message(&IdleDoneCodec::default()) {
                Ok(_) => self.ok(tag, None, "IDLE completed"),
                Err(_) => self.bad(Some(tag), "IDLE ends with DONE"),
            }
            return None;
        }
        if let State::AuthenticateData(tag) = &self.state {
            let tag = tag.clone();
            self.state = State::NotAuthenticated;
            return match self.input.decode_message(&AuthenticateDataCodec::default()) {
                Ok(AuthenticateData::Continue(data)) => {
                    let data = data.declassify().to_vec();
                    self.plain(tag, &data)
                }
                Ok(AuthenticateData::Cancel) => {
                    self.bad(Some(tag), "authentication cancelled");
                    None
                }
                Err(_) => {
                    self.bad(Some(tag), "that is not a base64 response");
                    None
                }
            };
        }
        // What imap-codec does not read yet (IMAP4rev2's SEARCH RETURN,
        // `$`, LIST with options) is read first, once logged in.
        if self.account().is_some() {
            let saved = |uid: bool| self.saved_text(uid);
            match rev2::preparse(self.input.message_bytes(), saved) {
                rev2::Pre::AsIs => {}
                rev2::Pre::Rewritten(bytes, ret) => {
                    use imap_codec::decode::Decoder;
                    let command = match CommandCodec::default().decode(&bytes) {
                        Ok((_, command)) => command.into_static(),
                        Err(_) => {
                            let tag = self.input.decode_tag().map(|t| t.into_static());
                            self.bad(tag, "that is not a command I understand");
                            return None;
                        }
                    };
                    self.search_return = ret;
                    let step = self.command(command);
                    self.search_return = None;
                    return step;
                }
                rev2::Pre::List(list) => {
                    if let Some(tag) = self.input.decode_tag().map(|t| t.into_static()) {
                        self.list_extended(tag, list);
                    }
                    return None;
                }
                rev2::Pre::Bad(why) => {
                    let tag = self.input.decode_tag().map(|t| t.into_static());
                    self.bad(tag, why);
                    return None;
                }
            }
        }
        let command = match self.input.decode_message(&CommandCodec::default()) {
            Ok(command) => command.into_static(),
            Err(e) => {
                let tag = self.input.decode_tag().map(|t| t.into_static());
                let why = match e {
                    DecodeMessageError::MessageTooLong { .. } => "that command is too long",
                    DecodeMessageError::MessagePoisoned { .. } => "that literal is too long",
                    _ => "that is not a command I understand",
                };
                self.bad(tag, why);
                self.errors += 1;
                if self.errors >= self.cfg.max_errors {
                    self.bye("too many errors");
                    self.state = State::Closed;
                    return Some(Step::Close);
                }
                return None;
            }
        };
        self.command(command)
    }

    fn command(&mut self, Command { tag, body }: Command<'static>) -> Option<Step> {
        if self.folder_command(tag.clone(), &body)
            || self.message_command(tag.clone(), &body)
            || self.quota_command(tag.clone(), &body)
        {
            return None;
        }
        match body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.respond(&Response::Data(Data::Capability(caps)));
                self.ok(tag, None, "CAPABILITY completed");
            }
            CommandBody::Noop => self.ok(tag, None, "NOOP completed"),
            CommandBody::Idle if self.account().is_some() => {
                let more = CommandContinuationRequest::basic(None, "idling").expect("valid text");
                self.respond(&Response::CommandContinuationRequest(more));
                // What the client sent after IDLE (DONE) is read next.
                self.idling = Some(tag);
            }
            CommandBody::Id { .. } => {
                let text = |t: &str| IString::try_from(t.to_string()).expect("text");
                let parameters = vec![
                    (text("name"), NString(Some(text("Mailbox")))),
                    (
                        text("version"),
                        NString(Some(text(env!("CARGO_PKG_VERSION")))),
                    ),
                ];
                self.respond(&Response::Data(Data::Id {
                    parameters: Some(parameters),
                }));
                self.ok(tag, None, "ID completed");
            }
            CommandBody::Enable { capabilities } if self.account().is_some() => {
                self.enable(tag, capabilities.as_ref());
            }
            CommandBody::Logout => {
                self.bye("logging out");
                self.ok(tag, None, "LOGOUT completed");
                self.state = State::Closed;
                return Some(Step::Close);
            }
            CommandBody::StartTLS if self.tls => self.bad(Some(tag), "TLS is already on"),
            CommandBody::StartTLS => {
                self.ok(tag, None, "begin TLS now");
                return Some(Step::StartTls);
            }
            CommandBody::Login { .. } | CommandBody::Authenticate { .. }
                if self.account().is_some() =>
            {
                self.bad(Some(tag), "already logged in");
            }
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } if !self.tls => {
                self.no(
                    tag,
                    Some(rfc5530(b"PRIVACYREQUIRED")),
                    "log in only after STARTTLS (or on port 993)",
                );
            }
            CommandBody::Login { username, password } => {
                let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).ok();
                let (Some(username), Some(password)) = (
                    text(username.as_ref()),
                    text(password.declassify().as_ref()),
                ) else {
                    self.no(
                        tag,
                        Some(rfc5530(b"AUTHENTICATIONFAILED")),
                        "wrong user name or password",
                    );
                    return None;
                };
                self.state = State::AwaitingAuth(tag);
                return Some(Step::Authenticate(Credentials {
                    mechanism: Mechanism::Plain,
                    username,
                    password,
                }));
            }
            CommandBody::Authenticate {
                mechanism: AuthMechanism::Plain,
                initial_response,
            } => match initial_response {
                Some(response) => return self.plain(tag, response.declassify()),
                None => {
                    let more = CommandContinuationRequest::basic(None, " ")
                        .or_else(|_| CommandContinuationRequest::basic(None, "go on"))
                        .expect("valid text");
                    self.respond(&Response::CommandContinuationRequest(more));
                    self.state = State::AuthenticateData(tag);
                }
            },
            CommandBody::Authenticate { .. } => {
                self.no(tag, None, "only AUTHENTICATE PLAIN is offered");
            }
            _ if self.account().is_none() => {
                self.bad(Some(tag), "log in first");
            }
            _ => self.no(tag, None, "not served yet"),
        }
        None
    }

    /// A SASL PLAIN response (already base64-decoded by the codec).
    fn plain(&mut self, tag: Tag<'static>, response: &[u8]) -> Option<Step> {
        let mut parts = response.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.bad(
                Some(tag),
                "the PLAIN response must be authzid NUL user NUL password",
            );
            return None;
        };
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).ok();
        let (Some(authzid), Some(username), Some(password)) =
            (text(authzid), text(user), text(password))
        else {
            self.bad(Some(tag), "the PLAIN response is not UTF-8");
            return None;
        };
        if !authzid.is_empty() && authzid != username {
            self.no(
                tag,
                Some(rfc5530(b"AUTHORIZATIONFAILED")),
                "acting as another user is not allowed",
            );
            return None;
        }
        self.state = State::AwaitingAuth(tag);
        Some(Step::Authenticate(Credentials {
            mechanism: Mechanism::Plain,
            username,
            password,
        }))
    }
}

#[cfg(test)]
mod tests;
