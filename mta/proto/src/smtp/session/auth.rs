//! AUTH (RFC 4954) in the session: PLAIN and LOGIN exchanges; the
//! password check itself is the adapter's ([`Step::Authenticate`]).

use super::*;

impl<D: Directory> Session<D> {
    pub(super) fn auth_command(&mut self, arg: &str) -> Option<Step<D::Target>> {
        let refusal = if self.cfg.role == Role::Mx {
            Some((503, "5.5.1", "Error: authentication not enabled"))
        } else if self.helo.is_none() {
            Some((503, "5.5.1", "Error: send EHLO first"))
        } else if self.tls.is_none() {
            Some((
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ))
        } else if self.authenticated.is_some() {
            Some((503, "5.5.1", "Error: already authenticated"))
        } else if self.tx.is_some() {
            Some((503, "5.5.1", "Error: MAIL transaction in progress"))
        } else {
            None
        };
        if let Some((code, enhanced, text)) = refusal {
            self.reply(code, enhanced, text.into());
            return self.closed();
        }
        let mut words = arg.split_whitespace();
        let Some(mechanism) = words.next().and_then(Mechanism::parse) else {
            self.reply(504, "5.5.4", "Unrecognized authentication type".into());
            return self.closed();
        };
        let initial = words.next();
        match (mechanism, initial) {
            (Mechanism::Plain, None) => {
                self.raw_reply(334, "", String::new());
                self.state = State::Auth(Mechanism::Plain, None);
                None
            }
            (Mechanism::Plain, Some(response)) => {
                let response = if response == "=" { "" } else { response };
                self.finish_plain(response)
            }
            (Mechanism::Login, None) => {
                self.raw_reply(334, "", sasl::encode_text("Username:"));
                self.state = State::Auth(Mechanism::Login, None);
                None
            }
            (Mechanism::Login, Some(user)) => self.login_username(user),
        }
    }

    pub(super) fn finish_plain(&mut self, response: &str) -> Option<Step<D::Target>> {
        match sasl::decode_plain(response) {
            Ok(credentials) => {
                self.state = State::AwaitingAuth;
                Some(Step::Authenticate(credentials))
            }
            Err(e) => {
                self.state = State::Command;
                self.reply(501, "5.5.2", format!("Cannot decode the response: {e}"));
                self.closed()
            }
        }
    }

    pub(super) fn login_username(&mut self, response: &str) -> Option<Step<D::Target>> {
        match sasl::decode_text(response) {
            Ok(user) if !user.is_empty() => {
                self.raw_reply(334, "", sasl::encode_text("Password:"));
                self.state = State::Auth(Mechanism::Login, Some(user));
                None
            }
            _ => {
                self.state = State::Command;
                self.reply(501, "5.5.2", "Cannot decode the response".into());
                self.closed()
            }
        }
    }

    pub(super) fn auth_line(&mut self) -> Option<Step<D::Target>> {
        let Some(lf) = self.input.bytes().iter().position(|&b| b == b'\n') else {
            if self.input.len() > MAX_AUTH_LINE {
                return Some(self.close_with(500, "5.5.2", "Error: line too long"));
            }
            return Some(Step::NeedInput);
        };
        let line = self.input.take(lf + 1);
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Some(self.close_with(521, "5.5.2", "Error: bare <LF> received"));
        }
        let text = String::from_utf8_lossy(&line[..line.len() - 2])
            .trim()
            .to_string();
        let State::Auth(mechanism, user) = std::mem::replace(&mut self.state, State::Command)
        else {
            unreachable!("auth_line runs in the Auth state")
        };
        if text == "*" {
            self.reply(501, "5.7.0", "Authentication aborted".into());
            return self.closed();
        }
        match (mechanism, user) {
            (Mechanism::Plain, _) => self.finish_plain(&text),
            (Mechanism::Login, None) => self.login_username(&text),
            (Mechanism::Login, Some(username)) => match sasl::decode_text(&text) {
                Ok(password) => {
                    self.state = State::AwaitingAuth;
                    Some(Step::Authenticate(Credentials {
                        mechanism: Mechanism::Login,
                        username,
                        password,
                    }))
                }
                Err(e) => {
                    self.reply(501, "5.5.2", format!("Cannot decode the response: {e}"));
                    self.closed()
                }
            },
        }
    }
}
