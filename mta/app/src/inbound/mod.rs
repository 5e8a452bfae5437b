//! What port 25 checks before it takes a message from a stranger (issue
//! 16): sender authentication (`auth`: SPF, DKIM, ARC, DMARC with
//! mail-auth, one `Authentication-Results:` field) and what follows from
//! it. Authenticated submission skips all of this.

pub mod auth;
pub mod dnsbl;
pub mod greylist;
pub mod junk;
pub mod pregreet;
pub mod rate;
pub mod received;
pub mod reports;
pub mod sanity;

pub use auth::{Action, Verdict};

use std::path::Path;
use std::sync::Arc;

/// What `inbound.redb` may keep in memory: its tables are small (a
/// greylist triplet or a report row is a hundred bytes or so), and the
/// appliance may be a 1 GB Pi (redb's default would be 1 GiB).
const CACHE: usize = 16 << 20;

/// Opens (or makes) the inbound checks' database (`<data>/inbound.redb`:
/// greylisting's triplets, the DNSBL cache, the reports); one that cannot
/// be read is set aside and made anew (`fsutil::open_database`): what it
/// remembered starts over, no mail is lost.
pub fn open_db(path: &Path) -> anyhow::Result<Arc<redb::Database>> {
    let (db, _) = mta_store::fsutil::open_database(
        path,
        "greylisting's triplets, the DNSBL cache and the reports not sent yet start over",
        CACHE,
        |_| Ok(()),
    )?;
    Ok(Arc::new(db))
}
