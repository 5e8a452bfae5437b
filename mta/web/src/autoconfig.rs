//! Mail client set-up without typing server names: Thunderbird's
//! autoconfig (`/mail/config-v1.1.xml`, also under `/.well-known/autoconfig`)
//! and Outlook's autodiscover (POX, `/autodiscover/autodiscover.xml`),
//! served without login on HTTP and HTTPS (clients ask
//! `autoconfig.<domain>` and `autodiscover.<domain>`, which the DNS page
//! points here). They advertise submission (465 with TLS, 587 with
//! STARTTLS) and, with an IMAP listener, where to read it (993 TLS, 143
//! STARTTLS); Apple devices get a configuration profile
//! (`/mobileconfig?emailaddress=`) with the same servers.
//! The MTA-STS policy is here as well: it is as public as these.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mta_proto::address::Address;
use serde::Deserialize;

use crate::Web;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/mail/config-v1.1.xml", get(thunderbird))
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(thunderbird),
        )
        .route(
            "/autodiscover/autodiscover.xml",
            get(autodiscover_get).post(autodiscover),
        )
        .route(
            "/Autodiscover/Autodiscover.xml",
            get(autodiscover_get).post(autodiscover),
        )
        .route("/.well-known/mta-sts.txt", get(mta_sts))
        .route("/mobileconfig", get(apple))
}

/// A UUID-shaped identifier derived from `text`: the same account gets the
/// same profile, so installing it again replaces it.
fn stable_uuid(text: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let h: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Apple's configuration profile (`.mobileconfig`) for one address: the
/// mail account with IMAP (993) and submission (465), both over TLS,
/// the password asked for on the device (none is in the profile).
async fn apple(State(web): State<Arc<Web>>, Query(q): Query<Ask>) -> Response {
    let config = web.settings.get().config.clone();
    let Ok(address) = Address::parse(q.emailaddress.trim(), true) else {
        return (
            StatusCode::BAD_REQUEST,
            "give ?emailaddress=you@your.domain\n",
        )
            .into_response();
    };
    if !config.is_local_domain(address.domain()) || !config.serves_imap() {
        return (
            StatusCode::NOT_FOUND,
            "no mail account here for that address\n",
        )
            .into_response();
    }
    let (address, host) = (xml(&address.to_string()), xml(&config.hostname));
    let domain = xml(address.rsplit_once('@').map_or("", |(_, d)| d));
    let account_id = stable_uuid(&format!("mailbox account {address}"));
    let profile_id = stable_uuid(&format!("mailbox profile {address}"));
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
<plist version=\"1.0\">\n<dict>\n\
  <key>PayloadContent</key>\n  <array>\n    <dict>\n\
      <key>EmailAccountDescription</key><string>{address}</string>\n\
      <key>EmailAccountType</key><string>EmailTypeIMAP</string>\n\
      <key>EmailAddress</key><string>{address}</string>\n\
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>\n\
      <key>IncomingMailServerHostName</key><string>{host}</string>\n\
      <key>IncomingMailServerPortNumber</key><integer>993</integer>\n\
      <key>IncomingMailServerUseSSL</key><true/>\n\
      <key>IncomingMailServerUsername</key><string>{address}</string>\n\
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>\n\
      <key>OutgoingMailServerHostName</key><string>{host}</string>\n\
      <key>OutgoingMailServerPortNumber</key><integer>465</integer>\n\
      <key>OutgoingMailServerUseSSL</key><true/>\n\
      <key>OutgoingMailServerUsername</key><string>{address}</string>\n\
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>\n\
      <key>PayloadDisplayName</key><string>{address}</string>\n\
      <key>PayloadIdentifier</key><string>mailbox.{host}.account.{account_id}</string>\n\
      <key>PayloadType</key><string>com.apple.mail.managed</string>\n\
      <key>PayloadUUID</key><string>{account_id}</string>\n\
      <key>PayloadVersion</key><integer>1</integer>\n\
    </dict>\n  </array>\n\
  <key>PayloadDisplayName</key><string>Mail ({domain})</string>\n\
  <key>PayloadIdentifier</key><string>mailbox.{host}.{profile_id}</string>\n\
  <key>PayloadType</key><string>Configuration</string>\n\
  <key>PayloadUUID</key><string>{profile_id}</string>\n\
  <key>PayloadVersion</key><integer>1</integer>\n\
</dict>\n</plist>\n"
    );
    (
        [
            (header::CONTENT_TYPE, "application/x-apple-aspen-config"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"mailbox.mobileconfig\"",
            ),
        ],
        body,
    )
        .into_response()
}

/// The MTA-STS policy (RFC 8461 §3.2) the `_mta-sts` record announces, for
/// `https://mta-sts.<domain>/`. In `testing` mode: senders report but still
/// deliver while this appliance's certificate is self-signed; `enforce`
/// waits for a certificate senders can verify (ACME).
async fn mta_sts(State(web): State<Arc<Web>>) -> Response {
    let host = web.settings.get().config.hostname.clone();
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("version: STSv1\r\nmode: testing\r\nmx: {host}\r\nmax_age: 86400\r\n"),
    )
        .into_response()
}

/// XML text with its five special characters escaped.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml_response(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Ask {
    emailaddress: String,
}

/// The domain a client asks about: from its address, else from the name
/// it reached us by (`autoconfig.example.org`) — if it is one of ours.
fn domain_asked(web: &Web, address: &str, headers: &HeaderMap) -> Option<String> {
    let config = web.settings.get().config.clone();
    let from_address = Address::parse(address.trim(), true)
        .ok()
        .map(|a| a.domain().to_string());
    let from_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_lowercase())
        .and_then(|h| {
            h.strip_prefix("autoconfig.")
                .or_else(|| h.strip_prefix("autodiscover."))
                .map(str::to_string)
        });
    from_address
        .or(from_host)
        .filter(|d| config.is_local_domain(d))
        .or_else(|| config.domains.first().cloned())
}

async fn thunderbird(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Query(q): Query<Ask>,
) -> Response {
    let Some(domain) = domain_asked(&web, &q.emailaddress, &headers) else {
        return (StatusCode::NOT_FOUND, "no domain here\n").into_response();
    };
    let config = web.settings.get().config.clone();
    let host = config.hostname.clone();
    let (domain, host) = (xml(&domain), xml(&host));
    let incoming = |port: u16, socket: &str| {
        format!(
            "    <incomingServer type=\"imap\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </incomingServer>\n"
        )
    };
    let reading = if config.serves_imap() {
        incoming(993, "SSL") + &incoming(143, "STARTTLS")
    } else {
        String::new()
    };
    let server = |port: u16, socket: &str| {
        format!(
            "    <outgoingServer type=\"smtp\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </outgoingServer>\n"
        )
    };
    xml_response(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    <displayName>Mailbox ({domain})</displayName>\n    <displayShortName>{domain}</displayShortName>\n{reading}{}{}  </emailProvider>\n</clientConfig>\n",
        server(465, "SSL"),
        server(587, "STARTTLS"),
    ))
}

async fn autodiscover_get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "autodiscover answers a POST with the address in <EMailAddress>\n",
    )
        .into_response()
}

/// Outlook's request names the address in `<EMailAddress>`.
async fn autodiscover(State(web): State<Arc<Web>>, headers: HeaderMap, body: String) -> Response {
    let address = body
        .split_once("<EMailAddress>")
        .and_then(|(_, rest)| rest.split_once("</EMailAddress>"))
        .map(|(a, _)| a.trim().to_string())
        .unwrap_or_default();
    let Some(domain) = domain_asked(&web, &address, &headers) else {
        return (StatusCode::NOT_FOUND, "no domain here\n").into_response();
    };
    let login = Address::parse(&address, true)
        .ok()
        .filter(|a| a.domain() == domain)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let config = web.settings.get().config.clone();
    let host = xml(&config.hostname);
    let protocol = |kind: &str, port: u16| {
        format!(
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{host}</Server>\n        <Port>{port}</Port>\n        <LoginName>{}</LoginName>\n        <SSL>on</SSL>\n        <Encryption>SSL</Encryption>\n        <SPA>off</SPA>\n        <AuthRequired>on</AuthRequired>\n      </Protocol>\n",
            xml(&login)
        )
    };
    let reading = if config.serves_imap() {
        protocol("IMAP", 993)
    } else {
        String::new()
    };
    xml_response(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n{reading}{}    </Account>\n  </Response>\n</Autodiscover>\n",
        protocol("SMTP", 465)
    ))
}
