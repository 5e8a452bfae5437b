//! Networking: the first Ethernet interface, configured by DHCPv4 (RFC 2131,
//! with renewal) or statically; IPv6 comes from the kernel's SLAAC. Writes
//! /etc/resolv.conf and /etc/hosts.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::console::log;
use crate::settings::{Addressing, Settings};

/// What the network looks like now (shared with the status banner).
#[derive(Clone, Default)]
pub struct Network {
    addresses: Arc<Mutex<Vec<String>>>,
}

impl Network {
    pub fn addresses(&self) -> Vec<String> {
        self.addresses.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn set(&self, addrs: Vec<String>) {
        if let Ok(mut a) = self.addresses.lock() {
            *a = addrs;
        }
    }
}

pub fn set_hostname(fqdn: &str) {
    let short = fqdn.split('.').next().unwrap_or("mailbox");
    if let Err(e) = nix::unistd::sethostname(short) {
        log!("sethostname: {e}");
    }
    let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{fqdn} {short}\n");
    let _ = std::fs::create_dir_all("/etc");
    let _ = std::fs::write("/etc/hosts", hosts);
}

pub fn loopback() {
    if let Err(e) = set_up("lo") {
        log!("lo: {e}");
    }
}

/// Brings up the first Ethernet interface; DHCP runs in the background so
/// the boot does not wait on a slow server.
pub fn start(settings: &Settings) -> Network {
    let network = Network::default();
    let Some(ifname) = wait_for_ethernet(Duration::from_secs(10)) else {
        log!("no Ethernet interface found");
        return network;
    };
    if let Err(e) = set_up(&ifname) {
        log!("{ifname}: cannot bring it up: {e}");
        return network;
    }
    // IPv6 addresses come from router advertisements (kernel SLAAC).
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{ifname}/autoconf"), "1");
    match settings.addressing.clone() {
        Addressing::Static {
            address,
            prefix,
            gateway,
            dns,
        } => match configure(&ifname, address, prefix, gateway) {
            Ok(()) => {
                log!("{ifname}: {address}/{prefix} (static)");
                write_resolv(&dns);
                network.set(vec![address.to_string()]);
            }
            Err(e) => log!("{ifname}: static configuration failed: {e}"),
        },
        Addressing::Dhcp => {
            let hostname = settings
                .hostname
                .split('.')
                .next()
                .unwrap_or("mailbox")
                .to_string();
            let net = network.clone();
            let _ = std::thread::Builder::new()
                .name("dhcp".into())
                .spawn(move || dhcp_loop(&ifname, &hostname, &net));
            // Most networks answer within a second; wait a little so the
            // banner can show the address.
            let deadline = Instant::now() + Duration::from_secs(5);
            while network.addresses().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    network
}

fn wait_for_ethernet(wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| {
                        let ty = std::fs::read_to_string(format!("/sys/class/net/{n}/type"))
                            .unwrap_or_default();
                        n != "lo" && ty.trim() == "1"
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        if let Some(n) = names.into_iter().next() {
            return Some(n);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    req
}

fn control_socket() -> std::io::Result<UdpSocket> {
    UdpSocket::bind("0.0.0.0:0")
}

fn ioctl(sock: &UdpSocket, request: libc::c_ulong, arg: *mut libc::c_void) -> std::io::Result<()> {
    // SAFETY: the callers pass requests with matching argument structures.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, arg) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_up(name: &str) -> std::io::Result<()> {
    let sock = control_socket()?;
    let mut req = ifreq(name);
    ioctl(
        &sock,
        libc::SIOCGIFFLAGS,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    ioctl(
        &sock,
        libc::SIOCSIFFLAGS,
        (&mut req as *mut libc::ifreq).cast(),
    )
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    })
}

fn configure(
    name: &str,
    address: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
) -> std::io::Result<()> {
    let sock = control_socket()?;
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_addr = sockaddr(address);
    ioctl(
        &sock,
        libc::SIOCSIFADDR,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_netmask = sockaddr(mask(prefix));
    ioctl(
        &sock,
        libc::SIOCSIFNETMASK,
        (&mut req as *mut libc::ifreq).cast(),
    )?;
    set_up(name)?;
    if let Some(gw) = gateway {
        // SAFETY: rtentry is plain data; all-zero is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        match ioctl(
            &sock,
            libc::SIOCADDRT,
            (&mut rt as *mut libc::rtentry).cast(),
        ) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_resolv(dns: &[Ipv4Addr]) {
    let mut text = String::new();
    for d in dns {
        text.push_str(&format!("nameserver {d}\n"));
    }
    let _ = std::fs::write("/etc/resolv.conf", text);
}

/// A DHCP lease.
#[derive(Debug, Clone)]
struct Lease {
    address: Ipv4Addr,
    prefix: u8,
    router: Option<Ipv4Addr>,
    dns: Vec<Ipv4Addr>,
    server: Ipv4Addr,
    lease: Duration,
    renew: Duration,
}

fn dhcp_loop(ifname: &str, hostname: &str, network: &Network) {
    let mac = read_mac(ifname);
    let mut retry = Duration::from_secs(2);
    loop {
        match dhcp_exchange(ifname, hostname, mac, None) {
            Ok(lease) => {
                retry = Duration::from_secs(2);
                if let Err(e) = configure(ifname, lease.address, lease.prefix, lease.router) {
                    log!("{ifname}: cannot apply the DHCP lease: {e}");
                    std::thread::sleep(Duration::from_secs(10));
                    continue;
                }
                write_resolv(&lease.dns);
                network.set(vec![lease.address.to_string()]);
                log!(
                    "{ifname}: {}/{} from DHCP server {} (lease {} s)",
                    lease.address,
                    lease.prefix,
                    lease.server,
                    lease.lease.as_secs()
                );
                keep_lease(ifname, hostname, mac, lease);
                log!("{ifname}: lease lost; asking again");
                network.set(Vec::new());
            }
            Err(e) => {
                log!("{ifname}: DHCP: {e}; retrying in {} s", retry.as_secs());
                std::thread::sleep(retry);
                retry = (retry * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Renews at T1 until the server stops answering and the lease runs out.
fn keep_lease(ifname: &str, hostname: &str, mac: [u8; 6], mut lease: Lease) {
    let mut expires = Instant::now() + lease.lease;
    let mut wait = lease.renew;
    loop {
        std::thread::sleep(wait);
        if Instant::now() >= expires {
            return;
        }
        match dhcp_exchange(ifname, hostname, mac, Some(&lease)) {
            Ok(renewed) => {
                if renewed.address != lease.address {
                    return;
                }
                lease = renewed;
                expires = Instant::now() + lease.lease;
                wait = lease.renew;
            }
            Err(_) => {
                let left = expires.saturating_duration_since(Instant::now());
                wait = (left / 2).max(Duration::from_secs(10));
            }
        }
    }
}

fn read_mac(ifname: &str) -> [u8; 6] {
    let text =
        std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).unwrap_or_default();
    let mut mac = [0u8; 6];
    for (i, part) in text.trim().split(':').take(6).enumerate() {
        mac[i] = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;

/// DISCOVER → OFFER → REQUEST → ACK, or (renewing) REQUEST → ACK.
fn dhcp_exchange(
    ifname: &str,
    hostname: &str,
    mac: [u8; 6],
    renew: Option<&Lease>,
) -> std::io::Result<Lease> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))?;
    sock.set_broadcast(true)?;
    nix::sys::socket::setsockopt(
        &sock,
        nix::sys::socket::sockopt::BindToDevice,
        &std::ffi::OsString::from(ifname),
    )
    .map_err(std::io::Error::from)?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let xid: u32 = rand_u32();
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    // A renewal asks the lease's server directly for the address we have;
    // a new lease follows an offer.
    let (requested, ciaddr, dest) = match renew {
        Some(l) => (None, Some(l.address), SocketAddrV4::new(l.server, 67)),
        None => {
            let discover = dhcp_packet(xid, mac, DISCOVER, hostname, None, None);
            let offer = send_and_wait(&sock, &discover, broadcast, xid, &[OFFER])?;
            (Some((offer.address, offer.server)), None, broadcast)
        }
    };
    let request = dhcp_packet(xid, mac, REQUEST, hostname, requested, ciaddr);
    let ack = send_and_wait(&sock, &request, dest, xid, &[ACK, NAK])?;
    Ok(ack)
}

fn send_and_wait(
    sock: &UdpSocket,
    packet: &[u8],
    dest: SocketAddrV4,
    xid: u32,
    want: &[u8],
) -> std::io::Result<Lease> {
    let mut buf = [0u8; 1500];
    for attempt in 0..4 {
        sock.send_to(packet, dest)?;
        let deadline = Instant::now() + Duration::from_millis(1000 << attempt.min(2));
        while Instant::now() < deadline {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some((kind, lease)) = parse_reply(&buf[..n], xid) {
                if kind == NAK && want.contains(&NAK) {
                    return Err(std::io::Error::other(
                        "the server refused the request (NAK)",
                    ));
                }
                if want.contains(&kind) {
                    return Ok(lease);
                }
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer from a DHCP server",
    ))
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    u32::from_ne_bytes(b)
}

fn dhcp_packet(
    xid: u32,
    mac: [u8; 6],
    kind: u8,
    hostname: &str,
    requested: Option<(Ipv4Addr, Ipv4Addr)>,
    ciaddr: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    match ciaddr {
        Some(ci) => p[12..16].copy_from_slice(&ci.octets()),
        // Ask for broadcast replies: we cannot receive unicast before we
        // have an address.
        None => p[10] = 0x80,
    }
    p[28..34].copy_from_slice(&mac);
    p.extend_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, kind]);
    let mut client_id = vec![61, 7, 1];
    client_id.extend_from_slice(&mac);
    p.extend_from_slice(&client_id);
    if let Some((ip, server)) = requested {
        p.extend_from_slice(&[50, 4]);
        p.extend_from_slice(&ip.octets());
        p.extend_from_slice(&[54, 4]);
        p.extend_from_slice(&server.octets());
    }
    let name = hostname.as_bytes();
    if !name.is_empty() && name.len() < 64 {
        p.extend_from_slice(&[12, name.len() as u8]);
        p.extend_from_slice(name);
    }
    p.extend_from_slice(&[55, 6, 1, 3, 6, 51, 54, 58]);
    p.push(255);
    while p.len() < 300 {
        p.push(0);
    }
    p
}

fn parse_reply(b: &[u8], xid: u32) -> Option<(u8, Lease)> {
    if b.len() < 240
        || b[0] != 2
        || b[4..8] != xid.to_be_bytes()
        || b[236..240] != [99, 130, 83, 99]
    {
        return None;
    }
    let yiaddr = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let mut kind = 0;
    let mut prefix = 24;
    let mut router = None;
    let mut dns = Vec::new();
    let mut server = Ipv4Addr::UNSPECIFIED;
    let mut lease = 3600u32;
    let mut renew = None;
    let mut i = 240;
    while i < b.len() {
        let code = b[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let len = *b.get(i + 1)? as usize;
        let v = b.get(i + 2..i + 2 + len)?;
        let ip = |v: &[u8]| (v.len() >= 4).then(|| Ipv4Addr::new(v[0], v[1], v[2], v[3]));
        let secs = |v: &[u8]| (v.len() >= 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        match code {
            53 if len == 1 => kind = v[0],
            1 => prefix = ip(v).map(|m| u32::from(m).count_ones() as u8).unwrap_or(24),
            3 => router = ip(v),
            6 => dns = v.chunks(4).filter_map(ip).collect(),
            51 => lease = secs(v).unwrap_or(3600),
            54 => server = ip(v).unwrap_or(server),
            58 => renew = secs(v),
            _ => {}
        }
        i += 2 + len;
    }
    if kind == 0 {
        return None;
    }
    let lease_d = Duration::from_secs(lease.max(60) as u64);
    Some((
        kind,
        Lease {
            address: yiaddr,
            prefix,
            router,
            dns,
            server,
            lease: lease_d,
            renew: renew
                .map(|r| Duration::from_secs(r.max(30) as u64))
                .unwrap_or(lease_d / 2),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let p = dhcp_packet(0xdeadbeef, mac, DISCOVER, "mailbox", None, None);
        assert_eq!(&p[236..240], &[99, 130, 83, 99]);
        assert_eq!(p[10], 0x80, "broadcast flag");
        // Turn it into a server reply.
        let mut r = p.clone();
        r[0] = 2;
        r[16..20].copy_from_slice(&[10, 0, 2, 15]);
        r.truncate(240);
        r.extend_from_slice(&[
            53, 1, OFFER, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 2, 2, 6, 4, 10, 0, 2, 3, 51, 4, 0,
            0, 0x0e, 0x10, 54, 4, 10, 0, 2, 2, 255,
        ]);
        let (kind, lease) = parse_reply(&r, 0xdeadbeef).unwrap();
        assert_eq!(kind, OFFER);
        assert_eq!(lease.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(lease.prefix, 24);
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(lease.lease, Duration::from_secs(3600));
        assert_eq!(lease.renew, Duration::from_secs(1800));
        assert!(parse_reply(&r, 1).is_none(), "other transaction");
    }
}
