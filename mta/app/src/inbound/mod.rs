//! What port 25 checks before it takes a message from a stranger (issue
//! 16): sender authentication (`auth`: SPF, DKIM, ARC, DMARC with
//! mail-auth, one `Authentication-Results:` field) and what follows from
//! it. Authenticated submission skips all of this.

pub mod auth;
pub mod greylist;
pub mod junk;
pub mod pregreet;

pub use auth::{Action, Verdict};
