//! The IMAP listeners (143 with STARTTLS, 993 with TLS from the first
//! byte): the tokio adapter that drives each `mta-proto` IMAP session —
//! reads within deadlines, writes, TLS, and the password check through
//! the same limiter as SMTP AUTH — within the same connection limits as
//! SMTP. Commands run off the event loop (they read and change folders
//! on disk), and a long answer is written a slice at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mta_app::mailstore::MailStore;
use mta_proto::imap::session::{Config, Session, Step};
use tokio::net::{TcpListener, TcpStream};

use super::{Conn, READ_BUFFER, Shared, Slot, accept, handshake};

/// The largest command, literals included.
const MAX_COMMAND: u32 = 64 * 1024;
/// How long a client that has not logged in may stay silent.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a logged-in client may stay silent (RFC 9051 §5.4: at least
/// 30 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub(super) async fn accept_loop(
    listener: TcpListener,
    implicit_tls: bool,
    shared: Arc<Shared>,
    mailstore: Arc<MailStore>,
) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let shared = shared.clone();
        let mailstore = mailstore.clone();
        tokio::spawn(async move {
            let Ok(_slot) = Slot::take(&shared, peer.ip(), false).map_err(|why| {
                tracing::info!("refused {peer}: {why}");
            }) else {
                return;
            };
            if let Err(e) = serve(stream, peer, implicit_tls, &shared, mailstore).await {
                tracing::debug!("{peer}: {e}");
            }
        });
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    shared: &Shared,
    mailstore: Arc<MailStore>,
) -> std::io::Result<()> {
    let settings = shared.settings();
    let write_limit = settings.mx.command_timeout;
    let mut conn = if implicit_tls {
        match handshake(stream, peer, &settings, &settings.tls).await {
            Some((tls, _)) => Conn::Tls(Box::new(tls)),
            None => return Ok(()),
        }
    } else {
        Conn::Plain(stream)
    };
    let mut session = Session::new(
        Config {
            hostname: settings.config.hostname.clone(),
            max_command: MAX_COMMAND,
            max_append: u32::try_from(settings.config.limits.message_size).unwrap_or(u32::MAX),
            max_errors: settings.config.limits.max_errors,
        },
        implicit_tls,
        mailstore,
    );
    session.greet();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        // Commands may read and change folders on disk: off the event loop.
        let (back, step) = tokio::task::spawn_blocking(move || {
            let step = session.process();
            (session, step)
        })
        .await
        .map_err(std::io::Error::other)?;
        session = back;
        let out = session.take_output();
        if !out.is_empty()
            && let Err(e) = conn.write_all(&out, write_limit).await
        {
            tracing::info!("{peer}: cannot write to the IMAP client: {e}");
            conn.shutdown().await;
            return Ok(());
        }
        match step {
            Step::NeedInput => {
                let wait = if session.account().is_some() {
                    IDLE_TIMEOUT
                } else {
                    LOGIN_TIMEOUT
                };
                match tokio::time::timeout(wait, conn.read(&mut buf)).await {
                    Err(_) => {
                        tracing::info!("{peer}: IMAP client silent for too long");
                        let _ = conn
                            .write_all(b"* BYE silent for too long\r\n", write_limit)
                            .await;
                        conn.shutdown().await;
                        return Ok(());
                    }
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(n)) => session.receive(&buf[..n]),
                    Ok(Err(e)) => return Err(e),
                }
            }
            Step::Idle => {
                let tick = tokio::time::sleep(mta_proto::imap::session::IDLE_TICK);
                tokio::select! {
                    read = tokio::time::timeout(IDLE_TIMEOUT, conn.read(&mut buf)) => match read {
                        Err(_) => {
                            let _ = conn
                                .write_all(b"* BYE idle for too long\r\n", write_limit)
                                .await;
                            conn.shutdown().await;
                            return Ok(());
                        }
                        Ok(Ok(0)) => return Ok(()),
                        Ok(Ok(n)) => session.receive(&buf[..n]),
                        Ok(Err(e)) => return Err(e),
                    },
                    () = tick => {
                        // The folder is read off the event loop.
                        session = tokio::task::spawn_blocking(move || {
                            session.tick();
                            session
                        })
                        .await
                        .map_err(std::io::Error::other)?;
                    }
                }
            }
            // A long answer goes on once written.
            Step::Flush => {}
            Step::StartTls => {
                let Conn::Plain(tcp) = std::mem::replace(&mut conn, Conn::Gone) else {
                    return Ok(());
                };
                let settings = shared.settings();
                match handshake(tcp, peer, &settings, &settings.tls).await {
                    Some((tls, _)) => {
                        conn = Conn::Tls(Box::new(tls));
                        session.tls_established();
                    }
                    None => return Ok(()),
                }
            }
            Step::Authenticate(credentials) => {
                let user = credentials.username.clone();
                let directory = shared.settings().directory.clone();
                let outcome = shared
                    .logins
                    .authenticate(directory, peer, credentials)
                    .await;
                if let mta_proto::sasl::AuthOutcome::Accepted(account) = &outcome {
                    tracing::info!("{peer}: IMAP login as {account}");
                } else {
                    tracing::info!(
                        "{peer}: IMAP login as {} refused",
                        mta_proto::logsafe::escape(&user)
                    );
                }
                session.auth_result(outcome);
            }
            Step::Close => {
                conn.shutdown().await;
                return Ok(());
            }
        }
    }
}
