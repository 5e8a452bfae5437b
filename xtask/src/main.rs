//! `cargo xtask …`: every build, test, run and benchmark step of Mailbox, in
//! Rust rather than shell scripts.
//!
//! - `cargo xtask run`   runs the appliance (for now: the MTA natively, on a
//!   throw-away data directory, until the image and QEMU boot exist)
//! - `cargo xtask test`  installs what the tests need, then fmt, clippy and
//!   every test
//! - `cargo xtask bench` the SMTP load generator (see `bench.rs`); `--imap`
//!   reads one large folder beside Dovecot (`bench/imap.rs`)
//! - `cargo xtask doctor` checks, without installing, what the tests need
//!   from this machine (see `tools.rs`)
//! - `cargo xtask image` / `cargo xtask bundle` a disk image, or a signed
//!   update bundle of its boot slot (`image.rs`, `bundle.rs`)
//! - `cargo xtask deploy --host H` sends a bundle to an appliance's HTTPS
//!   update API (`deploy.rs`)

mod bench;
mod bundle;
mod debs;
mod deploy;
mod e2e;
mod http;
mod image;
mod pi;
mod postfix;
mod qemu;
mod smtp;
mod tidy;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use argh::FromArgs;

/// The Rust target of the ARM boards' userland (linker and test runner in
/// `.cargo/config.toml`).
pub const ARM_TARGET: &str = "aarch64-unknown-linux-musl";

/// Mailbox build, test and benchmark tasks.
#[derive(FromArgs)]
struct Args {
    #[argh(subcommand)]
    command: Task,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Task {
    Run(Run),
    Test(Test),
    Bench(bench::Bench),
    Image(image::ImageArgs),
    Bundle(bundle::BundleArgs),
    Deploy(deploy::DeployArgs),
    E2e(E2e),
    Doctor(Doctor),
}

/// check (by using each one) the tools and packages the tests need from this machine, and say how to install what is missing
#[derive(FromArgs)]
#[argh(subcommand, name = "doctor")]
struct Doctor {
    /// board whose image and emulator to check (default pc-x86_64)
    #[argh(option, default = "String::from(\"pc-x86_64\")")]
    board: String,
}

/// build the appliance image and boot it in QEMU (or, with --native, run only the MTA here)
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct Run {
    /// board to boot (default pc-x86_64)
    #[argh(option, default = "String::from(\"pc-x86_64\")")]
    board: String,
    /// run the MTA natively on this machine instead of booting the image
    #[argh(switch)]
    native: bool,
    /// with --native: SMTP port to listen on (default 2525)
    #[argh(option, default = "2525")]
    port: u16,
}

/// boot the image in QEMU and check mail, shutdown, persistence, updates and blessing end to end
#[derive(FromArgs)]
#[argh(subcommand, name = "e2e")]
struct E2e {
    /// only this board (default: pc-x86_64, efi-arm64, then rpi4)
    #[argh(option)]
    board: Option<String>,
}

/// install test tools, then check formatting, lints and run every test
#[derive(FromArgs)]
#[argh(subcommand, name = "test")]
struct Test {
    /// skip cargo fmt and clippy
    #[argh(switch)]
    no_lint: bool,
}

fn main() {
    let args: Args = argh::from_env();
    let result = match args.command {
        Task::Run(r) => run(r),
        Task::Test(t) => test(t),
        Task::Bench(b) => bench::bench(b),
        Task::Image(i) => image::run(i),
        Task::Bundle(b) => bundle::run(b),
        Task::Deploy(d) => deploy::run(d),
        Task::E2e(e) => e2e::run(e.board.as_deref()),
        Task::Doctor(d) => doctor(d),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (the parent of xtask/).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its command line when it fails.
pub fn check(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn doctor(d: Doctor) -> anyhow::Result<()> {
    let board = board::by_name(&d.board).with_context(|| format!("unknown board {:?}", d.board))?;
    eprintln!(
        "What `cargo xtask test` needs on this machine (each one used, not only looked for):"
    );
    let missing = tools::report(&tools::for_tests(board));
    if missing > 0 {
        std::process::exit(1);
    }
    eprintln!("\nEverything is in place.");
    Ok(())
}

fn test(t: Test) -> anyhow::Result<()> {
    let board = board::by_name("pc-x86_64").expect("built-in board");
    tools::ensure(&tools::for_tests(board))?;
    tidy::check(&root())?;
    if !t.no_lint {
        check(cargo().args(["fmt", "--all", "--", "--check"]))?;
        check(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    check(cargo().args(["test", "--workspace"]))?;
    // The ARM boards' userland: init's and the mail server's unit tests,
    // built for aarch64 and run under qemu-aarch64-static.
    check(cargo().args([
        "test",
        "--target",
        ARM_TARGET,
        "-p",
        "init",
        "-p",
        "mta-proto",
        "-p",
        "mta-store",
        "-p",
        "mta-app",
        "-p",
        "mta-web",
        "-p",
        "mta",
        "--lib",
        "--bins",
    ]))?;
    e2e::run(None)?;
    Ok(())
}

fn run(r: Run) -> anyhow::Result<()> {
    if r.native {
        return run_native(r.port);
    }
    let board = board::by_name(&r.board).with_context(|| format!("unknown board {:?}", r.board))?;
    if board.qemu.is_none() {
        bail!(
            "QEMU cannot emulate {name}; `cargo xtask image --board {name} --release` builds its image to flash (see the README)",
            name = board.name
        );
    }
    tools::ensure(&tools::for_qemu(board))?;
    let built = image::build(board, true)?;
    let dir = root().join("target/run");
    std::fs::create_dir_all(&dir)?;
    let disk = dir.join("disk.img");
    std::fs::copy(&built.image, &disk)?;
    // Room to grow: the first boot extends the data partition to the disk.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)?
        .set_len(2 << 30)?;
    let _ = std::fs::remove_file(dir.join("vars.fd"));
    let forwards = [
        (2525, 25),
        (2587, 587),
        (2465, 465),
        (9993, 993),
        (8080, 80),
        (8443, 443),
    ];
    eprintln!(
        "\nBooting {} under QEMU ({}); the console follows. Ports on this machine:",
        built.image.display(),
        qemu::accelerator()
    );
    for (host, guest) in forwards {
        eprintln!("  127.0.0.1:{host} -> guest port {guest}");
    }
    eprintln!(
        "Set it up in a browser: http://127.0.0.1:8080/ with the setup code the console shows.\n\
         Send mail with: swaks --server 127.0.0.1:2525 --to postmaster@mailbox.local\n\
         Quit QEMU with Ctrl-A X; the disk is {} (a fresh copy each run).\n",
        disk.display()
    );
    let vm = qemu::Vm {
        disk,
        vars: dir.join("vars.fd"),
        forwards: forwards.to_vec(),
        console: qemu::Console::Terminal,
        qmp: None,
        no_reboot: false,
    };
    let status = qemu::command(board, &vm)?.status()?;
    if !status.success() {
        bail!("QEMU exited with {status}");
    }
    Ok(())
}

fn run_native(port: u16) -> anyhow::Result<()> {
    check(cargo().args(["build", "--release", "-p", "mta"]))?;
    let dir = root().join("target/run");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data");
    let config = dir.join("mailbox.toml");
    let example = std::fs::read_to_string(root().join("mta/config.example.toml"))?;
    let text = example
        .replace(
            "data_dir = \"/data\"",
            &format!("data_dir = \"{}\"", data.display()),
        )
        .replace("\"0.0.0.0:25\"", &format!("\"127.0.0.1:{port}\""))
        .replace("\"0.0.0.0:587\"", &format!("\"127.0.0.1:{}\"", port + 62))
        .replace("\"0.0.0.0:465\"", &format!("\"127.0.0.1:{}\"", port - 60))
        .replace("\"0.0.0.0:80\"", &format!("\"127.0.0.1:{}\"", port + 55))
        .replace("\"0.0.0.0:443\"", &format!("\"127.0.0.1:{}\"", port + 418));
    std::fs::write(&config, text)?;
    let mta = root().join("target/release/mta");
    eprintln!(
        "\nMailbox's MTA is starting with {} (data in {}).\n\
         Send it mail, for example:\n\n  \
         swaks --server 127.0.0.1:{} --to alice@example.org --tls\n\
         Submission (AUTH as alice@example.org, password \"alice\") on port {} (STARTTLS) and {} (TLS).\n\
         Admin pages: https://127.0.0.1:{}/ (the same login; the certificate is self-signed).\n\n\
         Delivered mail appears under {}/mail/example.org/alice/new/.\n\
         Inspect the queue with: {} queue --config {} list\n\
         Stop with Ctrl-C.\n",
        config.display(),
        data.display(),
        port,
        port + 62,
        port - 60,
        port + 418,
        data.display(),
        mta.display(),
        config.display()
    );
    let status = Command::new(&mta)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .status()?;
    if !status.success() && status.code().is_some() {
        bail!("mta exited with {status}");
    }
    Ok(())
}
