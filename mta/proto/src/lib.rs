//! Mailbox's protocol cores, sans-I/O.
//!
//! What a peer may send and what we answer, as pure code: [`address`]es and
//! paths, message header fields ([`message`]), [`sasl`] (shared by the SMTP
//! server, the SMTP client and IMAP), the SMTP server session ([`smtp`]) and
//! the IMAP server session ([`imap`], being built). Nothing here reads a socket, a clock, a file or the DNS: the
//! time and new ids come in as arguments, the address directory through a
//! trait. That makes every limit testable without a network and keeps the
//! crate's tests to seconds.
//!
//! Not here: storage (`mta-store`), configuration, DNS and delivery
//! (`mta-app`), sockets (the `mta` binary).

pub mod address;
#[cfg(test)]
mod fuzz;
pub mod imap;
pub mod logsafe;
pub mod message;
pub mod sasl;
pub mod smtp;
