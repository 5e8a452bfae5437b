//! The control socket (`<data>/control.sock`, owner only): `mta queue …`,
//! `mta reload` and init's health check talk to the running server here.
//! The protocol is one command line in, text out; the first line of the
//! answer is `ok` or `error: <why>`. The commands themselves are
//! [`mta_app::admin`]'s.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use anyhow::{Context, bail};
use mta_app::acme::{Acme, Asked};
use mta_app::admin::{Command, execute};
use mta_store::queue::{Queue, Schedule};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// Serves the control socket in the background.
pub async fn listen(
    path: &Path,
    queue: Queue,
    schedule: Sender<Schedule>,
    acme: Arc<Acme>,
    reporter: Option<Arc<mta_app::reporter::Reporter>>,
) -> anyhow::Result<()> {
    // A socket left by a killed server would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("creating the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let queue = queue.clone();
            let schedule = schedule.clone();
            let acme = acme.clone();
            let reporter = reporter.clone();
            let runtime = tokio::runtime::Handle::current();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                // One short line, soon: the socket is the owner's, but no
                // reader waits or buffers without a bound.
                let read = tokio::io::AsyncReadExt::take(BufReader::new(read), 4096);
                let mut read = std::pin::pin!(read);
                let got = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    read.read_line(&mut line),
                )
                .await;
                if !matches!(got, Ok(Ok(_))) {
                    return;
                }
                let answer = tokio::task::spawn_blocking(move || {
                    match line.trim().parse()? {
                        // The certificate's keeper lives here, not in the queue.
                        Command::CertRenew => match acme.renew_now() {
                            Asked::Started => Ok("a certificate is requested now; `mta cert status` shows the outcome\n".into()),
                            Asked::AlreadyUnderWay => Ok("a request is already under way; `mta cert status` shows the outcome\n".into()),
                            Asked::Off => Err(anyhow::anyhow!("ACME is off: set [acme] in the configuration first")),
                        },
                        Command::CertStatus => Ok(acme.report().text()),
                        Command::ReportsSend => match &reporter {
                            Some(r) => runtime.block_on(r.send(true)).map(|lines| match lines.is_empty() {
                                true => "no report to send\n".to_string(),
                                false => lines.join("\n") + "\n",
                            }),
                            None => Err(anyhow::anyhow!("reports are off: inbound.redb could not be opened (see the log)")),
                        },
                        Command::ReportsList => match &reporter {
                            Some(r) => r.list_received(),
                            None => Err(anyhow::anyhow!("reports are off: inbound.redb could not be opened (see the log)")),
                        },
                        command => execute(&queue, Some(&schedule), command),
                    }
                })
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("{e}")));
                let text = match answer {
                    Ok(text) => format!("ok\n{text}"),
                    Err(e) => format!("error: {e:#}\n"),
                };
                let _ = write.write_all(text.as_bytes()).await;
                let _ = write.shutdown().await;
            });
        }
    });
    Ok(())
}

/// Sends one command to a running server; `None` when none is listening.
pub fn request(path: &Path, command: Command) -> Option<anyhow::Result<String>> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    let result = (|| {
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        match answer.split_once('\n') {
            Some(("ok", rest)) => Ok(rest.to_string()),
            Some((err, _)) => bail!("{}", err.trim_start_matches("error: ")),
            None => bail!("the server gave no answer"),
        }
    })();
    Some(result)
}
