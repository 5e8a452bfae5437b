//! postscreen's pregreet test, on port 25: the greeting's first line
//! (`220-`) goes out at once and its last line after a wait; a client that
//! talks in between does not read replies as SMTP says (spam engines
//! write their commands blind) and is refused. A client that passed is
//! remembered for a day and greeted at once meanwhile, as postscreen's
//! `postscreen_greet_ttl` does, so a real MTA waits once a day, not once a
//! message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a client that passed is trusted to wait for greetings.
pub const PASSED_FOR: Duration = Duration::from_secs(24 * 3600);
/// Addresses remembered at most (about 50 bytes each): past it, expired
/// ones are forgotten, and if none has expired the newcomer is not
/// remembered (it waits again next time; nothing else is lost).
pub const REMEMBERED: usize = 50_000;

/// The clients that passed, and until when.
#[derive(Default)]
pub struct Passed {
    until: Mutex<HashMap<IpAddr, Instant>>,
}

impl Passed {
    /// Whether `ip` passed within the last day.
    pub fn knows(&self, ip: IpAddr) -> bool {
        self.knows_at(ip, Instant::now())
    }

    fn knows_at(&self, ip: IpAddr, now: Instant) -> bool {
        let until = self.until.lock().expect("pregreet");
        until.get(&ip).is_some_and(|t| *t > now)
    }

    /// `ip` waited for the whole greeting.
    pub fn remember(&self, ip: IpAddr) {
        self.remember_at(ip, Instant::now());
    }

    fn remember_at(&self, ip: IpAddr, now: Instant) {
        let mut until = self.until.lock().expect("pregreet");
        if until.len() >= REMEMBERED && !until.contains_key(&ip) {
            until.retain(|_, t| *t > now);
            if until.len() >= REMEMBERED {
                return;
            }
        }
        until.insert(ip, now + PASSED_FOR);
    }

    /// An early talker loses what it had.
    pub fn forget(&self, ip: IpAddr) {
        self.until.lock().expect("pregreet").remove(&ip);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.until.lock().expect("pregreet").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    #[test]
    fn a_client_that_passed_is_known_for_a_day() {
        let p = Passed::default();
        let t = Instant::now();
        assert!(!p.knows_at(ip(1), t));
        p.remember_at(ip(1), t);
        assert!(p.knows_at(ip(1), t + Duration::from_secs(3600)));
        assert!(!p.knows_at(ip(1), t + PASSED_FOR));
        assert!(!p.knows_at(ip(2), t));
        p.forget(ip(1));
        assert!(!p.knows_at(ip(1), t));
    }

    #[test]
    fn memory_is_bounded_and_expired_clients_make_room() {
        let p = Passed::default();
        let t = Instant::now();
        for n in 0..REMEMBERED as u32 {
            p.remember_at(ip(n), t);
        }
        // Full of clients that are still trusted: a newcomer waits again.
        p.remember_at(ip(u32::MAX), t + Duration::from_secs(60));
        assert_eq!(p.len(), REMEMBERED);
        assert!(!p.knows_at(ip(u32::MAX), t + Duration::from_secs(60)));
        // A day later they have expired and make room.
        let later = t + PASSED_FOR + Duration::from_secs(1);
        p.remember_at(ip(u32::MAX), later);
        assert_eq!(p.len(), 1);
        assert!(p.knows_at(ip(u32::MAX), later));
    }
}
