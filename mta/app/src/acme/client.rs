//! Talking to the CA (instant-acme does the protocol): the account, made
//! once and kept owner-only in `<data>/acme/account.json`; one order for a
//! set of names, each authorization answered by HTTP-01 (our port 80) or
//! TLS-ALPN-01 (our port 443); the certificate with a fresh key.
//!
//! Every request has a deadline and a bounded answer: the directory is the
//! owner's choice, but a slow or broken CA must not hold the appliance.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::Limited;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use super::Http01;
use crate::config::Config;
use crate::dns::{Data, Dns, Kind};
use crate::tls::CertStore;

/// One request to the CA, answer included.
const REQUEST_TIME: Duration = Duration::from_secs(30);
/// The largest answer read from the CA (a certificate chain is a few KiB).
const MAX_ANSWER: usize = 1 << 20;
/// The longest wait a CA's Retry-After may ask for (a day).
const MAX_RETRY_AFTER: u64 = 86400;
/// How long the CA gets to check all the challenges of an order.
const VALIDATION_TIME: Duration = Duration::from_secs(120);

/// How the CA checks that we hold a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Challenge {
    /// A token over plain HTTP on port 80 (RFC 8555 §8.3).
    #[serde(rename = "http-01")]
    Http01,
    /// A special certificate on port 443 (RFC 8737): works when the
    /// router forwards only 443.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl Challenge {
    pub fn name(self) -> &'static str {
        match self {
            Challenge::Http01 => "HTTP-01 (port 80)",
            Challenge::TlsAlpn01 => "TLS-ALPN-01 (port 443)",
        }
    }

    fn kind(self) -> ChallengeType {
        match self {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }
}

/// Where the answers to the CA's challenges are served from.
pub struct Answers {
    pub http01: Arc<Http01>,
    pub certs: Arc<CertStore>,
}

/// What one order came to.
pub enum Outcome {
    /// The certificate chain and its key (PEM).
    Issued { chain_pem: String, key_pem: String },
    /// The CA would not confirm these names.
    Refused(Vec<Refusal>),
}

/// A name the CA would not confirm (or issue for), and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub name: String,
    pub why: String,
    /// The problem type (`urn:ietf:params:acme:error:…`), if the CA said.
    pub kind: Option<String>,
}

/// The account at the configured CA.
pub struct Ca {
    account: Account,
}

/// The account as kept on disk: which directory it belongs to.
#[derive(Serialize, Deserialize)]
struct Stored {
    directory: String,
    credentials: AccountCredentials,
}

fn account_path(config: &Config) -> PathBuf {
    config.data_dir.join("acme/account.json")
}

impl Ca {
    /// The account kept for the configured directory, or a new one
    /// registered with the owner's contact (terms accepted in the
    /// configuration) and kept.
    pub async fn connect(config: &Config, dns: &Arc<Dns>) -> anyhow::Result<Ca> {
        let acme = config.acme.as_ref().context("ACME is not configured")?;
        let path = account_path(config);
        let stored: Option<Stored> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Stored>(&bytes)
                .map_err(|e| {
                    tracing::warn!("{} unreadable, a new account is made: {e}", path.display())
                })
                .ok()
                .filter(|s| s.directory == acme.directory),
            Err(_) => None,
        };
        if let Some(stored) = stored {
            let account = Account::builder_with_http(http(acme.ca.as_deref(), dns)?)
                .from_credentials(stored.credentials)
                .await
                .with_context(|| format!("reaching the ACME directory {}", acme.directory))?;
            return Ok(Ca { account });
        }
        let contact: Vec<String> = acme.contact.iter().map(|c| format!("mailto:{c}")).collect();
        let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(http(acme.ca.as_deref(), dns)?)
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                acme.directory.clone(),
                None,
            )
            .await
            .with_context(|| format!("registering with the ACME directory {}", acme.directory))?;
        let stored = Stored {
            directory: acme.directory.clone(),
            credentials,
        };
        mta_store::fsutil::create_dir_synced(path.parent().expect("a file in a directory"))?;
        mta_store::fsutil::write_atomically(&path, &serde_json::to_vec(&stored)?, 0o600)?;
        tracing::info!("ACME account registered at {}", acme.directory);
        Ok(Ca { account })
    }

    /// Forgets the kept account (the CA no longer knows it).
    pub fn forget(config: &Config) {
        let _ = std::fs::remove_file(account_path(config));
    }

    /// The window in which the CA suggests renewing the certificate `leaf`
    /// (RFC 9773), unix seconds; `None` when it does not say.
    pub async fn suggested_renewal(&self, leaf: &CertificateDer<'_>) -> Option<(u64, u64)> {
        let id = instant_acme::CertificateIdentifier::try_from(leaf).ok()?;
        match tokio::time::timeout(REQUEST_TIME, self.account.renewal_info(&id)).await {
            Ok(Ok((info, _))) => {
                let w = info.suggested_window;
                let start = u64::try_from(w.start.unix_timestamp()).ok()?;
                let end = u64::try_from(w.end.unix_timestamp()).ok()?;
                Some((start, end.max(start)))
            }
            Ok(Err(instant_acme::Error::Unsupported(_))) => None,
            Ok(Err(e)) => {
                tracing::debug!("ACME renewal information not available: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// One order for `names`, every authorization answered by `how`.
    pub async fn order(
        &self,
        names: &[String],
        how: Challenge,
        answers: &Answers,
    ) -> anyhow::Result<Outcome> {
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = match self.account.new_order(&NewOrder::new(&identifiers)).await {
            Ok(order) => order,
            // Names the CA will not issue for (RFC 8555 §6.7.1): those are
            // refused, the others may go on.
            Err(instant_acme::Error::Api(p))
                if p.subproblems.iter().any(|s| s.identifier.is_some()) =>
            {
                let refused = p
                    .subproblems
                    .iter()
                    .filter_map(|s| {
                        let instant_acme::Identifier::Dns(name) = s.identifier.as_ref()? else {
                            return None;
                        };
                        Some(Refusal {
                            name: name.clone(),
                            why: s.detail.clone().unwrap_or_else(|| p.to_string()),
                            kind: s.r#type.clone(),
                        })
                    })
                    .collect();
                return Ok(Outcome::Refused(refused));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("the CA refused the order")),
        };
        let mut placed = Placed::new(answers);
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            let name = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => bail!("the CA's authorization for {name} is {other:?}"),
            }
            let mut challenge = authorization
                .challenge(how.kind())
                .with_context(|| format!("the CA offers no {} for {name}", how.name()))?;
            let key_authorization = challenge.key_authorization();
            match how {
                Challenge::Http01 => {
                    answers
                        .http01
                        .insert(&challenge.token, key_authorization.as_str())?;
                    placed.tokens.push(challenge.token.clone());
                }
                Challenge::TlsAlpn01 => {
                    let certificate = alpn_certificate(&name, key_authorization.digest().as_ref())?;
                    answers.certs.set_challenge(&name, certificate);
                    placed.names.push(name.clone());
                }
            }
            challenge.set_ready().await?;
        }

        // Each authorization settles as valid or invalid, with the CA's
        // reason for the names it could not confirm.
        let deadline = tokio::time::Instant::now() + VALIDATION_TIME;
        let mut refused = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            let name = authorization.identifier().to_string();
            loop {
                match authorization.status {
                    AuthorizationStatus::Valid => break,
                    AuthorizationStatus::Pending if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        authorization.refresh().await?;
                    }
                    AuthorizationStatus::Pending => {
                        refused.push(Refusal {
                            name,
                            why: "the CA did not finish checking in time".into(),
                            kind: None,
                        });
                        break;
                    }
                    other => {
                        let problem = authorization
                            .challenges
                            .iter()
                            .find(|c| c.r#type == how.kind())
                            .and_then(|c| c.error.as_ref());
                        refused.push(Refusal {
                            name,
                            why: problem
                                .and_then(|p| p.detail.clone().or_else(|| p.r#type.clone()))
                                .unwrap_or_else(|| format!("the authorization is {other:?}")),
                            kind: problem.and_then(|p| p.r#type.clone()),
                        });
                        break;
                    }
                }
            }
        }
        drop(placed);
        if !refused.is_empty() {
            return Ok(Outcome::Refused(refused));
        }
        // Soon at first (Pebble and Let's Encrypt usually take well under
        // a second), then less and less often (or when the CA's
        // Retry-After says), for as long as the CA may take.
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(VALIDATION_TIME);
        match order.poll_ready(&retry).await? {
            OrderStatus::Ready => {}
            status => bail!("the order is {status:?} after every name was confirmed"),
        }
        let key_pem = order.finalize().await.context("finalizing the order")?;
        let chain_pem = order
            .poll_certificate(&retry)
            .await
            .context("fetching the certificate")?;
        Ok(Outcome::Issued { chain_pem, key_pem })
    }
}

/// The challenge answers put out for one order, withdrawn when it ends
/// (however it ends).
struct Placed<'a> {
    answers: &'a Answers,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl<'a> Placed<'a> {
    fn new(answers: &'a Answers) -> Placed<'a> {
        Placed {
            answers,
            tokens: Vec::new(),
            names: Vec::new(),
        }
    }
}

impl Drop for Placed<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.answers.http01.remove(token);
        }
        for name in &self.names {
            self.answers.certs.clear_challenge(name);
        }
    }
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge for
/// `name`: that one name, and the key authorization's digest in the
/// acmeIdentifier extension (RFC 8737 §3).
fn alpn_certificate(name: &str, digest: &[u8]) -> anyhow::Result<Arc<CertifiedKey>> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    // Not `from_der`: its check that key and certificate match parses the
    // certificate with webpki, which refuses the critical acmeIdentifier
    // extension this certificate exists for.
    let signing = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
        key.serialize_der().into(),
    ))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// HTTPS to the CA, verified against the system's roots (and `ca`), with a
/// deadline per request and a bound on each answer.
fn http(ca: Option<&Path>, dns: &Arc<Dns>) -> anyhow::Result<Box<dyn HttpClient>> {
    let client =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector(ca, dns, true)?);
    Ok(Box::new(Bounded(client)))
}

/// Where the server's HTTP clients connect through (the CA, the update
/// URL): names looked up through the one resolver, TLS verified against
/// the system's roots and `ca`; plain HTTP too unless `https_only`.
pub(crate) type Connector = hyper_rustls::HttpsConnector<HttpConnector<ViaDns>>;

pub(crate) fn connector(
    ca: Option<&Path>,
    dns: &Arc<Dns>,
    https_only: bool,
) -> anyhow::Result<Connector> {
    let tls = crate::outbound::tls::verified(ca)?;
    let mut tcp = HttpConnector::new_with_resolver(ViaDns(dns.clone()));
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(REQUEST_TIME));
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    Ok(if https_only {
        builder.https_only().enable_http1().wrap_connector(tcp)
    } else {
        builder.https_or_http().enable_http1().wrap_connector(tcp)
    })
}

struct Bounded(Client<Connector, BodyWrapper<Bytes>>);

/// A host name looked up through the server's one resolver (the
/// configured name servers), like every other name.
#[derive(Clone)]
pub(crate) struct ViaDns(Arc<Dns>);

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for ViaDns {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let dns = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let records = dns
                .lookup(&crate::dns::absolute(&host), Kind::Ip, false)
                .await
                .map_err(|e| std::io::Error::other(format!("looking up {host}: {e}")))?;
            let addresses: Vec<std::net::SocketAddr> = records
                .into_iter()
                .filter_map(|r| match r.data {
                    Data::Ip(ip) => Some(std::net::SocketAddr::new(ip, 0)),
                    _ => None,
                })
                .collect();
            if addresses.is_empty() {
                return Err(std::io::Error::other(format!("{host} has no address")));
            }
            Ok(addresses.into_iter())
        })
    }
}

impl HttpClient for Bounded {
    fn request(
        &self,
        request: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let sent = self.0.request(request);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST_TIME, sent).await {
                Ok(Ok(mut response)) => {
                    // instant-acme adds Retry-After's seconds to the clock
                    // unchecked: an absurd value must not reach it.
                    let absurd = response
                        .headers()
                        .get(hyper::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .is_some_and(|secs| secs > MAX_RETRY_AFTER);
                    if absurd {
                        response.headers_mut().insert(
                            hyper::header::RETRY_AFTER,
                            hyper::header::HeaderValue::from(MAX_RETRY_AFTER),
                        );
                    }
                    Ok(BytesResponse::from(response.map(|body| {
                        TimedBody::new(Limited::new(body, MAX_ANSWER))
                    })))
                }
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Str("the CA did not answer in time")),
            }
        })
    }
}

/// A response body that must arrive within [`REQUEST_TIME`].
struct TimedBody<B> {
    body: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> TimedBody<B> {
    fn new(body: B) -> TimedBody<B> {
        TimedBody {
            body,
            deadline: Box::pin(tokio::time::sleep(REQUEST_TIME)),
        }
    }
}

impl<B> hyper::body::Body for TimedBody<B>
where
    B: hyper::body::Body<Error = Box<dyn std::error::Error + Send + Sync>> + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(
                "the CA's answer did not arrive in time".into()
            )));
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }
}
