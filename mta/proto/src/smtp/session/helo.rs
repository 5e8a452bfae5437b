//! HELO and EHLO (RFC 5321 §4.1.1.1): the client's name, and the
//! extensions offered on this listener in this state.

use super::*;

impl<D: Directory> Session<D> {
    pub(super) fn helo(&mut self, arg: &str, extended: bool) {
        let name = arg.split_whitespace().next().unwrap_or("");
        if name.is_empty() || arg.split_whitespace().count() > 1 && !extended {
            let verb = if extended { "EHLO" } else { "HELO" };
            self.reply(501, "5.5.4", format!("Syntax: {verb} hostname"));
            return;
        }
        self.tx = None;
        self.helo = Some((name.to_string(), extended));
        if !extended {
            self.raw_reply(250, "", self.cfg.hostname.clone());
            return;
        }
        let mut lines = vec![format!(
            "{} Hello {} [{}]",
            self.cfg.hostname, name, self.peer
        )];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.cfg.max_message_size));
        if self.cfg.tls_available && self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        if self.cfg.role != Role::Mx && self.tls.is_some() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("8BITMIME".into());
        lines.push("CHUNKING".into());
        lines.push("SMTPUTF8".into());
        self.raw_reply(250, "", lines.join("\n"));
    }
}
