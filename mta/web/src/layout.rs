//! The page shell and the pieces every form uses.

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The envelope logo, drawn inline (no image request).
const LOGO: &str = r#"<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="2" y="5" width="20" height="14" rx="2.5" fill="none" stroke="currentColor" stroke-width="2"/><path d="M3 7l9 6 9-6" fill="none" stroke="currentColor" stroke-width="2" stroke-linejoin="round"/></svg>"#;

/// Where an admin page is, for the menu: its path and the session's CSRF
/// token (for the log-out form).
pub struct Menu<'a> {
    pub here: &'a str,
    pub csrf: &'a str,
}

/// The admin menu's entries.
const MENU: &[(&str, &str)] = &[
    ("/accounts", "Accounts"),
    ("/aliases", "Aliases"),
    ("/domains", "Domains"),
    ("/dns", "DNS records"),
    ("/relays", "Outgoing"),
    ("/certificate", "Certificate"),
    ("/queue", "Queue"),
    ("/activity", "Activity"),
    ("/reports", "Reports"),
    ("/log", "Log"),
    ("/update", "Update"),
];

/// A page: the bar on top (with the admin menu for an admin page), then
/// `body`.
pub fn shell(title: &str, menu: Option<Menu>, narrow: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Mailbox" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    div.bar {
                        a.brand href="/" { (PreEscaped(LOGO)) "Mailbox" }
                        @if let Some(menu) = menu {
                            nav.menu {
                                @for (href, label) in MENU {
                                    a href=(href) class=[(*href == menu.here).then_some("here")] { (label) }
                                }
                                form.logout method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(menu.csrf);
                                    button.secondary.small type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                }
                main class=[narrow.then_some("narrow")] { (body) }
                footer { "Mailbox " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// A page outside the admin (wizard, login, errors).
pub fn page(title: &str, body: Markup) -> Markup {
    shell(title, None, true, body)
}

/// One labelled input with its help and its error.
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub help: Option<&'a str>,
    pub error: Option<&'a str>,
    pub autocomplete: &'a str,
}

impl Field<'_> {
    pub fn render(&self) -> Markup {
        let id = format!("f-{}", self.name);
        html! {
            div.field.invalid[self.error.is_some()] {
                label for=(id) { (self.label) }
                @if self.kind == "textarea" {
                    textarea id=(id) name=(self.name) rows="3" autocomplete=(self.autocomplete) { (self.value) }
                } @else {
                    input id=(id) type=(self.kind) name=(self.name) value=(self.value)
                        autocomplete=(self.autocomplete)
                        aria-invalid=[self.error.map(|_| "true")];
                }
                @if let Some(e) = self.error { p.error role="alert" { (e) } }
                @if let Some(h) = self.help { p.help { (h) } }
            }
        }
    }
}

/// A notice above a form.
pub fn notice(kind: &str, text: &str) -> Markup {
    html! { div class={"notice " (kind)} role="status" { (text) } }
}
