//! The IMAP server session, sans-I/O (issue 13 under way: framing, login,
//! folders in `session/folders.rs`, messages in `session/messages.rs`;
//! ENVELOPE, BODYSTRUCTURE, APPEND, COPY/MOVE, SEARCH, IDLE and QRESYNC
//! next). Bytes in,
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
use imap_codec::imap_types::core::{Atom, LiteralMode, Tag, Vec1};
use imap_codec::imap_types::response::{
    Capability, Code, CodeOther, CommandContinuationRequest, Data, Greeting, Response, Status,
};
use imap_codec::{AuthenticateDataCodec, CommandCodec, GreetingCodec, ResponseCodec};

use std::sync::Arc;

use crate::imap::store::{Folder, Mailboxes};
use crate::sasl::{AuthOutcome, Credentials, Mechanism};

mod folders;
mod messages;

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
    /// Write the pending output and close the connection.
    Close,
}

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
}

impl Session {
    /// A session on a new connection; `tls`: the connection is already
    /// encrypted (port 993).
    pub fn new(cfg: Config, tls: bool, mailboxes: Arc<dyn Mailboxes>) -> Session {
        let input = Fragmentizer::new(cfg.max_command);
        Session {
            cfg,
            mailboxes,
            selected: None,
            state: State::NotAuthenticated,
            input,
            output: Vec::new(),
            tls,
            errors: 0,
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
        let mut caps = vec![
            Capability::Imap4Rev1,
            Capability::from(Atom::try_from("IMAP4rev2").expect("an atom")),
            Capability::LiteralMinus,
            Capability::SaslIr,
            Capability::Enable,
            Capability::Idle,
            Capability::Id,
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
        self.input = Fragmentizer::new(self.cfg.max_command);
    }

    /// The verdict on the credentials of [`Step::Authenticate`].
    pub fn auth_result(&mut self, outcome: AuthOutcome) {
        let State::AwaitingAuth(tag) = std::mem::replace(&mut self.state, State::NotAuthenticated)
        else {
            return;
        };
        match outcome {
            AuthOutcome::Accepted(account) => {
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
            let Some(fragment) = self.input.progress() else {
                return Step::NeedInput;
            };
            if let FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode, length }),
                ..
            } = fragment
            {
                let fits = length <= self.cfg.max_command;
                match (mode, fits) {
                    (LiteralMode::Sync, true) => {
                        let more =
                            CommandContinuationRequest::basic(None, "go on").expect("valid text");
                        self.respond(&Response::CommandContinuationRequest(more));
                    }
                    (LiteralMode::Sync, false) => {
                        let tag = self.input.decode_tag().map(|t| t.into_static());
                        self.bad(tag, "that literal is too long");
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

    /// One complete message, decoded as the state expects.
    fn message(&mut self) -> Option<Step> {
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
        if self.folder_command(tag.clone(), &body) || self.message_command(tag.clone(), &body) {
            return None;
        }
        match body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.respond(&Response::Data(Data::Capability(caps)));
                self.ok(tag, None, "CAPABILITY completed");
            }
            CommandBody::Noop => self.ok(tag, None, "NOOP completed"),
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
mod tests {
    use super::*;
    use crate::imap::store::{self, StoreError};

    /// Folders in memory: name → messages' UIDs; their flags; each
    /// message says its UID.
    #[derive(Default)]
    struct Fake {
        folders: std::sync::Mutex<std::collections::BTreeMap<String, Vec<u32>>>,
        flags: std::sync::Mutex<std::collections::HashMap<u32, store::Flags>>,
    }

    impl Mailboxes for Fake {
        fn folders(&self, _: &str) -> Result<Vec<String>, StoreError> {
            Ok(self.folders.lock().unwrap().keys().cloned().collect())
        }
        fn create(&self, _: &str, name: &str) -> Result<(), StoreError> {
            let mut f = self.folders.lock().unwrap();
            if f.contains_key(name) {
                return Err(StoreError::Exists);
            }
            f.insert(name.into(), Vec::new());
            Ok(())
        }
        fn open(&self, _: &str, name: &str) -> Result<Folder, StoreError> {
            let f = self.folders.lock().unwrap();
            let uids = f.get(name).ok_or(StoreError::NoSuchFolder)?;
            Ok(Folder {
                uid_validity: 1700000000,
                uid_next: uids.last().map_or(1, |u| u + 1),
                highest_modseq: 7,
                messages: uids
                    .iter()
                    .map(|uid| store::Message {
                        uid: *uid,
                        flags: self
                            .flags
                            .lock()
                            .unwrap()
                            .get(uid)
                            .copied()
                            .unwrap_or_default(),
                        modseq: 7,
                    })
                    .collect(),
                recent: Vec::new(),
            })
        }
        fn read(&self, _: &str, _: &str, uid: u32) -> Result<(Vec<u8>, i64), StoreError> {
            let text = format!("Subject: message {uid}\r\nX-Other: x\r\n\r\nbody {uid}\r\n");
            Ok((text.into_bytes(), 1_700_000_000))
        }
        fn set_flags(
            &self,
            _: &str,
            _: &str,
            uid: u32,
            f: store::Flags,
        ) -> Result<u64, StoreError> {
            self.flags.lock().unwrap().insert(uid, f);
            Ok(8)
        }
        fn expunge(&self, _: &str, name: &str, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
            let mut f = self.folders.lock().unwrap();
            let list = f.get_mut(name).ok_or(StoreError::NoSuchFolder)?;
            list.retain(|u| !uids.contains(u));
            Ok(uids.to_vec())
        }
    }

    fn session_with(tls: bool, store: Arc<Fake>) -> Session {
        let mut s = Session::new(
            Config {
                hostname: "mx.example.org".into(),
                max_command: 64 * 1024,
                max_errors: 3,
            },
            tls,
            store,
        );
        s.greet();
        s
    }

    fn session(tls: bool) -> Session {
        let store = Fake::default();
        store
            .folders
            .lock()
            .unwrap()
            .insert("INBOX".into(), vec![1, 2]);
        session_with(tls, Arc::new(store))
    }

    /// Logged in as alice.
    fn logged_in(store: Arc<Fake>) -> Session {
        let mut s = session_with(true, store);
        talk(&mut s, "a0 LOGIN alice secret\r\n");
        s.auth_result(AuthOutcome::Accepted("alice@example.org".into()));
        talk(&mut s, "");
        s
    }

    #[test]
    fn select_reports_the_folder_and_noop_the_mail_since() {
        let store = Arc::new(Fake::default());
        store
            .folders
            .lock()
            .unwrap()
            .insert("INBOX".into(), vec![1, 2, 3]);
        let mut s = logged_in(store.clone());
        let (out, _) = talk(&mut s, "s1 SELECT inbox\r\n");
        assert_eq!(
            out,
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)] flags that stay\r\n\
             * 3 EXISTS\r\n\
             * 0 RECENT\r\n\
             * OK [UIDVALIDITY 1700000000] UIDs valid\r\n\
             * OK [UIDNEXT 4] the next UID\r\n\
             * OK [HIGHESTMODSEQ 7] the highest MODSEQ\r\n\
             s1 OK [READ-WRITE] SELECT completed\r\n"
        );
        // UID 2 expunged elsewhere, 4 and 5 delivered.
        store
            .folders
            .lock()
            .unwrap()
            .insert("INBOX".into(), vec![1, 3, 4, 5]);
        let (out, _) = talk(&mut s, "s2 NOOP\r\n");
        assert_eq!(out, "* 2 EXPUNGE\r\n* 4 EXISTS\r\ns2 OK NOOP completed\r\n");
        let (out, _) = talk(&mut s, "s3 EXAMINE Nowhere\r\n");
        assert_eq!(out, "s3 NO [NONEXISTENT] there is no such folder\r\n");
        // The failed EXAMINE left no folder selected.
        let (out, _) = talk(&mut s, "s4 UNSELECT\r\n");
        assert_eq!(out, "s4 BAD no folder is selected\r\n");
    }

    #[test]
    fn list_and_create_folders() {
        let store = Arc::new(Fake::default());
        store.folders.lock().unwrap().insert("INBOX".into(), vec![]);
        let mut s = logged_in(store.clone());
        let (out, _) = talk(
            &mut s,
            "l1 CREATE Archive.2026\r\nl2 CREATE Sent\r\nl3 CREATE Sent\r\n",
        );
        assert_eq!(
            out,
            "l1 OK CREATE completed\r\nl2 OK CREATE completed\r\nl3 NO [ALREADYEXISTS] that folder exists already\r\n"
        );
        let (out, _) = talk(&mut s, "l4 LIST \"\" *\r\n");
        assert_eq!(
            out,
            "* LIST () \".\" Archive.2026\r\n* LIST () \".\" INBOX\r\n* LIST () \".\" Sent\r\nl4 OK LIST completed\r\n"
        );
        let (out, _) = talk(&mut s, "l5 LIST \"\" %\r\n");
        assert!(
            !out.contains("Archive.2026") && out.contains("Sent"),
            "{out}"
        );
        let (out, _) = talk(&mut s, "l6 LIST \"\" \"\"\r\n");
        assert_eq!(
            out,
            "* LIST (\\Noselect) \".\" \"\"\r\nl6 OK LIST completed\r\n"
        );
        let (out, _) = talk(&mut s, "l7 CREATE INBOX\r\n");
        assert!(out.starts_with("l7 NO [ALREADYEXISTS]"), "{out}");
    }

    /// Feeds `input`, runs the session; what it wrote and its step.
    fn talk(s: &mut Session, input: &str) -> (String, Step) {
        s.receive(input.as_bytes());
        let step = s.process();
        (String::from_utf8(s.take_output()).unwrap(), step)
    }

    #[test]
    fn the_greeting_and_capability_tell_what_is_offered() {
        let mut s = session(false);
        let greeting = String::from_utf8(s.take_output()).unwrap();
        assert!(
            greeting.starts_with("* OK [CAPABILITY IMAP4REV1 IMAP4rev2 "),
            "{greeting}"
        );
        assert!(greeting.contains("STARTTLS LOGINDISABLED"), "{greeting}");
        let (out, step) = talk(&mut s, "a1 CAPABILITY\r\n");
        assert_eq!(step, Step::NeedInput);
        assert!(out.starts_with("* CAPABILITY IMAP4REV1 IMAP4rev2"), "{out}");
        assert!(out.ends_with("a1 OK CAPABILITY completed\r\n"), "{out}");
        let (out, _) = talk(&mut session(true), "a1 CAPABILITY\r\n");
        assert!(
            out.contains("AUTH=PLAIN") && !out.contains("STARTTLS"),
            "{out}"
        );
    }

    #[test]
    fn no_login_before_tls_and_starttls_drops_what_came_before() {
        let mut s = session(false);
        s.take_output();
        let (out, _) = talk(&mut s, "a1 LOGIN alice secret\r\n");
        assert_eq!(
            out,
            "a1 NO [PRIVACYREQUIRED] log in only after STARTTLS (or on port 993)\r\n"
        );
        // A command sent along with STARTTLS is not run after the handshake.
        let (out, step) = talk(&mut s, "a2 STARTTLS\r\na3 NOOP\r\n");
        assert_eq!(
            (out.as_str(), step),
            ("a2 OK begin TLS now\r\n", Step::StartTls)
        );
        s.tls_established();
        let (out, step) = talk(&mut s, "");
        assert_eq!((out.as_str(), step), ("", Step::NeedInput));
        let (out, _) = talk(&mut s, "a4 STARTTLS\r\n");
        assert!(out.starts_with("a4 BAD"), "{out}");
    }

    #[test]
    fn login_waits_for_the_password_check() {
        let mut s = session(true);
        s.take_output();
        // The password as a synchronizing literal: a continuation first.
        let (out, step) = talk(&mut s, "a1 LOGIN alice@example.org {6}\r\n");
        assert_eq!((out.as_str(), step), ("+ go on\r\n", Step::NeedInput));
        let (_, step) = talk(&mut s, "secret\r\n");
        assert_eq!(
            step,
            Step::Authenticate(Credentials {
                mechanism: Mechanism::Plain,
                username: "alice@example.org".into(),
                password: "secret".into(),
            })
        );
        // Nothing else runs while the check is under way.
        let (out, step) = talk(&mut s, "a2 NOOP\r\n");
        assert_eq!((out.as_str(), step), ("", Step::NeedInput));
        s.auth_result(AuthOutcome::Accepted("alice@example.org".into()));
        let (out, _) = talk(&mut s, "");
        assert!(out.starts_with("a1 OK [CAPABILITY IMAP4REV1"), "{out}");
        assert!(out.ends_with("a2 OK NOOP completed\r\n"), "{out}");
        assert_eq!(s.account(), Some("alice@example.org"));
    }

    #[test]
    fn authenticate_plain_with_and_without_an_initial_response() {
        let mut s = session(true);
        s.take_output();
        // "\0alice\0secret"
        let (_, step) = talk(&mut s, "a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        assert!(
            matches!(step, Step::Authenticate(c) if c.username == "alice" && c.password == "secret")
        );
        s.auth_result(AuthOutcome::Rejected);
        let (out, _) = talk(&mut s, "");
        assert_eq!(
            out,
            "a1 NO [AUTHENTICATIONFAILED] wrong user name or password\r\n"
        );
        let (out, _) = talk(&mut s, "a2 AUTHENTICATE PLAIN\r\n");
        assert!(out.starts_with('+'), "{out}");
        let (_, step) = talk(&mut s, "AGFsaWNlAHNlY3JldA==\r\n");
        assert!(matches!(step, Step::Authenticate(_)));
        s.auth_result(AuthOutcome::TryLater);
        let (out, _) = talk(&mut s, "");
        assert!(out.starts_with("a2 NO [UNAVAILABLE]"), "{out}");
        // Acting as someone else is refused.
        let (out, _) = talk(&mut s, "a3 AUTHENTICATE PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n");
        assert!(out.starts_with("a3 NO [AUTHORIZATIONFAILED]"), "{out}");
    }

    #[test]
    fn literals_and_commands_have_limits_and_garbage_ends_the_session() {
        let mut s = session(true);
        s.take_output();
        let (out, _) = talk(&mut s, "a1 LOGIN alice {100000}\r\n");
        assert_eq!(out, "a1 BAD that literal is too long\r\n");
        // LITERAL-: more than 4096 bytes without waiting is refused, and
        // the bytes sent are not taken for commands.
        let big = "x".repeat(5000);
        let (out, _) = talk(&mut s, &format!("a2 LOGIN alice {{5000+}}\r\n{big}\r\n"));
        assert!(out.starts_with("a2 BAD"), "{out}");
        let (out, _) = talk(&mut s, "a3 NOOP\r\n");
        assert_eq!(out, "a3 OK NOOP completed\r\n");
        let (out, step) = talk(&mut s, "what\r\n");
        assert!(
            out.starts_with("* BAD") || out.starts_with("what BAD"),
            "{out}"
        );
        assert_eq!(step, Step::NeedInput);
        let (out, step) = talk(&mut s, "x y z\r\n\r\n");
        assert!(out.contains("* BYE too many errors"), "{out}");
        assert_eq!(step, Step::Close);
    }

    #[test]
    fn logout_says_bye_and_closes() {
        let mut s = session(true);
        s.take_output();
        let (out, step) = talk(&mut s, "z LOGOUT\r\n");
        assert_eq!(out, "* BYE logging out\r\nz OK LOGOUT completed\r\n");
        assert_eq!(step, Step::Close);
    }

    #[test]
    fn fetch_store_and_expunge() {
        let store = Arc::new(Fake::default());
        store
            .folders
            .lock()
            .unwrap()
            .insert("INBOX".into(), vec![4, 9, 12]);
        let mut s = logged_in(store.clone());
        talk(&mut s, "s SELECT INBOX\r\n");
        let (out, _) = talk(&mut s, "f1 FETCH 2:* (UID FLAGS RFC822.SIZE)\r\n");
        assert_eq!(
            out,
            "* 2 FETCH (UID 9 FLAGS () RFC822.SIZE 42)\r\n\
             * 3 FETCH (UID 12 FLAGS () RFC822.SIZE 44)\r\n\
             f1 OK FETCH completed\r\n"
        );
        // BODY.PEEK leaves \Seen alone; BODY[] sets it and says so.
        let (out, _) = talk(
            &mut s,
            "f2 UID FETCH 9 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
        );
        assert_eq!(
            out,
            "* 2 FETCH (UID 9 BODY[HEADER.FIELDS (SUBJECT)] {22}\r\nSubject: message 9\r\n\r\n)\r\n\
             f2 OK UID FETCH completed\r\n"
        );
        let (out, _) = talk(&mut s, "f3 FETCH 1 (BODY[TEXT]<0.4>)\r\n");
        assert_eq!(
            out,
            "* 1 FETCH (FLAGS (\\Seen) BODY[TEXT]<0> {4}\r\nbody)\r\nf3 OK FETCH completed\r\n"
        );
        let (out, _) = talk(&mut s, "f4 STORE 1:2 +FLAGS (\\Deleted)\r\n");
        assert_eq!(
            out,
            "* 1 FETCH (FLAGS (\\Deleted \\Seen))\r\n* 2 FETCH (FLAGS (\\Deleted))\r\nf4 OK STORE completed\r\n"
        );
        let (out, _) = talk(&mut s, "f5 UID STORE 12 +FLAGS.SILENT (\\Flagged)\r\n");
        assert_eq!(out, "f5 OK UID STORE completed\r\n");
        let (out, _) = talk(&mut s, "f6 EXPUNGE\r\n");
        assert_eq!(
            out,
            "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\nf6 OK EXPUNGE completed\r\n"
        );
        assert_eq!(store.folders.lock().unwrap()["INBOX"], [12]);
        let (out, _) = talk(&mut s, "f7 FETCH 1 (UID FLAGS)\r\n");
        assert_eq!(
            out,
            "* 1 FETCH (UID 12 FLAGS (\\Flagged))\r\nf7 OK FETCH completed\r\n"
        );
        let (out, _) = talk(&mut s, "f8 FETCH 1 (BINARY[1])\r\n");
        assert!(out.starts_with("f8 NO [CANNOT]"), "{out}");
        // EXAMINE: read-only.
        talk(&mut s, "e EXAMINE INBOX\r\n");
        let (out, _) = talk(&mut s, "f9 STORE 1 +FLAGS (\\Seen)\r\n");
        assert!(out.starts_with("f9 NO [READ-ONLY]"), "{out}");
    }
}
