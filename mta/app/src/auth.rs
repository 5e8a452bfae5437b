//! Logins for every protocol: the limiter of failed logins (per source and
//! per account) and the password check off the event loop, a few at a time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mta_proto::sasl::{AuthOutcome, Credentials};

use crate::directory::Directory;

/// Checks logins for all listeners: one limiter, one bound on the password
/// checks running at once.
pub struct Logins {
    limiter: AuthLimiter,
    password_checks: tokio::sync::Semaphore,
}

impl Default for Logins {
    fn default() -> Logins {
        Logins {
            limiter: AuthLimiter::default(),
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
        }
    }
}

/// Failed logins in a sliding window, per source (an IPv4 address or an
/// IPv6 /64, which one host usually has whole) and per account. A source
/// past its limit is refused without a password check; an account past its
/// limit is only slowed down, so guessing from many addresses cannot lock
/// its owner out.
#[derive(Default)]
struct AuthLimiter {
    failures: Mutex<HashMap<String, std::collections::VecDeque<tokio::time::Instant>>>,
}

const AUTH_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Entries in the failure table before it is pruned (about 200 bytes each).
const AUTH_TABLE_SIZE: usize = 50_000;
const AUTH_FAILURES_PER_SOURCE: usize = 5;
const AUTH_FAILURES_PER_ACCOUNT: usize = 10;
/// What every failed login costs, and the extra wait for each login to an
/// account that is being guessed at.
const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);
const AUTH_GUESSED_DELAY: Duration = Duration::from_secs(5);
/// Password hashes computed at once: an argon2 check holds 19 MiB, so the
/// number in flight bounds memory; further logins wait their turn.
const PASSWORD_CHECKS: usize = 2;

impl AuthLimiter {
    fn source_key(ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => format!("ip:{v4}"),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => format!("ip:{v4}"),
                None => {
                    let s = v6.segments();
                    format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }

    fn count(&self, key: &str) -> usize {
        let mut map = self.failures.lock().expect("auth limiter");
        let now = tokio::time::Instant::now();
        let Some(q) = map.get_mut(key) else { return 0 };
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > AUTH_WINDOW)
        {
            q.pop_front();
        }
        q.len()
    }

    fn source_blocked(&self, source: &str) -> bool {
        self.count(source) >= AUTH_FAILURES_PER_SOURCE
    }

    fn account_guessed(&self, account: &str) -> bool {
        self.count(account) >= AUTH_FAILURES_PER_ACCOUNT
    }

    fn record(&self, source: &str, account: Option<&str>) {
        let mut map = self.failures.lock().expect("auth limiter");
        let now = tokio::time::Instant::now();
        for key in std::iter::once(source).chain(account) {
            let q = map.entry(key.to_string()).or_default();
            q.push_back(now);
            // Only the count up to the limit matters.
            if q.len() > AUTH_FAILURES_PER_ACCOUNT {
                q.pop_front();
            }
        }
        if map.len() > AUTH_TABLE_SIZE {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) <= AUTH_WINDOW)
            });
        }
        if map.len() > AUTH_TABLE_SIZE {
            // Guessing from more addresses than that: keep the sources and
            // accounts that are at their limits.
            map.retain(|_, q| q.len() >= AUTH_FAILURES_PER_SOURCE);
        }
    }
}

/// The verdict on a guess at a secret that is not a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    Right,
    Wrong,
    /// Too many wrong guesses from this source: not even checked.
    TryLater,
}

impl Logins {
    /// A guess at a secret other than a password (the setup code), limited
    /// like logins: per source, and all guesses together count as one
    /// account (`what`) that is slowed down when guessed at.
    pub async fn guess(&self, peer: IpAddr, what: &str, right: impl FnOnce() -> bool) -> Guess {
        let source = AuthLimiter::source_key(peer);
        let target = format!("secret:{what}");
        if self.limiter.source_blocked(&source) {
            tokio::time::sleep(AUTH_FAILURE_DELAY).await;
            return Guess::TryLater;
        }
        if self.limiter.account_guessed(&target) {
            tokio::time::sleep(AUTH_GUESSED_DELAY).await;
        }
        if right() {
            return Guess::Right;
        }
        self.limiter.record(&source, Some(&target));
        tracing::warn!("client={peer}: wrong {what}");
        tokio::time::sleep(AUTH_FAILURE_DELAY).await;
        Guess::Wrong
    }

    /// Checks an SMTP AUTH login (see [`Logins::login`]).
    pub async fn authenticate(
        &self,
        directory: Arc<Directory>,
        peer: SocketAddr,
        credentials: Credentials,
    ) -> AuthOutcome {
        let method = credentials.mechanism.name();
        self.login(
            directory,
            peer,
            credentials.username,
            credentials.password,
            method,
        )
        .await
    }

    /// Checks a login off the event loop; failures are slow and counted.
    /// `method` names the way in for the log (`PLAIN`, `web` …).
    pub async fn login(
        &self,
        directory: Arc<Directory>,
        peer: SocketAddr,
        username: String,
        password: String,
        method: &str,
    ) -> AuthOutcome {
        let source = AuthLimiter::source_key(peer.ip());
        // Failures count against accounts that exist: names sent by guessers
        // must not fill the table.
        let account = directory.account_of(&username).map(|a| format!("user:{a}"));
        let shown = mta_proto::logsafe::escape(&username).into_owned();
        if self.limiter.source_blocked(&source) {
            tracing::warn!(
                "client={peer}, sasl_method={method}, sasl_username={shown}: refused, too many failures from {source}"
            );
            tokio::time::sleep(AUTH_FAILURE_DELAY).await;
            return AuthOutcome::TryLater;
        }
        if account
            .as_deref()
            .is_some_and(|a| self.limiter.account_guessed(a))
        {
            // Someone is guessing this account's password from many places:
            // every login to it is slower, none is refused.
            tokio::time::sleep(AUTH_GUESSED_DELAY).await;
        }
        let verified = {
            let Ok(_permit) = self.password_checks.acquire().await else {
                return AuthOutcome::TryLater;
            };
            let directory = directory.clone();
            tokio::task::spawn_blocking(move || directory.verify_password(&username, &password))
                .await
                .ok()
                .flatten()
        };
        match verified {
            Some(account) => {
                tracing::info!("client={peer}, sasl_method={method}, sasl_username={account}");
                AuthOutcome::Accepted(account)
            }
            None => {
                self.limiter.record(&source, account.as_deref());
                tracing::warn!(
                    "client={peer}, sasl_method={method}, sasl_username={shown}: authentication failed"
                );
                tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                AuthOutcome::Rejected
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let key = |s: &str| AuthLimiter::source_key(s.parse().unwrap());
        assert_eq!(key("192.0.2.7"), "ip:192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "ip:192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        let limiter = AuthLimiter::default();
        let a = key("2001:db8:1:2::1");
        for _ in 0..AUTH_FAILURES_PER_SOURCE {
            assert!(!limiter.source_blocked(&key("2001:db8:1:2::99")));
            limiter.record(&a, Some("user:x"));
        }
        assert!(
            limiter.source_blocked(&key("2001:db8:1:2::99")),
            "the same /64"
        );
        assert!(!limiter.source_blocked(&key("2001:db8:1:3::1")));
        assert!(!limiter.account_guessed("user:x"), "5 < 10: not slowed yet");
    }
}
