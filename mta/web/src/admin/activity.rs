//! Activity: messages received, sent, deferred, bounced and rejected over
//! the last day and week, drawn on the server as SVG (Mailgraph's job in
//! the seed setups), what the inbound checks did in the same way, and the
//! last log lines with a filter.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use maud::{Markup, html};
use mta_app::stats::{Bucket, EVENTS, HOURS, MAIL, N, stats};
use serde::Deserialize;

use super::{admin_page, guard};
use crate::{Conn, Web};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/activity", get(activity))
        .route("/log", get(log))
}

/// One colour per event: the mail's flow, then the checks.
const COLOURS: [&str; N] = [
    "#2458d6", "#1b7f45", "#d98a00", "#b42318", "#7a8496", // flow
    "#8e44ad", "#b42318", "#d98a00", "#5b2c06", "#7a8496", "#2458d6", "#0f8b8d", "#1b7f45",
];

/// `buckets` summed `per` at a time (the week in 6-hour steps).
fn binned(buckets: &[Bucket], per: usize) -> Vec<[u32; N]> {
    buckets
        .chunks(per)
        .map(|c| {
            let mut sum = [0u32; N];
            for (_, counts) in c {
                for (s, n) in sum.iter_mut().zip(counts) {
                    *s = s.saturating_add(*n);
                }
            }
            sum
        })
        .collect()
}

/// A line chart of the events `series`; `step` names one point's span.
fn chart(points: &[[u32; N]], series: std::ops::Range<usize>, title: &str, step: &str) -> Markup {
    let (w, h, left, bottom) = (640.0f64, 200.0f64, 40.0f64, 20.0f64);
    let max = points
        .iter()
        .flat_map(|p| p[series.clone()].iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let x = |i: usize| left + (w - left - 10.0) * i as f64 / (points.len().max(2) - 1) as f64;
    let y = |n: u32| 10.0 + (h - bottom - 10.0) * (1.0 - n as f64 / max);
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={"0 0 " (w) " " (h)} role="img" aria-label=(title) {
                line x1=(left) y1=(y(0)) x2=(w - 10.0) y2=(y(0)) stroke="#9aa4b5" stroke-width="1" {}
                line x1=(left) y1="10" x2=(left) y2=(y(0)) stroke="#9aa4b5" stroke-width="1" {}
                text x=(left - 6.0) y="16" text-anchor="end" font-size="11" fill="#5b6577" { (max as u32) }
                text x=(left - 6.0) y=(y(0)) text-anchor="end" font-size="11" fill="#5b6577" { "0" }
                text x=(w - 10.0) y=(h - 4.0) text-anchor="end" font-size="11" fill="#5b6577" { "now" }
                text x=(left) y=(h - 4.0) font-size="11" fill="#5b6577" { (step) }
                @for event in series {
                    @let line: Vec<String> = points.iter().enumerate().map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p[event]))).collect();
                    polyline points=(line.join(" ")) fill="none" stroke=(COLOURS[event]) stroke-width="2" stroke-linejoin="round" {}
                }
            }
        }
    }
}

async fn activity(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
) -> Response {
    let session = match guard(&web, &conn, &headers, "/activity") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let week = stats().last(HOURS);
    let day: Vec<[u32; N]> = week[HOURS - 24..].iter().map(|(_, c)| *c).collect();
    let weekly = binned(&week, 6);
    let totals = |points: &[[u32; N]]| {
        let mut t = [0u64; N];
        for p in points {
            for (s, n) in t.iter_mut().zip(p) {
                *s += u64::from(*n);
            }
        }
        t
    };
    let (day_totals, week_totals) = (totals(&day), totals(&weekly));
    admin_page(
        "Activity",
        "/activity",
        &session,
        html! {
            h1 { "Activity" }
            @for (heading, series) in [("Mail", 0..MAIL), ("Inbound checks", MAIL..N)] {
                h2 { (heading) }
                div.card {
                    ul.legend {
                        @for event in series.clone() {
                            li { svg.swatch viewBox="0 0 10 10" aria-hidden="true" { rect width="10" height="10" fill=(COLOURS[event]) {} } " " (EVENTS[event].1) }
                        }
                    }
                    (chart(&day, series.clone(), "The last day (per hour)", "24 h ago"))
                    (chart(&weekly, series.clone(), "The last week (per 6 hours)", "7 days ago"))
                    table.stack {
                        thead { tr { th {} @for event in series.clone() { th { (EVENTS[event].1) } } } }
                        tbody {
                            tr { td { "last day" } @for n in &day_totals[series.clone()] { td { (n) } } }
                            tr { td { "last week" } @for n in &week_totals[series.clone()] { td { (n) } } }
                        }
                    }
                }
            }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Filter {
    q: String,
}

async fn log(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Response {
    let session = match guard(&web, &conn, &headers, "/log") {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let filter: String = f.q.chars().take(200).collect();
    let lines = mta_app::logring::ring().recent(&filter, 500);
    admin_page(
        "Log",
        "/log",
        &session,
        html! {
            h1 { "Log" }
            p.lead { "The server's latest lines, newest first. Filter by a queue id, an address, a client's IP or a word such as “deferred”." }
            form.inline.filter method="get" action="/log" {
                input type="text" name="q" value=(filter) aria-label="Filter" placeholder="Filter";
                button type="submit" { "Filter" }
                @if !filter.is_empty() { a href="/log" { "Show all" } }
            }
            div.card {
                @if lines.is_empty() {
                    p { "No lines" @if !filter.is_empty() { " with “" (filter) "”" } "." }
                } @else {
                    pre.log { @for l in &lines { (l) "\n" } }
                }
            }
        },
    )
}
