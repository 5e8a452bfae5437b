//! The DNS page: for each domain the records to publish, each with a copy
//! button, and the whole set as a zone file to import.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::html;
use mta_app::records::{self, Purpose, Record};

use crate::layout::{Menu, notice, shell};
use crate::login::admin;
use crate::{Conn, Web};

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

async fn page(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
) -> Response {
    let session = match admin(&web, &conn, &headers, "/dns") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let domains = all(&web).await;
    shell(
        "DNS records",
        Some(Menu { here: "/dns", csrf: &session.csrf }),
        false,
        html! {
            h1 { "DNS records" }
            p.lead { "Publish these records at the company that hosts your domain's DNS. Until they are in place, other servers cannot find or trust this one." }
            @for (domain, records) in &domains {
                div.card {
                    h2 { (domain) }
                    @match records {
                        Err(e) => (notice("bad", &format!("The records of {domain} cannot be shown: {e:#}"))),
                        Ok(records) => {
                            p { a href={"/dns/zone/" (domain)} download={(domain) ".zone"} { "Download as a zone file" } }
                            table.records {
                                thead { tr { th { "Name" } th { "Type" } th { "Value" } th { "Why" } } }
                                tbody {
                                    @for r in records {
                                        tr {
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
                                            td { span.help { (purpose(r.purpose)) ": " (r.why) } }
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
