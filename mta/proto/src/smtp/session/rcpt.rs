//! RCPT TO (RFC 5321 §4.1.1.3): who receives, as the directory says;
//! relay tricks refused; one copy per mailbox.

use super::*;

impl<D: Directory> Session<D> {
    pub(super) fn rcpt(&mut self, arg: &str) {
        let Some(tx) = &self.tx else {
            return self.reply(503, "5.5.1", "Error: need MAIL command".into());
        };
        let smtputf8 = tx.smtputf8;
        let count = tx.recipients.len();
        let Some(path) = strip_keyword(arg, "TO:") else {
            return self.reply(501, "5.5.4", "Syntax: RCPT TO:<address>".into());
        };
        let path = match split_path(path) {
            Ok(p) => p,
            Err(AddressError::SourceRoute) => {
                return self.reply(
                    554,
                    "5.7.1",
                    "Relay access denied: source routes are not accepted".into(),
                );
            }
            Err(e) => {
                return self.reply(501, "5.1.3", format!("Bad recipient address syntax: {e}"));
            }
        };
        if !path.params.is_empty() {
            return self.reply(555, "5.5.4", format!("Unsupported option: {}", path.params));
        }
        let Some(text) = path.address else {
            return self.reply(
                501,
                "5.1.3",
                "Bad recipient address syntax: empty path".into(),
            );
        };
        // RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
        let text = if text.eq_ignore_ascii_case("postmaster") {
            match self.directory.primary_domain() {
                Some(d) => format!("postmaster@{d}"),
                None => text.to_string(),
            }
        } else {
            text.to_string()
        };
        let address = match Address::parse(&text, smtputf8) {
            Ok(a) => a,
            Err(AddressError::NeedsUtf8) => {
                return self.reply(
                    553,
                    "5.6.7",
                    "Non-ASCII address needs the SMTPUTF8 parameter".into(),
                );
            }
            Err(e @ (AddressError::QuotedAt | AddressError::RoutingCharacters)) => {
                return self.reply(554, "5.7.1", format!("Relay access denied: {e}"));
            }
            Err(e) => {
                return self.reply(501, "5.1.3", format!("Bad recipient address syntax: {e}"));
            }
        };
        if let Some(e) = address.routing_trick() {
            return self.reply(
                554,
                "5.7.1",
                format!("<{address}>: Relay access denied: {e}"),
            );
        }
        if count >= self.cfg.max_recipients {
            return self.reply(452, "4.5.3", "Error: too many recipients".into());
        }
        let targets = match self.directory.lookup(&address) {
            Ok(Lookup::Deliver(targets)) => targets,
            // An authenticated user may send anywhere.
            Ok(Lookup::NotLocal) if self.authenticated.is_some() => {
                vec![self.directory.remote(&address)]
            }
            Ok(Lookup::NotLocal) => {
                return self.reply(554, "5.7.1", format!("<{address}>: Relay access denied"));
            }
            Ok(Lookup::Unknown) => {
                return self.reply(
                    550,
                    "5.1.1",
                    format!("<{address}>: Recipient address rejected: User unknown"),
                );
            }
            Ok(Lookup::Refused(why)) => {
                return self.reply(
                    550,
                    "5.1.1",
                    format!("<{address}>: Recipient address rejected: {why}"),
                );
            }
            Err(e) => {
                tracing::error!(recipient = %address, "configuration error: {e}");
                return self.reply(
                    451,
                    "4.3.0",
                    format!("<{address}>: Temporary lookup failure"),
                );
            }
        };
        // A full mailbox: the sender keeps the message and tries again
        // (RFC 3463 4.2.2), as Postfix with Dovecot's quota service does.
        let declared = self.tx.as_ref().map_or(0, |tx| tx.declared);
        if targets
            .iter()
            .any(|t| !self.directory.has_room(t, declared))
        {
            return self.reply(
                452,
                "4.2.2",
                format!("<{address}>: Mailbox full, try again later"),
            );
        }
        let tx = self.tx.as_mut().expect("checked above");
        let key = address.key();
        if !tx.recipients.iter().any(|(a, _)| a.key() == key) {
            tx.recipients.push((address, targets));
        }
        self.reply(250, "2.1.5", "Ok".into());
    }
}
