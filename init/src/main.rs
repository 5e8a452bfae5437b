//! Mailbox's PID 1: mounts, drivers, network, time, supervision of `mta`,
//! watchdog, boot-slot blessing and orderly shutdown.
//!
//! Not written yet: the appliance image (issue "Boot the appliance") brings
//! it. Until then Mailbox runs natively (`cargo xtask run`) and this binary
//! only says so, rather than pretending to boot anything.

fn main() -> std::process::ExitCode {
    eprintln!(
        "mailbox init: boot support is not part of this build yet; run the MTA with `mta serve`"
    );
    std::process::ExitCode::FAILURE
}
