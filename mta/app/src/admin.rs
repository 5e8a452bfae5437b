//! Administration as typed operations ([`Command`]): `mta queue …` and
//! `mta reload` through the running server's control socket (the `mta`
//! binary's `serve::control`, which carries a command as its text form)
//! or, when no server runs, directly on the queue database. The same
//! [`execute`] serves both; the admin web will call it too.

use std::fmt::Write as _;
use std::sync::mpsc::Sender;

use anyhow::{Context, bail};

use crate::directory::Target;
use mta_store::envelope::{Envelope, QueueId, Status};
use mta_store::queue::{Queue, Schedule};

/// One administration operation: what the CLI, the control socket and
/// (next) the admin web ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    List,
    Show(QueueId),
    Hold(QueueId),
    Release(QueueId),
    Delete(QueueId),
    /// Attempt this message now.
    Retry(QueueId),
    /// Attempt every queued message now.
    Flush,
    /// Re-read the configuration.
    Reload,
    /// init's health check: the server runs and its queue takes writes.
    Health,
    /// The certificate and its renewal (the running server's view).
    CertStatus,
    /// Ask the CA for a certificate now.
    CertRenew,
    /// Send the DMARC and TLS reports gathered so far, today's too.
    ReportsSend,
    /// The DMARC and TLS reports received about our domains.
    ReportsList,
}

const VERBS: &str = "list, show ID, hold ID, release ID, delete ID, retry ID, flush, reload, health, cert-status, cert-renew, reports-send, reports-list";

impl std::str::FromStr for Command {
    type Err = anyhow::Error;

    /// The control socket's line: a verb and, for some, a queue id.
    fn from_str(line: &str) -> anyhow::Result<Command> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let mut id = || -> anyhow::Result<QueueId> {
            let text = words.next().context("this command needs a queue id")?;
            text.parse()
                .map_err(|_| anyhow::anyhow!("{text:?} is not a queue id"))
        };
        let command = match verb {
            "list" => Command::List,
            "show" => Command::Show(id()?),
            "hold" => Command::Hold(id()?),
            "release" => Command::Release(id()?),
            "delete" => Command::Delete(id()?),
            "retry" => Command::Retry(id()?),
            "flush" => Command::Flush,
            "reload" => Command::Reload,
            "health" => Command::Health,
            "cert-status" => Command::CertStatus,
            "cert-renew" => Command::CertRenew,
            "reports-send" => Command::ReportsSend,
            "reports-list" => Command::ReportsList,
            "" => bail!("empty command"),
            other => bail!("unknown command {other:?} ({VERBS})"),
        };
        if let Some(extra) = words.next() {
            bail!("unexpected {extra:?} after the command");
        }
        Ok(command)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::List => write!(f, "list"),
            Command::Show(id) => write!(f, "show {id}"),
            Command::Hold(id) => write!(f, "hold {id}"),
            Command::Release(id) => write!(f, "release {id}"),
            Command::Delete(id) => write!(f, "delete {id}"),
            Command::Retry(id) => write!(f, "retry {id}"),
            Command::Flush => write!(f, "flush"),
            Command::Reload => write!(f, "reload"),
            Command::Health => write!(f, "health"),
            Command::CertStatus => write!(f, "cert-status"),
            Command::CertRenew => write!(f, "cert-renew"),
            Command::ReportsSend => write!(f, "reports-send"),
            Command::ReportsList => write!(f, "reports-list"),
        }
    }
}

/// Runs one administration command against the queue; `schedule` is the
/// running server's scheduler (`None`: no server runs, the queue was
/// opened directly). The answer is text for a person.
pub fn execute(
    queue: &Queue,
    schedule: Option<&Sender<Schedule>>,
    command: Command,
) -> anyhow::Result<String> {
    match command {
        Command::List => {
            let mut out = format_list(&queue.list()?);
            for (id, size) in queue.damaged()? {
                let _ = writeln!(
                    out,
                    "{id}!  damaged record ({size} bytes) set aside: not delivered; `delete {id}` removes it"
                );
            }
            Ok(out)
        }
        Command::Show(id) => {
            let env = queue
                .envelope(id)?
                .with_context(|| format!("no message {id} in the queue"))?;
            let body = match queue.body(id)? {
                Some(body) => body.to_vec()?,
                None => Vec::new(),
            };
            let mut out = format_list(std::slice::from_ref(&env));
            out.push('\n');
            out.push_str(&String::from_utf8_lossy(&body));
            Ok(out)
        }
        Command::Hold(id) => queue.hold(id).map(|s| s + "\n"),
        Command::Release(id) => queue.release(id).map(|s| s + "\n"),
        Command::Delete(id) => queue.delete(id).map(|s| s + "\n"),
        Command::Retry(id) => {
            let env = queue
                .envelope(id)?
                .with_context(|| format!("no message {id} in the queue"))?;
            if env.held {
                bail!("{id} is held: release it first");
            }
            match schedule {
                Some(s) => {
                    s.send(Schedule::Due {
                        id,
                        due: 0,
                        fresh: None,
                    })
                    .map_err(|_| anyhow::anyhow!("the scheduler has stopped"))?;
                    Ok(format!("delivery of {id} started\n"))
                }
                None => bail!(
                    "the server is not running; queued mail is attempted as soon as it starts"
                ),
            }
        }
        Command::Flush => match schedule {
            Some(s) => {
                s.send(Schedule::Flush)
                    .map_err(|_| anyhow::anyhow!("the scheduler has stopped"))?;
                Ok("delivery of all queued messages started\n".into())
            }
            None => {
                bail!("the server is not running; queued mail is attempted as soon as it starts")
            }
        },
        // The answer comes from the server's runtime, whose listeners were
        // bound before the control socket; independent of the SMTP greeting
        // delay.
        Command::Health => match schedule {
            Some(_) if queue.ping(std::time::Duration::from_secs(2)) => Ok("healthy\n".into()),
            Some(_) => bail!("the queue does not take writes"),
            None => bail!("the server is not running"),
        },
        Command::Reload => match schedule {
            // The server reloads on SIGHUP; asking it this way needs no pid.
            Some(_) => {
                nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP)?;
                Ok("configuration reload requested\n".into())
            }
            None => bail!("the server is not running; it reads the configuration when it starts"),
        },
        Command::CertStatus | Command::CertRenew => {
            bail!("the server is not running; it asks for certificates when it starts")
        }
        Command::ReportsSend | Command::ReportsList => {
            bail!("the server is not running; it keeps the reports in inbound.redb")
        }
    }
}

fn format_list(envelopes: &[Envelope]) -> String {
    let mut out = String::new();
    if envelopes.is_empty() {
        return "the queue is empty\n".into();
    }
    for env in envelopes {
        let arrival = chrono::DateTime::from_timestamp_micros(env.arrival as i64)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let flag = if env.held { "!" } else { " " };
        let from = if env.from.is_empty() {
            "<>"
        } else {
            env.from.as_str()
        };
        let _ = writeln!(out, "{}{flag} {:>9}  {arrival}  {from}", env.id, env.size);
        for r in &env.recipients {
            let to = match &r.target {
                Target::Local { delivered_to, .. } => delivered_to,
                Target::Remote { address } => address,
            };
            let status = match r.status {
                Status::Pending => "pending",
                Status::Delivered => "delivered",
                Status::Failed => "failed",
            };
            let _ = write!(out, "{:38}-> {to} ({status}, {} attempts", "", r.attempts);
            if let Some(e) = &r.last_error {
                let _ = write!(out, ": {e}");
            }
            let _ = writeln!(out, ")");
        }
    }
    let held = envelopes.iter().filter(|e| e.held).count();
    let _ = writeln!(out, "-- {} messages, {} held", envelopes.len(), held);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_text_form() {
        let id = QueueId(0x0123_4567_89AB_CDEF);
        for c in [
            Command::List,
            Command::Show(id),
            Command::Hold(id),
            Command::Release(id),
            Command::Delete(id),
            Command::Retry(id),
            Command::Flush,
            Command::Reload,
            Command::Health,
            Command::CertStatus,
            Command::CertRenew,
            Command::ReportsSend,
            Command::ReportsList,
        ] {
            assert_eq!(c.to_string().parse::<Command>().unwrap(), c);
        }
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let err = |line: &str| line.parse::<Command>().unwrap_err().to_string();
        assert!(err("show").contains("needs a queue id"));
        assert!(err("hold nonsense").contains("is not a queue id"));
        assert!(err("list extra").contains("unexpected"));
        assert!(err("explode").contains("unknown command"));
        assert_eq!(err(""), "empty command");
    }
}
