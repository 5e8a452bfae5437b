//! Looking for new versions at the update URL (`[update] url`, every
//! `check_every`): a directory as `cargo xtask bundle --publish` writes
//! it —
//!
//! - `<board>.manifest`: the newest bundle's signed head (magic, manifest,
//!   signature; see `image::bundle`), small and checkable by itself;
//! - `mailbox-<board>-<version>.bundle`: the bundle.
//!
//! The manifest is fetched and its signature, board and version checked
//! first; only a newer version than the one running is downloaded, and
//! it goes through the same checks as an upload (`update::Receiver`)
//! before init gets it. Plain HTTP is allowed: the signature is what is
//! trusted, not the transport. Every request has a deadline and every
//! answer a bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;

use crate::update::Receiver;

/// One request's deadline (connect, headers, a small body).
const REQUEST_TIME: Duration = Duration::from_secs(30);
/// The largest signed manifest read.
const MAX_MANIFEST: usize = 8 + 4 + 64 * 1024 + 64;
/// The first check after the server starts (the network is up, the
/// update that just booted has been judged).
const FIRST_CHECK: Duration = Duration::from_secs(120);

/// What the last check found, for the Update page.
#[derive(Debug, Clone, Default)]
pub struct LastCheck {
    /// When (Unix seconds).
    pub at: u64,
    /// What it came to, for people.
    pub outcome: String,
    pub ok: bool,
}

/// The update URL and what its last check found.
pub struct Feed {
    url: String,
    every: Duration,
    client: Client<crate::acme::Connector, Empty<Bytes>>,
    receiver: Arc<Receiver>,
    last: Mutex<Option<LastCheck>>,
    checking: AtomicBool,
}

impl Feed {
    /// The feed of `config`, if it names an update URL.
    pub fn new(
        config: &crate::config::Config,
        dns: &Arc<crate::dns::Dns>,
        receiver: Arc<Receiver>,
    ) -> anyhow::Result<Option<Arc<Feed>>> {
        let Some(url) = &config.update.url else {
            return Ok(None);
        };
        let ca = config.acme.as_ref().and_then(|a| a.ca.as_deref());
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(crate::acme::connector(ca, dns, false)?);
        Ok(Some(Arc::new(Feed {
            url: url.clone(),
            every: config.update.check_every,
            client,
            receiver,
            last: Mutex::new(None),
            checking: AtomicBool::new(false),
        })))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    pub fn last(&self) -> Option<LastCheck> {
        self.last.lock().expect("not poisoned").clone()
    }

    /// Checks every `check_every`, for as long as the server runs.
    pub async fn run(self: Arc<Feed>) {
        tokio::time::sleep(FIRST_CHECK.min(self.every)).await;
        loop {
            self.check_and_record().await;
            tokio::time::sleep(self.every).await;
        }
    }

    /// Whether a check is under way.
    pub fn checking(&self) -> bool {
        self.checking.load(Ordering::SeqCst)
    }

    /// Checks once (unless a check is under way), logs and keeps what it
    /// came to.
    pub async fn check_and_record(&self) {
        if self.checking.swap(true, Ordering::SeqCst) {
            return;
        }
        let (ok, text) = match self.check().await {
            Ok(text) => {
                tracing::info!("update check at {}: {text}", self.url);
                (true, text)
            }
            Err(e) => {
                tracing::warn!("update check at {} failed: {e:#}", self.url);
                (false, format!("failed: {e:#}"))
            }
        };
        *self.last.lock().expect("not poisoned") = Some(LastCheck {
            at: mta_store::envelope::now_secs(),
            outcome: text,
            ok,
        });
        self.checking.store(false, Ordering::SeqCst);
    }

    /// One check: what it came to.
    async fn check(&self) -> anyhow::Result<String> {
        if self.receiver.pending() {
            return Ok("an update is already waiting to be installed".into());
        }
        let board = self.receiver.board().to_string();
        if board.is_empty() {
            bail!("this server does not know which board it is (set [update] board)");
        }
        let head = self.get_small(&format!("{board}.manifest")).await?;
        let manifest = self.receiver.announced(&head)?;
        if !self.receiver.is_newer(&manifest.version) {
            return Ok(format!(
                "up to date (the newest there is {}, this is {})",
                manifest.version,
                self.receiver.running()
            ));
        }
        // A version that did not start in its trial boots is not tried
        // again by itself (each try is three boots without mail): a newer
        // one, or the owner's upload, is.
        if let Some(crate::update::Status::Failed { version, .. }) = self.receiver.status()
            && version == manifest.version
        {
            return Ok(format!(
                "version {version} is offered, but it failed here before; upload it on this page to try it again"
            ));
        }
        let name = format!("mailbox-{board}-{}.bundle", manifest.version);
        let response = self.get(&name).await?;
        let body = response.into_body().into_data_stream();
        let received = self
            .receiver
            .receive(false, Some(&manifest.version), body)
            .await
            .with_context(|| format!("{}{name}", self.url))?;
        Ok(format!(
            "version {} downloaded; the appliance installs it and restarts",
            received.version
        ))
    }

    async fn get(&self, name: &str) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let url = format!("{}{name}", self.url);
        let request = hyper::Request::get(&url)
            .header(
                hyper::header::USER_AGENT,
                concat!("Mailbox/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .with_context(|| format!("{url} is not a usable address"))?;
        let response = tokio::time::timeout(REQUEST_TIME, self.client.request(request))
            .await
            .map_err(|_| anyhow::anyhow!("{url} did not answer within {REQUEST_TIME:?}"))?
            .with_context(|| url.clone())?;
        if !response.status().is_success() {
            bail!("{url} answered {}", response.status());
        }
        Ok(response)
    }

    /// A small file of the feed, whole.
    async fn get_small(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let response = self.get(name).await?;
        let body = Limited::new(response.into_body(), MAX_MANIFEST);
        let bytes = tokio::time::timeout(REQUEST_TIME, body.collect())
            .await
            .map_err(|_| anyhow::anyhow!("{}{name} arrived too slowly", self.url))?
            .map_err(|e| anyhow::anyhow!("{}{name}: {e}", self.url))?
            .to_bytes();
        Ok(bytes.to_vec())
    }
}
