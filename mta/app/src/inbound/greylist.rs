//! Greylisting, as postgrey does it: the first message of a (client
//! network, sender, recipient) triplet is answered `451` and accepted when
//! it comes again after the delay; spam engines rarely retry, real MTAs
//! always do. Client networks are /24 (IPv4) and /64 (IPv6), so a sender's
//! pool of servers retries as one. Decided at the end of DATA, where the
//! sender checks have run: mail that SPF or DKIM authenticates for a domain
//! that has passed before is not delayed, nor is a network that has passed
//! [`Policy::allow_after`] times (postgrey's auto-whitelist).
//!
//! Kept in `<data>/inbound.redb` (a restart forgets nothing); entries
//! expire (a triplet never retried after [`Policy::retry_window`], any
//! unused one after [`Policy::max_age`]), and the table is bounded
//! ([`MAX_TRIPLETS`]): past it new triplets pass rather than be recorded.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// `net \0 sender \0 recipient` → (first seen, last seen, passed).
const TRIPLETS: TableDefinition<&str, (u64, u64, bool)> = TableDefinition::new("triplets");
/// Client network → (triplets passed, last pass).
const NETS: TableDefinition<&str, (u32, u64)> = TableDefinition::new("nets");
/// Domain that authenticated mail that passed → when last.
const DOMAINS: TableDefinition<&str, u64> = TableDefinition::new("domains");

/// Triplets kept at most (about 100 bytes each).
pub const MAX_TRIPLETS: u64 = 200_000;
/// How often expired entries are removed.
const SWEEP_EVERY: u64 = 3600;
/// A known entry's "last seen" is written at most this often.
const TOUCH_EVERY: u64 = 24 * 3600;

/// postgrey's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long a new triplet waits (`--delay`, 300 s).
    pub delay: Duration,
    /// A retry later than this starts over (`--retry-window`, 2 days).
    pub retry_window: Duration,
    /// Entries unused this long are forgotten (`--max-age`, 35 days).
    pub max_age: Duration,
    /// A network that passed this many triplets is not delayed
    /// (`--auto-whitelist-clients`, 5).
    pub allow_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(2 * 24 * 3600),
            max_age: Duration::from_secs(35 * 24 * 3600),
            allow_after: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accept; why, for the log.
    Pass(&'static str),
    /// Answer `451` and come back in this long.
    Wait(Duration),
}

pub struct Greylist {
    db: Arc<Database>,
    last_sweep: Mutex<u64>,
}

/// The client's network: /24 for IPv4, /64 for IPv6 (IPv4-mapped
/// addresses as IPv4).
pub fn network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// A sender as postgrey keys it: lower case, BATV's `prvs=…=` tag left
/// out and digits folded (`#`), so the per-message addresses of bounce
/// handling (VERP) make one triplet.
pub fn sender_key(sender: &str) -> String {
    let sender = sender.to_lowercase();
    let (local, domain) = sender.rsplit_once('@').unwrap_or(("", &sender));
    let local = match local
        .strip_prefix("prvs=")
        .or_else(|| local.strip_prefix("btv1="))
    {
        Some(rest) => rest.split_once('=').map_or(rest, |(_, l)| l),
        None => local,
    };
    let mut out = String::with_capacity(sender.len());
    let mut in_digits = false;
    for c in local.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    if !domain.is_empty() {
        out.push('@');
        out.push_str(domain);
    }
    out
}

/// A wait as a person reads it: `1 second`, `40 seconds`, `5 minutes`.
pub fn in_words(wait: Duration) -> String {
    let secs = wait.as_secs().max(1);
    match secs {
        1 => "1 second".into(),
        2..120 => format!("{secs} seconds"),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

impl Greylist {
    /// Greylisting in `db` (`super::open_db`), its tables made.
    pub fn new(db: Arc<Database>) -> anyhow::Result<Greylist> {
        let w = db.begin_write()?;
        w.open_table(TRIPLETS)?;
        w.open_table(NETS)?;
        w.open_table(DOMAINS)?;
        w.commit()?;
        Ok(Greylist {
            db,
            last_sweep: Mutex::new(0),
        })
    }

    /// The decision under `p` for a message from `ip`, `sender`, to
    /// `recipients`, at `now` (unix seconds). `authenticated` is the domain
    /// SPF or DKIM vouched for, if any.
    pub fn check(
        &self,
        p: &Policy,
        ip: IpAddr,
        sender: &str,
        recipients: &[&str],
        authenticated: Option<&str>,
        now: u64,
    ) -> anyhow::Result<Decision> {
        self.sweep_if_due(p, now)?;
        let net = network(ip);
        let r = self.db.begin_read()?;
        let nets = r.open_table(NETS)?;
        if let Some(v) = nets.get(net.as_str())? {
            let (passes, last) = v.value();
            if passes >= p.allow_after && now < last + p.max_age.as_secs() {
                return Ok(Decision::Pass("the client's network has passed before"));
            }
        }
        if let Some(domain) = authenticated {
            let domains = r.open_table(DOMAINS)?;
            let known = domains
                .get(domain.to_lowercase().as_str())?
                .is_some_and(|v| now < v.value() + p.max_age.as_secs());
            if known {
                return Ok(Decision::Pass(
                    "authenticated for a domain that has passed before",
                ));
            }
        }
        let triplets = r.open_table(TRIPLETS)?;
        let sender = sender_key(sender);
        let keys: Vec<String> = recipients
            .iter()
            .map(|rcpt| format!("{net}\0{sender}\0{}", rcpt.to_lowercase()))
            .collect();
        // The longest wait of the recipients; what each triplet becomes.
        let mut wait = 0u64;
        let mut writes: Vec<(&str, (u64, u64, bool))> = Vec::new();
        let mut newly_passed = 0u32;
        for key in &keys {
            let entry = triplets.get(key.as_str())?.map(|v| v.value());
            match entry {
                Some((first, last, true)) if now < last + p.max_age.as_secs() => {
                    if now >= last + TOUCH_EVERY {
                        writes.push((key, (first, now, true)));
                    }
                }
                Some((first, _, false)) if now < first + p.retry_window.as_secs() => {
                    let due = first + p.delay.as_secs();
                    if now >= due {
                        writes.push((key, (first, now, true)));
                        newly_passed += 1;
                    } else {
                        wait = wait.max(due - now);
                    }
                }
                // New, expired, or a retry too late: it starts over.
                _ => {
                    if triplets.len()? + writes.len() as u64 >= MAX_TRIPLETS {
                        tracing::warn!(
                            "greylist: {MAX_TRIPLETS} triplets recorded; mail from {net} passes unrecorded"
                        );
                        continue;
                    }
                    writes.push((key, (now, now, false)));
                    wait = wait.max(p.delay.as_secs());
                }
            }
        }
        drop((triplets, nets, r));
        let passed = wait == 0;
        if !writes.is_empty() || (passed && authenticated.is_some()) {
            let w = self.db.begin_write()?;
            {
                let mut triplets = w.open_table(TRIPLETS)?;
                for (key, value) in &writes {
                    triplets.insert(*key, value)?;
                }
                if newly_passed > 0 {
                    let mut nets = w.open_table(NETS)?;
                    let passes = nets.get(net.as_str())?.map_or(0, |v| v.value().0);
                    nets.insert(net.as_str(), (passes.saturating_add(newly_passed), now))?;
                }
                if passed && let Some(domain) = authenticated {
                    let mut domains = w.open_table(DOMAINS)?;
                    let domain = domain.to_lowercase();
                    let last = domains.get(domain.as_str())?.map(|v| v.value());
                    if last.is_none_or(|t| now >= t + TOUCH_EVERY) {
                        domains.insert(domain.as_str(), now)?;
                    }
                }
            }
            w.commit()?;
        }
        Ok(if passed {
            Decision::Pass(if newly_passed > 0 {
                "retried after the delay"
            } else {
                "seen before"
            })
        } else {
            Decision::Wait(Duration::from_secs(wait))
        })
    }

    /// Removes expired entries, once an hour.
    fn sweep_if_due(&self, p: &Policy, now: u64) -> anyhow::Result<()> {
        {
            let mut last = self.last_sweep.lock().expect("greylist");
            if now < *last + SWEEP_EVERY {
                return Ok(());
            }
            *last = now;
        }
        let w = self.db.begin_write()?;
        let mut removed = 0u64;
        {
            let mut triplets = w.open_table(TRIPLETS)?;
            removed += triplets
                .extract_if(|_, (first, last, passed)| {
                    if passed {
                        now >= last + p.max_age.as_secs()
                    } else {
                        now >= first + p.retry_window.as_secs()
                    }
                })?
                .count() as u64;
            let mut nets = w.open_table(NETS)?;
            removed += nets
                .extract_if(|_, (_, last)| now >= last + p.max_age.as_secs())?
                .count() as u64;
            let mut domains = w.open_table(DOMAINS)?;
            removed += domains
                .extract_if(|_, last| now >= last + p.max_age.as_secs())?
                .count() as u64;
        }
        w.commit()?;
        if removed > 0 {
            tracing::info!("greylist: {removed} expired entries removed");
        }
        Ok(())
    }

    #[cfg(test)]
    fn triplets(&self) -> u64 {
        let r = self.db.begin_read().unwrap();
        r.open_table(TRIPLETS).unwrap().len().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const T: u64 = 1_800_000_000;
    const P: Policy = Policy {
        delay: Duration::from_secs(300),
        retry_window: Duration::from_secs(2 * 24 * 3600),
        max_age: Duration::from_secs(35 * 24 * 3600),
        allow_after: 5,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn open(dir: &Path) -> Greylist {
        Greylist::new(super::super::open_db(&dir.join("inbound.redb")).unwrap()).unwrap()
    }

    #[test]
    fn waits_are_said_in_words() {
        let words: Vec<String> = [0, 1, 40, 300, 301]
            .map(|s| in_words(Duration::from_secs(s)))
            .to_vec();
        assert_eq!(
            words,
            [
                "1 second",
                "1 second",
                "40 seconds",
                "5 minutes",
                "6 minutes"
            ]
        );
    }

    #[test]
    fn networks_and_senders_are_keyed_as_postgrey_does() {
        assert_eq!(network(ip("192.0.2.77")), "192.0.2.0/24");
        assert_eq!(network(ip("::ffff:192.0.2.77")), "192.0.2.0/24");
        assert_eq!(network(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(
            sender_key("Bounce-12345-678@Lists.Example"),
            "bounce-#-#@lists.example"
        );
        assert_eq!(
            sender_key("prvs=0123abcd=bob@example.net"),
            "bob@example.net"
        );
        assert_eq!(sender_key(""), "");
    }

    #[test]
    fn a_new_triplet_waits_and_passes_when_retried_after_the_delay_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let g = open(dir.path());
        let from = ip("192.0.2.1");
        let wait = |d: Decision| match d {
            Decision::Wait(w) => w.as_secs(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            wait(
                g.check(&P, from, "a@x.example", &["u@example.org"], None, T)
                    .unwrap()
            ),
            300
        );
        // Too soon: the rest of the delay.
        assert_eq!(
            wait(
                g.check(&P, from, "a@x.example", &["u@example.org"], None, T + 100)
                    .unwrap()
            ),
            200
        );
        drop(g);
        // Remembered across a restart; another server of the /24 retries.
        let g = open(dir.path());
        assert_eq!(
            g.check(
                &P,
                ip("192.0.2.9"),
                "A@X.example",
                &["u@example.org"],
                None,
                T + 300
            )
            .unwrap(),
            Decision::Pass("retried after the delay")
        );
        assert_eq!(
            g.check(&P, from, "a@x.example", &["u@example.org"], None, T + 400)
                .unwrap(),
            Decision::Pass("seen before")
        );
        // One new recipient among known ones delays the message.
        assert_eq!(
            wait(
                g.check(
                    &P,
                    from,
                    "a@x.example",
                    &["u@example.org", "v@example.org"],
                    None,
                    T + 500
                )
                .unwrap()
            ),
            300
        );
        // Another network is another triplet.
        assert!(matches!(
            g.check(
                &P,
                ip("198.51.100.1"),
                "a@x.example",
                &["u@example.org"],
                None,
                T + 500
            )
            .unwrap(),
            Decision::Wait(_)
        ));
    }

    #[test]
    fn a_retry_after_the_window_starts_over_and_old_entries_expire() {
        let dir = tempfile::tempdir().unwrap();
        let g = open(dir.path());
        let from = ip("192.0.2.1");
        let p = Policy::default();
        g.check(&P, from, "a@x.example", &["u@example.org"], None, T)
            .unwrap();
        let late = T + p.retry_window.as_secs() + 1;
        assert_eq!(
            g.check(&P, from, "a@x.example", &["u@example.org"], None, late)
                .unwrap(),
            Decision::Wait(p.delay)
        );
        // The next hour's sweep removes what the window and the age end.
        g.check(&P, from, "b@x.example", &["u@example.org"], None, late)
            .unwrap();
        assert_eq!(g.triplets(), 2);
        g.check(
            &P,
            from,
            "c@x.example",
            &["u@example.org"],
            None,
            late + SWEEP_EVERY + p.retry_window.as_secs(),
        )
        .unwrap();
        assert_eq!(g.triplets(), 1, "only the newest is left");
    }

    #[test]
    fn networks_that_passed_often_and_authenticated_domains_with_history_are_not_delayed() {
        let dir = tempfile::tempdir().unwrap();
        let g = open(dir.path());
        let from = ip("203.0.113.5");
        for n in 0..5 {
            let rcpt = format!("u{n}@example.org");
            assert!(matches!(
                g.check(&P, from, "a@x.example", &[&rcpt], None, T).unwrap(),
                Decision::Wait(_)
            ));
            assert_eq!(
                g.check(&P, from, "a@x.example", &[&rcpt], None, T + 300)
                    .unwrap(),
                Decision::Pass("retried after the delay")
            );
        }
        assert_eq!(
            g.check(&P, from, "new@y.example", &["w@example.org"], None, T + 400)
                .unwrap(),
            Decision::Pass("the client's network has passed before")
        );
        // A domain's authenticated mail that passed once is not delayed
        // from elsewhere; unauthenticated mail claiming it is.
        let other = ip("198.51.100.7");
        g.check(
            &P,
            other,
            "b@bank.example",
            &["u@example.org"],
            Some("bank.example"),
            T,
        )
        .unwrap();
        g.check(
            &P,
            other,
            "b@bank.example",
            &["u@example.org"],
            Some("bank.example"),
            T + 300,
        )
        .unwrap();
        let third = ip("192.0.2.200");
        assert_eq!(
            g.check(
                &P,
                third,
                "c@bank.example",
                &["v@example.org"],
                Some("Bank.Example"),
                T + 600
            )
            .unwrap(),
            Decision::Pass("authenticated for a domain that has passed before")
        );
        assert!(matches!(
            g.check(
                &P,
                third,
                "c@bank.example",
                &["v@example.org"],
                None,
                T + 600
            )
            .unwrap(),
            Decision::Wait(_)
        ));
    }

    #[test]
    fn a_damaged_database_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inbound.redb"), b"not a database at all").unwrap();
        let g = open(dir.path());
        assert!(matches!(
            g.check(
                &P,
                ip("192.0.2.1"),
                "a@x.example",
                &["u@example.org"],
                None,
                T
            )
            .unwrap(),
            Decision::Wait(_)
        ));
        // Kept aside for inspection, with the time in its name.
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("inbound.redb.damaged-")
            });
        assert!(aside);
    }
}
