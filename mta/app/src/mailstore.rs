//! The IMAP session's mail store: each account's Maildir seen through
//! `mta-store`'s [`Mailbox`] index, opened once and kept while the server
//! runs. Errors are logged here; the client hears only what it can act
//! on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mta_proto::imap::store::{Flags, Folder, Mailboxes, Message, StoreError};
use mta_store::mailbox::{self, Mailbox};
use mta_store::maildir::Maildirs;

pub struct MailStore {
    maildirs: Maildirs,
    open: Mutex<HashMap<String, Arc<Mailbox>>>,
}

impl MailStore {
    pub fn new(root: PathBuf, hostname: &str) -> MailStore {
        MailStore {
            maildirs: Maildirs::new(root, hostname),
            open: Mutex::new(HashMap::new()),
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

impl Mailboxes for MailStore {
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
        let m = self.mailbox(account)?;
        let dir = m.dir_of(name).map_err(|_| StoreError::NoSuchFolder)?;
        if !dir.join("cur").is_dir() {
            return Err(StoreError::NoSuchFolder);
        }
        let f = m
            .sync(name)
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
                })
                .collect(),
        })
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
