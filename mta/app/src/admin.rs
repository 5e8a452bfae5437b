//! Queue administration (`mta queue …`), both through the running server's
//! control socket (the `mta` binary's `serve::control`) and, when no server
//! runs, directly on the queue database. The same [`execute`] serves both.

use std::fmt::Write as _;
use std::sync::mpsc::Sender;

use anyhow::{Context, bail};

use crate::directory::Target;
use mta_store::envelope::{Envelope, QueueId, Status};
use mta_store::queue::{Queue, Schedule};

/// Runs one administration command against the queue.
pub fn execute(
    queue: &Queue,
    schedule: Option<&Sender<Schedule>>,
    command: &str,
) -> anyhow::Result<String> {
    let mut words = command.split_whitespace();
    let verb = words.next().unwrap_or("");
    let id = || -> anyhow::Result<QueueId> {
        let text = command
            .split_whitespace()
            .nth(1)
            .context("this command needs a queue id")?;
        text.parse()
            .map_err(|_| anyhow::anyhow!("{text:?} is not a queue id"))
    };
    match verb {
        "list" => {
            let mut out = format_list(&queue.list()?);
            for (id, size) in queue.damaged()? {
                let _ = writeln!(
                    out,
                    "{id}!  damaged record ({size} bytes) set aside: not delivered; `delete {id}` removes it"
                );
            }
            Ok(out)
        }
        "show" => {
            let id = id()?;
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
        "hold" => queue.hold(id()?).map(|s| s + "\n"),
        "release" => queue.release(id()?).map(|s| s + "\n"),
        "delete" => queue.delete(id()?).map(|s| s + "\n"),
        "flush" => match schedule {
            Some(s) => {
                s.send(Schedule::Flush)
                    .map_err(|_| anyhow::anyhow!("the scheduler has stopped"))?;
                Ok("delivery of all queued messages started\n".into())
            }
            None => {
                bail!("the server is not running; queued mail is attempted as soon as it starts")
            }
        },
        // init's health check: the server runs (this answer comes from its
        // runtime, whose listeners were bound before this socket) and its
        // queue takes writes. Independent of the SMTP greeting delay.
        "health" => match schedule {
            Some(_) if queue.ping(std::time::Duration::from_secs(2)) => Ok("healthy\n".into()),
            Some(_) => bail!("the queue does not take writes"),
            None => bail!("the server is not running"),
        },
        "reload" => match schedule {
            // The server reloads on SIGHUP; asking it this way needs no pid.
            Some(_) => {
                nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP)?;
                Ok("configuration reload requested\n".into())
            }
            None => bail!("the server is not running; it reads the configuration when it starts"),
        },
        "" => bail!("empty command"),
        other => bail!(
            "unknown command {other:?} (list, show ID, hold ID, release ID, delete ID, flush, reload, health)"
        ),
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
