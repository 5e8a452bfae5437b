//! The socket side of the server: the runtime, listeners with per-client
//! limits, the tokio adapter that drives each SMTP [`Session`], STARTTLS,
//! the control socket, signals and orderly shutdown.
//!
//! Protocol decisions are not made here (`mta-proto`), nor what becomes of
//! a message (`mta-app`): this module moves bytes between the socket and
//! the session, runs timers, and hands finished messages to the
//! [`Intake`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use mta_app::auth::Logins;
use mta_app::config::{Config, Role, Service};
use mta_app::delivery;
use mta_app::inbound::rate::{Event, Rates};
use mta_app::intake::{Intake, SystemClock};
use mta_app::settings::{Live, Settings};
use mta_proto::smtp::session::{Session, Step};
use mta_store::queue::{Queue, RetryPolicy};

pub mod control;
mod imap;
mod web;

/// How long running sessions get to finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every connection shares.
struct Shared {
    logins: Arc<Logins>,
    intake: Intake,
    settings: Live,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connections per client network (/24, /64) of clients not trusted.
    per_network: Mutex<HashMap<String, usize>>,
    /// Connection and message rates per client network.
    rates: Arc<Rates>,
    active: AtomicUsize,
    /// Clients that passed the pregreet test lately.
    pregreeted: mta_app::inbound::pregreet::Passed,
    /// The DNSBL cache (none: no DNSBL checks).
    dnsbl: Option<Arc<mta_app::inbound::dnsbl::Dnsbl>>,
    /// The one resolver.
    dns: Arc<mta_app::dns::Dns>,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        self.settings.get()
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
    // Before any store opens: data in a newer format than this version
    // knows is refused untouched; older data is migrated only once this
    // boot is committed (init names the file that says so; elsewhere
    // every start is committed).
    let commit_marker = std::env::var_os("MAILBOX_COMMITTED").map(PathBuf::from);
    let committed = commit_marker.as_ref().is_none_or(|m| m.exists());
    let restart_to_migrate = match mta_store::format::prepare(&config.data_dir, committed)? {
        mta_store::format::Plan::WaitForCommit { stored } => {
            tracing::info!(
                "the data is in format {stored}; it is migrated to format {} once this version is committed (after its trial boot)",
                mta_store::format::CURRENT
            );
            commit_marker
        }
        _ => None,
    };
    let stats = mta_app::stats::stats();
    stats.load(&config.data_dir.join("stats"));
    tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(300));
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(e) = mta_app::stats::stats().save() {
                tracing::warn!("message counts not saved: {e:#}");
            }
        }
    });
    let (schedule_tx, schedule_rx) = delivery::channel();
    // One resolver for everything that asks the DNS.
    let dns = Arc::new(mta_app::dns::Dns::system(&config));
    let settings = Live::new(Settings::from_config(&config, None)?);
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
        Some(mta_app::bounce::bouncer(
            settings.clone(),
            config.hostname.clone(),
        )),
    )?;
    let outbound = Arc::new(mta_app::outbound::Outbound::new(&config, dns.clone())?);
    delivery::start(
        queue.clone(),
        settings.clone(),
        outbound.clone(),
        tokio::runtime::Handle::current(),
        config.queue.delivery_workers,
        schedule_rx,
    )?;

    let logins = Arc::new(Logins::default());
    let acme = mta_app::acme::Acme::new(
        settings.clone(),
        Arc::new(mta_app::acme::Http01::default()),
        dns.clone(),
    );
    let update = Arc::new(mta_app::update::Receiver::new(&config));
    let feed = mta_app::feed::Feed::new(&config, &dns, update.clone())?;
    if let Some(feed) = &feed {
        tokio::spawn(feed.clone().run());
    }
    let stopping_queue = queue.clone();
    let mut intake = Intake::new(queue, config.limits.min_free_space).with_checks(dns.clone());
    // Greylisting's triplets and the DNSBL cache; without them neither
    // check runs (logged).
    let inbound_path = config.data_dir.join("inbound.redb");
    let mut dnsbl = None;
    let mut reports = None;
    let mut received = None;
    let mut tls_reports = None;
    match mta_app::inbound::open_db(&inbound_path) {
        Ok(db) => {
            match mta_app::inbound::received::Received::open(db.clone()) {
                Ok(r) => {
                    let r = Arc::new(r);
                    intake = intake.with_received(r.clone());
                    received = Some(r);
                }
                Err(e) => tracing::error!("received reports are not kept: {e:#}"),
            }
            match mta_app::outbound::tlsrpt::TlsReports::open(db.clone()) {
                Ok(r) => {
                    let r = Arc::new(r);
                    outbound.report_tls_to(r.clone());
                    tls_reports = Some(r);
                }
                Err(e) => tracing::error!("TLS reports are off: {e:#}"),
            }
            match mta_app::inbound::reports::Reports::open(db.clone()) {
                Ok(r) => {
                    let r = Arc::new(r);
                    intake = intake.with_reports(r.clone());
                    reports = Some(r);
                }
                Err(e) => tracing::error!("DMARC reports are off: {e:#}"),
            }
            match mta_app::inbound::greylist::Greylist::new(db.clone()) {
                Ok(g) => intake = intake.with_greylist(Arc::new(g)),
                Err(e) => tracing::error!("greylisting is off: {e:#}"),
            }
            match mta_app::inbound::dnsbl::Dnsbl::new(db) {
                Ok(d) => dnsbl = Some(Arc::new(d)),
                Err(e) => tracing::error!("DNSBL checks are off: {e:#}"),
            }
        }
        Err(e) => tracing::error!(
            "greylisting and DNSBL checks are off: {} cannot be opened: {e:#}",
            inbound_path.display()
        ),
    }
    let web = Arc::new(mta_web::Web::new(mta_web::Parts {
        settings: settings.clone(),
        logins: logins.clone(),
        dns: dns.clone(),
        queue: stopping_queue.clone(),
        schedule: schedule_tx.clone(),
        acme: acme.clone(),
        update: update.clone(),
        feed: feed.clone(),
        received: received.clone(),
    })?);
    let shared = Arc::new(Shared {
        logins,
        intake,
        settings,
        per_ip: Mutex::new(HashMap::new()),
        per_network: Mutex::new(HashMap::new()),
        rates: Arc::new(Rates::default()),
        active: AtomicUsize::new(0),
        pregreeted: Default::default(),
        dnsbl,
        dns: dns.clone(),
    });

    // What IMAP sessions read and change folders through.
    let quota_of = {
        let live = shared.settings.clone();
        Box::new(move |account: &str| live.get().directory.quota_of(account))
    };
    let mailstore = Arc::new(mta_app::mailstore::MailStore::new(
        shared.settings.get().maildirs.clone(),
        &config.hostname,
        quota_of,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_tasks = Vec::new();
    for l in &config.listeners {
        let listener = TcpListener::bind(l.address)
            .await
            .with_context(|| format!("listening on {}", l.address))?;
        let bound = listener.local_addr()?;
        tracing::info!("listening on {bound} for {}", l.service.name());
        if l.service == Service::Https {
            web.serving_https_on(bound.port());
        }
        accept_tasks.push(match l.service {
            Service::Smtp(role) => {
                tokio::spawn(accept_loop(listener, role, shared.clone(), stop_rx.clone()))
            }
            Service::Imap { implicit_tls } => tokio::spawn(imap::accept_loop(
                listener,
                implicit_tls,
                shared.clone(),
                mailstore.clone(),
            )),
            Service::Http | Service::Https => tokio::spawn(web::accept_loop(
                listener,
                l.service == Service::Https,
                shared.clone(),
                web.clone(),
            )),
        });
    }
    // Last: an answer on the control socket (init's health check) means
    // every listener is bound.
    let reporter = reports.map(|reports| {
        Arc::new(mta_app::reporter::Reporter {
            reports,
            tls: tls_reports,
            queue: shared.intake.queue.clone(),
            live: shared.settings.clone(),
            dns: shared.dns.clone(),
            received: received.clone(),
        })
    });
    if let Some(r) = &reporter {
        tokio::spawn(r.clone().run());
    }
    control::listen(
        &config.control_socket(),
        shared.intake.queue.clone(),
        schedule_tx,
        acme.clone(),
        reporter.clone(),
    )
    .await?;
    // After the listeners: the CA checks them as soon as we ask.
    tokio::spawn(acme.run());
    tracing::info!(
        "mta {} started for {}",
        env!("CARGO_PKG_VERSION"),
        config.domains.join(", ")
    );

    signals.wait(&shared, restart_to_migrate).await;
    tracing::info!("stopping: no new connections, waiting for sessions");
    let _ = stop_tx.send(true);
    for t in accept_tasks {
        t.abort();
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while shared.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Delivery results wait up to half a second for a durable commit; an
    // orderly stop makes them durable, so nothing is delivered again.
    if !tokio::task::spawn_blocking(move || stopping_queue.sync(Duration::from_secs(5)))
        .await
        .unwrap_or(false)
    {
        tracing::warn!("the queue's last delivery results may not be on disk");
    }
    let _ = std::fs::remove_file(config.control_socket());
    if let Some(r) = &reporter {
        r.flush().await;
    }
    if let Err(e) = stats.save() {
        tracing::warn!("message counts not saved: {e:#}");
    }
    tracing::info!("stopped");
    Ok(())
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

    /// Waits for SIGTERM or SIGINT, reloading on SIGHUP meanwhile; or
    /// until `committed` exists (then the server stops, init starts it
    /// again and the data is migrated).
    async fn wait(mut self, shared: &Shared, committed: Option<PathBuf>) {
        let commit = async {
            match committed {
                Some(marker) => {
                    while !marker.exists() {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    tracing::info!("this version is committed: restarting to migrate the data");
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(commit);
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = &mut commit => return,
                _ = self.hup.recv() => {
                    let _ = shared.settings.reload();
                }
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    role: Role,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let settings = shared.settings();
            // New connections per minute of clients not trusted (every
            // attempt counts), then a slot.
            let limit = settings.config.limits.connection_rate;
            let rate = match settings.config.inbound.trusts(peer.ip()) {
                true => Ok(()),
                false => {
                    let now = std::time::Instant::now();
                    shared.rates.hit(Event::Connection, peer.ip(), limit, now)
                }
            };
            let slot = match rate {
                Ok(()) => Slot::take(&shared, peer.ip(), true),
                Err(over) => Err(format!(
                    "Error: more than {} connections a minute from {}; try again later",
                    over.limit, over.network
                )),
            };
            let _slot = match slot {
                Ok(slot) => slot,
                Err(why) => {
                    count(mta_app::stats::Event::RateLimited);
                    let mut stream = stream;
                    let text = format!("421 4.7.0 {} {why}\r\n", settings.mx.hostname);
                    let write = stream.write_all(text.as_bytes());
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, write).await;
                    tracing::info!("refused {peer}: {why}");
                    return;
                }
            };
            drop(settings);
            tracing::debug!("connect from {peer}");
            if let Err(e) = handle(stream, peer, role, &shared, stop).await {
                tracing::debug!("{peer}: {e}");
            }
            tracing::debug!("disconnect from {peer}");
        });
    }
}

/// The next connection on `listener` (Nagle off). Accept errors (EMFILE
/// and friends) back off instead of spinning.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection slot, counted globally, per client address and (for SMTP
/// clients outside the trusted networks) per client network: an office
/// behind one address reads its mail over many IMAP connections.
struct Slot<'a> {
    shared: &'a Shared,
    ip: IpAddr,
    network: Option<String>,
}

/// Why a connection gets no slot: the text after `421 4.7.0 <host>`.
fn refusal(why: &str) -> String {
    format!("Error: too many connections{why}; try again later")
}

impl<'a> Slot<'a> {
    fn take(shared: &'a Shared, ip: IpAddr, smtp: bool) -> Result<Slot<'a>, String> {
        let settings = shared.settings();
        let network = (smtp && !settings.config.inbound.trusts(ip))
            .then(|| mta_app::inbound::greylist::network(ip));
        let mut per_ip = shared.per_ip.lock().expect("per-ip map");
        let mut per_network = shared.per_network.lock().expect("per-network map");
        let n = per_ip.get(&ip).copied().unwrap_or(0);
        if n >= settings.per_ip_limit {
            return Err(refusal(&format!(" from {ip}")));
        }
        if let Some(net) = &network
            && per_network.get(net).copied().unwrap_or(0)
                >= settings.config.limits.connections_per_network
        {
            return Err(refusal(&format!(" from {net}")));
        }
        if shared.active.load(Ordering::SeqCst) >= settings.limit {
            return Err(refusal(""));
        }
        *per_ip.entry(ip).or_insert(0) += 1;
        if let Some(net) = &network {
            *per_network.entry(net.clone()).or_insert(0) += 1;
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        Ok(Slot {
            shared,
            ip,
            network,
        })
    }
}

fn count(event: mta_app::stats::Event) {
    mta_app::stats::stats().count(event);
}

/// One less of `key` in `map`, which forgets keys that reach 0.
fn release<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, usize>>, key: &K) {
    let mut map = map.lock().expect("connection counts");
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        release(&self.shared.per_ip, &self.ip);
        if let Some(net) = &self.network {
            release(&self.shared.per_network, net);
        }
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The TLS handshake, bounded by the command timeout; logs failures.
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    settings: &Settings,
    acceptor: &tokio_rustls::TlsAcceptor,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, String)> {
    let timeout = settings.mx.command_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
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
    let mut incoming: Option<(u64, mta_store::spool::Incoming)> = None;
    let write_limit = settings.mx.command_timeout;
    let mut conn = if role == Role::Submissions {
        // RFC 8314: TLS from the first byte.
        match handshake(stream, peer, &settings, &settings.tls).await {
            Some((tls, description)) => {
                session.tls_established(description);
                Conn::Tls(Box::new(tls))
            }
            None => return Ok(()),
        }
    } else {
        Conn::Plain(stream)
    };

    // The blocklists are asked at once, while the pregreet test waits.
    let inbound = &settings.config.inbound;
    let listing = match &shared.dnsbl {
        Some(dnsbl) if role == Role::Mx && inbound.checks_dnsbl(peer.ip()) => {
            let (dnsbl, dns, zones) = (dnsbl.clone(), shared.dns.clone(), inbound.dnsbl.clone());
            let ip = peer.ip();
            Some(tokio::spawn(
                async move { dnsbl.score(&dns, ip, &zones).await },
            ))
        }
        _ => None,
    };
    if role == Role::Mx
        && !inbound.pregreet.is_zero()
        && !settings.config.inbound.trusts(peer.ip())
        && !shared.pregreeted.knows(peer.ip())
    {
        // postscreen's pregreet test (`mta_app::inbound::pregreet`): a
        // client that talks before our greeting's last line is a spam
        // engine, not an MTA.
        session.pregreet();
        if conn
            .write_all(&session.take_output(), write_limit)
            .await
            .is_err()
        {
            return Ok(());
        }
        match tokio::time::timeout(inbound.pregreet, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(n)) => {
                session.receive(&buf[..n]);
                shared.pregreeted.forget(peer.ip());
                count(mta_app::stats::Event::Pregreet);
                tracing::info!(
                    "{peer}: rejected: it talked before the greeting's last line (pregreet)"
                );
            }
            Err(_) => shared.pregreeted.remember(peer.ip()),
        }
    }
    if let Some(task) = listing
        && let Ok(listing) = task.await
        && listing.score >= inbound.dnsbl_threshold
    {
        let zones = listing.zones.join(", ");
        tracing::info!(
            "{peer}: listed by {zones} (score {}, threshold {}): its mail is refused",
            listing.score,
            inbound.dnsbl_threshold
        );
        count(mta_app::stats::Event::Dnsbl);
        session.block(format!(
            "Service unavailable; client [{}] blocked using {zones}",
            peer.ip()
        ));
    }
    let trusted = settings.config.inbound.trusts(peer.ip());
    let limits = &settings.config.limits;
    if role == Role::Mx && !trusted && limits.message_rate > 0 {
        let (rates, ip, limit) = (shared.rates.clone(), peer.ip(), limits.message_rate);
        session.gate(Box::new(move || {
            let now = std::time::Instant::now();
            let over = rates.hit(Event::Message, ip, limit, now).err()?;
            count(mta_app::stats::Event::RateLimited);
            tracing::info!(
                "{ip}: deferred: more than {limit} messages a minute from {}",
                over.network
            );
            Some(format!(
                "Error: more than {limit} messages a minute from {}; try again later",
                over.network
            ))
        }));
    }
    // Tarpitting: past a few errors, each reply waits (not for trusted
    // networks).
    let error_delay = (!trusted)
        .then_some(limits.error_delay)
        .filter(|d| !d.is_zero());
    let soft_errors = limits.soft_errors;
    session.greet();
    let ends = tokio::time::Instant::now() + settings.session_time;

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
                            .get_or_insert_with(|| (serial, shared.intake.incoming()))
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
            // The graph's "rejected": refusals (5xx, a reply's last line).
            let refused = out
                .split(|b| *b == b'\n')
                .filter(|l| l.len() > 4 && l[0] == b'5' && l[3] == b' ')
                .count();
            for _ in 0..refused {
                mta_app::stats::stats().count(mta_app::stats::Event::Rejected);
            }
            if let Some(delay) = error_delay
                && session.errors() > soft_errors
            {
                // Each reply waits: pipelined commands are no way around.
                let replies = out
                    .split(|b| *b == b'\n')
                    .filter(|l| l.len() > 3 && l[3] == b' ')
                    .count()
                    .clamp(1, 10);
                tokio::time::sleep(delay * replies as u32).await;
            }
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
                let id = submission.id;
                let content = match incoming.take() {
                    Some((serial, content)) if serial == submission.transaction => content,
                    _ => shared.intake.incoming(),
                };
                let outcome = shared
                    .intake
                    .store(&settings, peer, submission, content)
                    .await;
                session.submitted(id, outcome);
            }
            Step::StartTls => {
                let Conn::Plain(tcp) = std::mem::replace(&mut conn, Conn::Gone) else {
                    return Ok(());
                };
                match handshake(tcp, peer, &settings, &settings.tls).await {
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
                let outcome = shared
                    .logins
                    .authenticate(directory, peer, credentials)
                    .await;
                session.auth_result(outcome);
            }
            Step::Close => {
                conn.shutdown().await;
                return Ok(());
            }
        }
    }
}
