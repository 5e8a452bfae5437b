//! DNS blocklists scored as postscreen does (`postscreen_dnsbl_sites`,
//! `postscreen_dnsbl_threshold`): each zone that lists the client adds
//! its weight; at the threshold the client may not send mail. The lookups
//! start as the client connects and run in parallel while the pregreet
//! test waits; their answers are cached in `<data>/inbound.redb` for an
//! hour, so a client that comes back costs no lookup.
//!
//! An answer counts only inside 127.0.0.0/8 and outside 127.255.255.0/24
//! (Spamhaus's error codes for refused queries, such as a public
//! resolver's): a zone that stopped working lists no one. A zone may name
//! the one answer that counts (`zone=127.0.0.2`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use crate::dns::{Data, Dns, Kind};

/// `zone \0 address` → (expires, listed).
const CACHE: TableDefinition<&str, (u64, bool)> = TableDefinition::new("dnsbl");
/// How long an answer is kept (postscreen_dnsbl_max_ttl).
pub const TTL: u64 = 3600;
/// Cache entries at most; past it, answers are not kept.
pub const MAX_CACHED: u64 = 100_000;
/// All of a client's lookups, at most.
pub const DEADLINE: Duration = Duration::from_secs(5);

pub use crate::config::DnsblZone as Zone;

/// The name to ask: the address's labels reversed, under the zone.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let reversed = crate::dns::reverse_name(ip.to_canonical());
    let labels = reversed
        .trim_end_matches("in-addr.arpa.")
        .trim_end_matches("ip6.arpa.");
    format!("{labels}{zone}.")
}

/// What the zones said of one client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub score: i32,
    /// The zones that list it.
    pub zones: Vec<String>,
}

pub struct Dnsbl {
    db: Arc<Database>,
    last_sweep: Mutex<u64>,
}

impl Dnsbl {
    /// The cache in `db` (`super::open_db`), its table made.
    pub fn new(db: Arc<Database>) -> anyhow::Result<Dnsbl> {
        let w = db.begin_write()?;
        w.open_table(CACHE)?;
        w.commit()?;
        Ok(Dnsbl {
            db,
            last_sweep: Mutex::new(0),
        })
    }

    /// Asks every zone about `ip` at once (the cache first), within
    /// [`DEADLINE`]; a zone that does not answer in time lists no one.
    pub async fn score(self: &Arc<Self>, dns: &Dns, ip: IpAddr, zones: &[Zone]) -> Listing {
        let now = mta_store::envelope::now_secs();
        let lookups = zones.iter().map(|zone| async move {
            let key = format!("{}\0{ip}", zone.name);
            let cached = {
                let this = self.clone();
                let key = key.clone();
                tokio::task::spawn_blocking(move || this.cached(&key, now))
                    .await
                    .ok()
                    .flatten()
            };
            let listed = match cached {
                Some(listed) => listed,
                None => {
                    let answer = tokio::time::timeout(
                        DEADLINE,
                        dns.lookup(&query_name(ip, &zone.name), Kind::Ip, false),
                    )
                    .await;
                    let listed = match answer {
                        Ok(Ok(records)) => records.iter().any(|r| match r.data {
                            Data::Ip(IpAddr::V4(a)) => counts(a, zone.answer),
                            _ => false,
                        }),
                        Ok(Err(e)) if e.is_negative() => false,
                        // A failure or a time-out: not listed, not cached.
                        _ => return (zone, false),
                    };
                    let this = self.clone();
                    let _ = tokio::task::spawn_blocking(move || this.keep(&key, listed, now)).await;
                    listed
                }
            };
            (zone, listed)
        });
        let mut listing = Listing::default();
        for (zone, listed) in futures_util::future::join_all(lookups).await {
            if listed {
                listing.score += zone.weight;
                listing.zones.push(zone.name.clone());
            }
        }
        listing
    }

    fn cached(&self, key: &str, now: u64) -> Option<bool> {
        let r = self.db.begin_read().ok()?;
        let t = r.open_table(CACHE).ok()?;
        let (expires, listed) = t.get(key).ok()??.value();
        (now < expires).then_some(listed)
    }

    fn keep(&self, key: &str, listed: bool, now: u64) {
        if let Err(e) = self.try_keep(key, listed, now) {
            tracing::warn!("DNSBL cache: {e:#}");
        }
    }

    fn try_keep(&self, key: &str, listed: bool, now: u64) -> anyhow::Result<()> {
        let sweep = {
            let mut last = self.last_sweep.lock().expect("dnsbl");
            let due = now >= *last + TTL;
            if due {
                *last = now;
            }
            due
        };
        let w = self.db.begin_write()?;
        {
            let mut t = w.open_table(CACHE)?;
            if sweep {
                t.extract_if(|_, (expires, _)| now >= expires)?.count();
            }
            if t.len()? < MAX_CACHED {
                t.insert(key, (now + TTL, listed))?;
            }
        }
        w.commit()?;
        Ok(())
    }
}

/// Whether an answer lists the client: inside 127/8, not an error code,
/// and the zone's one answer if it names one.
fn counts(a: Ipv4Addr, wanted: Option<Ipv4Addr>) -> bool {
    let [x, y, z, _] = a.octets();
    x == 127 && !(y == 255 && z == 255) && wanted.is_none_or(|w| w == a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Error;
    use crate::dns::mock::Zone as MockZone;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn zones_are_written_as_postscreen_writes_them() {
        let z: Zone = "zen.spamhaus.org*3".parse().unwrap();
        assert_eq!(
            (z.name.as_str(), z.answer, z.weight),
            ("zen.spamhaus.org", None, 3)
        );
        let z: Zone = "B.Example.=127.0.0.2*-2".parse().unwrap();
        assert_eq!(
            (z.name.as_str(), z.answer, z.weight),
            ("b.example", Some(Ipv4Addr::new(127, 0, 0, 2)), -2)
        );
        assert_eq!("bl.example".parse::<Zone>().unwrap().weight, 1);
        for bad in [
            "",
            "nodot",
            "bl.example*lots",
            "bl.example=10.0.0.300",
            "b l.example",
        ] {
            assert!(bad.parse::<Zone>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_address_is_asked_reversed_under_the_zone() {
        assert_eq!(
            query_name(ip("192.0.2.99"), "bl.example"),
            "99.2.0.192.bl.example."
        );
        assert_eq!(
            query_name(ip("::ffff:192.0.2.99"), "bl.example"),
            "99.2.0.192.bl.example."
        );
        assert_eq!(
            query_name(ip("2001:db8::1"), "bl.example"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example."
        );
        assert!(counts(Ipv4Addr::new(127, 0, 0, 2), None));
        assert!(
            !counts(Ipv4Addr::new(127, 255, 255, 254), None),
            "Spamhaus: query refused"
        );
        assert!(!counts(Ipv4Addr::new(10, 0, 0, 2), None), "outside 127/8");
        assert!(!counts(
            Ipv4Addr::new(127, 0, 0, 4),
            Some(Ipv4Addr::new(127, 0, 0, 2))
        ));
    }

    #[tokio::test]
    async fn listings_add_their_weights_and_answers_are_cached() {
        let a = |s: &str| Ok(vec![MockZone::insecure(Data::Ip(ip(s)))]);
        let zone = MockZone::default()
            .with("2.0.0.127.big.example", Kind::Ip, a("127.0.0.2"))
            .with("2.0.0.127.small.example", Kind::Ip, a("127.0.0.10"))
            .with("2.0.0.127.picky.example", Kind::Ip, a("127.0.0.10"))
            .with("2.0.0.127.refusing.example", Kind::Ip, a("127.255.255.254"))
            .with(
                "3.0.0.127.big.example",
                Kind::Ip,
                Err(Error::NoSuchName { secure: false }),
            );
        let dns = Dns::new(Arc::new(zone), false);
        let dir = tempfile::tempdir().unwrap();
        let bl = Arc::new(
            Dnsbl::new(super::super::open_db(&dir.path().join("inbound.redb")).unwrap()).unwrap(),
        );
        let zones: Vec<Zone> = [
            "big.example*3",
            "small.example*2",
            "picky.example=127.0.0.2*5",
            "refusing.example*9",
            "silent.example*7",
        ]
        .iter()
        .map(|z| z.parse().unwrap())
        .collect();
        let listed = bl.score(&dns, ip("127.0.0.2"), &zones).await;
        assert_eq!(
            listed,
            Listing {
                score: 5,
                zones: vec!["big.example".into(), "small.example".into()]
            }
        );
        assert_eq!(
            bl.score(&dns, ip("127.0.0.3"), &zones).await,
            Listing::default()
        );
        // From the cache now, even with the DNS gone.
        let gone = Dns::new(Arc::new(MockZone::default()), false);
        assert_eq!(bl.score(&gone, ip("127.0.0.2"), &zones).await, listed);
        // A failed lookup (silent.example) was not cached as "not listed".
        let r = bl.db.begin_read().unwrap();
        let t = r.open_table(CACHE).unwrap();
        assert!(t.get("silent.example\x00127.0.0.2").unwrap().is_none());
        assert!(
            t.get("big.example\x00127.0.0.3").unwrap().is_some(),
            "NXDOMAIN is an answer"
        );
    }
}
