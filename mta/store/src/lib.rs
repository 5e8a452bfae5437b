//! Mailbox's durable state: the [`queue`] (envelopes and per-recipient state
//! in redb, written by one thread with group commit; message bodies beside
//! it), the [`envelope`] record with its format version, message [`body`]
//! content and its [`spool`] while it arrives, local delivery into
//! [`maildir`]s, their IMAP view ([`mailbox`]: folders, UIDs, flags,
//! MODSEQs), the data's [`format`] number and its migrations, and the
//! fsync helpers of [`fsutil`].
//!
//! The contract kept here: what [`queue::Queue::intake`] acknowledged is on
//! stable storage, and a delivery is recorded only after it is durable.
//!
//! Not here: protocols (`mta-proto`), what an address means or where mail
//! goes (`mta-app`).

pub mod body;
pub mod envelope;
pub mod format;
pub mod fsutil;
pub mod mailbox;
pub mod maildir;
pub mod queue;
pub mod spool;
