//! Mailbox's mail server logic, between the protocol cores (`mta-proto`)
//! and durable state (`mta-store`), used by the `mta` binary's sockets.
//!
//! Mail comes in through a session whose finished messages [`intake`] signs
//! and stores; [`delivery`] takes them from the queue into Maildirs or
//! [`outbound`] to other servers, and [`bounce`]s what fails; every DNS question goes through [`dns`]. Who may receive
//! and send mail here is decided by the [`directory`], built from the
//! [`config`]; logins are checked and limited by [`auth`] for every
//! protocol. [`settings`] is the snapshot a reload swaps whole; [`admin`]
//! is the operations the CLI and the control socket share.
//!
//! Not here: sockets, listeners and the runtime (the `mta` binary).

pub mod accounts;
pub mod acme;
pub mod admin;
pub mod aliases;
pub mod auth;
pub mod bounce;
pub mod config;
pub mod daily;
pub mod delivery;
pub mod directory;
pub mod dkim;
pub mod dns;
pub mod dnscheck;
pub mod dsn;
pub mod feed;
#[cfg(test)]
mod fuzz;
pub mod inbound;
pub mod intake;
pub mod logring;
pub mod mailstore;
pub mod outbound;
pub mod password;
pub mod records;
pub mod relays;
pub mod reporter;
pub mod settings;
pub mod srs;
pub mod stats;
pub mod tls;
pub mod update;
