//! Intake: what a finished SMTP transaction becomes. Its content is spooled
//! as it arrives ([`Intake::incoming`]); at the end the message is DKIM-signed
//! when an account submitted it, its envelope built, and it is stored
//! durably in the queue — only then may the session say `250`.

use std::net::SocketAddr;
use std::sync::Arc;

use mta_proto::smtp::session::{Clock, IntakeError, Submission};
use mta_store::body::Body;
use mta_store::envelope::{Envelope, QueueId};
use mta_store::queue::{Queue, StoreError};
use mta_store::spool::{Budget, Incoming, MEMORY_BUDGET, Place};

use crate::directory::Target;
use crate::settings::Settings;

/// The host's clock and queue ids for the sessions (local time in the
/// trace fields, as Postfix writes them).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::Local::now().fixed_offset()
    }

    fn queue_id(&self) -> u64 {
        QueueId::generate().0
    }
}

/// Where finished messages go, shared by every listener.
pub struct Intake {
    pub queue: Queue,
    /// Message content held in memory by all sessions.
    budget: Arc<Budget>,
    spool: Arc<Place>,
    /// DKIM signings at once.
    signings: tokio::sync::Semaphore,
}

impl Intake {
    pub fn new(queue: Queue, min_free_space: u64) -> Intake {
        Intake {
            budget: Arc::new(Budget::new(MEMORY_BUDGET)),
            spool: Arc::new(Place {
                dir: queue.spool_dir(),
                min_free_space,
            }),
            signings: tokio::sync::Semaphore::new(2),
            queue,
        }
    }

    /// A place for the content of a new transaction, in memory within the
    /// shared budget, else in a spool file.
    pub fn incoming(&self) -> Incoming {
        Incoming::new(self.budget.clone(), self.spool.clone())
    }

    /// Signs and stores a finished message; `Ok` only once it is durable.
    pub async fn store(
        &self,
        settings: &Settings,
        peer: SocketAddr,
        submission: Submission<Target>,
        content: Incoming,
    ) -> Result<(), IntakeError> {
        let Submission {
            id,
            arrival,
            from,
            client,
            auth,
            recipients,
            size,
            prefix,
            rest,
            transaction: _,
            author_domain,
        } = submission;
        let id = QueueId(id);
        let envelope = Envelope::new(id, from, arrival, client, auth, recipients, size);
        let outcome = match content.finish(prefix, rest).await {
            Ok(body) => {
                let body = if envelope.auth.is_some() {
                    self.sign(settings, id, author_domain, body).await
                } else {
                    body
                };
                let from = mta_proto::logsafe::escape(&envelope.from).into_owned();
                let size = body.len();
                let nrcpt = envelope.recipients.len();
                let spooled = body.file().map(|p| p.to_path_buf());
                let outcome = self.queue.intake(envelope, body).await;
                if outcome.is_ok() {
                    crate::stats::stats().count(crate::stats::Event::Received);
                }
                match &outcome {
                    Ok(()) => tracing::info!(
                        queue_id = %id,
                        client = %peer,
                        from = %from,
                        size,
                        nrcpt,
                        status = "queued",
                        "{id}: client={peer}, from=<{from}>, size={size}, nrcpt={nrcpt} (queued)"
                    ),
                    Err(e) => {
                        if let Some(path) = spooled {
                            let _ = std::fs::remove_file(path);
                        }
                        tracing::warn!("{id}: client={peer}, from=<{from}>: not queued: {e:?}")
                    }
                }
                outcome
            }
            Err(e) => {
                tracing::warn!("{id}: client={peer}: not queued: {e:?}");
                Err(e)
            }
        };
        outcome.map_err(|e| match e {
            StoreError::DiskFull => IntakeError::DiskFull,
            StoreError::Failed => IntakeError::Failed,
        })
    }

    /// DKIM-signs submitted mail whose From domain (checked by the session
    /// to belong to the account) is ours; the signatures go in front of the
    /// message. A failure to sign is logged and the message still goes
    /// (unsigned is better than lost).
    async fn sign(
        &self,
        settings: &Settings,
        id: QueueId,
        domain: Option<String>,
        body: Body,
    ) -> Body {
        let Some(domain) = domain.filter(|d| settings.directory.is_local_domain(d)) else {
            return body;
        };
        let keys = settings.dkim.clone();
        // Signing reads the whole message (a large one through a memory
        // map): a few at a time.
        let Ok(_permit) = self.signings.acquire().await else {
            return body;
        };
        tokio::task::spawn_blocking(move || {
            let signature = body
                .mapped()
                .map_err(anyhow::Error::from)
                .and_then(|m| keys.sign(&domain, &m.chunks()));
            let mut body = body;
            match signature {
                Ok(fields) => body.prepend(&fields),
                Err(e) => tracing::error!("{id}: not DKIM-signed: {e:#}"),
            }
            body
        })
        .await
        .expect("the signing task does not panic")
    }
}
