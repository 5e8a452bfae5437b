//! A throw-away Postfix for `cargo xtask bench --compare postfix`: Debian's
//! package (installed with "No configuration", so it runs nothing by
//! itself), one instance under a directory of ours with its own queue,
//! listening on a loopback port and delivering `alice@example.org` into a
//! Maildir with virtual(8), the way the seed documents deliver. Runs in the
//! foreground (`postfix start-fg`) as our child, so its CPU time (master and
//! every daemon it reaped) is ours to read when it stops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::check;

/// The uid and gid virtual(8) writes the Maildir as (`nobody`).
const MAILDIR_OWNER: u32 = 65534;

pub struct Postfix {
    pub dir: PathBuf,
    child: Option<Child>,
}

/// Installs Debian's postfix package if `postfix` is not there (as root,
/// preseeded to configure nothing and start nothing).
pub fn ensure_installed() -> anyhow::Result<()> {
    let present = Command::new("postconf")
        .arg("-d")
        .arg("mail_version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    if !crate::tools::is_root() {
        bail!(
            "the comparison runs Debian's Postfix; install it with: sudo apt-get install postfix (choose \"No configuration\")"
        );
    }
    let mut preseed = Command::new("debconf-set-selections")
        .stdin(Stdio::piped())
        .spawn()
        .context("starting debconf-set-selections")?;
    use std::io::Write;
    preseed
        .stdin
        .take()
        .expect("piped")
        .write_all(b"postfix postfix/main_mailer_type select No configuration\n")?;
    if !preseed.wait()?.success() {
        bail!("debconf-set-selections failed");
    }
    check(Command::new("apt-get").args(["update", "-qq"]))?;
    check(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "postfix"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

impl Postfix {
    /// Configures and starts an instance under `dir` on `port`.
    pub fn start(dir: &Path, port: u16) -> anyhow::Result<Postfix> {
        if !crate::tools::is_root() {
            bail!("Postfix's master runs as root: run the comparison as root");
        }
        let _ = std::fs::remove_dir_all(dir);
        for sub in ["conf", "spool", "data", "mail"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        chown(&dir.join("data"), "postfix:postfix")?;
        chown(
            &dir.join("mail"),
            &format!("{MAILDIR_OWNER}:{MAILDIR_OWNER}"),
        )?;
        let d = dir.display();
        std::fs::write(
            dir.join("conf/main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-bench.example.org
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = example.org
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = inline:{{ alice@example.org=example.org/alice/ }}
virtual_uid_maps = static:{MAILDIR_OWNER}
virtual_gid_maps = static:{MAILDIR_OWNER}
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 100
disable_dns_lookups = yes
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
"
            ),
        )?;
        // Debian's master.cf: smtpd on our port, nothing chrooted (the
        // chroot would need copies of /etc files), postlogd for the log.
        let master = std::fs::read_to_string("/etc/postfix/master.cf")
            .context("reading /etc/postfix/master.cf")?;
        let master: String = master
            .lines()
            .map(|line| {
                let mut fields: Vec<&str> = line.split_whitespace().collect();
                let service = !line.starts_with(['#', ' ', '\t']) && fields.len() >= 8;
                if line.starts_with("#postlog") {
                    return line[1..].to_string();
                }
                if !service {
                    return line.to_string();
                }
                let name = format!("127.0.0.1:{port}");
                if fields[0] == "smtp" && fields[1] == "inet" {
                    fields[0] = &name;
                }
                fields[4] = "n";
                fields.join(" ")
            })
            .map(|l| l + "\n")
            .collect();
        std::fs::write(dir.join("conf/master.cf"), master)?;
        let child = Command::new("postfix")
            .arg("-c")
            .arg(dir.join("conf"))
            .arg("start-fg")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postfix")?;
        let pf = Postfix {
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "Postfix did not start listening on {port}; see {}/maillog",
                    pf.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(pf)
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.join("mail/example.org/alice/new")
    }

    /// The master process (the child of postfix-script).
    pub fn master_pid(&self) -> Option<u32> {
        let pid = std::fs::read_to_string(self.dir.join("spool/pid/master.pid")).ok()?;
        pid.trim().parse().ok()
    }

    /// Stops the instance and waits for it (and so for its CPU time).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.join("conf"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        child.wait()?;
        Ok(())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chown(path: &Path, owner: &str) -> anyhow::Result<()> {
    check(Command::new("chown").arg(owner).arg(path))
}
