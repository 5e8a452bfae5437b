//! Maildir file names: their unique part, and the order of arrival they
//! tell.

/// A file name's unique part: what stays when its flags change.
pub(super) fn base_of(name: &str) -> &str {
    name.split_once(":2,").map_or(name, |(base, _)| base)
}

/// The order of two Maildir names by arrival: the leading seconds, then
/// the microseconds of an `M` part, compared as numbers; the names
/// themselves break ties (and order names not made that way).
pub(super) fn arrival_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn time_of(name: &str) -> (u64, u64) {
        let digits = |s: &str| -> (u64, usize) {
            let n = s.bytes().take_while(u8::is_ascii_digit).count();
            (s[..n].parse().unwrap_or(u64::MAX), n)
        };
        let (secs, n) = digits(name);
        if n == 0 {
            return (u64::MAX, u64::MAX);
        }
        let micros = name[n..]
            .strip_prefix(".M")
            .map_or(0, |rest| digits(rest).0);
        (secs, micros)
    }
    time_of(a).cmp(&time_of(b)).then_with(|| a.cmp(b))
}
