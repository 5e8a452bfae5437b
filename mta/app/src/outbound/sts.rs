//! MTA-STS (RFC 8461): a domain announces in DNS (`_mta-sts.<domain>` TXT)
//! that its MX hosts take mail only over verified TLS, and publishes which
//! hosts those are at `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
//!
//! Policies are cached in `<data>/cache/mta-sts.redb` for their `max_age`,
//! so a later DNS or HTTPS failure (or an attacker blocking them) does not
//! downgrade delivery to a domain once seen with a policy (§5.1).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

/// Longest `max_age` a policy may ask for (RFC 8461 §3.2: about a year).
const MAX_AGE_LIMIT: u64 = 31_557_600;
/// Largest policy body accepted (§3.3 suggests 64 KiB).
pub const MAX_POLICY_SIZE: usize = 64 * 1024;

const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new("policies");
/// The first byte of a stored policy: a later format must read this one
/// (or keep it as is), or an upgrade would forget policies and downgrade.
const FORMAT: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Deliver only to listed MX hosts over verified TLS.
    Enforce,
    /// Report problems, deliver as without a policy.
    Testing,
    /// The domain withdrew its policy.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The `id` of the TXT record the policy was fetched for.
    pub id: String,
    pub mode: Mode,
    /// MX host patterns: exact names or `*.` plus a domain (one label).
    pub mx: Vec<String>,
    pub max_age: u64,
    /// Unix time the policy was fetched.
    pub fetched: u64,
}

impl Policy {
    /// Parses a policy body (§3.2). `id` and `fetched` are the caller's.
    pub fn parse(text: &str, id: &str, fetched: u64) -> Result<Policy, String> {
        let (mut version, mut mode, mut max_age) = (None, None, None);
        let mut mx = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("line {line:?} is not `key: value`"));
            };
            let value = value.trim();
            match key.trim() {
                // The first occurrence counts (§3.2).
                "version" => {
                    version.get_or_insert(value.to_string());
                }
                "mode" if mode.is_none() => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("mode {other:?} is not known")),
                    });
                }
                "max_age" if max_age.is_none() => {
                    let v: u64 = value
                        .parse()
                        .ok()
                        .filter(|_| value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| format!("max_age {value:?} is not a number"))?;
                    max_age = Some(v.min(MAX_AGE_LIMIT));
                }
                "mx" => mx.push(value.trim_end_matches('.').to_ascii_lowercase()),
                _ => {} // Extensions are ignored.
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("the policy's version is not STSv1".into());
        }
        let mode = mode.ok_or("the policy has no mode")?;
        let max_age = max_age.ok_or("the policy has no max_age")?;
        if mx.is_empty() && mode != Mode::None {
            return Err("the policy lists no mx".into());
        }
        Ok(Policy {
            id: id.to_string(),
            mode,
            mx,
            max_age,
            fetched,
        })
    }

    /// Whether an MX host name matches one of the policy's patterns (§4.1):
    /// a wildcard stands for exactly one leftmost label.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => *pattern == host,
            })
    }

    /// Half the policy's life has passed: time to fetch it again, while the
    /// cached copy still covers a failure (§5.1 allows refreshing early).
    pub fn refresh_due(&self, now: u64) -> bool {
        self.fetched.saturating_add(self.max_age / 2) <= now
    }

    pub fn expired(&self, now: u64) -> bool {
        self.fetched.saturating_add(self.max_age) <= now
    }
}

/// The policy id announced by a domain's `_mta-sts` TXT records: `None`
/// unless exactly one of them is a valid STSv1 record (§3.1).
pub fn txt_id(records: &[String]) -> Option<String> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.split(';').next().map(str::trim) == Some("v=STSv1"))
        .collect();
    let [record] = sts.as_slice() else {
        return None;
    };
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    fields.next(); // the version
    fields.find_map(|f| {
        let id = f.strip_prefix("id=")?;
        (!id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| id.to_string())
    })
}

/// The policy cache.
pub struct Cache {
    db: Database,
}

impl Cache {
    pub fn open(dir: &Path) -> anyhow::Result<Cache> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Only a cache: a damaged one is set aside and policies are
        // fetched again.
        let (db, _) = mta_store::fsutil::open_database(
            &dir.join("mta-sts.redb"),
            "MTA-STS policies are fetched again",
            1 << 20,
            |db| {
                let txn = db.begin_write()?;
                txn.open_table(POLICIES)?;
                txn.commit()?;
                Ok(())
            },
        )?;
        Ok(Cache { db })
    }

    pub fn get(&self, domain: &str) -> anyhow::Result<Option<Policy>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(POLICIES)?;
        let Some(value) = table.get(domain)? else {
            return Ok(None);
        };
        match value.value().split_first() {
            Some((&FORMAT, rest)) => Ok(Some(postcard::from_bytes(rest)?)),
            _ => anyhow::bail!("the cached policy of {domain} is in an unknown format"),
        }
    }

    pub fn put(&self, domain: &str, policy: &Policy) -> anyhow::Result<()> {
        let mut bytes = vec![FORMAT];
        bytes.extend(postcard::to_allocvec(policy)?);
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(POLICIES)?;
            table.insert(domain, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Fetches `https://<host>/.well-known/mta-sts.txt` from `addr` (§3.3):
/// the certificate must be valid for `host`, redirects are not followed,
/// only a `200` with a `text/plain` body of at most 64 KiB counts.
pub async fn fetch(
    addr: std::net::SocketAddr,
    host: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
) -> Result<String, String> {
    // One limit for all of it: a server that accepts and then stalls must
    // not hold a delivery worker.
    tokio::time::timeout(
        Duration::from_secs(60),
        get(addr, host, tls, connect_timeout),
    )
    .await
    .unwrap_or_else(|_| Err(format!("fetching the policy from {host}: timed out")))
}

async fn get(
    addr: std::net::SocketAddr,
    host: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty, Limited};
    use hyper::body::Bytes;

    let tcp = super::client::connect(addr, connect_timeout)
        .await
        .map_err(|f| f.message)?;
    let stream = super::client::handshake(tcp, &tls, host, connect_timeout)
        .await
        .map_err(|f| f.message)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP with {host}: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/.well-known/mta-sts.txt")
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "mailbox-mta")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP with {host}: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!(
                "https://{host}/.well-known/mta-sts.txt answered {}",
                response.status()
            ));
        }
        let media = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !media.to_ascii_lowercase().starts_with("text/plain") {
            return Err(format!(
                "the policy at {host} is served as {media:?}, not text/plain"
            ));
        }
        let body = Limited::new(response.into_body(), MAX_POLICY_SIZE)
            .collect()
            .await
            .map_err(|e| format!("reading the policy from {host}: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| format!("the policy at {host} is not UTF-8"))
    };
    let result = result.await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_policy() {
        let text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com.\r\nmax_age: 604800\r\n";
        let p = Policy::parse(text, "abc", 100).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("backupmx.example.com"));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("example.net"), "the wildcard needs a label");
        assert!(!p.allows("a.b.example.net"), "the wildcard is one label");
        assert!(!p.allows("evil.example.com"));
        assert!(!p.expired(100 + 604799));
        assert!(!p.refresh_due(100 + 302399));
        assert!(p.refresh_due(100 + 302400));
        assert!(p.expired(100 + 604800));
    }

    #[test]
    fn refuses_broken_policies() {
        for (text, why) in [
            ("mode: enforce\nmx: a.example\nmax_age: 1\n", "version"),
            (
                "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
                "version",
            ),
            (
                "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
                "mode",
            ),
            ("version: STSv1\nmode: enforce\nmax_age: 1\n", "mx"),
            ("version: STSv1\nmode: enforce\nmx: a.example\n", "max_age"),
            (
                "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
                "max_age",
            ),
            (
                "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: +5\n",
                "max_age",
            ),
            ("<html>\n", "key"),
        ] {
            let e = Policy::parse(text, "1", 0).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        // Unknown keys are extensions; a huge max_age is capped.
        let p = Policy::parse(
            "version: STSv1\nmode: none\nmax_age: 9999999999\nfuture: x\n",
            "1",
            0,
        )
        .unwrap();
        assert_eq!((p.mode, p.max_age), (Mode::None, MAX_AGE_LIMIT));
    }

    #[test]
    fn reads_the_txt_record() {
        let one = |s: &str| txt_id(&[s.to_string()]);
        assert_eq!(
            one("v=STSv1; id=20160831085700Z;"),
            Some("20160831085700Z".into())
        );
        assert_eq!(one("v=STSv1;id=a1"), Some("a1".into()));
        assert_eq!(one("v=STSv1; id=not-alnum"), None);
        assert_eq!(one("v=STSv1"), None);
        assert_eq!(one("v=STSv1 ; id=x1"), Some("x1".into()));
        // Another version is not a second STSv1 record.
        assert_eq!(
            txt_id(&["v=STSv10; id=a".into(), "v=STSv1; id=b".into()]),
            Some("b".into())
        );
        assert_eq!(one("v=spf1 -all"), None);
        // Two STS records: none counts.
        assert_eq!(
            txt_id(&["v=STSv1; id=a".into(), "v=STSv1; id=b".into()]),
            None
        );
        // Other TXT records beside it do not matter.
        assert_eq!(
            txt_id(&["v=spf1 -all".into(), "v=STSv1; id=b".into()]),
            Some("b".into())
        );
    }

    #[test]
    fn cache_keeps_policies() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.get("example.com").unwrap(), None);
        let p = Policy::parse(
            "version: STSv1\nmode: testing\nmx: *.example.com\nmax_age: 86400\n",
            "x1",
            5,
        )
        .unwrap();
        cache.put("example.com", &p).unwrap();
        drop(cache);
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.get("example.com").unwrap(), Some(p));
    }
}
