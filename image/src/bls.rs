//! Boot Loader Specification entry file names with boot counting, as
//! systemd-boot implements Automatic Boot Assessment: `NAME+LEFT-DONE.conf`
//! (or `NAME+LEFT.conf`). systemd-boot decrements LEFT before each try; an
//! entry at `+0` is sorted last, so the previous slot boots again by itself.
//! Blessing a boot removes the counter, as `systemd-bless-boot` does.

/// Tries a freshly installed slot gets.
pub const TRIES: u32 = 3;

/// The entry file name for a slot that has not proven itself yet.
pub fn fresh_entry(name: &str) -> String {
    format!("{name}+{TRIES}.conf")
}

/// The counter of an entry file name: `(base name, tries left, tries done)`,
/// or `None` when the entry has no counter (it is blessed).
pub fn counter(file_name: &str) -> Option<(&str, u32, u32)> {
    let stem = file_name.strip_suffix(".conf")?;
    let plus = stem.rfind('+')?;
    let (base, counter) = (&stem[..plus], &stem[plus + 1..]);
    let (left, done) = match counter.split_once('-') {
        Some((l, d)) => (l.parse().ok()?, d.parse().ok()?),
        None => (counter.parse().ok()?, 0),
    };
    Some((base, left, done))
}

/// The name a blessed entry gets: the counter removed.
pub fn blessed(file_name: &str) -> Option<String> {
    counter(file_name).map(|(base, _, _)| format!("{base}.conf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_and_bless() {
        assert_eq!(fresh_entry("mailbox-a"), "mailbox-a+3.conf");
        assert_eq!(counter("mailbox-a+3.conf"), Some(("mailbox-a", 3, 0)));
        assert_eq!(counter("mailbox-a+1-2.conf"), Some(("mailbox-a", 1, 2)));
        assert_eq!(counter("mailbox-a.conf"), None);
        assert_eq!(counter("mailbox-a+x.conf"), None);
        assert_eq!(
            blessed("mailbox-a+0-3.conf").as_deref(),
            Some("mailbox-a.conf")
        );
        assert_eq!(blessed("mailbox-a.conf"), None);
    }
}
