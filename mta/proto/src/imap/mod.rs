//! IMAP (RFC 9051, with RFC 3501 compatibility), sans-I/O: the server
//! [`session`], and the [`store`] it reads and changes folders through.
//! Parsing and serialising are imap-codec's.

pub mod mime;
pub mod session;
pub mod store;
