//! The end-to-end test: build the image, boot it in QEMU, send it mail over
//! the forwarded SMTP port, set it up through the wizard, read mail over
//! IMAP, power it off through ACPI, read the message back from the data
//! partition; then the updates (`update.rs`): refused bundles, an update,
//! a rollback, power cuts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::qemu::{self, Console, Vm};
use crate::smtp::expect;
use crate::{http, image, root, tools};

mod update;

const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const ACCOUNT_DIR: &str = "/mail/mailbox.local/postmaster/new";

struct Running {
    child: Child,
    console: PathBuf,
    qmp: PathBuf,
    smtp_port: u16,
    http_port: u16,
    https_port: u16,
    imaps_port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).to_string()
    }

    fn wait_console(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console_text();
            if text.contains(needle) {
                return Ok(text);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "QEMU exited ({status}) before the console said {needle:?}:\n{}",
                    tail(&text)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the console did not say {needle:?} within {timeout:?}:\n{}",
                    tail(&text)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Presses the power button (ACPI) and waits for the orderly power-off:
    /// the console's text.
    fn power_down(&mut self) -> anyhow::Result<String> {
        qemu::qmp(&self.qmp, "system_powerdown")?;
        self.wait_exit(Duration::from_secs(90))?;
        Ok(self.console_text())
    }

    fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "QEMU exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "the VM did not power off within {timeout:?}:\n{}",
            tail(&self.console_text())
        )
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Boots `disk`; with `reboots`, a reboot inside the VM boots again
/// (updates); without, QEMU exits.
fn boot(
    board: &board::Board,
    dir: &Path,
    disk: &Path,
    name: &str,
    reboots: bool,
) -> anyhow::Result<Running> {
    let console = dir.join(format!("console-{name}.log"));
    let qmp = dir.join(format!("qmp-{name}.sock"));
    let _ = std::fs::remove_file(&console);
    let _ = std::fs::remove_file(&qmp);
    let smtp_port = qemu::free_port()?;
    let http_port = qemu::free_port()?;
    let imaps_port = qemu::free_port()?;
    let https_port = qemu::free_port()?;
    let vm = Vm {
        disk: disk.to_path_buf(),
        vars: dir.join("vars.fd"),
        forwards: vec![
            (smtp_port, 25),
            (http_port, 80),
            (https_port, 443),
            (imaps_port, 993),
        ],
        console: Console::File(console.clone()),
        qmp: Some(qmp.clone()),
        no_reboot: !reboots,
    };
    let child = qemu::command(board, &vm)?
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting QEMU")?;
    Ok(Running {
        child,
        console,
        qmp,
        smtp_port,
        http_port,
        https_port,
        imaps_port,
    })
}

/// Reads the SMTP greeting through the forward (QEMU accepts the TCP
/// connection before the guest listens, so only a 220 counts).
fn wait_smtp(vm: &mut Running) -> anyhow::Result<()> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", vm.smtp_port)) {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok() && line.starts_with("220") {
                let _ = (&stream).write_all(b"QUIT\r\n");
                return Ok(());
            }
        }
        if let Some(status) = vm.child.try_wait()? {
            bail!(
                "QEMU exited ({status}) before SMTP answered:\n{}",
                tail(&vm.console_text())
            );
        }
        if Instant::now() > deadline {
            bail!(
                "no SMTP greeting within {BOOT_TIMEOUT:?}:\n{}",
                tail(&vm.console_text())
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn smtp_send(port: u16, rcpt: &str, message: &str) -> anyhow::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    expect(&mut reader, 220)?;
    w.write_all(b"EHLO e2e.example\r\n")?;
    expect(&mut reader, 250)?;
    w.write_all(
        format!("MAIL FROM:<e2e@sender.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes(),
    )?;
    expect(&mut reader, 250)?;
    expect(&mut reader, 250)?;
    expect(&mut reader, 354)?;
    w.write_all(message.as_bytes())?;
    w.write_all(b".\r\n")?;
    let done = expect(&mut reader, 250)?;
    w.write_all(b"QUIT\r\n")?;
    Ok(done)
}

/// The owner's password the end-to-end test sets in the wizard.
const OWNER_PASSWORD: &str = "end to end owner passphrase 2026";
const OWNER_DIR: &str = "/mail/example.org/owner";

/// Reads the owner's mail over IMAP (993, through the forward) with
/// Python's imaplib, as a mail program would: the subjects in INBOX once
/// `count` messages are there.
fn imap_subjects(port: u16, count: usize) -> anyhow::Result<String> {
    const SCRIPT: &str = r#"
import imaplib, ssl, sys, time
port, password, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the appliance's own certificate, not yet Let's Encrypt's
c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=60)
c.login("owner@example.org", password)
for _ in range(120):
    typ, data = c.select("INBOX")
    if int(data[0]) >= count:
        break
    time.sleep(0.5)
typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print(" | ".join(d[1].decode().strip() for d in data if isinstance(d, tuple)))
c.logout()
"#;
    python(
        SCRIPT,
        &[&port.to_string(), OWNER_PASSWORD, &count.to_string()],
        "IMAP on the appliance",
    )
}

/// The owner's INBOX over IMAP holds `subjects`, in order (`when`: for
/// the message).
fn expect_inbox(port: u16, subjects: &[&str], when: &str) -> anyhow::Result<()> {
    let found = imap_subjects(port, subjects.len())?;
    let expected = subjects
        .iter()
        .map(|s| format!("Subject: {s}"))
        .collect::<Vec<_>>()
        .join(" | ");
    ensure!(found == expected, "the owner's INBOX {when}: {found:?}");
    Ok(())
}

/// Runs a Python client (`script` with `args`): what it printed; `what`
/// names it when it fails.
fn python(script: &str, args: &[&str], what: &str) -> anyhow::Result<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .context("python3")?;
    ensure!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Claims the appliance through the forwarded HTTP port, as a person would
/// with a browser: the code from the console, then each step's form.
fn wizard(port: u16, code: &str) -> anyhow::Result<()> {
    let r = http::request(port, "GET", "/", None, None)?;
    ensure!(
        r.status == 303 && r.header("location") == Some("/setup"),
        "an unclaimed appliance does not send / to the wizard ({})",
        r.status
    );
    let r = http::request(
        port,
        "POST",
        "/setup",
        None,
        Some(&http::form(&[("code", code)])),
    )?;
    ensure!(
        r.status == 303,
        "the setup code was refused ({}): {}",
        r.status,
        r.body
    );
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .context("no wizard cookie")?
        .to_string();
    let page = http::request(port, "GET", "/setup/domains", Some(&cookie), None)?;
    let csrf = page.input("csrf")?;
    let steps: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "/setup/domains",
            vec![("domains", "example.org"), ("hostname", "mail.example.org")],
        ),
        (
            "/setup/owner",
            vec![
                ("local", "owner"),
                ("domain", "example.org"),
                ("password", OWNER_PASSWORD),
                ("confirm", OWNER_PASSWORD),
            ],
        ),
        ("/setup/relay", vec![("way", "direct")]),
        // No CA is reachable from the VM.
        ("/setup/certificate", vec![("way", "self-signed")]),
    ];
    for (path, mut fields) in steps {
        fields.push(("csrf", &csrf));
        let r = http::request(
            port,
            "POST",
            path,
            Some(&cookie),
            Some(&http::form(&fields)),
        )?;
        ensure!(
            r.status == 303,
            "{path} refused the answers ({}): {}",
            r.status,
            r.body
        );
    }
    let r = http::request(
        port,
        "POST",
        "/setup/finish",
        Some(&cookie),
        Some(&http::form(&[("csrf", &csrf)])),
    )?;
    ensure!(
        r.status == 200 && r.body.contains("configuration is saved"),
        "the wizard did not finish ({}): {}",
        r.status,
        r.body
    );
    Ok(())
}

/// The names in a Maildir directory of the data partition.
fn messages(data: &Path, dir: &str) -> anyhow::Result<Vec<String>> {
    let listing = String::from_utf8_lossy(&debugfs(data, &format!("ls -p {dir}"))?).to_string();
    Ok(listing
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(str::to_string)
        .collect())
}

/// Copies the data partition out of the disk image.
fn extract(disk: &Path, offset: u64, len: u64, out: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(disk)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))?;
    let mut o = std::fs::File::create(out)?;
    std::io::copy(&mut f.take(len), &mut o)?;
    Ok(())
}

fn debugfs(fs: &Path, request: &str) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(fs)
        .output()?;
    ensure!(
        out.status.success(),
        "debugfs {request}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// How much of the end-to-end test a board gets.
#[derive(Clone, Copy, PartialEq)]
enum Reach {
    /// The first boot and every update scenario.
    All,
    /// Emulated without acceleration: the first boot and the update
    /// through the API.
    FirstBootAndUpdate,
    /// Cannot be emulated: its image is built (and opened and checked by
    /// the build), and its tryboot module is loaded by its kernel on the
    /// nearest machine QEMU has.
    ImageAndFirmware,
}

const BOARDS: &[(&str, Reach)] = &[
    ("pc-x86_64", Reach::All),
    ("efi-arm64", Reach::FirstBootAndUpdate),
    ("rpi4", Reach::ImageAndFirmware),
];

/// Runs the end-to-end test on `only` the board named, or on every board.
pub fn run(only: Option<&str>) -> anyhow::Result<()> {
    if let Some(name) = only {
        ensure!(
            BOARDS.iter().any(|(b, _)| *b == name),
            "the end-to-end test knows {}, not {name:?}",
            BOARDS
                .iter()
                .map(|(b, _)| *b)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for &(name, reach) in BOARDS.iter().filter(|(b, _)| only.is_none_or(|o| o == *b)) {
        let started = Instant::now();
        let board = board::by_name(name).expect("built-in board");
        if reach == Reach::ImageAndFirmware {
            tools::ensure(&tools::for_qemu(&board::EFI_ARM64))?;
            let built = image::build(board, true)?;
            crate::pi::module_reaches_the_firmware()?;
            println!(
                "e2e {name}: passed in {:.0} s; image {} raw, {} compressed (zstd)",
                started.elapsed().as_secs_f64(),
                image::size(&built.image),
                image::size(&built.compressed),
            );
            continue;
        }
        let first = first_boot(board)?;
        if reach == Reach::All {
            update::scenarios(board, &first.dir, &first.disk, &first.layout)?;
        } else {
            update::update_through_the_api(board, &first.dir, &first.disk, &first.layout)?;
        }
        println!(
            "e2e {name}: passed in {:.0} s; image {} raw, {} compressed, initramfs {:.1} MiB; SMTP banner {:.1} s after QEMU started (host), mta accepting at uptime {} s (guest, {})",
            started.elapsed().as_secs_f64(),
            image::size(&first.built.image),
            image::size(&first.built.compressed),
            first.built.initramfs_bytes as f64 / (1 << 20) as f64,
            first.banner.as_secs_f64(),
            first.uptime,
            qemu::accelerator()
        );
    }
    Ok(())
}

/// What the first boot left for the next ones.
struct FirstBoot {
    dir: PathBuf,
    disk: PathBuf,
    layout: ::image::disk::Layout,
    built: image::Built,
    /// From QEMU's start to the SMTP greeting (host clock).
    banner: Duration,
    /// The guest's uptime when the mail server accepted connections.
    uptime: String,
}

/// First boot of a new image: mail in, set up through the wizard, read over
/// IMAP, orderly power-off; then the data partition is checked offline.
fn first_boot(board: &'static board::Board) -> anyhow::Result<FirstBoot> {
    tools::ensure(&tools::for_qemu(board))?;
    let built = image::build(board, true)?;
    let dir = root().join("target/e2e").join(board.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let disk = dir.join("disk.img");
    std::fs::copy(&built.image, &disk)?;
    // A bigger disk than the image, so the first boot grows the data partition.
    let f = std::fs::OpenOptions::new().write(true).open(&disk)?;
    f.set_len(f.metadata()?.len() + (256 << 20))?;
    drop(f);
    println!(
        "e2e: booting {} under {}",
        disk.display(),
        qemu::accelerator()
    );

    let booted = Instant::now();
    let mut vm = boot(board, &dir, &disk, "1", false)?;
    wait_smtp(&mut vm)?;
    let banner = booted.elapsed();
    let console = vm.wait_console(
        "mta accepting connections at uptime",
        Duration::from_secs(30),
    )?;
    ensure!(
        console.contains("address: 10.0.2.15"),
        "the banner does not show the VM's address:\n{}",
        tail(&console)
    );
    ensure!(
        console.contains("is new (first boot)"),
        "the first boot did not create the data partition:\n{}",
        tail(&console)
    );
    ensure!(
        console.contains("data partition grown"),
        "the data partition was not grown:\n{}",
        tail(&console)
    );
    let uptime = console
        .lines()
        .find_map(|l| l.split("mta accepting connections at uptime ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    vm.wait_console("boot blessed", Duration::from_secs(30))?;
    let message = "From: e2e@sender.example\r\nTo: postmaster@mailbox.local\r\nSubject: end to end\r\nMessage-ID: <e2e@sender.example>\r\n\r\nThis message went through QEMU's port forward\r\ninto the appliance and onto its data partition.\r\n";
    let reply = smtp_send(vm.smtp_port, "postmaster@mailbox.local", message)?;
    println!("e2e: mail accepted: {}", reply.trim());
    // The console shows the setup code; the wizard claims the appliance
    // with it, and the new domain takes mail at once.
    let code = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("setup code: "))
        .context("the banner shows no setup code")?
        .trim()
        .to_string();
    let wizard_started = Instant::now();
    wizard(vm.http_port, &code)?;
    println!(
        "e2e: set up through the wizard in {:.1} s",
        wizard_started.elapsed().as_secs_f64()
    );
    let reply = smtp_send(
        vm.smtp_port,
        "owner@example.org",
        "From: e2e@sender.example\r\nTo: owner@example.org\r\nSubject: after the wizard\r\n\r\nhello\r\n",
    )?;
    println!("e2e: mail for the new domain accepted: {}", reply.trim());
    let subjects = imap_subjects(vm.imaps_port, 1)?;
    ensure!(
        subjects == "Subject: after the wizard",
        "the owner's INBOX over IMAP: {subjects:?}"
    );
    println!("e2e: the owner reads it over IMAP (993): {subjects}");
    // Give delivery a moment, then press the power button.
    let console = vm.power_down()?;
    ensure!(
        console.contains("power button pressed"),
        "no power button event:\n{}",
        tail(&console)
    );
    ensure!(
        console.contains("/data unmounted cleanly"),
        "the data partition was not unmounted:\n{}",
        tail(&console)
    );
    ensure!(
        console.contains("powering off"),
        "no orderly power-off:\n{}",
        tail(&console)
    );
    drop(vm);

    // The data partition is clean and holds the message.
    let layout = ::image::disk::read_layout(&disk)?;
    let data = dir.join("data.ext4");
    extract(&disk, layout.data_offset, layout.data_len, &data)?;
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&data)
        .output()?;
    ensure!(
        fsck.status.success(),
        "e2fsck found problems:\n{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let state = String::from_utf8_lossy(
        &Command::new("dumpe2fs")
            .arg("-h")
            .arg(&data)
            .output()?
            .stdout,
    )
    .to_string();
    ensure!(
        state
            .lines()
            .any(|l| l.starts_with("Filesystem state:") && l.contains("clean")),
        "the file system is not marked clean"
    );
    // Seen over IMAP: moved from new/ to cur/ (Maildir's way).
    let owner = [
        messages(&data, &format!("{OWNER_DIR}/new"))?,
        messages(&data, &format!("{OWNER_DIR}/cur"))?,
    ]
    .concat();
    ensure!(
        owner.len() == 1,
        "expected the owner's message in {OWNER_DIR}, found {owner:?}"
    );
    let names = messages(&data, ACCOUNT_DIR)?;
    ensure!(
        names.len() == 1,
        "expected one message in {ACCOUNT_DIR}, found {names:?}"
    );
    let stored = debugfs(&data, &format!("cat {ACCOUNT_DIR}/{}", names[0]))?;
    let stored = String::from_utf8_lossy(&stored).to_string();
    let body_start = stored
        .find("From: e2e@sender.example")
        .context("the stored message lost its headers")?;
    let added = &stored[..body_start];
    ensure!(
        added.starts_with(
            "Return-Path: <e2e@sender.example>\nDelivered-To: postmaster@mailbox.local\nAuthentication-Results: mailbox.local;"
        ) && added.contains("\nReceived: from e2e.example"),
        "trace headers: {added:?}"
    );
    ensure!(
        stored[body_start..] == message.replace("\r\n", "\n"),
        "the stored message differs from the one sent:\n{stored}"
    );
    // The ESP: the entry lost its boot counter.
    let mut esp = vec![0u8; layout.esp_len as usize];
    let mut f = std::fs::File::open(&disk)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(layout.esp_offset))?;
    f.read_exact(&mut esp)?;
    let entries = ::image::disk::fat_list(&esp, "loader/entries")?;
    ensure!(
        entries == ["mailbox-a.conf"],
        "boot entries after the first boot: {entries:?}"
    );
    Ok(FirstBoot {
        dir,
        disk,
        layout,
        built,
        banner,
        uptime,
    })
}
