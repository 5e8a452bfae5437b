//! SMTP: the sans-IO server session. The socket side lives in the `mta`
//! binary (`serve`).

pub mod session;
