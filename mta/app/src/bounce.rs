//! Notices to the sender (RFC 3464 DSNs) for the queue: failed and delayed
//! recipients reported from MAILER-DAEMON, routed by the directory,
//! DKIM-signed when the host name is in one of our domains. The queue knows
//! nothing of this: it calls the [`Bouncer`] it was given.

use std::sync::Arc;

use mta_proto::address::Address;
use mta_store::envelope::{Envelope, QueueId, Recipient, now_micros};
use mta_store::queue::{Bouncer, Notice};

use crate::directory::{Lookup, Target};
use crate::settings::Live;

pub fn bouncer(settings: Live, hostname: String) -> Bouncer {
    Arc::new(
        move |env: &Envelope, failed: &[usize], original: &[u8], notice: Notice| {
            let s = settings.get();
            let sender = Address::parse(&env.from, true).ok()?;
            let targets = match s.directory.lookup(&sender) {
                Ok(Lookup::Deliver(t)) => t,
                Ok(Lookup::NotLocal) => vec![Target::Remote {
                    address: env.from.clone(),
                }],
                _ => {
                    tracing::warn!(
                        "{}: no bounce: the sender {} has no mailbox here",
                        env.id,
                        env.from
                    );
                    return None;
                }
            };
            let rcpts: Vec<&Recipient> = failed
                .iter()
                .filter_map(|i| env.recipients.get(*i))
                .collect();
            let id = QueueId::generate();
            let mut body = crate::dsn::report(
                &hostname,
                env,
                &rcpts,
                original,
                &id.to_string(),
                notice == Notice::Delayed,
            );
            let mut labels = hostname.as_str();
            let signing_domain = loop {
                if s.directory.is_local_domain(labels) {
                    break Some(labels.to_string());
                }
                match labels.split_once('.') {
                    Some((_, rest)) if rest.contains('.') => labels = rest,
                    _ => break None,
                }
            };
            if let Some(domain) = signing_domain {
                match s.dkim.signed(&domain, &body) {
                    Ok(signed) => body = signed,
                    Err(e) => tracing::warn!("{id}: bounce not DKIM-signed: {e:#}"),
                }
            }
            let recipients = targets
                .into_iter()
                .map(|target| (env.from.clone(), target))
                .collect();
            let size = body.len() as u64;
            let envelope = Envelope::new(
                id,
                String::new(),
                now_micros(),
                "bounce".into(),
                None,
                recipients,
                size,
            );
            Some((envelope, body))
        },
    )
}
