//! What the daily reports gather (DMARC aggregate reports of the mail we
//! receive, TLS reports of the mail we send): one value per UTC day and
//! domain, changed in memory, written to a redb table every minute and at
//! shutdown (a crash loses at most a minute of counts: a report is a
//! statistic, not mail), and taken out once its day is over to be sent.
//! At most [`MAX_DOMAINS`] domains a day are kept; values not sent within
//! [`KEEP_DAYS`] days are dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const MAX_DOMAINS: usize = 500;
/// Days a report waits to be sent before it is dropped.
pub const KEEP_DAYS: u32 = 7;
pub const DAY: u64 = 86_400;

/// The UTC day (days since the epoch) of `now` (unix seconds).
pub fn day_of(now: u64) -> u32 {
    (now / DAY) as u32
}

pub struct Daily<T> {
    db: Arc<Database>,
    table: TableDefinition<'static, (u32, &'static str), &'static [u8]>,
    /// (day, domain) → the value, and whether it changed since written.
    days: Mutex<BTreeMap<(u32, String), (T, bool)>>,
    /// Held by a flush and by a take, each from its look at `days` to its
    /// commit: a flush cannot write back what a take just removed.
    io: Mutex<()>,
}

/// Values put back after more was counted meanwhile are added together.
pub trait Merge {
    fn merge(&mut self, other: Self);
}

impl Merge for u32 {
    fn merge(&mut self, other: u32) {
        *self = self.saturating_add(other);
    }
}

impl<T: Serialize + DeserializeOwned + Merge> Daily<T> {
    /// The values the table `name` of `db` keeps.
    pub fn open(db: Arc<Database>, name: &'static str) -> anyhow::Result<Daily<T>> {
        let table = TableDefinition::new(name);
        let tx = db.begin_write()?;
        tx.open_table(table)?;
        tx.commit()?;
        let mut days = BTreeMap::new();
        let tx = db.begin_read()?;
        let stored = tx.open_table(table)?;
        for entry in stored.iter()? {
            let (key, value) = entry?;
            let (day, domain): (u32, &str) = key.value();
            match serde_json::from_slice::<T>(value.value()) {
                Ok(v) => {
                    days.insert((day, domain.to_string()), (v, false));
                }
                Err(e) => tracing::warn!("{name}: the stored value of {domain} is unreadable: {e}"),
            }
        }
        Ok(Daily {
            db,
            table,
            days: Mutex::new(days),
            io: Mutex::new(()),
        })
    }

    /// Changes the value of `domain` for the day of `now` with `change`,
    /// made with `new` first; false when the day has its domains already.
    pub fn update(
        &self,
        now: u64,
        domain: String,
        new: impl FnOnce() -> T,
        change: impl FnOnce(&mut T),
    ) -> bool {
        let day = day_of(now);
        let mut days = self.days.lock().expect("daily");
        let key = (day, domain);
        if !days.contains_key(&key) {
            let today = days.range((day, String::new())..).count();
            if today >= MAX_DOMAINS {
                return false;
            }
        }
        let (value, dirty) = days.entry(key).or_insert_with(|| (new(), true));
        change(value);
        *dirty = true;
        true
    }

    /// Writes what changed since the last time.
    pub fn flush(&self) -> anyhow::Result<()> {
        let _io = self.io.lock().expect("daily io");
        let changed: Vec<((u32, String), Vec<u8>)> = {
            let mut days = self.days.lock().expect("daily");
            days.iter_mut()
                .filter(|(_, (_, dirty))| *dirty)
                .map(|(k, (v, dirty))| {
                    *dirty = false;
                    Ok((k.clone(), serde_json::to_vec(v)?))
                })
                .collect::<anyhow::Result<_>>()?
        };
        if changed.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(self.table)?;
            for ((day, domain), bytes) in &changed {
                table.insert((*day, domain.as_str()), bytes.as_slice())?;
            }
        }
        tx.commit().context("writing the reports' counts")?;
        Ok(())
    }

    /// The values of the days before today (and today's with
    /// `include_today`), taken out of the store; those older than
    /// [`KEEP_DAYS`] are dropped (logged).
    pub fn take_due(&self, now: u64, include_today: bool) -> anyhow::Result<Vec<(u32, String, T)>> {
        let today = day_of(now);
        let through = if include_today { today + 1 } else { today };
        let _io = self.io.lock().expect("daily io");
        let taken: Vec<((u32, String), T)> = {
            let mut days = self.days.lock().expect("daily");
            let keys: Vec<(u32, String)> = days
                .keys()
                .filter(|(day, _)| *day < through)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|k| days.remove(&k).map(|(v, _)| (k, v)))
                .collect()
        };
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(self.table)?;
            for ((day, domain), _) in &taken {
                table.remove((*day, domain.as_str()))?;
            }
        }
        tx.commit().context("removing the reports taken")?;
        Ok(taken
            .into_iter()
            .filter(|((day, domain), _)| {
                let fresh = day + KEEP_DAYS >= today;
                if !fresh {
                    tracing::warn!("the report of {domain} for day {day} was not sent in {KEEP_DAYS} days: dropped");
                }
                fresh
            })
            .map(|((day, domain), v)| (day, domain, v))
            .collect())
    }

    /// Puts back a value taken that could not be sent now (the DNS did not
    /// answer): it is tried again later, as long as it is kept.
    pub fn restore(&self, day: u32, domain: String, value: T) {
        let mut days = self.days.lock().expect("daily");
        match days.get_mut(&(day, domain.clone())) {
            // Counted again meanwhile (today's, taken by `mta reports send`).
            Some((v, dirty)) => {
                v.merge(value);
                *dirty = true;
            }
            None => {
                days.insert((day, domain), (value, true));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_460_800; // a day's start

    #[test]
    fn values_are_kept_per_day_and_domain_across_a_restart_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::inbound::open_db(&dir.path().join("inbound.redb")).unwrap();
        let daily: Daily<u32> = Daily::open(db.clone(), "test").unwrap();
        for (at, domain) in [(NOW, "a"), (NOW + 5, "a"), (NOW + 9, "b"), (NOW + DAY, "a")] {
            assert!(daily.update(at, domain.into(), || 0, |n| *n += 1));
        }
        daily.flush().unwrap();
        drop(daily);
        let daily: Daily<u32> = Daily::open(db, "test").unwrap();
        assert!(daily.take_due(NOW + 100, false).unwrap().is_empty());
        let due = daily.take_due(NOW + DAY, false).unwrap();
        assert_eq!(
            due,
            [(day_of(NOW), "a".into(), 2), (day_of(NOW), "b".into(), 1)]
        );
        assert!(daily.take_due(NOW + DAY, false).unwrap().is_empty());
        let today = daily.take_due(NOW + DAY, true).unwrap();
        assert_eq!(today, [(day_of(NOW) + 1, "a".into(), 1)]);
        daily.restore(today[0].0, "a".into(), 1);
        // Counted again before it is put back: both count.
        daily.update(NOW + DAY, "a".into(), || 0, |n| *n += 1);
        daily.restore(today[0].0, "a".into(), 1);
        let again = daily.take_due(NOW + DAY, true).unwrap();
        assert_eq!(again, [(day_of(NOW) + 1, "a".into(), 3)]);
        // A week unsent: dropped.
        daily.restore(day_of(NOW), "a".into(), 1);
        let late = NOW + u64::from(KEEP_DAYS + 1) * DAY;
        assert!(daily.take_due(late, false).unwrap().is_empty());
    }

    #[test]
    fn a_day_keeps_a_bounded_number_of_domains() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::inbound::open_db(&dir.path().join("inbound.redb")).unwrap();
        let daily: Daily<u32> = Daily::open(db, "test").unwrap();
        for n in 0..MAX_DOMAINS {
            assert!(daily.update(NOW, format!("d{n}"), || 0, |v| *v += 1));
        }
        assert!(!daily.update(NOW, "one more".into(), || 0, |v| *v += 1));
        // One already there still counts; another day has room.
        assert!(daily.update(NOW, "d0".into(), || 0, |v| *v += 1));
        assert!(daily.update(NOW + DAY, "one more".into(), || 0, |v| *v += 1));
    }
}
