//! Connection and message rates per client network, as Postfix's anvil
//! counts them: events in fixed one-minute windows, per /24 of IPv4 and
//! /64 of IPv6 (one machine is rarely alone in its network, and a spammer
//! rarely has one address). Past the limit, the client is told to come
//! back later; a client that keeps knocking keeps being counted, so it
//! waits for a quiet minute.
//!
//! Memory is bounded: at most [`MAX_NETWORKS`] networks are counted; past
//! that, networks whose window is over are forgotten, and if all are
//! current (a flood from that many networks) the counts start again — a
//! limit that stops working under such a flood is the lesser harm than a
//! server that runs out of memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);
pub const MAX_NETWORKS: usize = 100_000;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Connection,
    Message,
}

#[derive(Default)]
pub struct Rates {
    counts: Mutex<HashMap<(Event, String), (Instant, usize)>>,
}

/// A network over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// `192.0.2.0/24`, `2001:db8:1:2::/64`.
    pub network: String,
    pub limit: usize,
}

impl Rates {
    /// Counts one `event` from `ip`'s network at `now`: `Err` when that
    /// makes more than `limit` in the current minute (`limit` 0: none).
    pub fn hit(
        &self,
        event: Event,
        ip: IpAddr,
        limit: usize,
        now: Instant,
    ) -> Result<(), Exceeded> {
        if limit == 0 {
            return Ok(());
        }
        let network = super::greylist::network(ip);
        let mut counts = self.counts.lock().expect("rates");
        let key = (event, network);
        if counts.len() >= MAX_NETWORKS && !counts.contains_key(&key) {
            counts.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if counts.len() >= MAX_NETWORKS {
                tracing::warn!(
                    "more than {MAX_NETWORKS} client networks in a minute: their rates are counted again from 0"
                );
                counts.clear();
            }
        }
        let (start, n) = counts.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *n) = (now, 0);
        }
        *n += 1;
        if *n > limit {
            return Err(Exceeded {
                network: super::greylist::network(ip),
                limit,
            });
        }
        Ok(())
    }

    /// Networks counted now.
    pub fn len(&self) -> usize {
        self.counts.lock().expect("rates").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_past_its_limit_waits_for_the_next_minute() {
        let rates = Rates::default();
        let t = Instant::now();
        for n in 0..3 {
            // Three addresses of one /24: one count.
            let a = ip(&format!("192.0.2.{}", 10 + n));
            assert_eq!(rates.hit(Event::Connection, a, 3, t), Ok(()));
        }
        let over = rates
            .hit(Event::Connection, ip("192.0.2.99"), 3, t)
            .unwrap_err();
        assert_eq!(over.network, "192.0.2.0/24");
        // Another network, another event: their own counts.
        assert!(rates.hit(Event::Connection, ip("192.0.3.1"), 3, t).is_ok());
        assert!(rates.hit(Event::Message, ip("192.0.2.1"), 3, t).is_ok());
        // Knocking on counts too; a minute later it starts again.
        assert!(
            rates
                .hit(
                    Event::Connection,
                    ip("192.0.2.1"),
                    3,
                    t + Duration::from_secs(59)
                )
                .is_err()
        );
        assert!(
            rates
                .hit(Event::Connection, ip("192.0.2.1"), 3, t + WINDOW)
                .is_ok()
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let rates = Rates::default();
        let t = Instant::now();
        assert!(
            rates
                .hit(Event::Message, ip("2001:db8:1:2::1"), 1, t)
                .is_ok()
        );
        let over = rates
            .hit(Event::Message, ip("2001:db8:1:2:ffff::9"), 1, t)
            .unwrap_err();
        assert_eq!(over.network, "2001:db8:1:2::/64");
        assert!(
            rates
                .hit(Event::Message, ip("2001:db8:1:3::1"), 1, t)
                .is_ok()
        );
        // An IPv4 client on an IPv6 socket is its IPv4 network.
        assert!(
            rates
                .hit(Event::Message, ip("::ffff:192.0.2.1"), 1, t)
                .is_ok()
        );
        assert!(rates.hit(Event::Message, ip("192.0.2.2"), 1, t).is_err());
    }

    #[test]
    fn no_limit_counts_nothing_and_memory_stays_bounded() {
        let rates = Rates::default();
        let t = Instant::now();
        assert!(rates.hit(Event::Connection, ip("192.0.2.1"), 0, t).is_ok());
        assert!(rates.is_empty());
        let fill = |rates: &Rates, at: Instant| {
            for n in 0..MAX_NETWORKS as u32 {
                let a = IpAddr::from(std::net::Ipv4Addr::from(n << 8));
                rates.hit(Event::Connection, a, 5, at).unwrap();
            }
            assert_eq!(rates.len(), MAX_NETWORKS);
        };
        fill(&rates, t);
        // Full: networks whose minute is over go first...
        rates
            .hit(Event::Connection, ip("198.51.100.1"), 5, t + WINDOW)
            .unwrap();
        assert_eq!(rates.len(), 1);
        // ...and when every one is current, all go.
        let rates = Rates::default();
        fill(&rates, t);
        rates
            .hit(Event::Connection, ip("198.51.100.1"), 5, t)
            .unwrap();
        assert_eq!(rates.len(), 1);
    }
}
