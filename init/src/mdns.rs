//! A minimal mDNS responder (RFC 6762): answers A queries for one name
//! (`mailbox.local`) with the addresses of this machine, so the owner can
//! browse to it without knowing its IP.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use crate::console::log;

const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const PORT: u16 = 5353;

pub fn start(name: &str) {
    let name = name.to_ascii_lowercase();
    let _ = std::thread::Builder::new()
        .name("mdns".into())
        .spawn(move || {
            // Retry until the network has an address to join the group on.
            loop {
                match serve(&name) {
                    Ok(()) => return,
                    Err(_) => std::thread::sleep(Duration::from_secs(5)),
                }
            }
        });
}

fn serve(name: &str) -> std::io::Result<()> {
    let addr = local_ipv4().ok_or_else(|| std::io::Error::other("no address yet"))?;
    let sock = socket()?;
    sock.join_multicast_v4(&GROUP, &addr)?;
    log!("mDNS: answering for {name} ({addr})");
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        let Some(q) = parse_query(&buf[..n], name) else {
            continue;
        };
        let Some(ip) = local_ipv4() else { continue };
        // Legacy unicast (source port not 5353) and QU questions get a
        // unicast answer; everything else goes to the group.
        let unicast = from.port() != PORT || q.unicast;
        let reply = answer(name, ip, if unicast { Some(&buf[..n]) } else { None }, q.id);
        let dest: SocketAddr = if unicast {
            from
        } else {
            SocketAddrV4::new(GROUP, PORT).into()
        };
        let _ = sock.send_to(&reply, dest);
    }
}

fn socket() -> std::io::Result<UdpSocket> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::empty(),
        None,
    )
    .map_err(std::io::Error::from)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(std::io::Error::from)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(0, 0, 0, 0, PORT),
    )
    .map_err(std::io::Error::from)?;
    Ok(UdpSocket::from(fd))
}

/// The first non-loopback IPv4 address (from /proc/net/route's interface).
fn local_ipv4() -> Option<Ipv4Addr> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks a source address.
    sock.connect("224.0.0.251:5353").ok()?;
    match sock.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() && !a.ip().is_loopback() => Some(*a.ip()),
        _ => None,
    }
}

struct Query {
    id: u16,
    unicast: bool,
}

/// A query asking for `name` (type A or ANY), if this packet is one.
fn parse_query(p: &[u8], name: &str) -> Option<Query> {
    if p.len() < 12 || p[2] & 0x80 != 0 {
        return None; // too short, or a response
    }
    let id = u16::from_be_bytes([p[0], p[1]]);
    let qdcount = u16::from_be_bytes([p[4], p[5]]);
    let mut i = 12;
    for _ in 0..qdcount {
        let (qname, next) = read_name(p, i)?;
        let qtype = u16::from_be_bytes([*p.get(next)?, *p.get(next + 1)?]);
        let qclass = u16::from_be_bytes([*p.get(next + 2)?, *p.get(next + 3)?]);
        i = next + 4;
        if qname.eq_ignore_ascii_case(name) && (qtype == 1 || qtype == 255) && qclass & 0x7fff == 1
        {
            return Some(Query {
                id,
                unicast: qclass & 0x8000 != 0,
            });
        }
    }
    None
}

fn read_name(p: &[u8], mut i: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *p.get(i)? as usize;
        if len == 0 {
            return Some((labels.join("."), end.unwrap_or(i + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let ptr = ((len & 0x3f) << 8) | *p.get(i + 1)? as usize;
            end.get_or_insert(i + 2);
            i = ptr;
            continue;
        }
        labels.push(String::from_utf8_lossy(p.get(i + 1..i + 1 + len)?).to_string());
        i += 1 + len;
    }
    None
}

fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The response; a legacy unicast answer repeats the question and the id.
fn answer(name: &str, ip: Ipv4Addr, legacy_query: Option<&[u8]>, id: u16) -> Vec<u8> {
    let mut r = Vec::new();
    let legacy = legacy_query.is_some();
    r.extend_from_slice(&(if legacy { id } else { 0 }).to_be_bytes());
    r.extend_from_slice(&[0x84, 0x00]); // response, authoritative
    r.extend_from_slice(&(legacy as u16).to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    if legacy {
        encode_name(name, &mut r);
        r.extend_from_slice(&[0, 1, 0, 1]);
    }
    encode_name(name, &mut r);
    r.extend_from_slice(&[0, 1]); // A
    // Cache-flush bit (we own this name) except in legacy answers.
    r.extend_from_slice(&(if legacy { 1u16 } else { 0x8001 }).to_be_bytes());
    r.extend_from_slice(&120u32.to_be_bytes());
    r.extend_from_slice(&4u16.to_be_bytes());
    r.extend_from_slice(&ip.octets());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_query_for_our_name_only() {
        let mut q = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        encode_name("Mailbox.local", &mut q);
        q.extend_from_slice(&[0, 1, 0x80, 1]);
        let parsed = parse_query(&q, "mailbox.local").unwrap();
        assert!(parsed.unicast);
        assert_eq!(parsed.id, 0x1234);
        assert!(parse_query(&q, "other.local").is_none());
        let r = answer(
            "mailbox.local",
            Ipv4Addr::new(10, 0, 2, 15),
            Some(&q),
            parsed.id,
        );
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert!(r.ends_with(&[10, 0, 2, 15]));
    }
}
