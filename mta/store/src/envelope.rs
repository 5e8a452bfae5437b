//! The queue's record of one message: who sent it, where each copy goes and
//! how far each delivery has come. Stored postcard-encoded in the queue.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A queue id: microseconds since the epoch in the high bits and a process
/// counter in the low 12 bits, so ids sort by arrival and never repeat within
/// one process. Shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueId(pub u64);

impl QueueId {
    pub fn generate() -> QueueId {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = now_micros() << 12;
        // Strictly increasing even if the clock stands still or steps back.
        let mut prev = LAST.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return QueueId(next),
                Err(p) => prev = p,
            }
        }
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

impl FromStr for QueueId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s.trim(), 16).map(QueueId)
    }
}

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn now_secs() -> u64 {
    now_micros() / 1_000_000
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: QueueId,
    /// The reverse path; empty for the null sender `<>` (bounces).
    pub from: String,
    /// Arrival, microseconds since the epoch.
    pub arrival: u64,
    /// `helo [ip]` of the client, for logs.
    pub client: String,
    /// The account that submitted it, for authenticated submission.
    pub auth: Option<String>,
    pub recipients: Vec<Recipient>,
    /// Held messages are not delivered until released.
    pub held: bool,
    /// The sender was told that delivery is delayed.
    pub warned: bool,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address as the client gave it in `RCPT TO`.
    pub original: String,
    pub target: Target,
    pub status: Status,
    pub attempts: u32,
    /// Unix seconds before which no new attempt is made.
    pub next_attempt: u64,
    pub last_error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Delivered,
    Failed,
}

/// The format of an envelope record: this byte, then the postcard
/// encoding. Records written before formats were numbered have no byte.
const FORMAT: u8 = 1;

impl Envelope {
    /// The stored record: the format byte, then the postcard encoding.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut bytes = vec![FORMAT];
        postcard::to_io(self, &mut bytes)?;
        Ok(bytes)
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, postcard::Error> {
        match bytes.split_first() {
            Some((&FORMAT, rest)) => postcard::from_bytes(rest),
            _ => Err(postcard::Error::DeserializeBadEncoding),
        }
        // Records from before formats were numbered.
        .or_else(|e| postcard::from_bytes(bytes).map_err(|_| e))
    }

    /// A message just received (or a notice just made): every recipient
    /// pending, none attempted yet. `recipients` are the addresses as given
    /// in `RCPT TO`, each with where its copy goes.
    pub fn new(
        id: QueueId,
        from: String,
        arrival: u64,
        client: String,
        auth: Option<String>,
        recipients: Vec<(String, Target)>,
        size: u64,
    ) -> Envelope {
        let recipients = recipients
            .into_iter()
            .map(|(original, target)| Recipient {
                original,
                target,
                status: Status::Pending,
                attempts: 0,
                next_attempt: 0,
                last_error: None,
            })
            .collect();
        Envelope {
            id,
            from,
            arrival,
            client,
            auth,
            recipients,
            held: false,
            warned: false,
            size,
        }
    }

    pub fn pending(&self) -> impl Iterator<Item = (usize, &Recipient)> {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == Status::Pending)
    }

    pub fn is_done(&self) -> bool {
        self.pending().next().is_none()
    }

    /// When the next attempt is due (unix seconds), if anything is pending.
    pub fn next_attempt(&self) -> Option<u64> {
        self.pending().map(|(_, r)| r.next_attempt).min()
    }
}

/// Where one copy of a message goes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// The Maildir of a local account; `delivered_to` is the address shown in
    /// the `Delivered-To:` header (the plus-address when one was used).
    Local {
        account: String,
        delivered_to: String,
    },
    /// An address in another domain (an alias that forwards).
    Remote { address: String },
}

impl Target {
    /// What makes two targets the same copy.
    pub fn dedupe_key(&self) -> String {
        match self {
            Target::Local { account, .. } => format!("local:{account}"),
            Target::Remote { address } => format!("remote:{}", address.to_lowercase()),
        }
    }
}
