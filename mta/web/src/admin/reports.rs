//! Reports: what other receivers say about mail in our domains' names —
//! DMARC aggregate reports (who sent mail as our domains, and whether it
//! passed) and TLS reports (whether senders reached us over TLS) — as
//! `mta_app::inbound::received` keeps them from the `rua` mail.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::html;
use mta_app::inbound::received::{KEEP_DAYS, Kind, MAX_KEPT, day};

use super::{admin_page, guard};
use crate::layout::notice;
use crate::{Conn, Web};

const HERE: &str = "/reports";

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route(HERE, get(page))
}

async fn page(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
) -> Response {
    let session = match guard(&web, &conn, &headers, HERE) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let list = match &web.received {
        Some(r) => {
            let r = r.clone();
            tokio::task::spawn_blocking(move || r.list())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
                .and_then(|l| l)
        }
        None => Err(anyhow::anyhow!(
            "the report store could not be opened (see the log)"
        )),
    };
    admin_page(
        "Reports",
        HERE,
        &session,
        html! {
            h1 { "Reports" }
            p.lead {
                "What other mail servers report about mail in your domains' names. "
                "DMARC reports list who sent mail as your domains and whether it passed SPF or DKIM: "
                "failures from addresses you do not know are someone else using your name (their mail was "
                "quarantined or rejected as your DMARC record asks); failures from a service you use "
                "(a newsletter, a shop) mean it needs to be allowed in SPF or to sign with DKIM. "
                "TLS reports say whether senders reached this server over TLS."
            }
            @match &list {
                Err(e) => { (notice("bad", &format!("The reports cannot be read: {e:#}."))) }
                Ok(list) if list.is_empty() => {
                    div.card {
                        p { "No report has arrived yet. Receivers such as Gmail and Outlook send one a day to the address in your DMARC and TLS-RPT records (see DNS records) once they get mail from your domains." }
                    }
                }
                Ok(list) => {
                    div.card {
                        table.stack {
                            thead { tr { th { "Period" } th { "From" } th { "Kind" } th { "Domain" } th { "Passed" } th { "Failed" } th { "Failures" } } }
                            tbody {
                                @for (_, s) in list {
                                    tr {
                                        td data-label="Period" { (day(s.begin)) @if day(s.end) != day(s.begin) { " – " (day(s.end)) } }
                                        td data-label="From" { (s.org) }
                                        td data-label="Kind" { (s.kind.name()) }
                                        td data-label="Domain" { (s.domain) }
                                        td data-label="Passed" { (s.passed) }
                                        td data-label="Failed" { @if s.failed > 0 { strong { (s.failed) } } @else { "0" } }
                                        td data-label="Failures" {
                                            @if s.problems.is_empty() { "—" }
                                            @for p in &s.problems { (p) br; }
                                        }
                                    }
                                }
                            }
                        }
                        p.help {
                            "The last " (MAX_KEPT) " reports of " (KEEP_DAYS) " days are kept. "
                            @if list.iter().any(|(_, s)| s.kind == Kind::Dmarc && s.failed > 0) {
                                "A failing source is shown as its address and what the receiver did with the mail."
                            }
                        }
                    }
                }
            }
        },
    )
}
