//! Mailbox's PID 1.
//!
//! Brings the machine up (mounts, kernel modules, data partition, clock,
//! entropy, network, mDNS), runs `mta` as an unprivileged user and restarts
//! it with backoff, pets the hardware watchdog only while the appliance is
//! healthy, blesses the boot slot once it is, installs the updates the mta
//! hands over and reboots into them, and shuts down in order on
//! SIGTERM/SIGINT (ctrl-alt-del), SIGUSR2 or the power button.
//!
//! PID 1 must never exit: every step logs its failure and the boot goes on
//! where it can; a panic logs and reboots.

mod bless;
mod clock;
mod console;
mod kmod;
mod mdns;
mod mounts;
mod net;
mod power;
mod settings;
mod storage;
mod supervise;
mod update;

use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use crate::console::log;

/// How long a trial boot may take to become healthy.
const TRIAL_LIMIT: Duration = Duration::from_secs(45);

/// The unprivileged user `mta` runs as.
pub const MTA_UID: u32 = 1000;
pub const DATA: &str = "/data";
pub const CONFIG: &str = "/data/mailbox.toml";
/// The file that tells the mta this boot is committed (blessed, or not a
/// trial): only then may it migrate its data to a newer format, since the
/// version before can no longer come back by itself.
pub const COMMITTED: &str = "/run/mailbox-committed";

fn main() {
    if std::process::id() != 1 {
        eprintln!("init: this is Mailbox's PID 1 and only runs as process 1");
        std::process::exit(1);
    }
    std::panic::set_hook(Box::new(|info| {
        log!("PANIC: {info}");
        power::emergency_reboot();
    }));
    // Signals are taken synchronously in the main loop; every thread
    // inherits this mask, and children get it cleared before exec.
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR2,
        Signal::SIGCHLD,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    let _ = mask.thread_block();
    let result = std::panic::catch_unwind(|| run(&mask));
    log!("init: main loop ended unexpectedly ({result:?}); rebooting");
    power::emergency_reboot();
}

fn run(mask: &SigSet) {
    let started = Instant::now();
    mounts::early();
    console::reopen();
    let version = settings::version();
    log!(
        "Mailbox {version} starting (uptime {:.2} s)",
        console::uptime()
    );
    power::disable_ctrl_alt_del_reboot();

    // Drivers load in the background while this thread waits for the data
    // partition: the server can start as soon as its disk is there.
    let modules = std::sync::Arc::new(kmod::Loader::open());
    let drivers = {
        let modules = modules.clone();
        std::thread::spawn(move || {
            let plugged = modules.coldplug();
            // /etc/modules (from the board definition): what no device asks for.
            let listed = std::fs::read_to_string("/etc/modules").unwrap_or_default();
            let names: Vec<&str> = listed
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            modules.load_explicit(&names);
            log!(
                "{plugged} drivers loaded for the hardware found (uptime {:.2} s)",
                console::uptime()
            );
        })
    };
    // Meanwhile, what mounting the data partition needs.
    modules.load_explicit(&["crc32c_intel", "crc32c_generic", "ext4"]);
    let data = storage::mount_data(&modules);
    if data.is_some() {
        clock::restore();
        clock::seed_entropy();
    }
    let settings = settings::Settings::load();
    net::set_hostname(&settings.hostname);
    // The server listens on every address, so it starts before the network
    // is configured; loopback is enough for the health check.
    net::loopback();
    let mut mta = supervise::Mta::new();
    if data.is_some() {
        supervise::prepare_data();
        mta.start();
    } else {
        log!("no data partition: the mail server cannot run; fix the disk and reboot");
    }
    let _ = drivers.join();
    mounts::efivars();
    let network = net::start(&settings);
    mdns::start("mailbox.local");
    clock::start_sntp(settings.ntp.clone());
    let mut watchdog = power::Watchdog::open();
    power::watch_power_button();

    // A trial boot (systemd-boot counting its tries) that does not become
    // healthy reboots, so the counter runs out and the previous slot boots
    // again, with or without a hardware watchdog.
    let trial = bless::is_trial();
    let mut healthy_once = false;
    let mut last_check = Instant::now() - Duration::from_secs(60);
    let mut last_clock_save = Instant::now();
    let mut healthy = false;
    loop {
        // Wait for a signal; poll quickly until the server is first up.
        let tick = if healthy_once {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(50)
        };
        let signal = wait_signal(mask, tick);
        match signal {
            Some(Signal::SIGCHLD) | None => {}
            Some(Signal::SIGINT) => {
                return shutdown(&mut mta, &mut watchdog, power::Action::Reboot);
            }
            Some(Signal::SIGTERM) => {
                return shutdown(&mut mta, &mut watchdog, power::Action::Reboot);
            }
            Some(Signal::SIGUSR2) => {
                return shutdown(&mut mta, &mut watchdog, power::Action::PowerOff);
            }
            Some(other) => log!("init: ignoring {other}"),
        }
        mta.reap();
        mta.restart_if_due();
        let interval = match (healthy, healthy_once) {
            (true, _) => Duration::from_secs(5),
            (false, true) => Duration::from_secs(1),
            (false, false) => Duration::from_millis(50),
        };
        if last_check.elapsed() >= interval {
            last_check = Instant::now();
            healthy = data.is_some() && mta.accepting();
            if healthy && !healthy_once {
                healthy_once = true;
                log!(
                    "mta accepting connections at uptime {:.2} s ({:.2} s after init started)",
                    console::uptime(),
                    started.elapsed().as_secs_f64()
                );
                console::banner(
                    &version,
                    &network.addresses(),
                    settings::slot().as_deref(),
                    setup_code().as_deref(),
                );
                bless::bless_boot();
                if let Some(slot) = settings::slot() {
                    update::settle(&version, &slot);
                }
            }
        }
        // An update the mta handed over: installed, then a reboot into it.
        if healthy
            && update::pending()
            && let Some(slot) = settings::slot()
            && update::install(&version, &slot)
        {
            log!("rebooting into the update");
            let how = if bless::pi_boot().is_some() {
                power::Action::Tryboot
            } else {
                power::Action::Reboot
            };
            return shutdown(&mut mta, &mut watchdog, how);
        }
        if healthy {
            watchdog.pet();
        }
        if trial && !healthy_once && started.elapsed() > TRIAL_LIMIT {
            log!(
                "this trial boot is not healthy after {} s: rebooting (the boot counter decides what boots next)",
                TRIAL_LIMIT.as_secs()
            );
            return shutdown(&mut mta, &mut watchdog, power::Action::Reboot);
        }
        if last_clock_save.elapsed() >= Duration::from_secs(600) {
            last_clock_save = Instant::now();
            clock::save();
        }
    }
}

/// The code that claims an unclaimed appliance, which the mta writes for
/// the banner (and removes once the appliance has an owner).
fn setup_code() -> Option<String> {
    let code = std::fs::read_to_string(format!("{DATA}/setup-code")).ok()?;
    let code = code.trim();
    // Only what the mta writes is shown: letters, digits and a dash.
    (!code.is_empty()
        && code.len() <= 16
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    .then(|| code.to_string())
}

fn wait_signal(mask: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = nix::sys::time::TimeSpec::from_duration(timeout);
    // SAFETY: mask is a valid sigset and ts a valid timespec; a null info
    // pointer is allowed.
    let n = unsafe { libc::sigtimedwait(mask.as_ref(), std::ptr::null_mut(), ts.as_ref()) };
    if n <= 0 {
        None
    } else {
        Signal::try_from(n).ok()
    }
}

fn shutdown(mta: &mut supervise::Mta, watchdog: &mut power::Watchdog, action: power::Action) {
    log!("shutting down ({action:?}): stopping mta");
    mta.stop(Duration::from_secs(20));
    clock::save();
    clock::save_seed();
    storage::unmount_all();
    watchdog.disarm();
    power::finish(action);
}
