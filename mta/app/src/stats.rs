//! Message counts per hour for the last week (what Mailgraph draws):
//! received, sent (delivered, here or elsewhere), deferred, bounced and
//! rejected (5xx replies to clients). Counted in memory by whoever sees the
//! event, kept on disk (`<data>/stats`, written atomically every few
//! minutes and at shutdown) so a restart keeps the graph.

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
}

pub const EVENTS: [(Event, &str); 5] = [
    (Event::Received, "received"),
    (Event::Sent, "sent"),
    (Event::Deferred, "deferred"),
    (Event::Bounced, "bounced"),
    (Event::Rejected, "rejected"),
];

/// One hour: its number (hours since the epoch) and the counts.
pub type Bucket = (u64, [u32; 5]);

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
                let mut counts = [0; 5];
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
                    .map_or([0; 5], |(_, c)| *c);
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
                let mut counts = [0u32; 5];
                for c in &mut counts {
                    *c = u32::try_from(n.next()??).ok()?;
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
            .map(|(h, c)| format!("{h} {} {} {} {} {}\n", c[0], c[1], c[2], c[3], c[4]))
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
        assert_eq!(last[0], (now - 2, [1, 0, 0, 0, 0]));
        assert_eq!(last[1], (now - 1, [0; 5]));
        assert_eq!(last[2], (now, [2, 0, 0, 0, 1]));
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
        assert_eq!(damaged.last(1)[0].1, [0; 5]);
    }
}
