//! The wizard's last step: the summary, and the one atomic edit that
//! writes the answers into the configuration, then the DKIM keys and the
//! reload.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use mta_proto::address::Address;
use serde::Deserialize;
use toml_edit::{DocumentMut, Item, Table, value};

use super::steps::strength_name;
use super::{COOKIE, Draft, current, posted, wizard};
use crate::layout::notice;
use crate::{Conn, Web, forms, login};

// Step 5: summary and finish.

pub(super) async fn summary_page(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let (_, d) = match current(&web, &headers) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    if d.acme.is_none() {
        return Redirect::to("/setup/certificate").into_response();
    }
    summary(&d, None).into_response()
}

fn summary(d: &Draft, error: Option<&str>) -> Markup {
    let owner = d.owner.as_ref().expect("the owner step came first");
    wizard(
        "Summary",
        5,
        html! {
            h1 { "Ready to set up" }
            @if let Some(e) = error { (notice("bad", e)) }
            div.card {
                dl.summary {
                    dt { "Domains" } dd { (d.domains.join(", ")) }
                    dt { "Host name" } dd { (d.hostname) }
                    dt { "Your address" } dd { (owner.address) }
                    dt { "Password" } dd { span class={"strength s" (owner.strength)} { (strength_name(owner.strength)) } }
                    dt { "Outgoing mail" } dd {
                        @match d.relay.clone().flatten() {
                            None => "delivered directly",
                            Some(r) => { "through " (r.host) ":" (r.port) @if !r.username.is_empty() { " as " (r.username) } }
                        }
                    }
                    dt { "Certificate" } dd {
                        @match d.acme.clone().flatten() {
                            None => "the appliance's own (self-signed)",
                            Some(c) if c.is_empty() => "from Let's Encrypt",
                            Some(c) => { "from Let's Encrypt, contact " (c) }
                        }
                    }
                }
                form method="post" action="/setup/finish" {
                    input type="hidden" name="csrf" value=(d.csrf);
                    div.actions {
                        button type="submit" { "Set up my Mailbox" }
                        a.button.secondary href="/setup/certificate" { "Back" }
                    }
                }
            }
            p.help { "Next you will see the DNS records to publish at your domain's DNS provider." }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct FinishForm {
    csrf: String,
}

pub(super) async fn finish(
    State(web): State<Arc<Web>>,
    Extension(conn): Extension<Conn>,
    headers: HeaderMap,
    Form(form): Form<FinishForm>,
) -> Response {
    let (_, draft) = match posted(&web, &headers, &form.csrf) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let (Some(owner), Some(_), Some(_)) = (&draft.owner, &draft.relay, &draft.acme) else {
        return Redirect::to("/setup/summary").into_response();
    };
    let config = web.settings.get().config.clone();
    let applied = {
        let draft = draft.clone();
        let path = config.path.clone();
        tokio::task::spawn_blocking(move || {
            mta_app::config::edit(&path, |doc| apply(doc, &draft))?;
            // The DKIM keys of every domain, made now so the DNS page can
            // show their records.
            let keys = mta_app::dkim::Keys::new(&config.data_dir);
            for domain in &draft.domains {
                keys.of(domain)?;
            }
            anyhow::Ok(())
        })
        .await
        .expect("the edit does not panic")
    };
    if let Err(e) = applied.and_then(|()| web.settings.reload()) {
        tracing::error!("setup not saved: {e:#}");
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            summary(
                &draft,
                Some(&format!("The setup could not be saved: {e:#}")),
            ),
        )
            .into_response();
    }
    web.setup.claimed();
    tracing::info!(
        "client={}: set up for {} with owner {}",
        conn.peer,
        draft.domains.join(", "),
        owner.address
    );
    let clear = forms::set_cookie(COOKIE, "", conn.secure, 0);
    if conn.secure {
        let settings = web.settings.get();
        let token = web.sessions.start(
            owner.address.clone(),
            settings.directory.credential(&owner.address),
        );
        (
            [
                (header::SET_COOKIE, clear),
                (
                    header::SET_COOKIE,
                    forms::set_cookie(crate::session::COOKIE, &token, true, 12 * 3600),
                ),
            ],
            Redirect::to("/dns"),
        )
            .into_response()
    } else {
        // A page, not a redirect: a form may not lead to another origin
        // (CSP form-action), and the owner should know about the
        // certificate warning before it appears.
        let next = login::https_url(&web, &headers, "/login?next=/dns");
        ([(header::SET_COOKIE, clear)], done(&owner.address, &next)).into_response()
    }
}

fn done(address: &str, next: &str) -> Markup {
    wizard(
        "Set up",
        6,
        html! {
            h1 { "Your Mailbox is set up" }
            (notice("ok", "The configuration is saved and the server runs with it."))
            div.card {
                p { "Next: log in as " strong { (address) } " over a secure connection and publish the DNS records it shows." }
                p.help { "Until the appliance has a certificate from Let's Encrypt, your browser warns that this one is self-signed. It is this appliance's own: continue to the page. The Certificate page shows when the real one arrives." }
                div.actions { a.button href=(next) { "Continue to the DNS records" } }
            }
        },
    )
}

/// The wizard's answers written into the configuration document: the host
/// name and domains; the accounts, aliases and postmaster of other domains
/// (the first boot's `mailbox.local`) removed; the owner's account with the
/// admin role; the relay as the smarthost.
fn apply(doc: &mut DocumentMut, d: &Draft) -> anyhow::Result<String> {
    let owner = d.owner.as_ref().context("the owner step is not done")?;
    let ours = |address: &str| {
        Address::parse(address, true).is_ok_and(|a| d.domains.iter().any(|x| x == a.domain()))
    };
    doc["hostname"] = value(d.hostname.as_str());
    let mut domains = toml_edit::Array::new();
    for domain in &d.domains {
        domains.push(domain.as_str());
    }
    doc["domains"] = value(domains);
    if doc
        .get("postmaster")
        .and_then(|p| p.as_str())
        .is_some_and(|p| !ours(p))
    {
        doc.remove("postmaster");
    }
    if let Some(aliases) = doc.get_mut("aliases").and_then(Item::as_table_like_mut) {
        let gone: Vec<String> = aliases
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| {
                let domain = k.rsplit_once('@').map_or("", |(_, d)| d);
                !d.domains.iter().any(|x| x == domain)
            })
            .collect();
        for k in gone {
            aliases.remove(&k);
        }
    }
    let accounts = doc
        .entry("accounts")
        .or_insert(Item::ArrayOfTables(Default::default()))
        .as_array_of_tables_mut()
        .context("[[accounts]] in the configuration is not what the wizard can change")?;
    accounts.retain(|t| t.get("address").and_then(|a| a.as_str()).is_some_and(ours));
    let existing = accounts.iter_mut().find(|t| {
        t.get("address")
            .and_then(|a| a.as_str())
            .and_then(|a| Address::parse(a, true).ok())
            .is_some_and(|a| a.key() == owner.address)
    });
    let table = match existing {
        Some(t) => t,
        None => {
            let mut t = Table::new();
            t["address"] = value(owner.address.as_str());
            accounts.push(t);
            accounts.iter_mut().last().expect("just pushed")
        }
    };
    table["password"] = value(owner.hash.as_str());
    table["admin"] = value(true);
    if let Some(Some(r)) = &d.relay {
        let relay = mta_app::relays::NewRelay {
            name: "provider",
            host: &r.host,
            port: r.port,
            implicit_tls: r.implicit_tls,
            login: (!r.username.is_empty()).then_some((r.username.as_str(), r.password.as_str())),
        };
        mta_app::relays::change_doc(
            doc,
            mta_app::relays::Change::Set {
                relay,
                smarthost: true,
            },
        )?;
    }
    if let Some(acme) = &d.acme {
        mta_app::acme::choose(
            doc,
            match acme {
                Some(contact) => mta_app::acme::Choice::On {
                    contact: Some(contact),
                    directory: "production",
                },
                None => mta_app::acme::Choice::Off,
            },
        )?;
    }
    Ok(format!("set up for {}", d.domains.join(", ")))
}
