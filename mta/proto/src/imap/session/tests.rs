//! The IMAP session's behaviour, against a store in memory.

use super::*;
use crate::imap::store::{self, StoreError};

/// Folders in memory: name → messages' UIDs; their flags; each
/// message says its UID.
#[derive(Default)]
struct Fake {
    folders: std::sync::Mutex<std::collections::BTreeMap<String, Vec<u32>>>,
    flags: std::sync::Mutex<std::collections::HashMap<u32, store::Flags>>,
    subscribed: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Changes since the folders were made (MODSEQ 7): each flag change
    /// and expunge takes the next MODSEQ.
    changes: std::sync::atomic::AtomicU64,
    modseqs: std::sync::Mutex<std::collections::HashMap<u32, u64>>,
    expunged: std::sync::Mutex<Vec<(u32, u64)>>,
}

impl Fake {
    fn next_modseq(&self) -> u64 {
        7 + 1
            + self
                .changes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }
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
            highest_modseq: 7 + self.changes.load(std::sync::atomic::Ordering::SeqCst),
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
                    modseq: self.modseqs.lock().unwrap().get(uid).copied().unwrap_or(7),
                    size: None,
                })
                .collect(),
            recent: Vec::new(),
        })
    }
    fn look(&self, account: &str, name: &str) -> Result<Folder, StoreError> {
        self.open(account, name)
    }
    fn read(&self, _: &str, _: &str, uid: u32) -> Result<(Vec<u8>, i64), StoreError> {
        let text = format!("Subject: message {uid}\r\nX-Other: x\r\n\r\nbody {uid}\r\n");
        Ok((text.into_bytes(), 1_700_000_000))
    }
    fn read_header(&self, a: &str, n: &str, uid: u32) -> Result<(Vec<u8>, i64), StoreError> {
        let (mut text, arrived) = self.read(a, n, uid)?;
        let end = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        text.truncate(end);
        Ok((text, arrived))
    }
    fn set_flags(&self, _: &str, _: &str, uid: u32, f: store::Flags) -> Result<u64, StoreError> {
        self.flags.lock().unwrap().insert(uid, f);
        let modseq = self.next_modseq();
        self.modseqs.lock().unwrap().insert(uid, modseq);
        Ok(modseq)
    }
    fn quota(&self, _: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let used = self
            .folders
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum::<usize>();
        Ok(Some((used as u64 * 1000, 10_000)))
    }
    fn expunged_since(&self, _: &str, _: &str, since: u64) -> Result<Vec<u32>, StoreError> {
        let e = self.expunged.lock().unwrap();
        Ok(e.iter()
            .filter(|(_, m)| *m > since)
            .map(|(u, _)| *u)
            .collect())
    }
    fn append(
        &self,
        _: &str,
        name: &str,
        _: &[u8],
        f: store::Flags,
        _: Option<i64>,
    ) -> Result<(u32, u32), StoreError> {
        let mut folders = self.folders.lock().unwrap();
        let list = folders.get_mut(name).ok_or(StoreError::NoSuchFolder)?;
        let uid = list.last().map_or(1, |u| u + 1).max(100);
        list.push(uid);
        self.flags.lock().unwrap().insert(uid, f);
        Ok((1700000000, uid))
    }
    fn copy(
        &self,
        _: &str,
        _: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError> {
        let mut folders = self.folders.lock().unwrap();
        let list = folders.get_mut(to).ok_or(StoreError::NoSuchFolder)?;
        let mut pairs = Vec::new();
        for uid in uids {
            let new = list.last().map_or(1, |u| u + 1);
            list.push(new);
            pairs.push((*uid, new));
        }
        Ok((1700000001, pairs))
    }
    fn move_messages(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError> {
        let done = self.copy(account, from, uids, to)?;
        self.expunge(account, from, uids)?;
        Ok(done)
    }
    fn delete(&self, _: &str, name: &str) -> Result<(), StoreError> {
        self.folders
            .lock()
            .unwrap()
            .remove(name)
            .map(drop)
            .ok_or(StoreError::NoSuchFolder)
    }
    fn rename(&self, _: &str, from: &str, to: &str) -> Result<(), StoreError> {
        let mut f = self.folders.lock().unwrap();
        let list = f.remove(from).ok_or(StoreError::NoSuchFolder)?;
        f.insert(to.into(), list);
        Ok(())
    }
    fn subscriptions(&self, _: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.subscribed.lock().unwrap().iter().cloned().collect())
    }
    fn subscribe(&self, _: &str, name: &str, on: bool) -> Result<(), StoreError> {
        let mut s = self.subscribed.lock().unwrap();
        if on {
            s.insert(name.into());
        } else {
            s.remove(name);
        }
        Ok(())
    }
    fn expunge(&self, _: &str, name: &str, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let mut f = self.folders.lock().unwrap();
        let list = f.get_mut(name).ok_or(StoreError::NoSuchFolder)?;
        list.retain(|u| !uids.contains(u));
        let modseq = self.next_modseq();
        self.expunged
            .lock()
            .unwrap()
            .extend(uids.iter().map(|u| (*u, modseq)));
        Ok(uids.to_vec())
    }
}

fn session_with(tls: bool, store: Arc<Fake>) -> Session {
    let mut s = Session::new(
        Config {
            hostname: "mx.example.org".into(),
            max_command: 64 * 1024,
            max_append: 1 << 20,
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
        "l1 CREATE Archive.2026\r\nl2 CREATE Notes\r\nl3 CREATE Notes\r\n",
    );
    assert_eq!(
        out,
        "l1 OK CREATE completed\r\nl2 OK CREATE completed\r\nl3 NO [ALREADYEXISTS] that folder exists already\r\n"
    );
    let (out, _) = talk(&mut s, "l4 LIST \"\" *\r\n");
    assert_eq!(
        out,
        "* LIST (\\HasChildren \\Archive) \".\" Archive\r\n\
         * LIST (\\HasNoChildren) \".\" Archive.2026\r\n\
         * LIST (\\HasNoChildren \\Drafts) \".\" Drafts\r\n\
         * LIST (\\HasNoChildren) \".\" INBOX\r\n\
         * LIST (\\HasNoChildren \\Junk) \".\" Junk\r\n\
         * LIST (\\HasNoChildren) \".\" Notes\r\n\
         * LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n\
         * LIST (\\HasNoChildren \\Trash) \".\" Trash\r\n\
         l4 OK LIST completed\r\n"
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
        greeting.starts_with("* OK [CAPABILITY IMAP4REV1 IMAP4rev2 LITERAL- "),
        "{greeting}"
    );
    assert!(greeting.contains("STARTTLS LOGINDISABLED"), "{greeting}");
    let (out, step) = talk(&mut s, "a1 CAPABILITY\r\n");
    assert_eq!(step, Step::NeedInput);
    assert!(
        out.starts_with("* CAPABILITY IMAP4REV1 IMAP4rev2 LITERAL-"),
        "{out}"
    );
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
    let (out, _) = talk(&mut s, "f8 FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n");
    assert_eq!(
        out,
        "* 1 FETCH (BINARY[1] {9}\r\nbody 12\r\n BINARY.SIZE[1] 9)\r\nf8 OK FETCH completed\r\n"
    );
    // EXAMINE: read-only.
    talk(&mut s, "e EXAMINE INBOX\r\n");
    let (out, _) = talk(&mut s, "f9 STORE 1 +FLAGS (\\Seen)\r\n");
    assert!(out.starts_with("f9 NO [READ-ONLY]"), "{out}");
}

#[test]
fn append_copy_move_status_and_the_rest() {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1, 2]);
    store
        .folders
        .lock()
        .unwrap()
        .insert("Archive".into(), vec![]);
    let mut s = logged_in(store.clone());
    // APPEND with a synchronizing literal: the continuation, then
    // APPENDUID.
    let (out, _) = talk(&mut s, "a1 APPEND Archive (\\Seen) {9}\r\n");
    assert_eq!(out, "+ go on\r\n");
    let (out, _) = talk(&mut s, "Subject:x\r\n");
    assert_eq!(out, "a1 OK [APPENDUID 1700000000 100] APPEND completed\r\n");
    let (out, _) = talk(&mut s, "a2 APPEND Nowhere {1+}\r\nx\r\n");
    assert_eq!(out, "a2 NO [TRYCREATE] there is no such folder\r\n");
    let (out, _) = talk(&mut s, "a3 APPEND INBOX {2000000}\r\n");
    assert_eq!(
        out,
        "a3 NO [TOOBIG] the message is larger than the limit\r\n"
    );
    let (out, _) = talk(&mut s, "a4 STATUS Archive (MESSAGES UIDNEXT UNSEEN)\r\n");
    assert_eq!(
        out,
        "* STATUS Archive (MESSAGES 1 UIDNEXT 101 UNSEEN 0)\r\na4 OK STATUS completed\r\n"
    );
    talk(&mut s, "s SELECT INBOX\r\n");
    let (out, _) = talk(&mut s, "c1 UID COPY 1:2 Archive\r\n");
    assert_eq!(
        out,
        "c1 OK [COPYUID 1700000001 1,2 101,102] UID COPY completed\r\n"
    );
    let (out, _) = talk(&mut s, "c2 MOVE 1 Archive\r\n");
    assert_eq!(
        out,
        "* OK [COPYUID 1700000001 1 103] moved\r\n* 1 EXPUNGE\r\nc2 OK MOVE completed\r\n"
    );
    assert_eq!(store.folders.lock().unwrap()["INBOX"], [2]);
    let (out, _) = talk(&mut s, "c3 COPY 1 Nowhere\r\n");
    assert!(out.starts_with("c3 NO [TRYCREATE]"), "{out}");
    // Subscriptions, namespace, rename, delete, ID, ENABLE.
    let (out, _) = talk(&mut s, "l1 SUBSCRIBE Archive\r\nl2 LSUB \"\" *\r\n");
    assert_eq!(
        out,
        "l1 OK SUBSCRIBE completed\r\n* LSUB (\\Archive) \".\" Archive\r\n* LSUB (\\Drafts) \".\" Drafts\r\n\
         * LSUB (\\Junk) \".\" Junk\r\n* LSUB (\\Sent) \".\" Sent\r\n* LSUB (\\Trash) \".\" Trash\r\n\
         l2 OK LSUB completed\r\n"
    );
    let (out, _) = talk(&mut s, "n1 NAMESPACE\r\n");
    assert_eq!(
        out,
        "* NAMESPACE ((\"\" \".\")) NIL NIL\r\nn1 OK NAMESPACE completed\r\n"
    );
    let (out, _) = talk(
        &mut s,
        "r1 RENAME Archive Old\r\nr2 DELETE Old\r\nr3 DELETE Old\r\n",
    );
    assert_eq!(
        out,
        "r1 OK RENAME completed\r\nr2 OK DELETE completed\r\nr3 NO [NONEXISTENT] there is no such folder\r\n"
    );
    let (out, _) = talk(&mut s, "i1 ID NIL\r\ne1 ENABLE CONDSTORE\r\n");
    assert!(
        out.starts_with("* ID (\"name\" \"Mailbox\" \"version\" "),
        "{out}"
    );
    assert!(
        out.ends_with("* ENABLED CONDSTORE\r\ne1 OK ENABLE completed\r\n"),
        "{out}"
    );
}

#[test]
fn search_by_flags_and_sets_and_only_in_known_charsets() {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![3, 5, 8]);
    store.flags.lock().unwrap().insert(
        5,
        store::Flags {
            seen: true,
            ..store::Flags::default()
        },
    );
    let mut s = logged_in(store);
    talk(&mut s, "s SELECT INBOX\r\n");
    let (out, _) = talk(
        &mut s,
        "q1 SEARCH UNSEEN\r\nq2 UID SEARCH SEEN\r\nq3 SEARCH 2:* NOT SEEN\r\n",
    );
    assert_eq!(
        out,
        "* SEARCH 1 3\r\nq1 OK SEARCH completed\r\n* SEARCH 5\r\nq2 OK UID SEARCH completed\r\n* SEARCH 3\r\nq3 OK SEARCH completed\r\n"
    );
    let (out, _) = talk(&mut s, "q4 SEARCH SUBJECT \"message 8\"\r\n");
    assert_eq!(out, "* SEARCH 3\r\nq4 OK SEARCH completed\r\n");
    let (out, _) = talk(&mut s, "q5 SEARCH CHARSET KOI8-R ALL\r\n");
    assert_eq!(
        out,
        "q5 NO [BADCHARSET (UTF-8 US-ASCII)] search in UTF-8 or US-ASCII\r\n"
    );
}

#[test]
fn idle_hears_of_new_mail_until_done() {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1]);
    let mut s = logged_in(store.clone());
    talk(&mut s, "s SELECT INBOX\r\n");
    let (out, step) = talk(&mut s, "i IDLE\r\n");
    assert_eq!((out.as_str(), step), ("+ idling\r\n", Step::Idle));
    s.tick();
    assert_eq!(s.take_output(), b"", "nothing new");
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1, 2]);
    s.tick();
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "* 2 EXISTS\r\n"
    );
    let (out, step) = talk(&mut s, "DONE\r\n");
    assert_eq!(
        (out.as_str(), step),
        ("i OK IDLE completed\r\n", Step::NeedInput)
    );
    // Anything but DONE ends it too, as an error.
    talk(&mut s, "j IDLE\r\n");
    let (out, _) = talk(&mut s, "NOOP\r\n");
    assert_eq!(out, "j BAD IDLE ends with DONE\r\n");
}

#[test]
fn close_expunges_silently_and_deselects() {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1, 2]);
    let mut s = logged_in(store.clone());
    talk(&mut s, "s SELECT INBOX\r\n");
    talk(&mut s, "f STORE 1 +FLAGS.SILENT (\\Deleted)\r\n");
    let (out, _) = talk(&mut s, "c CLOSE\r\n");
    assert_eq!(out, "c OK CLOSE completed\r\n");
    assert_eq!(store.folders.lock().unwrap()["INBOX"], [2]);
    let (out, _) = talk(&mut s, "d CLOSE\r\n");
    assert_eq!(out, "d BAD no folder is selected\r\n");
}

#[test]
fn condstore_and_qresync_tell_only_what_changed() {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1, 2, 3]);
    let mut s = logged_in(store.clone());
    let seen = store::Flags {
        seen: true,
        ..Default::default()
    };
    let (out, _) = talk(&mut s, "q0 SELECT INBOX (QRESYNC (1700000000 7))\r\n");
    assert!(out.starts_with("q0 BAD"), "{out}");
    let (out, _) = talk(&mut s, "e ENABLE QRESYNC\r\n");
    assert_eq!(out, "* ENABLED QRESYNC\r\ne OK ENABLE completed\r\n");
    // Another session reads message 2 (MODSEQ 8) and expunges 3 (9).
    store.set_flags("", "INBOX", 2, seen).unwrap();
    store.expunge("", "INBOX", &[3]).unwrap();
    let (out, _) = talk(&mut s, "q1 SELECT INBOX (QRESYNC (1700000000 7 1:3))\r\n");
    assert!(out.contains("* OK [HIGHESTMODSEQ 9]"), "{out}");
    assert!(
        out.contains(
            "* VANISHED (EARLIER) 3\r\n* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (8))\r\nq1 OK [READ-WRITE]"
        ),
        "{out}"
    );
    // A copy of another UIDVALIDITY hears nothing of changes: it starts
    // over. Switching folders says the first is closed.
    let (out, _) = talk(&mut s, "q2 EXAMINE INBOX (QRESYNC (42 7))\r\n");
    assert!(out.starts_with("* OK [CLOSED]"), "{out}");
    assert!(!out.contains("FETCH") && !out.contains("VANISHED"), "{out}");
    let (out, _) = talk(&mut s, "q3 SELECT INBOX\r\n");
    assert!(out.contains("q3 OK"), "{out}");

    let (out, _) = talk(
        &mut s,
        "f UID FETCH 1:* (FLAGS) (CHANGEDSINCE 7 VANISHED)\r\n",
    );
    assert_eq!(
        out,
        "* VANISHED (EARLIER) 3\r\n* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (8))\r\nf OK UID FETCH completed\r\n"
    );
    let (out, _) = talk(&mut s, "v FETCH 1:* (FLAGS) (CHANGEDSINCE 7 VANISHED)\r\n");
    assert!(out.starts_with("v BAD"), "{out}");

    // Message 1 is unchanged since 7 and is flagged; 2 changed at 8 and
    // is left alone.
    let (out, _) = talk(
        &mut s,
        "st STORE 1:2 (UNCHANGEDSINCE 7) +FLAGS.SILENT (\\Flagged)\r\n",
    );
    assert_eq!(
        out,
        "* 1 FETCH (MODSEQ (10))\r\nst OK [MODIFIED 2] STORE completed\r\n"
    );
    assert!(store.flags.lock().unwrap()[&1].flagged);
    assert!(!store.flags.lock().unwrap()[&2].flagged);

    // Another session flags 2 and expunges 1: NOOP tells VANISHED and
    // the new flags with their MODSEQ.
    let flagged = store::Flags {
        flagged: true,
        ..seen
    };
    store.set_flags("", "INBOX", 2, flagged).unwrap();
    store.expunge("", "INBOX", &[1]).unwrap();
    let (out, _) = talk(&mut s, "n NOOP\r\n");
    assert_eq!(
        out,
        "* VANISHED 1\r\n* 1 EXISTS\r\n* 1 FETCH (UID 2 FLAGS (\\Flagged \\Seen) MODSEQ (11))\r\nn OK NOOP completed\r\n"
    );
    let (out, _) = talk(&mut s, "x SEARCH MODSEQ 11\r\ny SEARCH MODSEQ 13\r\n");
    assert_eq!(
        out,
        "* SEARCH 1 (MODSEQ 11)\r\nx OK SEARCH completed\r\n* SEARCH\r\ny OK SEARCH completed\r\n"
    );
}

#[test]
fn condstore_is_on_once_used_and_expunge_stays_expunge_without_qresync() {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1, 2]);
    let mut s = logged_in(store.clone());
    talk(&mut s, "s SELECT INBOX\r\n");
    let (out, _) = talk(&mut s, "a STORE 1 +FLAGS (\\Deleted)\r\n");
    assert_eq!(
        out,
        "* 1 FETCH (FLAGS (\\Deleted))\r\na OK STORE completed\r\n"
    );
    let (out, _) = talk(
        &mut s,
        "b FETCH 2 (MODSEQ)\r\nc STORE 2 +FLAGS (\\Seen)\r\n",
    );
    assert_eq!(
        out,
        "* 2 FETCH (MODSEQ (7))\r\nb OK FETCH completed\r\n* 2 FETCH (FLAGS (\\Seen) MODSEQ (9))\r\nc OK STORE completed\r\n"
    );
    let (out, _) = talk(&mut s, "d EXPUNGE\r\n");
    assert_eq!(out, "* 1 EXPUNGE\r\nd OK EXPUNGE completed\r\n");
}

#[test]
fn quota_is_one_root_over_every_folder() {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), vec![1, 2, 3]);
    let mut s = logged_in(store);
    let (out, _) = talk(&mut s, "q1 GETQUOTAROOT INBOX\r\n");
    // 3 messages of 1000 bytes of 10,000, in units of 1024 bytes.
    assert_eq!(
        out,
        "* QUOTAROOT INBOX \"\"\r\n* QUOTA \"\" (STORAGE 3 10)\r\nq1 OK GETQUOTAROOT completed\r\n"
    );
    let (out, _) = talk(&mut s, "q2 GETQUOTA \"\"\r\nq3 GETQUOTA other\r\n");
    assert_eq!(
        out,
        "* QUOTA \"\" (STORAGE 3 10)\r\nq2 OK GETQUOTA completed\r\nq3 NO [NONEXISTENT] there is no such quota root\r\n"
    );
    let (out, _) = talk(&mut s, "q4 SETQUOTA \"\" (STORAGE 100)\r\n");
    assert!(out.starts_with("q4 NO [NOPERM]"), "{out}");
}

#[test]
fn a_long_fetch_is_answered_a_slice_at_a_time() {
    let store = Arc::new(Fake::default());
    store
        .folders
        .lock()
        .unwrap()
        .insert("INBOX".into(), (1..=20_000).collect());
    let mut s = logged_in(store);
    talk(&mut s, "s EXAMINE INBOX\r\n");
    let (first, step) = talk(&mut s, "f FETCH 1:* BODY.PEEK[]\r\n");
    assert_eq!(step, Step::Flush);
    assert!(first.len() < 2 * fetch::OUTPUT_HIGH, "{}", first.len());
    let mut all = first;
    let mut slices = 1;
    loop {
        let step = s.process();
        all.push_str(&String::from_utf8(s.take_output()).unwrap());
        slices += 1;
        if step != Step::Flush {
            assert_eq!(step, Step::NeedInput);
            break;
        }
    }
    assert!(slices > 3, "{slices}");
    assert_eq!(all.matches(" FETCH (BODY[] {").count(), 20_000);
    assert!(all.contains("* 20000 FETCH (BODY[] {"), "the last one");
    assert!(all.ends_with("f OK FETCH completed\r\n"));
    // Commands sent meanwhile wait for the FETCH to finish.
    let (out, _) = talk(&mut s, "n NOOP\r\n");
    assert_eq!(out, "n OK NOOP completed\r\n");
}

mod fuzz;
mod rev2;
