//! IMAP (RFC 9051, with RFC 3501 compatibility), sans-I/O: the server
//! [`session`]. Parsing and serialising are imap-codec's.

pub mod session;
