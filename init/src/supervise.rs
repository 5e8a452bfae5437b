//! Runs `mta` as an unprivileged user, restarts it with backoff, keeps its
//! output (a ring buffer in memory, rotated files under /data/log) and
//! mirrors the important lines to the console.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::console::log;

const LOG_DIR: &str = "/data/log";
const LOG_FILE_LIMIT: u64 = 1 << 20;
const LOG_FILES_KEPT: usize = 4;
const RING_LINES: usize = 2000;

/// Writes a file durably: temp file, fsync, rename, fsync of the directory.
pub fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// First-boot configuration and ownership for the unprivileged server.
pub fn prepare_data() {
    let config = Path::new(crate::CONFIG);
    if !config.exists() {
        match std::fs::read("/etc/mailbox/mailbox.toml") {
            Ok(default) => match write_synced(config, &default) {
                Ok(()) => log!(
                    "installed the default configuration in {}",
                    config.display()
                ),
                Err(e) => log!("cannot write {}: {e}", config.display()),
            },
            Err(e) => log!("no default configuration in the image: {e}"),
        }
    }
    let uid = Some(nix::unistd::Uid::from_raw(crate::MTA_UID));
    let gid = Some(nix::unistd::Gid::from_raw(crate::MTA_UID));
    let _ = nix::unistd::chown(crate::DATA, uid, gid);
    // Where the mta hands updates over to init.
    let handoff = Path::new(crate::DATA).join(image::update::DIR);
    let _ = std::fs::create_dir_all(&handoff);
    let _ = nix::unistd::chown(&handoff, uid, gid);
    let _ = nix::unistd::chown(config, uid, gid);
    let _ = std::fs::set_permissions(config, std::os::unix::fs::PermissionsExt::from_mode(0o640));
    let _ = std::fs::create_dir_all(LOG_DIR);
    // The server binds ports 25, 80, 443… as an ordinary user; nothing else
    // runs on the appliance.
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
}

pub struct Mta {
    pid: Option<Pid>,
    started: Instant,
    restart_at: Option<Instant>,
    backoff: Duration,
    ring: Arc<Mutex<VecDeque<String>>>,
}

impl Mta {
    pub fn new() -> Mta {
        Mta {
            pid: None,
            started: Instant::now(),
            restart_at: None,
            backoff: Duration::from_secs(1),
            ring: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    pub fn start(&mut self) {
        let mut cmd = Command::new("/bin/mta");
        cmd.args(["serve", "--config", crate::CONFIG])
            .env_clear()
            .env("MTA_LOG", "info")
            .env("PATH", "/bin")
            .env("MAILBOX_COMMITTED", crate::COMMITTED)
            .current_dir(crate::DATA)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .uid(crate::MTA_UID)
            // std drops the supplementary groups when it changes the uid.
            .gid(crate::MTA_UID);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let empty = nix::sys::signal::SigSet::empty();
                let _ = nix::sys::signal::pthread_sigmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&empty),
                    None,
                );
                let _ = nix::unistd::setsid();
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let pid = Pid::from_raw(child.id() as i32);
                for stream in [
                    child
                        .stdout
                        .take()
                        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                    child
                        .stderr
                        .take()
                        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
                ]
                .into_iter()
                .flatten()
                {
                    let ring = self.ring.clone();
                    let _ = std::thread::Builder::new()
                        .name("mta-log".into())
                        .spawn(move || capture(stream, ring));
                }
                // Reaped by waitpid in `reap`; dropping a Child neither
                // waits nor kills.
                drop(child);
                self.pid = Some(pid);
                self.started = Instant::now();
                log!("mta started (pid {pid})");
            }
            Err(e) => {
                log!("cannot start mta: {e}");
                self.schedule_restart();
            }
        }
    }

    fn schedule_restart(&mut self) {
        self.restart_at = Some(Instant::now() + self.backoff);
        log!("restarting mta in {} s", self.backoff.as_secs());
        self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
    }

    /// Collects every exited child (PID 1 inherits orphans too).
    pub fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if status.pid().is_some() && status.pid() == self.pid {
                        self.pid = None;
                        log!("mta exited: {status:?}");
                        if self.started.elapsed() > Duration::from_secs(60) {
                            self.backoff = Duration::from_secs(1);
                        }
                        self.schedule_restart();
                    }
                }
            }
        }
    }

    pub fn restart_if_due(&mut self) {
        if self.pid.is_none() && self.restart_at.is_some_and(|t| Instant::now() >= t) {
            self.restart_at = None;
            self.start();
        }
    }

    /// The health check: mta answers `health` on its control socket, which
    /// it opens only once every listener is bound, after checking that its
    /// queue takes writes. Unlike a connection to port 25 this does not
    /// depend on the SMTP greeting delay, the connection limits, or a
    /// client flooding the port.
    pub fn accepting(&self) -> bool {
        if self.pid.is_none() {
            return false;
        }
        let socket = Path::new(crate::DATA).join("control.sock");
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&socket) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(3)));
        if stream.write_all(b"health\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(std::io::Read::take(&stream, 256))
            .read_line(&mut line)
            .is_ok()
            && line.trim_end() == "ok"
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        self.restart_at = None;
        let Some(pid) = self.pid else { return };
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    log!("mta stopped");
                    self.pid = None;
                    return;
                }
            }
        }
        log!("mta did not stop in {} s; killing it", grace.as_secs());
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        self.pid = None;
    }
}

fn capture(stream: Box<dyn std::io::Read + Send>, ring: Arc<Mutex<VecDeque<String>>>) {
    let mut log = LogFile::open();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if line.contains("WARN")
            || line.contains("ERROR")
            || line.contains("listening on")
            || line.contains("started for")
        {
            crate::console::write_line(&format!("mta: {}", line.trim()));
        }
        if let Some(f) = log.as_mut() {
            f.write(&line);
        }
        if let Ok(mut r) = ring.lock() {
            if r.len() >= RING_LINES {
                r.pop_front();
            }
            r.push_back(line);
        }
    }
}

/// `/data/log/mta.log`, rotated to `.1` … `.3` at 1 MiB.
struct LogFile {
    file: std::fs::File,
    size: u64,
}

impl LogFile {
    fn open() -> Option<LogFile> {
        let path = Path::new(LOG_DIR).join("mta.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .ok()?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Some(LogFile { file, size })
    }

    fn write(&mut self, line: &str) {
        if self.size >= LOG_FILE_LIMIT {
            let base = Path::new(LOG_DIR).join("mta.log");
            for i in (1..LOG_FILES_KEPT).rev() {
                let from = if i == 1 {
                    base.clone()
                } else {
                    base.with_extension(format!("log.{}", i - 1))
                };
                let _ = std::fs::rename(&from, base.with_extension(format!("log.{i}")));
            }
            if let Some(fresh) = LogFile::open() {
                *self = fresh;
            }
        }
        if self.file.write_all(format!("{line}\n").as_bytes()).is_ok() {
            self.size += line.len() as u64 + 1;
        }
    }
}
