//! IMAP, sans-I/O: the server [`session`] (IMAP4rev1, RFC 3501, with the
//! extensions it advertises; IMAP4rev2, RFC 9051, where they agree), the
//! [`mime`] structure it describes messages by, and the [`store`] it reads
//! and changes folders through. Parsing and serialising are imap-codec's.

pub mod mime;
pub mod session;
pub mod store;
