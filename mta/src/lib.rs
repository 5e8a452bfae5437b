//! Mailbox's mail server.
//!
//! Mail comes in over SMTP ([`smtp::session`] is the protocol, [`server`] the
//! sockets), is stored durably in the [`queue`] before it is acknowledged, and
//! is delivered by [`delivery`] into [`maildir`]s. Who may receive mail here is
//! decided by the [`directory`], built from the [`config`].

pub mod accounts;
pub mod address;
pub mod body;
pub mod config;
pub mod control;
pub mod delivery;
pub mod directory;
pub mod dkim;
pub mod dsn;
pub mod envelope;
pub mod fsutil;
#[cfg(test)]
mod fuzz;
pub mod logsafe;
pub mod maildir;
pub mod message;
pub mod outbound;
pub mod password;
pub mod queue;
pub mod sasl;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod tls;
