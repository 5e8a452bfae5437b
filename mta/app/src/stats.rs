//! Message counts per hour for the last week (what Mailgraph draws):
//! received, sent (delivered, here or elsewhere), deferred, bounced and
//! rejected (5xx replies to clients); and what the inbound checks did
//! (refused early talkers, DNSBL listings, bad HELO names or sender
//! domains, DMARC rejections, copies for Junk, greylisted attempts,
//! clients over a rate limit, forwarded messages with a rewritten sender).
//! Counted in memory by whoever sees the event, kept on disk
//! (`<data>/stats`, written atomically every few minutes and at shutdown)
//! so a restart keeps the graph; a file from before the checks were counted
//! reads as zeros for them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The week, in hours.
pub const HOURS: usize = 7 * 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Received = 0,
    Sent = 1,
    Deferred = 2,
    Bounced = 3,
    Rejected = 4,
    Pregreet = 5,
    Dnsbl = 6,
    Sanity = 7,
    DmarcReject = 8,
    Junk = 9,
    Greylisted = 10,
    RateLimited = 11,
    Forwarded = 12,
}

/// Every event with its name; the first [`MAIL`] are the mail's flow, the
/// rest what the inbound checks did.
pub const EVENTS: [(Event, &str); N] = [
    (Event::Received, "received"),
    (Event::Sent, "sent"),
    (Event::Deferred, "deferred"),
    (Event::Bounced, "bounced"),
    (Event::Rejected, "rejected"),
    (Event::Pregreet, "talked too early"),
    (Event::Dnsbl, "on DNSBLs"),
    (Event::Sanity, "bad HELO or sender domain"),
    (Event::DmarcReject, "refused by DMARC"),
    (Event::Junk, "to Junk"),
    (Event::Greylisted, "greylisted"),
    (Event::RateLimited, "over a limit"),
    (Event::Forwarded, "forwarded (SRS)"),
];
pub const N: usize = 13;
/// The events of the mail's flow (the rest are the checks').
pub const MAIL: usize = 5;

/// One hour: its number (hours since the epoch) and the counts.
pub type Bucket = (u64, [u32; N]);

#[derive(Default)]
pub struct Stats {
    hours: Mutex<VecDeque<Bucket>>,
    file: Mutex<Option<PathBuf>>,
}

/// The process's counts.
pub fn stats() -> &'static Stats {
    static STATS: OnceLock<Stats> = OnceLock::new();
    STATS.get_or_init(Stats::default)
}

fn hour_now() -> u64 {
    mta_store::envelope::now_secs() / 3600
}

impl Stats {
    pub fn count(&self, event: Event) {
        self.count_at(event, hour_now());
    }

    fn count_at(&self, event: Event, hour: u64) {
        let mut hours = self.hours.lock().expect("stats");
        match hours.back_mut() {
            Some((h, counts)) if *h == hour => counts[event as usize] += 1,
            _ => {
                let mut counts = [0; N];
                counts[event as usize] = 1;
                hours.push_back((hour, counts));
            }
        }
        while hours
            .front()
            .is_some_and(|(h, _)| *h + (HOURS as u64) <= hour)
        {
            hours.pop_front();
        }
    }

    /// The last `n` hours, oldest first, one bucket per hour (zeros where
    /// nothing happened), ending with the current one.
    pub fn last(&self, n: usize) -> Vec<Bucket> {
        let now = hour_now();
        let hours = self.hours.lock().expect("stats");
        (0..n as u64)
            .rev()
            .map(|ago| {
                let h = now.saturating_sub(ago);
                let counts = hours
                    .iter()
                    .find(|(x, _)| *x == h)
                    .map_or([0; N], |(_, c)| *c);
                (h, counts)
            })
            .collect()
    }

    /// Reads the counts kept at `path` (a missing or damaged file starts
    /// empty) and saves there from now on.
    pub fn load(&self, path: &Path) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let oldest = hour_now().saturating_sub(HOURS as u64);
        let mut hours: VecDeque<Bucket> = text
            .lines()
            .filter_map(|line| {
                let mut n = line.split_whitespace().map(|w| w.parse::<u64>().ok());
                let hour = n.next()??;
                let mut counts = [0u32; N];
                for (i, c) in counts.iter_mut().enumerate() {
                    *c = match n.next() {
                        Some(v) => u32::try_from(v?).ok()?,
                        // Written before the checks were counted.
                        None if i >= MAIL => 0,
                        None => return None,
                    };
                }
                Some((hour, counts))
            })
            .filter(|(h, _)| *h >= oldest)
            .collect();
        hours.make_contiguous().sort_by_key(|(h, _)| *h);
        *self.hours.lock().expect("stats") = hours;
        *self.file.lock().expect("stats") = Some(path.to_path_buf());
    }

    /// Writes the counts to the file given to [`Stats::load`].
    pub fn save(&self) -> anyhow::Result<()> {
        let Some(path) = self.file.lock().expect("stats").clone() else {
            return Ok(());
        };
        let text: String = self
            .hours
            .lock()
            .expect("stats")
            .iter()
            .map(|(h, c)| {
                let counts: Vec<String> = c.iter().map(u32::to_string).collect();
                format!("{h} {}\n", counts.join(" "))
            })
            .collect();
        mta_store::fsutil::write_atomically(&path, text.as_bytes(), 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_hour_survive_a_save_and_a_load_and_age_out() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("stats");
        let s = Stats::default();
        s.load(&path);
        let now = hour_now();
        s.count_at(Event::Received, now - 2);
        s.count(Event::Received);
        s.count(Event::Received);
        s.count(Event::Rejected);
        s.save().unwrap();
        let again = Stats::default();
        again.load(&path);
        let last = again.last(3);
        assert_eq!(last.len(), 3);
        let counts = |c: &[u32]| {
            let mut all = [0; N];
            all[..c.len()].copy_from_slice(c);
            all
        };
        assert_eq!(last[0], (now - 2, counts(&[1])));
        assert_eq!(last[1], (now - 1, [0; N]));
        assert_eq!(last[2], (now, counts(&[2, 0, 0, 0, 1])));
        // An hour a week later pushes the oldest out.
        again.count_at(Event::Sent, now - 2 + HOURS as u64);
        assert!(
            again
                .hours
                .lock()
                .unwrap()
                .iter()
                .all(|(h, _)| *h != now - 2)
        );
        std::fs::write(&path, "garbage\n1 2\n").unwrap();
        let damaged = Stats::default();
        damaged.load(&path);
        assert_eq!(damaged.last(1)[0].1, [0; N]);
        // A file from before the checks were counted: five counts a line.
        std::fs::write(&path, format!("{now} 3 2 1 0 4\n")).unwrap();
        let older = Stats::default();
        older.load(&path);
        older.count(Event::Greylisted);
        let mut expected = counts(&[3, 2, 1, 0, 4]);
        expected[Event::Greylisted as usize] = 1;
        assert_eq!(older.last(1)[0].1, expected);
    }
}
