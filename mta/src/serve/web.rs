//! The web listeners: each HTTP/1.1 connection (over TLS on the HTTPS
//! port, with the certificate SMTP uses) is served by `mta-web`'s router,
//! within the same connection limits as SMTP and with deadlines of its
//! own.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::{Shared, Slot, accept, handshake};

/// A request's header must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection (keep-alive included) lasts at most this.
const CONNECTION_TIME: Duration = Duration::from_secs(300);
/// Buffered bytes per connection (header and body reads).
const MAX_BUFFER: usize = 64 * 1024;

pub(super) async fn accept_loop(
    listener: TcpListener,
    secure: bool,
    shared: Arc<Shared>,
    web: Arc<mta_web::Web>,
) {
    loop {
        let (stream, peer) = accept(&listener).await;
        let shared = shared.clone();
        let web = web.clone();
        tokio::spawn(async move {
            let Ok(_slot) = Slot::take(&shared, peer.ip(), false).map_err(|why| {
                tracing::info!("refused {peer}: {why}");
            }) else {
                return;
            };
            let conn = mta_web::Conn { peer, secure };
            if secure {
                let settings = shared.settings();
                if let Some((tls, _)) = handshake(stream, peer, &settings, &settings.https).await {
                    // A TLS-ALPN-01 validation ends with the handshake.
                    if tls.get_ref().1.alpn_protocol() == Some(mta_app::tls::ACME_TLS_ALPN) {
                        return;
                    }
                    serve(tls, web, conn).await;
                }
            } else {
                serve(stream, web, conn).await;
            }
        });
    }
}

async fn serve<S>(stream: S, web: Arc<mta_web::Web>, conn: mta_web::Conn)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(mta_web::router(web, conn));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUFFER)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIME, connection).await {
        Ok(Err(e)) => tracing::debug!("{}: {e}", conn.peer),
        Err(_) => tracing::debug!("{}: web connection time limit reached", conn.peer),
        Ok(Ok(())) => {}
    }
}
