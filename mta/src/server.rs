//! The socket side of the server: listeners, per-client limits, the tokio
//! adapter that drives each [`Session`], STARTTLS, and orderly shutdown.
//!
//! Protocol decisions are not made here; this module moves bytes between
//! the socket and the session, runs timers, and hands finished messages to
//! the [`Queue`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::body::Body;
use crate::config::{Config, Role};
use crate::directory::Directory;
use crate::envelope::QueueId;
use crate::maildir::Maildirs;
use crate::queue::{Queue, RetryPolicy};
use crate::smtp::session::{AuthOutcome, Session, SessionConfig, Step};
use crate::{control, delivery, tls};

mod auth;

use auth::{AuthLimiter, PASSWORD_CHECKS, authenticate};

/// How long running sessions get to finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything a reload may change, swapped as a whole; sessions keep the
/// snapshot they started with, so a reload never disturbs a connection.
struct Settings {
    dkim: Arc<crate::dkim::Keys>,
    mx: Arc<SessionConfig>,
    submission: Arc<SessionConfig>,
    directory: Arc<Directory>,
    tls: tokio_rustls::TlsAcceptor,
    greeting_delay: Duration,
    session_time: Duration,
    per_ip_limit: usize,
    limit: usize,
}

impl Settings {
    fn from_config(config: &Config) -> anyhow::Result<Settings> {
        let session = |role| SessionConfig {
            hostname: config.hostname.clone(),
            max_message_size: config.limits.message_size,
            max_recipients: config.limits.recipients,
            max_errors: config.limits.max_errors,
            command_timeout: config.limits.command_timeout,
            data_timeout: config.limits.data_timeout,
            tls_available: true,
            role,
            trace_user: config.submission.trace_user,
        };
        Ok(Settings {
            dkim: Arc::new(crate::dkim::Keys::new(&config.data_dir)),
            mx: Arc::new(session(Role::Mx)),
            submission: Arc::new(session(Role::Submission)),
            directory: Arc::new(config.directory()),
            tls: tokio_rustls::TlsAcceptor::from(tls::server_config(config)?),
            greeting_delay: config.limits.greeting_delay,
            session_time: config.limits.session_time,
            per_ip_limit: config.limits.connections_per_ip,
            limit: config.limits.connections,
        })
    }
}

impl Settings {
    fn session(&self, role: Role) -> &Arc<SessionConfig> {
        match role {
            Role::Mx => &self.mx,
            Role::Submission | Role::Submissions => &self.submission,
        }
    }
}

struct Shared {
    auth: AuthLimiter,
    password_checks: tokio::sync::Semaphore,
    /// DKIM signings at once.
    signings: tokio::sync::Semaphore,
    /// Message content held in memory by all sessions.
    budget: Arc<crate::spool::Budget>,
    spool: Arc<crate::spool::Place>,
    settings: Arc<RwLock<Arc<Settings>>>,
    queue: Queue,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    active: AtomicUsize,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        self.settings.read().expect("settings lock").clone()
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // File I/O, password hashing and signing run on blocking threads,
        // each bounded where it is used; this caps them all together.
        .max_blocking_threads(64)
        .thread_name("mta")
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // First: a SIGTERM that comes as soon as we say we have started (init
    // stopping us, a test) must find the handler, not the default action.
    let signals = Signals::install()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let (schedule_tx, schedule_rx) = delivery::channel();
    let settings = Arc::new(RwLock::new(Arc::new(Settings::from_config(&config)?)));
    let queue = Queue::open(
        &config.queue_dir(),
        config.limits.min_free_space,
        RetryPolicy {
            min: config.queue.retry_min,
            max: config.queue.retry_max,
            max_age: config.queue.max_age,
            delay_warning: config.queue.delay_warning,
        },
        Some(schedule_tx.clone()),
        Some(bouncer(settings.clone(), config.hostname.clone())),
    )?;
    delivery::start(
        queue.clone(),
        Maildirs::new(config.mail_dir(), &config.hostname)
            .with_min_free_space(config.limits.min_free_space),
        Arc::new(crate::outbound::Outbound::new(&config)?),
        tokio::runtime::Handle::current(),
        config.queue.delivery_workers,
        schedule_rx,
    )?;

    let shared = Arc::new(Shared {
        auth: AuthLimiter::default(),
        password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
        signings: tokio::sync::Semaphore::new(2),
        budget: Arc::new(crate::spool::Budget::new(crate::spool::MEMORY_BUDGET)),
        spool: Arc::new(crate::spool::Place {
            dir: queue.spool_dir(),
            min_free_space: config.limits.min_free_space,
        }),
        settings,
        queue,
        per_ip: Mutex::new(HashMap::new()),
        active: AtomicUsize::new(0),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_tasks = Vec::new();
    for l in &config.listeners {
        let listener = TcpListener::bind(l.address)
            .await
            .with_context(|| format!("listening on {}", l.address))?;
        let bound = listener.local_addr()?;
        tracing::info!("listening on {bound} for {}", l.role.name());
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            l.role,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    // Last: an answer on the control socket (init's health check) means
    // every listener is bound.
    control::listen(&config.control_socket(), shared.queue.clone(), schedule_tx).await?;
    tracing::info!(
        "mta {} started for {}",
        env!("CARGO_PKG_VERSION"),
        config.domains.join(", ")
    );

    signals.wait(&config, &shared).await;
    tracing::info!("stopping: no new connections, waiting for sessions");
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        t.abort();
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while shared.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_file(config.control_socket());
    tracing::info!("stopped");
    Ok(())
}

/// Bounces for the queue: to the sender, from MAILER-DAEMON, DKIM-signed
/// when the host name is in one of our domains.
fn bouncer(settings: Arc<RwLock<Arc<Settings>>>, hostname: String) -> crate::queue::Bouncer {
    use crate::directory::{Lookup, Target};
    use crate::envelope::{Envelope, QueueId, Recipient, Status, now_micros};
    Arc::new(
        move |env: &Envelope, failed: &[usize], original: &[u8], notice: crate::queue::Notice| {
            let s = settings.read().ok()?.clone();
            let sender = crate::address::Address::parse(&env.from, true).ok()?;
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
                notice == crate::queue::Notice::Delayed,
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
                .map(|target| Recipient {
                    original: env.from.clone(),
                    target,
                    status: Status::Pending,
                    attempts: 0,
                    next_attempt: 0,
                    last_error: None,
                })
                .collect();
            let size = body.len() as u64;
            Some((
                Envelope {
                    id,
                    from: String::new(),
                    arrival: now_micros(),
                    client: "bounce".into(),
                    auth: None,
                    recipients,
                    held: false,
                    warned: false,
                    size,
                },
                body,
            ))
        },
    )
}

/// Waits for SIGTERM or SIGINT; on SIGHUP re-reads the configuration.
/// SIGTERM and SIGINT stop the server; SIGHUP re-reads the configuration.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing a SIGHUP handler")?,
        })
    }

    /// Waits for SIGTERM or SIGINT, reloading on SIGHUP meanwhile.
    async fn wait(mut self, running: &Config, shared: &Shared) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => reload(running, shared),
            }
        }
    }
}

/// Applies a changed configuration to new connections. A configuration with
/// errors is refused as a whole and the running one stays.
fn reload(running: &Config, shared: &Shared) {
    let config = match Config::load(&running.path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration not reloaded, the running one stays: {e:#}");
            return;
        }
    };
    let settings = match Settings::from_config(&config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("configuration not reloaded, the running one stays: {e:#}");
            return;
        }
    };
    let needs_restart: Vec<&str> = [
        ("data_dir", config.data_dir != running.data_dir),
        ("listeners", config.listeners != running.listeners),
        ("queue", config.queue != running.queue),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    *shared.settings.write().expect("settings lock") = Arc::new(settings);
    if needs_restart.is_empty() {
        tracing::info!("configuration reloaded");
    } else {
        tracing::warn!(
            "configuration reloaded; changes to {} take effect after a restart",
            needs_restart.join(", ")
        );
    }
}

async fn accept_loop(
    listener: TcpListener,
    role: Role,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Some(_slot) = Slot::take(&shared, peer.ip()) else {
                let mut stream = stream;
                let text = format!(
                    "421 4.7.0 {} Error: too many connections\r\n",
                    shared.settings().mx.hostname
                );
                let _ =
                    tokio::time::timeout(CLOSE_TIMEOUT, stream.write_all(text.as_bytes())).await;
                tracing::info!("refused {peer}: too many connections");
                return;
            };
            tracing::debug!("connect from {peer}");
            if let Err(e) = handle(stream, peer, role, &shared, stop).await {
                tracing::debug!("{peer}: {e}");
            }
            tracing::debug!("disconnect from {peer}");
        });
    }
}

/// A connection slot, counted globally and per client address.
struct Slot<'a> {
    shared: &'a Shared,
    ip: IpAddr,
}

impl<'a> Slot<'a> {
    fn take(shared: &'a Shared, ip: IpAddr) -> Option<Slot<'a>> {
        let settings = shared.settings();
        let mut per_ip = shared.per_ip.lock().expect("per-ip map");
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= settings.per_ip_limit || shared.active.load(Ordering::SeqCst) >= settings.limit {
            return None;
        }
        *n += 1;
        shared.active.fetch_add(1, Ordering::SeqCst);
        Some(Slot { shared, ip })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut per_ip = self.shared.per_ip.lock().expect("per-ip map");
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The TLS handshake, bounded by the command timeout; logs failures.
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    settings: &Settings,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, String)> {
    let timeout = settings.mx.command_timeout;
    match tokio::time::timeout(timeout, settings.tls.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let (_, state) = tls.get_ref();
            let description = format!(
                "{} with cipher {}",
                state
                    .protocol_version()
                    .map(|v| format!("{v:?}").replace("TLSv1_", "TLSv1."))
                    .unwrap_or_default(),
                state
                    .negotiated_cipher_suite()
                    .map(|c| format!("{:?}", c.suite()))
                    .unwrap_or_default()
            );
            Some((tls, description))
        }
        Ok(Err(e)) => {
            tracing::info!("{peer}: TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            tracing::info!("{peer}: TLS handshake timed out");
            None
        }
    }
}

/// DKIM-signs submitted mail whose From domain (checked by the session to
/// belong to the account) is ours; the signatures go in front of the
/// message. A failure to sign is logged and the message still goes
/// (unsigned is better than lost).
async fn sign(
    shared: &Shared,
    settings: &Settings,
    id: QueueId,
    domain: Option<String>,
    body: Body,
) -> Body {
    let Some(domain) = domain.filter(|d| settings.directory.is_local_domain(d)) else {
        return body;
    };
    let keys = settings.dkim.clone();
    // Signing reads the whole message (a large one through a memory map):
    // a few at a time.
    let Ok(_permit) = shared.signings.acquire().await else {
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

enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Gone,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Ok(0),
        }
    }

    /// Writes everything within `limit`: a client that stops reading does
    /// not hold its connection (and the replies queued for it) for ever.
    async fn write_all(&mut self, data: &[u8], limit: Duration) -> std::io::Result<()> {
        let write = async {
            match self {
                Conn::Plain(s) => s.write_all(data).await,
                Conn::Tls(s) => {
                    s.write_all(data).await?;
                    s.flush().await
                }
                Conn::Gone => Ok(()),
            }
        };
        tokio::time::timeout(limit, write)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    /// Closes the connection (TLS close_notify included) within a few
    /// seconds; the socket is dropped either way.
    async fn shutdown(&mut self) {
        let close = async {
            let _ = match self {
                Conn::Plain(s) => s.shutdown().await,
                Conn::Tls(s) => s.shutdown().await,
                Conn::Gone => Ok(()),
            };
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
}

/// The host's clock and queue ids for the sessions (local time in the
/// trace fields, as Postfix writes them).
struct SystemClock;

impl crate::smtp::session::Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::Local::now().fixed_offset()
    }

    fn queue_id(&self) -> QueueId {
        QueueId::generate()
    }
}

/// The protocol's view of a storage failure (452 or 451).
fn intake_error(e: crate::queue::StoreError) -> crate::smtp::session::IntakeError {
    use crate::queue::StoreError;
    use crate::smtp::session::IntakeError;
    match e {
        StoreError::DiskFull => IntakeError::DiskFull,
        StoreError::Failed => IntakeError::Failed,
    }
}

/// How long the closing of a connection may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from a client at once; with the session's own buffers this is
/// most of what an idle connection costs.
const READ_BUFFER: usize = 8 * 1024;

async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    role: Role,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let settings = shared.settings();
    let mut session = Session::new(
        settings.session(role).clone(),
        Arc::new(SystemClock),
        settings.directory.clone(),
        peer.ip(),
    );
    let mut buf = vec![0u8; READ_BUFFER];
    // The content of the open transaction so far, with its number.
    let mut incoming: Option<(u64, crate::spool::Incoming)> = None;
    let write_limit = settings.mx.command_timeout;
    let ends = tokio::time::Instant::now() + settings.session_time;
    let mut conn = if role == Role::Submissions {
        // RFC 8314: TLS from the first byte.
        match handshake(stream, peer, &settings).await {
            Some((tls, description)) => {
                session.tls_established(description);
                Conn::Tls(Box::new(tls))
            }
            None => return Ok(()),
        }
    } else {
        Conn::Plain(stream)
    };

    if role == Role::Mx && !settings.greeting_delay.is_zero() {
        // A client that talks before our greeting is a spam engine, not an MTA.
        match tokio::time::timeout(settings.greeting_delay, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(n)) => {
                session.receive(&buf[..n]);
                tracing::info!("{peer}: early talker rejected");
            }
            Err(_) => {}
        }
    }
    session.greet();

    loop {
        // A reload applies to sessions already running at their next
        // command: a changed password or a deleted account ends a login.
        let current = shared.settings();
        if !Arc::ptr_eq(&current.directory, session.directory()) {
            session.set_directory(current.directory.clone());
        }
        drop(current);
        let step = session.process();
        // Message content goes to memory or a spool file as it arrives, so
        // the session never holds more than one read of it.
        if !matches!(step, Step::Submit(_)) {
            match session.transaction() {
                Some(serial) => {
                    // Content of a transaction that ended (refused, reset)
                    // in this same step is not the new one's.
                    if incoming.as_ref().is_some_and(|(s, _)| *s != serial) {
                        incoming = None;
                    }
                    if session.body_buffered() > 0 {
                        incoming
                            .get_or_insert_with(|| {
                                let content = crate::spool::Incoming::new(
                                    shared.budget.clone(),
                                    shared.spool.clone(),
                                );
                                (serial, content)
                            })
                            .1
                            .push(session.take_body())
                            .await;
                    }
                }
                // Refused, reset or finished: whatever was spooled goes.
                None => incoming = None,
            }
        }
        if session.has_output() {
            let out = session.take_output();
            if let Err(e) = conn.write_all(&out, write_limit).await {
                tracing::info!("{peer}: cannot write to the client: {e}");
                conn.shutdown().await;
                return Ok(());
            }
        }
        match step {
            Step::Write => {}
            Step::NeedInput => {
                let idle = session.is_idle();
                let now = tokio::time::Instant::now();
                if idle && now >= ends {
                    tracing::info!("{peer}: connection time limit reached");
                    session.expired();
                    continue;
                }
                // A transfer under way may finish after the connection's
                // time, but not by more than one data timeout: a client that
                // drips a message a byte at a time is cut off too.
                let cut_off = ends + settings.mx.data_timeout;
                if now >= cut_off {
                    tracing::info!("{peer}: connection time limit reached during a transfer");
                    session.timed_out();
                    continue;
                }
                let wait = session
                    .timeout()
                    .min(if idle { ends } else { cut_off } - now);
                tokio::select! {
                    r = tokio::time::timeout(wait, conn.read(&mut buf)) => match r {
                        Err(_) if tokio::time::Instant::now() >= ends => {}
                        Err(_) => {
                            tracing::info!("{peer}: timeout");
                            session.timed_out();
                        }
                        Ok(Ok(0)) => return Ok(()),
                        Ok(Ok(n)) => session.receive(&buf[..n]),
                        Ok(Err(e)) => return Err(e),
                    },
                    _ = stop.wait_for(|s| *s), if idle => session.shutdown(),
                }
            }
            Step::Submit(submission) => {
                let crate::smtp::session::Submission {
                    envelope,
                    prefix,
                    rest,
                    transaction,
                    author_domain,
                } = submission;
                let id = envelope.id;
                let content = match incoming.take() {
                    Some((serial, content)) if serial == transaction => content,
                    _ => crate::spool::Incoming::new(shared.budget.clone(), shared.spool.clone()),
                };
                let outcome = match content.finish(prefix, rest).await {
                    Ok(body) => {
                        let body = if envelope.auth.is_some() {
                            sign(shared, &settings, id, author_domain, body).await
                        } else {
                            body
                        };
                        let from = crate::logsafe::escape(&envelope.from).into_owned();
                        let size = body.len();
                        let nrcpt = envelope.recipients.len();
                        let spooled = body.file().map(|p| p.to_path_buf());
                        let outcome = shared.queue.intake(envelope, body).await;
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
                                tracing::warn!(
                                    "{id}: client={peer}, from=<{from}>: not queued: {e:?}"
                                )
                            }
                        }
                        outcome
                    }
                    Err(e) => {
                        tracing::warn!("{id}: client={peer}: not queued: {e:?}");
                        Err(e)
                    }
                };
                session.submitted(id, outcome.map_err(intake_error));
            }
            Step::StartTls => {
                let Conn::Plain(tcp) = std::mem::replace(&mut conn, Conn::Gone) else {
                    return Ok(());
                };
                match handshake(tcp, peer, &settings).await {
                    Some((tls, description)) => {
                        conn = Conn::Tls(Box::new(tls));
                        session.tls_established(description);
                    }
                    None => return Ok(()),
                }
            }
            Step::Authenticate(credentials) => {
                // The directory the session checks the login against later.
                let directory = session.directory().clone();
                let outcome = authenticate(shared, directory, peer, credentials).await;
                session.auth_result(outcome);
            }
            Step::Close => {
                conn.shutdown().await;
                return Ok(());
            }
        }
    }
}
