//! The IMAP session's mail store: each account's Maildir seen through
//! `mta-store`'s [`Mailbox`] index, opened once and kept while the server
//! runs. Errors are logged here; the client hears only what it can act
//! on.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use mta_proto::imap::store::{Flags, Folder, Mailboxes, Message, StoreError};
use mta_store::mailbox::{self, Mailbox};
use mta_store::maildir::Maildirs;

/// What an account's mail may take (bytes), if it has a limit: the
/// configuration's answer at the time of asking.
pub type QuotaOf = Box<dyn Fn(&str) -> Option<u64> + Send + Sync>;

pub struct MailStore {
    maildirs: Maildirs,
    quota_of: QuotaOf,
    hostname: String,
    open: Mutex<HashMap<String, Arc<Mailbox>>>,
    /// Messages appended by this process (part of their unique names).
    appended: std::sync::atomic::AtomicU64,
}

impl MailStore {
    /// The store over `maildirs` (shared with the delivery workers, which
    /// keep its usage counts up to date), with the quotas `quota_of` says.
    pub fn new(maildirs: Maildirs, hostname: &str, quota_of: QuotaOf) -> MailStore {
        MailStore {
            maildirs,
            quota_of,
            hostname: hostname.replace(['/', ':'], "_"),
            open: Mutex::new(HashMap::new()),
            appended: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn mailbox(&self, account: &str) -> Result<Arc<Mailbox>, StoreError> {
        let mut open = self.open.lock().expect("mailboxes");
        if let Some(m) = open.get(account) {
            return Ok(m.clone());
        }
        let m = Mailbox::open(&self.maildirs.path_of(account)).map_err(|e| {
            tracing::error!("the mailbox of {account} cannot be opened: {e:#}");
            StoreError::Failed
        })?;
        let m = Arc::new(m);
        open.insert(account.to_string(), m.clone());
        Ok(m)
    }
}

fn failed(account: &str, what: &str, e: anyhow::Error) -> StoreError {
    tracing::error!("{what} of {account}: {e:#}");
    StoreError::Failed
}

impl MailStore {
    /// Message `uid` of folder `name`, opened, and when it arrived (the
    /// file's modification time, as Maildir readers such as Dovecot take
    /// it).
    fn open_message(
        &self,
        account: &str,
        name: &str,
        uid: u32,
    ) -> Result<(std::fs::File, i64), StoreError> {
        let m = self.mailbox(account)?;
        let message = self.message(&m, account, name, uid)?;
        let file = m
            .open_file(name, &message)
            .map_err(|e| failed(account, "opening a message", e))?
            .ok_or_else(|| StoreError::Invalid(format!("message {uid} is gone")))?;
        let arrived = mailbox::arrival(&file);
        Ok((file, arrived))
    }

    /// The index's message `uid` of folder `name`.
    fn message(
        &self,
        m: &Mailbox,
        account: &str,
        name: &str,
        uid: u32,
    ) -> Result<mailbox::Message, StoreError> {
        m.message(name, uid)
            .map_err(|e| failed(account, &format!("reading {name}"), e))?
            .ok_or_else(|| StoreError::Invalid(format!("there is no message with UID {uid}")))
    }
}

impl Mailboxes for MailStore {
    fn read(&self, account: &str, name: &str, uid: u32) -> Result<(Vec<u8>, i64), StoreError> {
        let (mut file, arrived) = self.open_message(account, name, uid)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| {
            failed(
                account,
                &format!("reading message {uid} of {name}"),
                e.into(),
            )
        })?;
        Ok((crlf(&bytes), arrived))
    }

    fn read_header(
        &self,
        account: &str,
        name: &str,
        uid: u32,
    ) -> Result<(Vec<u8>, i64), StoreError> {
        let (header, arrived) = self
            .mailbox(account)?
            .header(name, uid)
            .map_err(|e| failed(account, &format!("reading message {uid} of {name}"), e))?
            .ok_or_else(|| StoreError::Invalid(format!("message {uid} is gone")))?;
        Ok((crlf(&header), arrived))
    }

    fn set_flags(&self, account: &str, name: &str, uid: u32, f: Flags) -> Result<u64, StoreError> {
        let m = self.mailbox(account)?;
        m.set_flags(name, uid, store_flags(f))
            .map_err(|e| failed(account, &format!("flagging {uid} in {name}"), e))
    }

    fn append(
        &self,
        account: &str,
        name: &str,
        message: &[u8],
        f: Flags,
        date: Option<i64>,
    ) -> Result<(u32, u32), StoreError> {
        let m = self.mailbox(account)?;
        let dir = m.dir_of(name).map_err(|_| StoreError::NoSuchFolder)?;
        if !dir.join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder);
        }
        if let Some((used, limit)) = self.quota(account)?
            && used.saturating_add(message.len() as u64) > limit
        {
            return Err(StoreError::OverQuota);
        }
        let now = mta_store::envelope::now_micros();
        let date = date.unwrap_or((now / 1_000_000) as i64);
        let unique = format!(
            "M{}P{}A{}.{}",
            now % 1_000_000,
            std::process::id(),
            self.appended
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            self.hostname
        );
        let uid = m
            .append(name, &lf(message), store_flags(f), date, &unique)
            .map_err(|e| failed(account, &format!("adding to {name}"), e))?;
        self.maildirs.forget_usage(account);
        let folder = m
            .sync_quietly(name)
            .map_err(|e| failed(account, &format!("reading {name}"), e))?;
        Ok((folder.uid_validity, uid))
    }

    fn copy(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError> {
        self.transfer(account, from, uids, to, false)
    }

    fn move_messages(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError> {
        self.transfer(account, from, uids, to, true)
    }

    fn delete(&self, account: &str, name: &str) -> Result<(), StoreError> {
        let m = self.mailbox(account)?;
        let dir = m.dir_of(name).map_err(|_| StoreError::NoSuchFolder)?;
        if name.eq_ignore_ascii_case("INBOX") {
            return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
        }
        if !dir.join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder);
        }
        let deleted = m
            .delete(name)
            .map_err(|e| failed(account, &format!("deleting {name}"), e));
        self.maildirs.forget_usage(account);
        deleted
    }

    fn rename(&self, account: &str, from: &str, to: &str) -> Result<(), StoreError> {
        let m = self.mailbox(account)?;
        let (old, new) = (
            m.dir_of(from).map_err(|_| StoreError::NoSuchFolder)?,
            m.dir_of(to)
                .map_err(|e| StoreError::Invalid(format!("{e:#}")))?,
        );
        if from.eq_ignore_ascii_case("INBOX") {
            return Err(StoreError::Invalid(
                "renaming INBOX is not served yet".into(),
            ));
        }
        if !old.join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder);
        }
        if new.exists() || to.eq_ignore_ascii_case("INBOX") {
            return Err(StoreError::Exists);
        }
        m.rename(from, to)
            .map_err(|e| failed(account, &format!("renaming {from}"), e))
    }

    fn subscriptions(&self, account: &str) -> Result<Vec<String>, StoreError> {
        self.mailbox(account)?
            .subscriptions()
            .map_err(|e| failed(account, "reading the subscriptions", e))
    }

    fn subscribe(&self, account: &str, name: &str, on: bool) -> Result<(), StoreError> {
        self.mailbox(account)?
            .subscribe(name, on)
            .map_err(|e| failed(account, "changing the subscriptions", e))
    }

    fn expunge(&self, account: &str, name: &str, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let removed = self
            .mailbox(account)?
            .expunge(name, uids)
            .map_err(|e| failed(account, &format!("expunging from {name}"), e));
        self.maildirs.forget_usage(account);
        removed
    }

    fn quota(&self, account: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let Some(limit) = (self.quota_of)(account) else {
            return Ok(None);
        };
        let usage = self
            .maildirs
            .usage(account)
            .map_err(|e| failed(account, "counting the mail", e.into()))?;
        Ok(Some((usage.bytes, limit)))
    }

    fn expunged_since(
        &self,
        account: &str,
        name: &str,
        since: u64,
    ) -> Result<Vec<u32>, StoreError> {
        self.mailbox(account)?
            .expunged_since(name, since)
            .map_err(|e| failed(account, &format!("reading what left {name}"), e))
    }

    fn folders(&self, account: &str) -> Result<Vec<String>, StoreError> {
        self.mailbox(account)?
            .folders()
            .map_err(|e| failed(account, "listing the folders", e))
    }

    fn create(&self, account: &str, name: &str) -> Result<(), StoreError> {
        let m = self.mailbox(account)?;
        let dir = m
            .dir_of(name)
            .map_err(|e| StoreError::Invalid(format!("{e:#}")))?;
        if dir.join("cur").is_dir() {
            return Err(StoreError::Exists);
        }
        m.create(name)
            .map_err(|e| failed(account, &format!("creating {name}"), e))
    }

    fn open(&self, account: &str, name: &str) -> Result<Folder, StoreError> {
        self.folder(account, name, true)
    }

    fn look(&self, account: &str, name: &str) -> Result<Folder, StoreError> {
        self.folder(account, name, false)
    }
}

/// `bytes` with every bare LF as CRLF (Maildir files have LF ends; IMAP
/// counts and sends CRLF).
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16 + 2);
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        match line.strip_suffix(b"\n") {
            Some(text) if !text.ends_with(b"\r") => {
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}

impl MailStore {
    /// COPY or MOVE: `to`'s UIDVALIDITY and the (source, new) UIDs.
    fn transfer(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
        moving: bool,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError> {
        let m = self.mailbox(account)?;
        let target = m.dir_of(to).map_err(|_| StoreError::NoSuchFolder)?;
        if !target.join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder);
        }
        // A copy counts again (Maildir++ quotas count every file), a move
        // does not.
        if !moving
            && let Some((used, limit)) = self.quota(account)?
            && used >= limit
        {
            return Err(StoreError::OverQuota);
        }
        let done = if moving {
            m.move_to(from, uids, to)
        } else {
            m.copy(from, uids, to)
        };
        let verb = if moving { "moving" } else { "copying" };
        let pairs = done.map_err(|e| failed(account, &format!("{verb} to {to}"), e))?;
        self.maildirs.forget_usage(account);
        let folder = m
            .sync_quietly(to)
            .map_err(|e| failed(account, &format!("reading {to}"), e))?;
        Ok((folder.uid_validity, pairs))
    }

    fn folder(&self, account: &str, name: &str, claim: bool) -> Result<Folder, StoreError> {
        let m = self.mailbox(account)?;
        let dir = m.dir_of(name).map_err(|_| StoreError::NoSuchFolder)?;
        if !dir.join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder);
        }
        let f = if claim {
            m.sync(name)
        } else {
            m.sync_quietly(name)
        }
        .map_err(|e| failed(account, &format!("reading {name}"), e))?;
        Ok(Folder {
            uid_validity: f.uid_validity,
            uid_next: f.uid_next,
            highest_modseq: f.highest_modseq,
            messages: f
                .messages
                .into_iter()
                .map(|m| Message {
                    uid: m.uid,
                    flags: flags(m.flags),
                    modseq: m.modseq,
                    size: mta_store::maildir::crlf_size_in_name(&m.base)
                        .and_then(|n| u32::try_from(n).ok()),
                })
                .collect(),
            recent: f.recent,
        })
    }
}

/// CRLF line ends as Maildir keeps them: LF.
fn lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

fn store_flags(f: Flags) -> mailbox::Flags {
    mailbox::Flags {
        seen: f.seen,
        answered: f.answered,
        flagged: f.flagged,
        deleted: f.deleted,
        draft: f.draft,
    }
}

fn flags(f: mailbox::Flags) -> Flags {
    Flags {
        seen: f.seen,
        answered: f.answered,
        flagged: f.flagged,
        deleted: f.deleted,
        draft: f.draft,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_become_crlf_once() {
        assert_eq!(crlf(b"a\nb\r\n\nc"), b"a\r\nb\r\n\r\nc");
        assert_eq!(crlf(b"\n\n"), b"\r\n\r\n");
        assert_eq!(crlf(b""), b"");
        assert_eq!(lf(&crlf(b"x\ny\n")), b"x\ny\n");
    }
}
