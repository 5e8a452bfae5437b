//! MAIL FROM (RFC 5321 §4.1.1.2): who sends, with the SIZE, BODY and
//! SMTPUTF8 parameters; for submission, the login and its right to the
//! sender address.

use super::*;

impl<D: Directory> Session<D> {
    pub(super) fn mail(&mut self, arg: &str) {
        if self.helo.is_none() {
            return self.reply(503, "5.5.1", "Error: send HELO/EHLO first".into());
        }
        if self.tx.is_some() {
            return self.reply(503, "5.5.1", "Error: nested MAIL command".into());
        }
        if let Some(why) = &self.blocked
            && self.authenticated.is_none()
        {
            return self.reply(550, "5.7.1", why.clone());
        }
        if self.authenticated.is_none()
            && let Some(gate) = &mut self.gate
            && let Some(why) = gate()
        {
            return self.reply(450, "4.7.1", why);
        }
        if self.cfg.role != Role::Mx {
            if self.tls.is_none() {
                return self.reply(530, "5.7.0", "Must issue a STARTTLS command first".into());
            }
            let Some(account) = &self.authenticated else {
                return self.reply(530, "5.7.0", "Authentication required".into());
            };
            // The password changed or the account went since the login.
            if self.directory.credential(account) != self.credential {
                self.raw_reply(
                    421,
                    "4.7.0",
                    format!(
                        "{} Error: the login of {account} is no longer valid; log in again",
                        self.cfg.hostname
                    ),
                );
                self.state = State::Closed;
                return;
            }
        }
        let Some(path) = strip_keyword(arg, "FROM:") else {
            return self.reply(501, "5.5.4", "Syntax: MAIL FROM:<address>".into());
        };
        let path = match split_path(path) {
            Ok(p) => p,
            Err(AddressError::SourceRoute) => {
                return self.reply(553, "5.1.7", "Error: source routes are not accepted".into());
            }
            Err(e) => return self.reply(501, "5.1.7", format!("Bad sender address syntax: {e}")),
        };
        let mut smtputf8 = false;
        let mut declared = 0;
        for param in path.params.split_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(n) if n > self.cfg.max_message_size => {
                        return self.reply(552, "5.3.4", "Message size exceeds fixed limit".into());
                    }
                    Ok(n) => declared = n,
                    Err(_) => return self.reply(501, "5.5.4", "Bad SIZE parameter".into()),
                },
                "BODY" => {
                    if !matches!(value.to_ascii_uppercase().as_str(), "7BIT" | "8BITMIME") {
                        return self.reply(
                            555,
                            "5.5.4",
                            format!("Unsupported BODY type {value:?}"),
                        );
                    }
                }
                "SMTPUTF8" if value.is_empty() => smtputf8 = true,
                _ => return self.reply(555, "5.5.4", format!("Unsupported option: {param}")),
            }
        }
        let from = match path.address {
            // Bounces come from the server itself, never from a user.
            None if self.authenticated.is_some() => {
                return self.reply(
                    553,
                    "5.7.1",
                    "<>: Sender address rejected: the null sender is not allowed for submission"
                        .into(),
                );
            }
            None => None,
            Some(text) => match Address::parse(text, smtputf8) {
                Ok(a) => Some(a),
                Err(AddressError::NeedsUtf8) => {
                    return self.reply(
                        553,
                        "5.6.7",
                        "Non-ASCII address needs the SMTPUTF8 parameter".into(),
                    );
                }
                Err(e) => {
                    return self.reply(501, "5.1.7", format!("Bad sender address syntax: {e}"));
                }
            },
        };
        if let (Some(account), Some(sender)) = (&self.authenticated, &from)
            && !self.directory.may_send_as(account, sender)
        {
            return self.reply(
                553,
                "5.7.1",
                format!("<{sender}>: Sender address rejected: not owned by user {account}"),
            );
        }
        self.transactions += 1;
        self.tx = Some(Transaction {
            serial: self.transactions,
            from,
            smtputf8,
            recipients: Vec::new(),
            body: Vec::new(),
            oversize: false,
            long_line: false,
            chunked: false,
            pending_cr: false,
            size: 0,
            declared,
            header: HeaderScan::default(),
        });
        self.reply(250, "2.1.0", "Ok".into());
    }
}
