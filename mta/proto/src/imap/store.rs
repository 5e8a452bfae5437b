//! What the IMAP session needs from the mail store, as a trait (the store
//! is `mta-store`'s, behind `mta-app`): folders, and a folder's state
//! brought up to date with the Maildir. Calls may touch the disk: the
//! adapter runs the session off the event loop.

/// The system flags a message can carry (RFC 9051 §2.3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub deleted: bool,
    pub draft: bool,
}

/// One message of a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    pub flags: Flags,
    pub modseq: u64,
    /// RFC822.SIZE when the store knows it without reading the message.
    pub size: Option<u32>,
}

/// A folder as SELECT shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    /// By UID: sequence number n is `messages[n - 1]`.
    pub messages: Vec<Message>,
    /// UIDs new to this session (IMAP4rev1's \Recent: the first session
    /// to look sees them so).
    pub recent: Vec<u32>,
}

/// A refusal, in words for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("there is no such folder")]
    NoSuchFolder,
    #[error("that folder exists already")]
    Exists,
    #[error("{0}")]
    Invalid(String),
    /// The account's quota leaves no room (RFC 9208 OVERQUOTA).
    #[error("the mailbox is full: delete or move some mail first")]
    OverQuota,
    /// A failure of the store (logged by it); the client hears only that.
    #[error("the server could not do that; try again later")]
    Failed,
}

/// The folders every account has (RFC 6154 SPECIAL-USE), made at the
/// first login: name and attribute.
pub const SPECIAL: [(&str, &str); 5] = [
    ("Drafts", "Drafts"),
    ("Sent", "Sent"),
    ("Archive", "Archive"),
    ("Junk", "Junk"),
    ("Trash", "Trash"),
];

pub trait Mailboxes: Send + Sync {
    /// `account`'s folders, `INBOX` first; the hierarchy separator is ".".
    fn folders(&self, account: &str) -> Result<Vec<String>, StoreError>;
    fn create(&self, account: &str, name: &str) -> Result<(), StoreError>;
    /// The folder, brought up to date with what was delivered meanwhile;
    /// the messages new to sessions are this session's (`recent`).
    fn open(&self, account: &str, name: &str) -> Result<Folder, StoreError>;
    /// The folder as [`Mailboxes::open`] has it, without making anything
    /// this session's (STATUS).
    fn look(&self, account: &str, name: &str) -> Result<Folder, StoreError>;
    /// Message `uid` of the folder as IMAP sees it (CRLF line ends), and
    /// when it arrived (unix seconds).
    fn read(&self, account: &str, name: &str, uid: u32) -> Result<(Vec<u8>, i64), StoreError>;
    /// The header section of message `uid` (CRLF line ends, the empty line
    /// included), read without the rest, and when it arrived.
    fn read_header(
        &self,
        account: &str,
        name: &str,
        uid: u32,
    ) -> Result<(Vec<u8>, i64), StoreError>;
    /// Gives message `uid` these flags; its new MODSEQ.
    fn set_flags(
        &self,
        account: &str,
        name: &str,
        uid: u32,
        flags: Flags,
    ) -> Result<u64, StoreError>;
    /// The UIDs expunged from the folder after MODSEQ `since` (QRESYNC's
    /// VANISHED (EARLIER)), ascending.
    fn expunged_since(&self, account: &str, name: &str, since: u64)
    -> Result<Vec<u32>, StoreError>;
    /// Removes these messages; the UIDs removed.
    fn expunge(&self, account: &str, name: &str, uids: &[u32]) -> Result<Vec<u32>, StoreError>;
    /// Adds `message` (CRLF line ends) with `flags`, arrived at `date`
    /// (unix seconds; now when `None`); the folder's UIDVALIDITY and the
    /// new UID.
    fn append(
        &self,
        account: &str,
        name: &str,
        message: &[u8],
        flags: Flags,
        date: Option<i64>,
    ) -> Result<(u32, u32), StoreError>;
    /// Copies messages `uids` of `from` into `to`; `to`'s UIDVALIDITY and
    /// the (source, copy) UIDs.
    fn copy(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError>;
    /// Moves messages `uids` of `from` into `to` (each always in one of
    /// the two); `to`'s UIDVALIDITY and the (source, new) UIDs.
    fn move_messages(
        &self,
        account: &str,
        from: &str,
        uids: &[u32],
        to: &str,
    ) -> Result<(u32, Vec<(u32, u32)>), StoreError>;
    fn delete(&self, account: &str, name: &str) -> Result<(), StoreError>;
    fn rename(&self, account: &str, from: &str, to: &str) -> Result<(), StoreError>;
    /// The folders subscribed to (LSUB).
    fn subscriptions(&self, account: &str) -> Result<Vec<String>, StoreError>;
    fn subscribe(&self, account: &str, name: &str, on: bool) -> Result<(), StoreError>;
    /// What the account's mail takes and may take, in bytes, when it has
    /// a quota (RFC 9208: one root, "", over all its folders).
    fn quota(&self, account: &str) -> Result<Option<(u64, u64)>, StoreError>;
}
