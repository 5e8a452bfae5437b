//! The DNS page: for each domain the records to publish, each with a copy
//! button, and the whole set as a zone file to import.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::html;
use mta_app::dnscheck::{Checked, Verdict};
use mta_app::records::{self, Purpose, Record};
use serde::Deserialize;

use crate::layout::{Menu, notice, shell};
use crate::login::admin;
use crate::{Conn, Web};

/// How long the check of one domain may take (each lookup also has the
/// resolver's own time-out).
const CHECK_TIME: std::time::Duration = std::time::Duration::from_secs(30);

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/dns", get(page))
        .route("/dns/zone/{domain}", get(zone))
}

/// Every domain's records (DKIM keys made where missing).
async fn all(web: &Web) -> Vec<(String, anyhow::Result<Vec<Record>>)> {
    let settings = web.settings.get();
    tokio::task::spawn_blocking(move || {
        let config = &settings.config;
        config
            .domains
            .iter()
            .map(|d| (d.clone(), records::for_domain(config, &settings.dkim, d)))
            .collect()
    })
    .await
    .expect("records do not panic")
}

fn purpose(p: Purpose) -> &'static str {
    match p {
        Purpose::Receive => "Receiving",
        Purpose::Authenticate => "Sender authentication",
        Purpose::Secure => "Encryption",
        Purpose::Clients => "Mail programs",
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CheckQuery {
    check: Option<String>,
}

async fn page(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Query(q): Query<CheckQuery>,
) -> Response {
    let session = match admin(&web, &conn, &headers, "/dns") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let domains = all(&web).await;
    let checking = q.check.is_some();
    let host = web.settings.get().config.hostname.clone();
    let mut checked: Vec<Option<Vec<Checked>>> = Vec::new();
    let mut late: Vec<bool> = Vec::new();
    for (_, records) in &domains {
        late.push(false);
        checked.push(match (checking, records) {
            (true, Ok(records)) => {
                let check = mta_app::dnscheck::check(&web.dns, &host, records);
                // A page waits this long at most, whatever the DNS does.
                match tokio::time::timeout(CHECK_TIME, check).await {
                    Ok(checked) => Some(checked),
                    Err(_) => {
                        *late.last_mut().expect("pushed") = true;
                        None
                    }
                }
            }
            _ => None,
        });
    }
    // The host name resolves now, and the certificate is still the
    // appliance's own: the CA may well succeed, so it is asked at once
    // rather than at the next retry (up to hours away).
    let resolves = checked.iter().flatten().flatten().any(|c| {
        c.record.name == host
            && matches!(c.record.kind, "A" | "AAAA")
            && matches!(c.verdict, Verdict::Ok)
    });
    let requested = resolves
        && !web.settings.get().certs.issued()
        && matches!(web.acme.renew_now(), mta_app::acme::Asked::Started);
    shell(
        "DNS records",
        Some(Menu { here: "/dns", csrf: &session.csrf }),
        false,
        html! {
            h1 { "DNS records" }
            p.lead { "Publish these records at the company that hosts your domain's DNS. Until they are in place, other servers cannot find or trust this one." }
            form.check-dns method="get" action="/dns" {
                input type="hidden" name="check" value="1";
                button type="submit" { @if checking { "Check again" } @else { "Check what the DNS says" } }
            }
            @if requested {
                (notice("ok", "The host name resolves: a certificate is being requested from Let's Encrypt now (see the Certificate page)."))
            }
            @for (((domain, records), checked), late) in domains.iter().zip(&checked).zip(&late) {
                div.card {
                    h2 { (domain) }
                    @match records {
                        Err(e) => (notice("bad", &format!("The records of {domain} cannot be shown: {e:#}"))),
                        Ok(records) => {
                            p { a href={"/dns/zone/" (domain)} download={(domain) ".zone"} { "Download as a zone file" } }
                            @if *late {
                                (notice("bad", "The DNS did not answer within 30 seconds: check again later."))
                            }
                            @if let Some(checked) = checked {
                                @let bad = checked.iter().filter(|c| c.verdict.needs_attention()).count();
                                @if bad == 0 {
                                    (notice("ok", "Every record is in place."))
                                } @else {
                                    (notice("bad", &format!("{bad} of {} records need your attention.", checked.len())))
                                }
                            }
                            table.records {
                                thead { tr { @if checked.is_some() { th { "DNS" } } th { "Name" } th { "Type" } th { "Value" } th { "Why" } } }
                                tbody {
                                    @for (i, r) in records.iter().enumerate() {
                                        @let check = checked.as_ref().and_then(|c| c.get(i));
                                        tr {
                                            @if let Some(c) = check {
                                                td { (badge(&c.verdict)) }
                                            }
                                            td { code { (r.name) } }
                                            td { (r.kind) }
                                            td {
                                                div.record {
                                                    code { (r.value) }
                                                    @if !r.ask_isp && !r.value.starts_with('(') {
                                                        button.secondary.small type="button" data-copy=(r.plain) { "Copy" }
                                                    }
                                                }
                                            }
                                            td {
                                                span.help { (purpose(r.purpose)) ": " (r.why) }
                                                @if let Some(c) = check.filter(|c| c.verdict.needs_attention()) {
                                                    p.found {
                                                        "Found: "
                                                        @if c.found.is_empty() { "nothing" }
                                                        @for f in &c.found { br; code { (f) } }
                                                    }
                                                    @if let Verdict::Unknown(why) = &c.verdict { p.help { "The lookup failed: " (why) } }
                                                    @if !c.advice.is_empty() { p.advice { (c.advice) } }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

fn badge(v: &Verdict) -> maud::Markup {
    let class = match v {
        Verdict::Ok | Verdict::Optional => "badge ok",
        Verdict::Missing | Verdict::Unknown(_) => "badge missing",
        Verdict::Wrong => "badge wrong",
    };
    html! { span class=(class) { (v.label()) } }
}

async fn zone(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Path(domain): Path<String>,
) -> Response {
    if let Err(r) = admin(&web, &conn, &headers, "/dns") {
        return r.into_response();
    }
    let Some((domain, Ok(records))) = all(&web).await.into_iter().find(|(d, _)| *d == domain)
    else {
        return (StatusCode::NOT_FOUND, "no such domain here\n").into_response();
    };
    let mut text = format!("; DNS records for {domain}, from Mailbox\n");
    for r in records
        .iter()
        .filter(|r| !r.ask_isp && !r.value.starts_with('('))
    {
        text.push_str(&r.zone_line());
        text.push('\n');
    }
    text.push_str("; Also: an A (and AAAA) record for the host name with your public address,\n; and a PTR record for that address, which your Internet provider sets.\n");
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{domain}.zone\""),
            ),
        ],
        text,
    )
        .into_response()
}
