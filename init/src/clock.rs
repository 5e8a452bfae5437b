//! Time and entropy across reboots: the clock is restored from the data
//! partition (boards without a battery-backed clock start in 1970) and
//! synchronised by SNTP (RFC 4330); a random seed saved at shutdown is mixed
//! into the kernel's pool at boot.

use std::io::Read;
use std::net::{ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::console::log;

fn clock_file() -> PathBuf {
    PathBuf::from(crate::DATA).join("clock")
}

fn seed_file() -> PathBuf {
    PathBuf::from(crate::DATA).join("random-seed")
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn set_clock(secs: u64, nanos: u32) -> nix::Result<()> {
    let ts = nix::sys::time::TimeSpec::from_duration(Duration::new(secs, nanos));
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
}

/// Moves the clock forward to the last saved time if it is behind.
pub fn restore() {
    let saved: u64 = std::fs::read_to_string(clock_file())
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let now = now_secs();
    if saved > now {
        match set_clock(saved, 0) {
            Ok(()) => log!(
                "clock restored from the data partition (was {} s behind)",
                saved - now
            ),
            Err(e) => log!("cannot set the clock: {e}"),
        }
    }
}

pub fn save() {
    let _ = crate::supervise::write_synced(&clock_file(), format!("{}\n", now_secs()).as_bytes());
}

/// Mixes the saved seed into the pool (without crediting entropy: the
/// kernel's own sources do that) and replaces it, so a seed is never used
/// twice.
pub fn seed_entropy() {
    if let Ok(seed) = std::fs::read(seed_file()) {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/urandom")
            .and_then(|mut f| std::io::Write::write_all(&mut f, &seed));
    }
    save_seed();
}

pub fn save_seed() {
    let mut seed = [0u8; 512];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .is_ok()
    {
        let _ = crate::supervise::write_synced(&seed_file(), &seed);
    }
}

/// Synchronises the clock in the background: at once, then every hour.
pub fn start_sntp(servers: Vec<String>) {
    if servers.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("sntp".into())
        .spawn(move || {
            let mut announced = false;
            loop {
                let mut synced = false;
                for server in &servers {
                    match query(server) {
                        Ok(t) => {
                            let offset = t.as_secs_f64()
                                - SystemTime::now()
                                    .duration_since(UNIX_EPOCH)
                                    .unwrap_or_default()
                                    .as_secs_f64();
                            if set_clock(t.as_secs(), t.subsec_nanos()).is_ok() {
                                if !announced || offset.abs() > 1.0 {
                                    log!(
                                        "clock synchronised with {server} (offset {offset:+.3} s)"
                                    );
                                    announced = true;
                                }
                                save();
                                synced = true;
                                break;
                            }
                        }
                        Err(e) if !announced => log!("SNTP {server}: {e}"),
                        Err(_) => {}
                    }
                }
                std::thread::sleep(Duration::from_secs(if synced { 3600 } else { 300 }));
            }
        });
}

/// One SNTP request; the server's transmit time.
fn query(server: &str) -> std::io::Result<Duration> {
    let addr = (server, 123)
        .to_socket_addrs()?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| std::io::Error::other("no IPv4 address"))?;
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut req = [0u8; 48];
    req[0] = 0b00_100_011; // LI 0, version 4, client
    sock.send_to(&req, addr)?;
    let mut resp = [0u8; 48];
    let (n, from) = sock.recv_from(&mut resp)?;
    if n < 48 || from != addr || resp[0] & 0x07 != 4 || resp[1] == 0 {
        return Err(std::io::Error::other("not a valid server reply"));
    }
    let secs = u32::from_be_bytes([resp[40], resp[41], resp[42], resp[43]]) as u64;
    let frac = u32::from_be_bytes([resp[44], resp[45], resp[46], resp[47]]) as u64;
    const NTP_TO_UNIX: u64 = 2_208_988_800;
    let unix = secs
        .checked_sub(NTP_TO_UNIX)
        .ok_or_else(|| std::io::Error::other("time before 1970"))?;
    Ok(Duration::new(unix, ((frac * 1_000_000_000) >> 32) as u32))
}
