//! The update scenarios of the end-to-end test (issue 14), on the disk the
//! first boot left: bundles refused before anything is written; an update
//! sent with `cargo xtask deploy`'s code, installed and blessed; a bundle
//! whose server exits, rolled back by the boot counter; power cuts while
//! the slot is written and right after the reboot into the trial.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use super::{
    OWNER_PASSWORD, Running, boot, expect_inbox, extract, python, smtp_send, tail, wait_smtp,
};
use crate::{deploy, image};

const OWNER: &str = "owner@example.org";

/// The boot entries on the ESP of `disk` (copied to `esp_image`) and what
/// `fsck.fat -n` says of it (None: clean).
fn esp_state(
    disk: &Path,
    layout: &::image::disk::Layout,
    esp_image: &Path,
) -> anyhow::Result<(Vec<String>, Option<String>)> {
    extract(disk, layout.esp_offset, layout.esp_len, esp_image)?;
    let esp = std::fs::read(esp_image)?;
    let mut entries = ::image::disk::fat_list(&esp, "loader/entries")?;
    entries.sort();
    let fsck = Command::new("fsck.fat").arg("-n").arg(esp_image).output()?;
    let problems =
        (!fsck.status.success()).then(|| String::from_utf8_lossy(&fsck.stdout).to_string());
    Ok((entries, problems))
}

/// The ESP of `disk` has exactly the boot entries `expected` and passes
/// `fsck.fat -n`.
fn check_esp(
    disk: &Path,
    layout: &::image::disk::Layout,
    esp_image: &Path,
    expected: &[&str],
) -> anyhow::Result<()> {
    let (entries, problems) = esp_state(disk, layout, esp_image)?;
    ensure!(
        entries == expected,
        "boot entries: {entries:?}, expected {expected:?}"
    );
    if let Some(report) = problems {
        anyhow::bail!("fsck.fat found problems on the ESP:\n{report}");
    }
    Ok(())
}

/// The files of `board`'s slot at `version`, for bundles.
fn slot(
    board: &'static board::Board,
    version: &str,
    variant: image::Variant,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    Ok(image::slot_files(board, true, version, variant)?.named())
}

/// Writes a bundle of `board`'s slot at `version` (`variant`) to `out`,
/// signed with `key`.
fn bundle_of(
    board: &'static board::Board,
    key: &[u8],
    version: &str,
    variant: image::Variant,
    out: &Path,
) -> anyhow::Result<()> {
    write_bundle(
        key,
        board.name,
        version,
        &slot(board, version, variant)?,
        out,
    )
}

/// Boots `disk` again (a reboot inside the VM boots again) until the mta
/// accepts connections: the VM and its console so far.
fn boot_up(
    board: &'static board::Board,
    dir: &Path,
    disk: &Path,
    name: &str,
) -> anyhow::Result<(Running, String)> {
    let mut vm = boot(board, dir, disk, name, true)?;
    wait_smtp(&mut vm)?;
    let console = vm.wait_console("mta accepting connections", Duration::from_secs(60))?;
    Ok((vm, console))
}

/// Writes a bundle of `files` for `board_name` at `version` to `out`,
/// signed with `key` (PKCS#8).
fn write_bundle(
    key: &[u8],
    board_name: &str,
    version: &str,
    files: &[(String, Vec<u8>)],
    out: &Path,
) -> anyhow::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    ::image::bundle::write(&mut w, key, board_name, version, files)?;
    w.into_inner()?.sync_all()?;
    Ok(())
}

/// The version after `v` (its last number plus one).
fn next_version(v: &str) -> String {
    let mut parts: Vec<u64> = v.split('.').filter_map(|p| p.parse().ok()).collect();
    if let Some(last) = parts.last_mut() {
        *last += 1;
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// PUTs the bundle at `path` to the appliance's update API (HTTPS through
/// the forward, as the owner) with Python's urllib, an independent
/// client: status and answer.
fn put_update(port: u16, path: &Path) -> anyhow::Result<String> {
    const SCRIPT: &str = r#"
import base64, ssl, sys, urllib.request, urllib.error
port, path, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the appliance's own certificate
req = urllib.request.Request("https://127.0.0.1:%d/api/update" % port, data=open(path, "rb").read(), method="PUT")
req.add_header("Authorization", "Basic " + base64.b64encode(("owner@example.org:" + password).encode()).decode())
try:
    r = urllib.request.urlopen(req, context=ctx, timeout=300)
    print(r.status, r.read().decode().strip())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
"#;
    python(
        SCRIPT,
        &[&port.to_string(), &path.to_string_lossy(), OWNER_PASSWORD],
        "the update upload",
    )
}

/// Sends `bundle` as `cargo xtask deploy` does, pinning the appliance's
/// self-signed certificate by the fingerprint its first refusal names.
fn deploy(vm: &Running, bundle: &Path, fingerprint: &str) -> anyhow::Result<String> {
    let host = format!("127.0.0.1:{}", vm.https_port);
    let answer = deploy::send(
        &host,
        bundle,
        OWNER,
        OWNER_PASSWORD,
        false,
        Some(fingerprint),
        false,
    )?;
    Ok(format!("{} {}", answer.status, answer.text))
}

/// Waits (polling often) until the console says `needle`, then cuts the
/// power: QEMU is killed, the guest's unwritten caches are lost.
fn cut_power_at(vm: &mut Running, needle: &str, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = vm.console_text();
        if text.contains(needle) {
            vm.child.kill()?;
            vm.child.wait()?;
            return Ok(text);
        }
        ensure!(
            vm.child.try_wait()?.is_none(),
            "QEMU exited before the console said {needle:?}:\n{}",
            tail(&text)
        );
        ensure!(
            Instant::now() < deadline,
            "the console did not say {needle:?} within {timeout:?}:\n{}",
            tail(&text)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Boots 2 to 6 of the end-to-end test.
pub fn scenarios(
    board: &'static board::Board,
    dir: &Path,
    disk: &Path,
    layout: &::image::disk::Layout,
) -> anyhow::Result<()> {
    let esp_image = dir.join("esp.fat");
    let (key, _) = image::signing_key()?;
    let next = update_through_the_api(board, dir, disk, layout)?;
    // Third boot: an update whose server exits at start. Its trial boots
    // never become healthy; the boot counter runs out and version `next`
    // runs again by itself, saying the update failed.
    let broken = next_version(&next);
    let broken_bundle = dir.join("broken.bundle");
    bundle_of(
        board,
        &key,
        &broken,
        image::Variant::MtaExits,
        &broken_bundle,
    )?;
    let (mut vm, _) = boot_up(board, dir, disk, "3")?;
    let sent = Instant::now();
    let answer = put_update(vm.https_port, &broken_bundle)?;
    ensure!(
        answer.starts_with(&format!("200 version {broken} accepted")),
        "the broken update was not accepted: {answer}"
    );
    let failed = format!(
        "update: the update to version {broken} failed: version {broken} did not start in its trial boots; {next} runs again"
    );
    let console = vm.wait_console(&failed, Duration::from_secs(600))?;
    let tries = console
        .matches(&format!("Mailbox {broken} starting"))
        .count();
    println!(
        "e2e: a bundle whose server exits: {tries} trial boots, then {next} again by itself in {:.0} s (host)",
        sent.elapsed().as_secs_f64()
    );
    ensure!(tries == 3, "expected 3 trial boots, saw {tries}");
    expect_inbox(
        vm.imaps_port,
        &["after the wizard", "after the update"],
        "after the failed update",
    )?;
    vm.power_down()?;
    drop(vm);
    check_esp(
        disk,
        layout,
        &esp_image,
        &["mailbox-a+0-3.conf", "mailbox-b.conf"],
    )?;

    power_cuts(board, dir, disk, layout, &key, &broken, &next)
}

/// Case 1 (boot 2): refused bundles, then the update to the next version,
/// sent as `cargo xtask deploy` sends it, installed into slot b, booted and
/// blessed, with the mail from before it there and mail flowing after it.
/// Returns the version now running.
pub fn update_through_the_api(
    board: &'static board::Board,
    dir: &Path,
    disk: &Path,
    layout: &::image::disk::Layout,
) -> anyhow::Result<String> {
    let (key, _) = image::signing_key()?;
    let running = image::version();

    let next = next_version(running);
    let files = slot(board, &next, image::Variant::Normal)?;
    let bundle = dir.join("update.bundle");
    write_bundle(&key, board.name, &next, &files, &bundle)?;
    let size = std::fs::metadata(&bundle)?.len();
    // Three bundles the appliance must refuse before anything is written:
    // damaged, for another board, signed by another key.
    let tampered = dir.join("tampered.bundle");
    let mut bytes = std::fs::read(&bundle)?;
    // One bit inside the initramfs (the last file before the small entry).
    let inside = bytes.len() - 100_000;
    bytes[inside] ^= 0x01;
    std::fs::write(&tampered, bytes)?;
    let other_board = dir.join("other-board.bundle");
    let stranger_board = board::BOARDS
        .iter()
        .find(|b| b.name != board.name)
        .context("only one board is known")?
        .name;
    write_bundle(&key, stranger_board, &next, &files, &other_board)?;
    let other_key = dir.join("other-key.bundle");
    let stranger = ::image::bundle::generate_key()?;
    write_bundle(&stranger, board.name, &next, &files, &other_key)?;
    drop(files);

    // Second boot: the data partition is reused; the wrong bundles are
    // refused; then the update to the next version, sent as `cargo xtask
    // deploy` sends it, which the VM installs into slot b, reboots into,
    // and blesses.
    let (mut vm, console) = boot_up(board, dir, disk, "2")?;
    ensure!(
        console.contains("reused (created"),
        "the data partition was not reused:\n{}",
        tail(&console)
    );
    ensure!(
        !console.contains("data partition grown"),
        "the second boot grew the partition again"
    );
    ensure!(
        !console.contains("setup code:"),
        "the claimed appliance shows a setup code again:\n{}",
        tail(&console)
    );
    ensure!(
        console.contains("needs no blessing"),
        "the second boot found a counter to bless:\n{}",
        tail(&console)
    );
    // The appliance's certificate is its own: deploy refuses it and names
    // its fingerprint, which the owner compares and passes.
    let host = format!("127.0.0.1:{}", vm.https_port);
    let refused = deploy::send(&host, &bundle, OWNER, OWNER_PASSWORD, false, None, false)
        .err()
        .context("deploy trusted a self-signed certificate")?;
    let fingerprint = refused
        .downcast_ref::<deploy::Untrusted>()
        .with_context(|| format!("deploy failed otherwise: {refused:#}"))?
        .fingerprint
        .clone();
    for (path, why) in [
        (
            &tampered,
            "422 the bundle's file initrd.zst does not match its signed hash",
        ),
        (
            &other_board,
            &format!(
                "422 the bundle is for board {stranger_board}, this appliance is {}",
                board.name
            ),
        ),
        (&other_key, "422 the bundle is not signed by the key"),
    ] {
        let answer = deploy(&vm, path, &fingerprint)?;
        ensure!(
            answer.starts_with(why),
            "{} was answered {answer:?}, expected {why:?}",
            path.display()
        );
        println!("e2e: refused: {answer}");
    }
    let sent = Instant::now();
    let answer = deploy(&vm, &bundle, &fingerprint)?;
    ensure!(
        answer.starts_with(&format!("200 version {next} accepted")),
        "the update was not accepted: {answer}"
    );
    let console = vm.wait_console(
        &format!("update: updated to version {next}"),
        Duration::from_secs(240),
    )?;
    ensure!(
        console.matches("update: installing version").count() == 1,
        "a refused bundle was installed:\n{}",
        tail(&console)
    );
    let after = &console[console
        .find(&format!("Mailbox {next} starting"))
        .context("the new version did not start")?..];
    ensure!(
        after.contains("boot blessed: mailbox-b+"),
        "the new slot was not blessed:\n{}",
        tail(after)
    );
    let accepting = after
        .lines()
        .find_map(|l| l.split("mta accepting connections at uptime ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    println!(
        "e2e: updated {running} -> {next} ({size} bytes) through the API in {:.0} s (host); the new slot blessed at uptime {accepting} s (guest)",
        sent.elapsed().as_secs_f64()
    );
    // Mail from before the update is there, and mail flows after it.
    smtp_send(
        vm.smtp_port,
        OWNER,
        "From: e2e@sender.example\r\nTo: owner@example.org\r\nSubject: after the update\r\n\r\nhello again\r\n",
    )?;
    expect_inbox(
        vm.imaps_port,
        &["after the wizard", "after the update"],
        "after the update",
    )?;
    vm.power_down()?;
    drop(vm);
    // Both slots' entries blessed, and the ESP is a clean FAT.
    check_esp(
        disk,
        layout,
        &dir.join("esp.fat"),
        &["mailbox-a.conf", "mailbox-b.conf"],
    )?;
    Ok(next)
}

/// Boots 4 to 6: the power is cut while the slot is written, and again
/// right after the reboot into the trial; every boot comes up on a
/// working version and the mail acknowledged before the cuts is there.
fn power_cuts(
    board: &'static board::Board,
    dir: &Path,
    disk: &Path,
    layout: &::image::disk::Layout,
    key: &[u8],
    after: &str,
    running: &str,
) -> anyhow::Result<()> {
    let esp_image = dir.join("esp.fat");
    let version = next_version(after);
    let bundle = dir.join("power-cut.bundle");
    bundle_of(board, key, &version, image::Variant::Normal, &bundle)?;
    let (mut vm, _) = boot_up(board, dir, disk, "4")?;
    let answer = put_update(vm.https_port, &bundle)?;
    ensure!(
        answer.starts_with(&format!("200 version {version} accepted")),
        "the update was not accepted: {answer}"
    );
    // Acknowledged just before the cut: it must survive it.
    smtp_send(
        vm.smtp_port,
        OWNER,
        "From: e2e@sender.example\r\nTo: owner@example.org\r\nSubject: before the power cut\r\n\r\nstill here?\r\n",
    )?;
    // The old entry of slot a is gone and its kernel written (synced):
    // the cut comes while the initramfs is written.
    cut_power_at(
        &mut vm,
        "update: writing initrd.zst into slot a",
        Duration::from_secs(60),
    )?;
    drop(vm);
    let (entries, problems) = esp_state(disk, layout, &esp_image)?;
    let when = if entries.iter().any(|e| e.starts_with("mailbox-a+3")) {
        "after the trial entry was written"
    } else if entries.iter().any(|e| e.starts_with("mailbox-a")) {
        "before the old entry's removal reached the disk"
    } else {
        "while the slot was written"
    };
    println!(
        "e2e: power cut {when}: entries {entries:?}; fsck.fat -n: {}",
        problems
            .as_deref()
            .map_or("clean".into(), |p| p.replace('\n', " / "))
    );
    ensure!(
        entries == ["mailbox-b.conf"],
        "the cut did not come while slot a was written (entries {entries:?})"
    );

    // Fifth boot: a working version comes up (the old one, which installs
    // the update again, or the trial if the cut came after its entry);
    // the power is cut again as soon as the trial starts.
    let mut vm = boot(board, dir, disk, "5", true)?;
    let console = cut_power_at(
        &mut vm,
        &format!("Mailbox {version} starting"),
        Duration::from_secs(300),
    )?;
    let resumed = console.contains(&format!(
        "installing version {version} into slot a (running {running} from slot b; attempt 2"
    ));
    ensure!(
        resumed || when.starts_with("after"),
        "the cut-off installation was not begun again:\n{}",
        tail(&console)
    );
    // FAT has no journal: what the cut left (marked dirty, a stale free
    // count) init puts right before it mounts the ESP.
    if problems.is_some() {
        ensure!(
            console.contains("put right before mounting: not cleanly unmounted"),
            "init did not repair the ESP:\n{}",
            tail(&console)
        );
    }
    println!(
        "e2e: the next boot {}; power cut as the trial of {version} started",
        if resumed {
            format!(
                "ran {running}{} and installed {version} again",
                if problems.is_some() {
                    ", put the ESP right"
                } else {
                    ""
                }
            )
        } else {
            "was the trial".into()
        }
    );
    drop(vm);
    check_esp(
        disk,
        layout,
        &esp_image,
        &["mailbox-a+2-1.conf", "mailbox-b.conf"],
    )?;

    // Sixth boot: the trial's second try is healthy and blessed.
    let mut vm = boot(board, dir, disk, "6", true)?;
    let console = vm.wait_console(
        &format!("update: updated to version {version}"),
        Duration::from_secs(240),
    )?;
    ensure!(
        console.contains("boot blessed: mailbox-a+1-2"),
        "the trial's second try was not the one blessed:\n{}",
        tail(&console)
    );
    expect_inbox(
        vm.imaps_port,
        &[
            "after the wizard",
            "after the update",
            "before the power cut",
        ],
        "after the power cuts",
    )?;
    println!("e2e: after two power cuts {version} runs, blessed; the mail is all there");
    vm.power_down()?;
    drop(vm);
    check_esp(
        disk,
        layout,
        &esp_image,
        &["mailbox-a.conf", "mailbox-b.conf"],
    )
}
