//! Receiving an update bundle (upload, API) and handing it to init
//! (`image::update` describes the hand-off): the signature, board and
//! version are checked as soon as the bundle's head has arrived — a wrong
//! bundle is refused before the rest is stored — then every file's hash
//! once it is whole; only then is it renamed to `update/ready.bundle`,
//! which init installs. One update at a time; a bundle has a size limit
//! and the data partition keeps its free space.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hyper::body::Bytes;

use image::bundle::BundleError;
pub use image::bundle::Manifest;
pub use image::update::Status;
use image::update::{FORCE, INCOMING, READY, STATUS};

/// How long the sender may pause, and the whole transfer.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Received bytes written to the disk at a time.
const BATCH: usize = 1 << 20;

/// No bundle is larger (a slot is ~20 MiB today).
pub const MAX_BUNDLE: u64 = 256 << 20;
/// What the head of a bundle may take before its signature is checked.
const MAX_HEAD: usize = 8 + 4 + 64 * 1024 + 64;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error("another update is being received or installed; try again in a minute")]
    Busy,
    #[error(
        "this server trusts no update key (the image's /etc/mailbox/update-key.pub, or [update] public_key)"
    )]
    NoKey,
    #[error("the bundle is larger than {} MiB", MAX_BUNDLE >> 20)]
    TooLarge,
    #[error("the data partition has no room for the bundle")]
    NoRoom,
    #[error("the bundle could not be stored: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a bundle arriving as a stream (upload, download) was not handed
/// to init.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Refused(#[from] UpdateError),
    #[error("the transfer stalled")]
    Stalled,
    #[error("the transfer took too long")]
    TooSlow,
    #[error("the transfer broke off: {0}")]
    BrokeOff(String),
}

/// What this server accepts and where it hands updates over.
pub struct Receiver {
    data_dir: PathBuf,
    key: Option<[u8; 32]>,
    board: String,
    running: String,
    min_free: u64,
    busy: Arc<AtomicBool>,
}

/// The running image's os-release field `name` (none outside the
/// appliance: another system's os-release says nothing of Mailbox).
fn os_release(name: &str) -> Option<String> {
    let ours = image::update::os_release("ID").as_deref() == Some("mailbox");
    ours.then(|| image::update::os_release(name))?
}

impl Receiver {
    pub fn new(config: &crate::config::Config) -> Receiver {
        // What a transfer cut off by a crash or power cut left.
        let _ = fs::remove_file(config.data_dir.join(INCOMING));
        let key = config.update.public_key.or_else(|| {
            crate::config::parse_key(&fs::read_to_string("/etc/mailbox/update-key.pub").ok()?)
        });
        Receiver {
            data_dir: config.data_dir.clone(),
            key,
            board: config
                .update
                .board
                .clone()
                .or_else(|| os_release("VARIANT_ID"))
                .unwrap_or_default(),
            running: os_release("VERSION").unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string()),
            min_free: config.limits.min_free_space,
            busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The version running.
    pub fn running(&self) -> &str {
        &self.running
    }

    /// The board this appliance is (bundles must be for it).
    pub fn board(&self) -> &str {
        &self.board
    }

    /// The manifest a signed head announces (`<board>.manifest` of an
    /// update URL), checked: signed with the trusted key, for this board.
    pub fn announced(&self, head: &[u8]) -> Result<Manifest, UpdateError> {
        let key = self.key.ok_or(UpdateError::NoKey)?;
        let manifest = image::bundle::read_manifest(&mut &head[..], &key)?;
        if manifest.board != self.board {
            return Err(BundleError::WrongBoard {
                found: manifest.board,
                expected: self.board.clone(),
            }
            .into());
        }
        Ok(manifest)
    }

    /// Whether `version` is newer than the one running.
    pub fn is_newer(&self, version: &str) -> bool {
        image::bundle::version_key(version) > image::bundle::version_key(&self.running)
    }

    /// Whether a bundle waits for init to install it.
    pub fn pending(&self) -> bool {
        self.data_dir.join(READY).exists()
    }

    /// What became of the last update, if any.
    pub fn status(&self) -> Option<Status> {
        Status::parse(&fs::read_to_string(self.data_dir.join(STATUS)).ok()?)
    }

    /// Starts receiving a bundle (`force`: a downgrade is allowed).
    pub fn begin(&self, force: bool) -> Result<Upload, UpdateError> {
        self.begin_expecting(force, None)
    }

    /// Starts receiving a bundle that must hold `expected` (the version
    /// an update URL announced).
    fn begin_expecting(&self, force: bool, expected: Option<&str>) -> Result<Upload, UpdateError> {
        let key = self.key.ok_or(UpdateError::NoKey)?;
        if self.data_dir.join(READY).exists()
            || self
                .busy
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return Err(UpdateError::Busy);
        }
        let guard = Busy(self.busy.clone());
        let dir = self.data_dir.join(image::update::DIR);
        fs::create_dir_all(&dir)?;
        let path = self.data_dir.join(INCOMING);
        let file = fs::File::create(&path)?;
        Ok(Upload {
            key,
            board: self.board.clone(),
            running: self.running.clone(),
            force,
            expected: expected.map(str::to_string),
            data_dir: self.data_dir.clone(),
            min_free: self.min_free,
            head: Vec::new(),
            manifest: None,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
            path,
            received: 0,
            _busy: guard,
        })
    }
}

/// Clears the busy flag when an upload ends, however it ends.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A bundle being received. Dropped unfinished, what was stored goes.
pub struct Upload {
    key: [u8; 32],
    board: String,
    running: String,
    force: bool,
    expected: Option<String>,
    data_dir: PathBuf,
    min_free: u64,
    head: Vec<u8>,
    manifest: Option<Manifest>,
    file: Option<std::io::BufWriter<fs::File>>,
    path: PathBuf,
    received: u64,
    _busy: Busy,
}

impl Upload {
    /// The next bytes of the bundle (blocking: call off the event loop).
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), UpdateError> {
        self.received += bytes.len() as u64;
        if self.received > MAX_BUNDLE {
            return Err(UpdateError::TooLarge);
        }
        if self.manifest.is_none() {
            self.head.extend_from_slice(bytes);
            let start = self.head.len().min(8);
            if self.head[..start] != image::bundle::MAGIC[..start] {
                return Err(BundleError::NotABundle.into());
            }
            // The head is whole once magic, length, manifest and
            // signature are there.
            let Some(length) = self.head.get(8..12) else {
                return Ok(());
            };
            let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
            let need = 12usize.saturating_add(length).saturating_add(64);
            if self.head.len() < need.min(MAX_HEAD + 1) {
                return Ok(());
            }
            let manifest = image::bundle::read_manifest(&mut self.head.as_slice(), &self.key)?;
            manifest.check(&self.board, &self.running, self.force)?;
            if let Some(expected) = &self.expected
                && manifest.version != *expected
            {
                return Err(BundleError::Manifest(format!(
                    "it holds version {}, not the {expected} announced",
                    manifest.version
                ))
                .into());
            }
            if let Some(free) = mta_store::queue::free_space(&self.data_dir)
                && free < self.min_free + 12 + need as u64 + manifest.payload_len()
            {
                return Err(UpdateError::NoRoom);
            }
            self.manifest = Some(manifest);
            let head = std::mem::take(&mut self.head);
            return self.write(&head);
        }
        self.write(bytes)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), UpdateError> {
        if let Some(file) = &mut self.file {
            file.write_all(bytes)?;
        }
        Ok(())
    }

    /// The whole bundle has arrived: every hash checked, then handed to
    /// init (blocking). Its manifest.
    pub fn finish(mut self) -> Result<Manifest, UpdateError> {
        let result = self.check_and_hand_over();
        if result.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        result
    }

    fn check_and_hand_over(&mut self) -> Result<Manifest, UpdateError> {
        if self.manifest.is_none() {
            return Err(BundleError::Truncated("the bundle ends before its signature").into());
        }
        let file = self.file.take().expect("open until finished");
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        let mut r = std::io::BufReader::with_capacity(256 * 1024, fs::File::open(&self.path)?);
        let manifest = image::bundle::verify(&mut r, &self.key)?;
        if self.force {
            mta_store::fsutil::write_atomically(
                &self.data_dir.join(FORCE),
                b"downgrade allowed\n",
                0o600,
            )
            .map_err(|e| UpdateError::Io(std::io::Error::other(format!("{e:#}"))))?;
        } else {
            let _ = fs::remove_file(self.data_dir.join(FORCE));
        }
        fs::rename(&self.path, self.data_dir.join(READY))?;
        // Handed over: init installs it even if this sync fails.
        if let Err(e) = mta_store::fsutil::sync_dir(&self.data_dir.join(image::update::DIR)) {
            tracing::warn!("update: the hand-off may not be durable yet: {e:#}");
        }
        tracing::info!(
            "update to version {} received and checked; init installs it and restarts",
            manifest.version
        );
        Ok(manifest)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Receiver {
    /// Receives the bundle `body` brings (`force`: an older version is
    /// allowed), a batch at a time off the event loop, and hands it to
    /// init: its manifest. Every pause and the whole transfer have a
    /// deadline. A refused bundle is still read to its end (within the
    /// limits), so a client that is still sending hears why.
    pub async fn receive<E: std::fmt::Display>(
        &self,
        force: bool,
        expected: Option<&str>,
        body: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<Manifest, ReceiveError> {
        let upload = self.begin_expecting(force, expected)?;
        let upload = tokio::time::timeout(TRANSFER_TIMEOUT, store(upload, body))
            .await
            .map_err(|_| ReceiveError::TooSlow)??;
        tokio::task::spawn_blocking(move || upload.finish())
            .await
            .map_err(|e| ReceiveError::BrokeOff(e.to_string()))?
            .map_err(ReceiveError::Refused)
    }
}

/// Stores the body as it comes; the upload once the body has ended.
async fn store<E: std::fmt::Display>(
    upload: Upload,
    mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
) -> Result<Upload, ReceiveError> {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
    let mut upload = Some(upload);
    let mut refused: Option<UpdateError> = None;
    let mut total: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(CHUNK_TIMEOUT, body.next()).await {
            Err(_) => return Err(ReceiveError::Stalled),
            Ok(None) => None,
            Ok(Some(Err(e))) => return Err(ReceiveError::BrokeOff(e.to_string())),
            Ok(Some(Ok(chunk))) => Some(chunk),
        };
        let done = chunk.is_none();
        if let Some(chunk) = chunk {
            total += chunk.len() as u64;
            if total > MAX_BUNDLE + (1 << 20) {
                // Past any bundle: not worth reading on.
                return Err(refused.unwrap_or(UpdateError::TooLarge).into());
            }
            if upload.is_some() {
                batch.extend_from_slice(&chunk);
            }
        }
        let flush = batch.len() >= BATCH || (done && !batch.is_empty());
        if flush && let Some(mut receiving) = upload.take() {
            let bytes = std::mem::take(&mut batch);
            let (back, pushed) = tokio::task::spawn_blocking(move || {
                let pushed = receiving.push(&bytes);
                (receiving, pushed)
            })
            .await
            .map_err(|e| ReceiveError::BrokeOff(e.to_string()))?;
            match pushed {
                Ok(()) => upload = Some(back),
                // Dropped: what was stored goes.
                Err(e) => refused = Some(e),
            }
        }
        if done {
            return match (upload, refused) {
                (_, Some(e)) => Err(e.into()),
                (Some(upload), None) => Ok(upload),
                (None, None) => Err(ReceiveError::BrokeOff("nothing was received".into())),
            };
        }
    }
}
