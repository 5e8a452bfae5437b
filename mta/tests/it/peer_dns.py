"""The DNS peers of peer.py: a plain zone served by dnslib, or a root zone
signed with DNSSEC by dnspython (RRSIGs and NSEC denials). See peer.py."""

import os
import sys
import threading
import time


def start_zone(path):
    """Serves the zone file at `path` (dnslib's syntax); returns the port."""
    from dnslib.server import DNSLogger, DNSServer
    from dnslib.zoneresolver import ZoneResolver

    with open(path) as f:
        resolver = ZoneResolver(f.read(), glob=False)
    quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
    dns = DNSServer(resolver, port=0, address="127.0.0.1", logger=quiet)
    dns.start_thread()
    return dns.server.server_address[1]


def start_signed(path, smtp_port, out, tamper):
    """Signs and serves the root zone at `path` ("{SMTP_PORT}" replaced);
    writes its key to OUT/anchor; with `tamper`, forges its TLSA records
    after signing. Returns the port (UDP and TCP)."""
    import socketserver
    import struct

    import dns.dnssec
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset
    import dns.zone
    from cryptography.hazmat.primitives.asymmetric import ec

    with open(path) as f:
        text = f.read().replace("{SMTP_PORT}", str(smtp_port))
    zone = dns.zone.from_text(text, origin=dns.name.root, relativize=False)
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
    now = int(time.time())
    dns.dnssec.sign_zone(zone, keys=[(key, dnskey)], inception=now - 3600, expiration=now + 86400)
    if tamper:
        # As an attacker on the path would: the signatures no longer match.
        import dns.rdata

        for node in zone.nodes.values():
            rds = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TLSA)
            if rds is not None:
                forged = dns.rdata.from_text("IN", "TLSA", "3 1 1 " + "ab" * 32)
                rds.clear()
                rds.add(forged)
    with open(os.path.join(out, "anchor"), "w") as f:
        f.write(". 3600 IN DNSKEY %s\n" % dnskey.to_text())
    RRSIG = dns.rdatatype.RRSIG
    NSEC = dns.rdatatype.NSEC

    def rrset(name, rdtype, dnssec, covers=dns.rdatatype.NONE):
        out = []
        rds = zone.get_rdataset(name, rdtype, covers)
        if rds is not None:
            out.append(dns.rrset.from_rdata_list(name, rds.ttl, list(rds)))
            if dnssec:
                sig = zone.get_rdataset(name, RRSIG, rdtype)
                if sig is not None:
                    out.append(dns.rrset.from_rdata_list(name, sig.ttl, list(sig)))
        return out

    def covering(name):
        # The NSEC whose owner sorts before `name` and whose next name after it.
        for owner, node in zone.nodes.items():
            rds = node.get_rdataset(dns.rdataclass.IN, NSEC)
            if rds is None:
                continue
            nxt = list(rds)[0].next
            if owner < name and (name < nxt or nxt == dns.name.root):
                return owner
        return None

    def answer(wire):
        q = dns.message.from_wire(wire)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        dnssec = bool(q.ednsflags & dns.flags.DO)
        if dnssec:
            r.want_dnssec(True)
        qname, qtype = q.question[0].name, q.question[0].rdtype
        soa = rrset(dns.name.root, dns.rdatatype.SOA, dnssec)
        if zone.get_node(qname) is not None:
            found = rrset(qname, qtype, dnssec)
            if found:
                r.answer.extend(found)
            else:
                r.authority.extend(soa + (rrset(qname, NSEC, True) if dnssec else []))
            return r
        names = list(zone.nodes.keys())
        if any(n.is_subdomain(qname) for n in names):
            # An empty non-terminal: NODATA, proven by the covering NSEC.
            r.authority.extend(soa)
            if dnssec:
                r.authority.extend(rrset(covering(qname), NSEC, True))
            return r
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.extend(soa)
        if dnssec:
            encloser = qname.parent()
            while not any(n.is_subdomain(encloser) for n in names):
                encloser = encloser.parent()
            owners = []
            for target in (qname, dns.name.Name((b"*",) + encloser.labels)):
                owner = covering(target)
                if owner is not None and owner not in owners:
                    owners.append(owner)
                    r.authority.extend(rrset(owner, NSEC, True))
        return r

    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            try:
                sock.sendto(answer(data).to_wire(max_size=65535), self.client_address)
            except Exception as e:
                print("dns: %r" % e, file=sys.stderr)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                while True:
                    head = self.request.recv(2, socket.MSG_WAITALL)
                    if len(head) < 2:
                        return
                    data = self.request.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
                    wire = answer(data).to_wire()
                    self.request.sendall(struct.pack("!H", len(wire)) + wire)
            except Exception as e:
                print("dns: %r" % e, file=sys.stderr)

    import socket

    # The same port for UDP and TCP: the UDP one the kernel gives may be
    # taken for TCP by another test meanwhile; then try another.
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    for attempt in range(50):
        udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        dns_port = udp.server_address[1]
        try:
            tcp = socketserver.ThreadingTCPServer(("127.0.0.1", dns_port), Tcp)
            break
        except OSError:
            udp.server_close()
    else:
        raise SystemExit("no port free for both UDP and TCP")
    for server in (udp, tcp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return dns_port
