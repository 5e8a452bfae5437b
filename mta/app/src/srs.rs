//! The Sender Rewriting Scheme, as postsrsd (libsrs2) and Mail::SRS do it,
//! in their address format, so that another implementation with the same
//! secret reads our addresses and we read its.
//!
//! Mail from a stranger that an alias forwards to another domain leaves
//! with its envelope sender rewritten into one of our domains —
//! `SRS0=HHHH=TT=sender.example=user@our.domain` — so it passes SPF where
//! it arrives. `HHHH` is the first four base64 characters of an HMAC-SHA1,
//! keyed with the secret, of the lower-cased timestamp, domain and user;
//! `TT` the day (base32, modulo 1,024). A bounce to such an address comes
//! back here and goes on to `user@sender.example` only if the hash is ours
//! and the day no more than [`MAX_AGE_DAYS`] ago: an address nobody made
//! with our secret is refused. (The hash is 24 bits, as libsrs2's; SRS1
//! addresses carry no day, as in libsrs2: they lead only back to the first
//! forwarder.)
//!
//! An address that is already `SRS0` (another forwarder's) becomes
//! `SRS1=HHHH=their.domain==HHHH=TT=…@our.domain`, and an `SRS1` keeps its
//! first forwarder and gets our hash: a bounce then goes straight back to
//! the first forwarder, which holds the original sender.
//!
//! The secret is `<data>/srs.secret`, made on first start: one secret per
//! line, the first signs, each verifies (a new first line rolls the secret
//! over without breaking the addresses already out).

use std::path::Path;

use anyhow::Context;
use ring::hmac;

/// How long a rewritten address takes bounces (days; libsrs2's default).
pub const MAX_AGE_DAYS: u64 = 21;
const HASH_LEN: usize = 4;
const DAY: u64 = 86_400;
/// Days are counted modulo this (two base32 characters).
const SLOTS: u64 = 1024;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const FILE: &str = "srs.secret";
/// A secret file larger than this is not one of ours.
const MAX_FILE: u64 = 64 * 1024;

/// Why an address that looks rewritten is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    #[error("the rewritten address is malformed")]
    Malformed,
    #[error("the rewritten address is more than {MAX_AGE_DAYS} days old")]
    Expired,
    #[error("the rewritten address was not made here (its hash does not match)")]
    BadHash,
}

/// Not `Debug`-printed with its keys.
pub struct Srs {
    /// The first signs; each verifies.
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Srs({} secrets)", self.keys.len())
    }
}

impl Srs {
    /// Rewriting with these secrets (the first signs).
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Srs {
        assert!(!secrets.is_empty(), "SRS needs a secret");
        Srs {
            keys: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, s.as_ref()))
                .collect(),
        }
    }

    /// The secrets in `<data_dir>/srs.secret`, made (32 random bytes,
    /// base64, mode 0600) when there is none.
    pub fn open(data_dir: &Path) -> anyhow::Result<Srs> {
        let path = data_dir.join(FILE);
        if !path.exists() {
            let mut secret = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                .map_err(|_| anyhow::anyhow!("no random numbers for the SRS secret"))?;
            let line = format!(
                "{}\n",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret)
            );
            mta_store::fsutil::write_atomically(&path, line.as_bytes(), 0o600)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        let size = std::fs::metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        anyhow::ensure!(
            size <= MAX_FILE,
            "{} is {size} bytes: not an SRS secret file (one secret per line)",
            path.display()
        );
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let secrets: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        anyhow::ensure!(
            !secrets.is_empty(),
            "{} holds no secret (one per line; remove the file to have a new one made)",
            path.display()
        );
        Ok(Srs::new(&secrets))
    }

    /// The envelope sender for `sender` (`user@domain`) forwarded from
    /// `domain` (one of ours) at `now` (unix seconds); `None` for the null
    /// sender, an address without a domain, or one whose rewriting would
    /// pass the 256 octets of a path (RFC 5321 §4.5.3.1.3): they stay as
    /// they are.
    pub fn forward(&self, sender: &str, domain: &str, now: u64) -> Option<String> {
        self.rewrite(sender, domain, now)
            .filter(|a| a.len() <= mta_proto::address::MAX_PATH - 2)
    }

    fn rewrite(&self, sender: &str, domain: &str, now: u64) -> Option<String> {
        let (user, host) = sender.rsplit_once('@')?;
        if user.is_empty() || host.is_empty() {
            return None;
        }
        if let Some(rest) = tagged(user, "SRS0") {
            // Another forwarder's: bounces go back to it. `rest` keeps
            // its separator (`=HHHH=TT=…`), hence the `==` of SRS1.
            let hash = self.hash(0, &[host, rest]);
            return Some(format!("SRS1={hash}={host}={rest}@{domain}"));
        }
        if let Some(rest) = tagged(user, "SRS1") {
            // Already forwarded twice: keep the first forwarder, with our
            // hash (a malformed one is treated as an ordinary address).
            if let Some((_, first, opaque)) = split3(rest) {
                let hash = self.hash(0, &[first, opaque]);
                return Some(format!("SRS1={hash}={first}={opaque}@{domain}"));
            }
        }
        let stamp = timestamp(now);
        let hash = self.hash(0, &[&stamp, host, user]);
        Some(format!("SRS0={hash}={stamp}={host}={user}@{domain}"))
    }

    /// Where a bounce to the local part `local` goes: `None` when it is
    /// not a rewritten address; the original sender (or, for `SRS1`, the
    /// first forwarder's `SRS0` address) when it is ours and fresh.
    pub fn reverse(&self, local: &str, now: u64) -> Result<Option<String>, SrsError> {
        if let Some(rest) = tagged(local, "SRS0") {
            let (hash, stamp, rest) = split3(rest).ok_or(SrsError::Malformed)?;
            let (host, user) = rest.split_once('=').ok_or(SrsError::Malformed)?;
            if host.is_empty() || user.is_empty() {
                return Err(SrsError::Malformed);
            }
            check_timestamp(stamp, now)?;
            self.check_hash(hash, &[stamp, host, user])?;
            return Ok(Some(format!("{user}@{host}")));
        }
        if let Some(rest) = tagged(local, "SRS1") {
            let (hash, host, opaque) = split3(rest).ok_or(SrsError::Malformed)?;
            if host.is_empty() || opaque.is_empty() {
                return Err(SrsError::Malformed);
            }
            self.check_hash(hash, &[host, opaque])?;
            return Ok(Some(format!("SRS0{opaque}@{host}")));
        }
        Ok(None)
    }

    fn hash(&self, key: usize, data: &[&str]) -> String {
        let mut ctx = hmac::Context::with_key(&self.keys[key]);
        for d in data {
            ctx.update(d.to_ascii_lowercase().as_bytes());
        }
        let tag = ctx.sign();
        let mut text =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tag.as_ref());
        text.truncate(HASH_LEN);
        text
    }

    /// A hash of any of the secrets; case-insensitive, as Mail::SRS and
    /// libsrs2 accept it (some systems lower-case local parts).
    fn check_hash(&self, hash: &str, data: &[&str]) -> Result<(), SrsError> {
        if hash.len() != HASH_LEN {
            return Err(SrsError::BadHash);
        }
        let ours = (0..self.keys.len()).any(|k| {
            let expected = self.hash(k, data);
            crate::password::same(&expected.to_ascii_lowercase(), &hash.to_ascii_lowercase())
        });
        if ours { Ok(()) } else { Err(SrsError::BadHash) }
    }
}

/// What follows `tag` and its separator, `=` (the one we write: a local
/// part such as `srs0-list` stays an ordinary name), the tag's case
/// ignored; the separator is kept. Another forwarder's `+` and `-` are
/// read inside the opaque part, not here.
fn tagged<'a>(local: &'a str, tag: &str) -> Option<&'a str> {
    let head = local.get(..tag.len())?;
    let sep = local[tag.len()..].chars().next()?;
    (head.eq_ignore_ascii_case(tag) && sep == '=').then(|| &local[tag.len()..])
}

/// `=a=b=rest` → (a, b, rest): the separator first, then two fields.
fn split3(s: &str) -> Option<(&str, &str, &str)> {
    let s = s.get(1..)?;
    let (a, s) = s.split_once('=')?;
    let (b, rest) = s.split_once('=')?;
    Some((a, b, rest))
}

fn timestamp(now: u64) -> String {
    let day = (now / DAY) % SLOTS;
    let chars = [BASE32[(day >> 5) as usize], BASE32[(day & 31) as usize]];
    String::from_utf8(chars.to_vec()).expect("ASCII")
}

fn check_timestamp(stamp: &str, now: u64) -> Result<(), SrsError> {
    if stamp.len() != 2 {
        return Err(SrsError::Malformed);
    }
    let mut then = 0u64;
    for c in stamp.bytes() {
        let v = BASE32
            .iter()
            .position(|b| *b == c.to_ascii_uppercase())
            .ok_or(SrsError::Malformed)?;
        then = (then << 5) | v as u64;
    }
    let today = (now / DAY) % SLOTS;
    // Days since then, modulo the 1,024 the stamp can tell apart (a stamp
    // from "tomorrow" is 1,023 days old).
    let age = (today + SLOTS - then) % SLOTS;
    if age <= MAX_AGE_DAYS {
        Ok(())
    } else {
        Err(SrsError::Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_460_800; // 2025-11-30

    #[test]
    fn a_forwarded_sender_comes_back_as_it_was() {
        let srs = Srs::new(&["secret"]);
        let out = srs
            .forward("Alice@sender.example", "our.example", NOW)
            .unwrap();
        let (local, domain) = out.rsplit_once('@').unwrap();
        assert_eq!(domain, "our.example");
        assert!(local.starts_with("SRS0="), "{out}");
        assert!(local.ends_with("=sender.example=Alice"), "{out}");
        assert_eq!(
            srs.reverse(local, NOW).unwrap().as_deref(),
            Some("Alice@sender.example")
        );
        // Some systems lower-case what they return to.
        assert_eq!(
            srs.reverse(&local.to_lowercase(), NOW + 20 * DAY)
                .unwrap()
                .as_deref(),
            Some("alice@sender.example")
        );
    }

    #[test]
    fn forged_changed_and_stale_addresses_are_refused() {
        let srs = Srs::new(&["secret"]);
        let out = srs
            .forward("alice@sender.example", "our.example", NOW)
            .unwrap();
        let local = out.rsplit_once('@').unwrap().0;
        let other = Srs::new(&["another secret"]);
        assert_eq!(other.reverse(local, NOW), Err(SrsError::BadHash));
        let changed = local.replace("alice", "mallory");
        assert_eq!(srs.reverse(&changed, NOW), Err(SrsError::BadHash));
        assert_eq!(
            srs.reverse(local, NOW + (MAX_AGE_DAYS + 1) * DAY),
            Err(SrsError::Expired)
        );
        // A stamp from the future is as old as it can be.
        assert_eq!(srs.reverse(local, NOW - DAY), Err(SrsError::Expired));
        for bad in [
            "SRS0=",
            "SRS0=abcd",
            "SRS0=abcd=AA",
            "SRS0=abcd=AA=host",
            "SRS0=abcd=A!=h=u",
            "SRS1=abcd",
            "SRS1=abcd=host=",
        ] {
            assert_eq!(srs.reverse(bad, NOW), Err(SrsError::Malformed), "{bad}");
        }
        assert_eq!(srs.reverse("alice", NOW), Ok(None));
        assert_eq!(srs.reverse("srs0", NOW), Ok(None));
        assert_eq!(srs.reverse("SRS0x=a=b=c=d", NOW), Ok(None));
        assert_eq!(srs.reverse("srs0-list", NOW), Ok(None));
    }

    #[test]
    fn a_second_forwarder_sends_bounces_to_the_first() {
        let first = Srs::new(&["first"]);
        let second = Srs::new(&["second"]);
        let third = Srs::new(&["third"]);
        let once = first
            .forward("alice@sender.example", "first.example", NOW)
            .unwrap();
        let twice = second.forward(&once, "second.example", NOW).unwrap();
        assert!(twice.starts_with("SRS1="), "{twice}");
        assert!(twice.contains("=first.example==")); // SRS1's double separator
        let thrice = third.forward(&twice, "third.example", NOW).unwrap();
        // The first forwarder stays; the hash is the third's.
        let local = thrice.rsplit_once('@').unwrap().0;
        let back = third.reverse(local, NOW).unwrap().unwrap();
        assert_eq!(back, once);
        assert_eq!(second.reverse(local, NOW), Err(SrsError::BadHash));
        let (first_local, _) = back.rsplit_once('@').unwrap();
        assert_eq!(
            first.reverse(first_local, NOW).unwrap().as_deref(),
            Some("alice@sender.example")
        );
    }

    #[test]
    fn every_secret_verifies_and_the_first_signs() {
        let old = Srs::new(&["old"]);
        let out = old
            .forward("alice@sender.example", "our.example", NOW)
            .unwrap();
        let rolled = Srs::new(&["new", "old"]);
        let local = out.rsplit_once('@').unwrap().0;
        assert!(rolled.reverse(local, NOW).unwrap().is_some());
        let new = rolled
            .forward("alice@sender.example", "our.example", NOW)
            .unwrap();
        assert_eq!(
            Srs::new(&["new"]).reverse(new.rsplit_once('@').unwrap().0, NOW),
            Ok(Some("alice@sender.example".into()))
        );
    }

    #[test]
    fn the_null_sender_bare_names_and_addresses_too_long_to_rewrite_stay() {
        let srs = Srs::new(&["secret"]);
        assert_eq!(srs.forward("", "our.example", NOW), None);
        assert_eq!(srs.forward("postmaster", "our.example", NOW), None);
        let long = format!("{}@{}.example", "a".repeat(64), "b".repeat(180));
        assert_eq!(srs.forward(&long, "our.example", NOW), None);
    }

    #[test]
    fn the_secret_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Srs::open(dir.path()).unwrap();
        let out = a
            .forward("alice@sender.example", "our.example", NOW)
            .unwrap();
        let b = Srs::open(dir.path()).unwrap();
        assert!(b.reverse(out.rsplit_once('@').unwrap().0, NOW).is_ok());
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(FILE), "\n# nothing\n").unwrap();
        let err = Srs::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("holds no secret"), "{err}");
    }
}
