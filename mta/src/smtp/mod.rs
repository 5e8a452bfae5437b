//! SMTP: the sans-IO server session. The socket side lives in
//! [`crate::server`].

pub mod session;
