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

use anyhow::Context as _;

/// Opens (or makes) the inbound checks' database (`<data>/inbound.redb`:
/// greylisting's triplets, the DNSBL cache); one that cannot be read is
/// set aside (`.damaged`) and made anew: what it remembered starts over,
/// no mail is lost.
pub fn open_db(path: &Path) -> anyhow::Result<Arc<redb::Database>> {
    let db = match redb::Database::create(path) {
        Ok(db) => db,
        Err(e) => {
            let aside = path.with_extension("redb.damaged");
            tracing::warn!(
                "{} cannot be read ({e}); set aside as {} and started anew",
                path.display(),
                aside.display()
            );
            std::fs::rename(path, &aside)
                .with_context(|| format!("setting {} aside", path.display()))?;
            redb::Database::create(path).with_context(|| format!("making {}", path.display()))?
        }
    };
    Ok(Arc::new(db))
}
