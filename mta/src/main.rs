//! `mta`: the command line of Mailbox's mail server.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use argh::FromArgs;

use mta_app::admin;
use mta_app::config::Config;
use mta_app::password::PasswordHash;
use mta_store::queue::{Queue, RetryPolicy};

mod serve;

/// Mailbox's mail server.
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Serve(Serve),
    CheckConfig(CheckConfig),
    Queue(QueueCmd),
    User(UserCmd),
    Dkim(DkimCmd),
    Dns(DnsCmd),
    Cert(CertCmd),
    Reports(ReportsCmd),
    HashPassword(HashPassword),
}

/// DMARC and TLS reports: send (the reports gathered so far, today's too; the server sends each day's the day after by itself), list (the reports received about our domains)
#[derive(FromArgs)]
#[argh(subcommand, name = "reports")]
struct ReportsCmd {
    /// configuration file (default /data/mailbox.toml)
    #[argh(option, default = "DEFAULT_CONFIG.into()")]
    config: PathBuf,
    /// send or list
    #[argh(positional)]
    action: String,
}

/// the TLS certificate: status (names, issuer, expiry, the last ACME attempt and its error), renew (ask the CA now)
#[derive(FromArgs)]
#[argh(subcommand, name = "cert")]
struct CertCmd {
    /// configuration file (default /data/mailbox.toml)
    #[argh(option, default = "DEFAULT_CONFIG.into()")]
    config: PathBuf,
    /// status or renew
    #[argh(positional)]
    action: String,
}

/// DNS records: show DOMAIN (what to publish), check DOMAIN (what the DNS answers, record by record; exits 1 when something is missing or wrong)
#[derive(FromArgs)]
#[argh(subcommand, name = "dns")]
struct DnsCmd {
    /// configuration file (default /data/mailbox.toml)
    #[argh(option, default = "DEFAULT_CONFIG.into()")]
    config: PathBuf,
    /// show or check
    #[argh(positional)]
    action: String,
    /// one of the configured domains
    #[argh(positional)]
    domain: String,
}

/// DKIM keys: show DOMAIN (the DNS records to publish), rotate DOMAIN (add a new key pair)
#[derive(FromArgs)]
#[argh(subcommand, name = "dkim")]
struct DkimCmd {
    /// configuration file (default /data/mailbox.toml)
    #[argh(option, default = "DEFAULT_CONFIG.into()")]
    config: PathBuf,
    /// show or rotate
    #[argh(positional)]
    action: String,
    /// one of the configured domains
    #[argh(positional)]
    domain: String,
}

/// manage accounts: list, add ADDRESS, passwd ADDRESS, delete ADDRESS (passwords are read from standard input)
#[derive(FromArgs)]
#[argh(subcommand, name = "user")]
struct UserCmd {
    /// configuration file (default /data/mailbox.toml)
    #[argh(option, default = "DEFAULT_CONFIG.into()")]
    config: PathBuf,
    /// list, add, passwd or delete
    #[argh(positional)]
    action: String,
    /// the account's address
    #[argh(positional)]
    address: Option<String>,
}

const DEFAULT_CONFIG: &str = "/data/mailbox.toml";

/// run the server until SIGTERM or SIGINT
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
struct Serve {
    /// configuration file (default /data/mailbox.toml)
    #[argh(option, default = "DEFAULT_CONFIG.into()")]
    config: PathBuf,
}

/// check the configuration file and report every problem
#[derive(FromArgs)]
#[argh(subcommand, name = "check-config")]
struct CheckConfig {
    /// configuration file (default /data/mailbox.toml)
    #[argh(option, default = "DEFAULT_CONFIG.into()")]
    config: PathBuf,
}

/// inspect and manage the queue: list, show ID, retry ID, flush, hold ID, release ID, delete ID
#[derive(FromArgs)]
#[argh(subcommand, name = "queue")]
struct QueueCmd {
    /// configuration file (default /data/mailbox.toml)
    #[argh(option, default = "DEFAULT_CONFIG.into()")]
    config: PathBuf,
    /// list, show, retry, flush, hold, release or delete
    #[argh(positional)]
    action: String,
    /// queue id (for show, retry, hold, release, delete)
    #[argh(positional)]
    id: Option<String>,
}

/// read a password on standard input and print its argon2id hash for the configuration
#[derive(FromArgs)]
#[argh(subcommand, name = "hash-password")]
struct HashPassword {}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    init_logging();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mta: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logging: to the journal, with structured fields (QUEUE_ID, FROM, TO,
/// STATUS …), when the mta runs as a service on a systemd host (systemd
/// sets JOURNAL_STREAM); to standard error otherwise (on the appliance init
/// captures it), as Postfix-like lines whose structured fields are already
/// in the message text.
fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MTA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|layer| {
            layer
                .with_field_prefix(None)
                .with_syslog_identifier("mta".into())
        });
    if let Some(journal) = journal {
        tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .with(ring_layer())
            .init();
        return;
    }
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .fmt_fields(log_fields());
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(ring_layer())
        .init();
}

/// How a line shows its fields: the message, then the fields that are not
/// already in its text.
fn log_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        if field.name() == "message" {
            write!(w, "{value:?}")
        } else if mta_proto::logsafe::SUMMARY_FIELDS.contains(&field.name()) {
            Ok(())
        } else {
            write!(w, " {}={value:?}", field.name())
        }
    })
}

/// The admin pages' log view reads the last lines from memory.
fn ring_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_writer(|| RingLine(Vec::new()))
        .with_ansi(false)
        .with_target(false)
        .fmt_fields(log_fields())
}

/// One formatted log line on its way into the ring.
struct RingLine(Vec<u8>);

impl std::io::Write for RingLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RingLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            mta_app::logring::ring().push(&String::from_utf8_lossy(&self.0));
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Serve(s) => {
            let config = Config::load(&s.config)?;
            serve::run(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig(c) => {
            let text = std::fs::read_to_string(&c.config)
                .with_context(|| format!("cannot read {}", c.config.display()))?;
            match Config::parse(&c.config, &text) {
                Ok(config) => {
                    println!(
                        "{}: ok ({} domains, {} accounts, {} aliases)",
                        c.config.display(),
                        config.domains.len(),
                        config.accounts.len(),
                        config.aliases.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("{} problem(s) found", e.problems.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Queue(q) => {
            let config = Config::load(&q.config)?;
            let command: admin::Command = match &q.id {
                Some(id) => format!("{} {id}", q.action),
                None => q.action.clone(),
            }
            .parse()?;
            print!("{}", queue_command(&config, command)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dns(d) => dns_command(&d),
        Command::Cert(c) => {
            let config = Config::load(&c.config)?;
            let command = match c.action.as_str() {
                "status" => admin::Command::CertStatus,
                "renew" => admin::Command::CertRenew,
                other => anyhow::bail!("unknown action {other:?}: use status or renew"),
            };
            // The running server knows best (an attempt under way); without
            // one, what is on disk.
            match serve::control::request(&config.control_socket(), command) {
                Some(answer) => print!("{}", answer?),
                None if command == admin::Command::CertStatus => {
                    print!("{}", mta_app::acme::Report::read(&config)?.text())
                }
                None => anyhow::bail!(
                    "the server is not running; once it runs it asks for a certificate when one is due"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reports(r) => {
            let config = Config::load(&r.config)?;
            let command = match r.action.as_str() {
                "send" => admin::Command::ReportsSend,
                "list" => admin::Command::ReportsList,
                other => anyhow::bail!("unknown action {other:?}: use send or list"),
            };
            match serve::control::request(&config.control_socket(), command) {
                Some(answer) => print!("{}", answer?),
                None => anyhow::bail!(
                    "the server is not running: the reports are the running server's (it sends each day's the day after)"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::HashPassword(_) => {
            println!("{}", PasswordHash::create(&read_password()?).as_str());
            Ok(ExitCode::SUCCESS)
        }
        Command::Dkim(d) => {
            let config = Config::load(&d.config)?;
            let domain = mta_proto::address::normalise_domain(&d.domain)
                .map_err(|e| anyhow::anyhow!("{:?} is not a domain: {e}", d.domain))?;
            if !config.is_local_domain(&domain) {
                anyhow::bail!(
                    "{domain} is not one of the domains in {}",
                    d.config.display()
                );
            }
            let keys = mta_app::dkim::Keys::new(&config.data_dir);
            match d.action.as_str() {
                "show" => {}
                "rotate" => {
                    let new = keys.rotate(&domain)?;
                    let names: Vec<&str> = new.iter().map(|k| k.selector.as_str()).collect();
                    eprintln!(
                        "new selectors {} sign from now on; keep the old records published until mail signed with them has been delivered",
                        names.join(", ")
                    );
                    if let Some(Err(e)) =
                        serve::control::request(&config.control_socket(), admin::Command::Reload)
                    {
                        eprintln!("the running server did not reload: {e:#}");
                    }
                }
                other => anyhow::bail!("unknown action {other:?} (show, rotate)"),
            }
            for key in keys.of(&domain)?.iter() {
                println!("{}", mta_app::dkim::zone_line(&domain, key)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::User(u) => {
            use mta_app::accounts::{Change, apply, list};
            let address = || {
                u.address
                    .as_deref()
                    .context("this command needs an address")
            };
            let done = match u.action.as_str() {
                "list" => {
                    print!("{}", list(&Config::load(&u.config)?));
                    return Ok(ExitCode::SUCCESS);
                }
                "add" => apply(
                    &u.config,
                    Change::Add {
                        address: address()?,
                        password: &read_password()?,
                    },
                )?,
                "passwd" => apply(
                    &u.config,
                    Change::Password {
                        address: address()?,
                        password: &read_password()?,
                    },
                )?,
                "delete" => apply(
                    &u.config,
                    Change::Delete {
                        address: address()?,
                    },
                )?,
                other => anyhow::bail!("unknown action {other:?} (list, add, passwd, delete)"),
            };
            println!("{done}");
            let config = Config::load(&u.config)?;
            match serve::control::request(&config.control_socket(), admin::Command::Reload) {
                Some(Ok(_)) => println!("the running server reloads its configuration"),
                Some(Err(e)) => eprintln!("the running server did not reload: {e:#}"),
                None => println!("takes effect when the server starts"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The first line of standard input, without its line end.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("no password given on standard input");
    }
    Ok(password.to_string())
}

/// `mta dns show|check DOMAIN`.
fn dns_command(d: &DnsCmd) -> anyhow::Result<ExitCode> {
    let config = Config::load(&d.config)?;
    let domain = mta_proto::address::normalise_domain(&d.domain)
        .map_err(|e| anyhow::anyhow!("{:?} is not a domain: {e}", d.domain))?;
    if !config.is_local_domain(&domain) {
        anyhow::bail!(
            "{domain} is not one of the domains in {}",
            d.config.display()
        );
    }
    let keys = mta_app::dkim::Keys::new(&config.data_dir);
    let records = mta_app::records::for_domain(&config, &keys, &domain)?;
    match d.action.as_str() {
        "show" => {
            for r in records
                .iter()
                .filter(|r| !r.ask_isp && !r.value.starts_with('('))
            {
                println!("{}", r.zone_line());
            }
            println!(
                "; and: {} A/AAAA <your public address>; PTR of that address -> {}.",
                config.hostname, config.hostname
            );
            Ok(ExitCode::SUCCESS)
        }
        "check" => {
            let dns = mta_app::dns::Dns::system(&config);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let checked =
                runtime.block_on(mta_app::dnscheck::check(&dns, &config.hostname, &records));
            let mut bad = 0;
            for c in &checked {
                let verdict = c.verdict.label();
                if c.verdict.needs_attention() {
                    bad += 1;
                }
                println!("{verdict:8} {:5} {}", c.record.kind, c.record.name);
                if c.verdict.needs_attention() {
                    println!("         expected: {}", c.record.plain);
                    for f in &c.found {
                        println!("         found:    {f}");
                    }
                    if c.found.is_empty() {
                        println!("         found:    nothing");
                    }
                    if !c.advice.is_empty() {
                        println!("         to do:    {}", c.advice);
                    }
                }
            }
            println!(
                "{} of {} records in place",
                checked.len() - bad,
                checked.len()
            );
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        other => anyhow::bail!("unknown action {other:?} (show, check)"),
    }
}

/// Through the running server when there is one, else on the database.
fn queue_command(config: &Config, command: admin::Command) -> anyhow::Result<String> {
    if let Some(answer) = serve::control::request(&config.control_socket(), command) {
        return answer;
    }
    let queue = Queue::open(
        &config.queue_dir(),
        0,
        RetryPolicy {
            min: config.queue.retry_min,
            max: config.queue.retry_max,
            max_age: config.queue.max_age,
            delay_warning: config.queue.delay_warning,
        },
        None,
        None,
    )?;
    admin::execute(&queue, None, command)
}
