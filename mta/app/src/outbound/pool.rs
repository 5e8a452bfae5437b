//! Connection reuse (like Postfix's connection cache): after a
//! transaction the connection waits, idle, for the next message to the
//! same next hop; it is closed after `IDLE` without one, and is not
//! reused once `LIFETIME` old. A reused connection is checked with RSET
//! first. Idle connections hold no per-destination permit, but only a
//! delivery holding one takes or returns them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::client::Connection;

const IDLE: Duration = Duration::from_secs(2);
const LIFETIME: Duration = Duration::from_secs(300);

/// What a connection may be reused for: the same address, name, protocol,
/// TLS policy and login.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub addr: SocketAddr,
    pub host: String,
    pub lmtp: bool,
    pub policy: super::Policy,
    pub user: Option<String>,
}

pub struct Idle {
    pub connection: Connection,
    pub uses: u32,
    opened: Instant,
    serial: u64,
}

impl Idle {
    pub fn new(connection: Connection) -> Idle {
        Idle {
            connection,
            uses: 0,
            opened: Instant::now(),
            serial: 0,
        }
    }
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    serial: AtomicU64,
}

impl Pool {
    pub async fn take(&self, key: &Key) -> Option<Idle> {
        loop {
            let mut idle = {
                let mut map = self.idle.lock().expect("pool");
                let list = map.get_mut(key)?;
                let found = list.pop();
                if list.is_empty() {
                    map.remove(key);
                }
                found?
            };
            if idle.connection.reset().await {
                return Some(idle);
            }
            tracing::debug!("{}: not reusable", idle.connection.peer);
        }
    }

    pub fn put(self: &Arc<Self>, key: Key, mut idle: Idle) {
        if idle.opened.elapsed() >= LIFETIME {
            tokio::spawn(idle.connection.quit());
            return;
        }
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        idle.serial = serial;
        self.idle
            .lock()
            .expect("pool")
            .entry(key.clone())
            .or_default()
            .push(idle);
        let pool = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(IDLE).await;
            let expired = {
                let mut map = pool.idle.lock().expect("pool");
                let Some(list) = map.get_mut(&key) else {
                    return;
                };
                let Some(at) = list.iter().position(|i| i.serial == serial) else {
                    return;
                };
                let expired = list.remove(at);
                if list.is_empty() {
                    map.remove(&key);
                }
                expired
            };
            expired.connection.quit().await;
        });
    }
}
