"""Independent peers for the outbound tests: an SMTP or LMTP server
(aiosmtpd) and a DNS server (dnslib), on loopback ports chosen by the OS.

Usage: peer.py --out DIR [--lmtp] [--tls CERT KEY [--implicit-tls]]
               [--auth USER:PASS]
               [--zone FILE | --signed-zone FILE [--tamper]]
               [--sts POLICY CERT KEY]
Prints "SMTP <port>" (and "DNS <port>", "HTTPS <port>") when ready. With
--sts, an HTTPS server (Python's http.server) serves the file POLICY as
/.well-known/mta-sts.txt and counts the fetches in DIR/sts-fetches.
With --signed-zone, the zone (the root zone, holding every name; "{SMTP_PORT}"
is replaced by the SMTP port) is DNSSEC-signed with a new ECDSA key by
dnspython, served with RRSIGs and NSEC denials, and its key is written to
DIR/anchor as a trust anchor. Every message received
is written to DIR as <n>.json (envelope, TLS, login) and <n>.eml.
Recipients starting with "reject" get 550 5.1.1, with "defer" 451 4.3.0 the
first time and 250 after that.
"""

import argparse
import asyncio
import json
import os
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

args = argparse.ArgumentParser()
args.add_argument("--out", required=True)
args.add_argument("--lmtp", action="store_true")
args.add_argument("--tls", nargs=2)
args.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (port 465 style)")
args.add_argument("--auth")
args.add_argument("--zone")
args.add_argument("--signed-zone")
args.add_argument("--tamper", action="store_true", help="change TLSA records after signing")
args.add_argument("--sts", nargs=3)
opts = args.parse_args()

deferred_once = set()
# Connections open now, the most seen at once and all so far (written to
# DIR/max-connections and DIR/connections; aiosmtpd's controller makes one
# itself when it starts).
open_connections = [0, 0, 0]
open_peers = set()
counter = [0]
lock = threading.Lock()


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: no such user here" % address
        if local.startswith("defer") and address not in deferred_once:
            deferred_once.add(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.startswith("slow") for r in envelope.rcpt_tos):
            await asyncio.sleep(0.3)
        with lock:
            counter[0] += 1
            n = counter[0]
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None or opts.implicit_tls,
            "login": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
            "peer": list(session.peer),
        }
        with open(os.path.join(opts.out, "%d.eml" % n), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        # The .json appears last and whole: readers take it as "received".
        tmp = os.path.join(opts.out, "%d.json.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(opts.out, "%d.json" % n))
        if opts.lmtp:
            return "\r\n".join("250 2.0.0 <%s> delivered" % r for r in envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued as %d" % n


def authenticator(server, session, envelope, mechanism, auth_data):
    user, password = opts.auth.split(":", 1)
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def counting(base):
    # connection_made runs again for the TLS transport after STARTTLS: a
    # connection is known by its peer address.
    class Counting(base):
        def connection_made(self, transport):
            peer = transport.get_extra_info("peername")
            with lock:
                if peer not in open_peers:
                    open_peers.add(peer)
                    open_connections[1] = max(open_connections[1], len(open_peers))
                    open_connections[2] += 1
                    with open(os.path.join(opts.out, "max-connections"), "w") as f:
                        f.write(str(open_connections[1]))
                    with open(os.path.join(opts.out, "connections"), "w") as f:
                        f.write(str(open_connections[2]))
            self._counted_peer = peer
            super().connection_made(transport)

        def connection_lost(self, exc):
            with lock:
                open_peers.discard(self._counted_peer)
            super().connection_lost(exc)

    return Counting


class Peer(Controller):
    def factory(self):
        kwargs = {}
        if opts.tls and not opts.implicit_tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*opts.tls)
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = False
        if opts.auth:
            kwargs["authenticator"] = authenticator
            kwargs["auth_required"] = True
            # aiosmtpd only knows STARTTLS as TLS; implicit TLS is TLS too.
            kwargs["auth_require_tls"] = not opts.implicit_tls
        if opts.lmtp:
            return counting(LMTP)(self.handler, **kwargs)
        return counting(SMTP)(self.handler, hostname="peer.example", **kwargs)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
server_tls = None
if opts.implicit_tls:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*opts.tls)
controller = Peer(Handler(), hostname="127.0.0.1", port=port, ssl_context=server_tls)
controller.start()
print("SMTP %d" % port, flush=True)

if opts.zone:
    from dnslib.server import DNSLogger, DNSServer
    from dnslib.zoneresolver import ZoneResolver

    with open(opts.zone) as f:
        resolver = ZoneResolver(f.read(), glob=False)
    quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
    dns = DNSServer(resolver, port=0, address="127.0.0.1", logger=quiet)
    dns.start_thread()
    print("DNS %d" % dns.server.server_address[1], flush=True)

if opts.signed_zone:
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

    with open(opts.signed_zone) as f:
        text = f.read().replace("{SMTP_PORT}", str(port))
    zone = dns.zone.from_text(text, origin=dns.name.root, relativize=False)
    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
    now = int(time.time())
    dns.dnssec.sign_zone(zone, keys=[(key, dnskey)], inception=now - 3600, expiration=now + 86400)
    if opts.tamper:
        # As an attacker on the path would: the signatures no longer match.
        import dns.rdata

        for node in zone.nodes.values():
            rds = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TLSA)
            if rds is not None:
                forged = dns.rdata.from_text("IN", "TLSA", "3 1 1 " + "ab" * 32)
                rds.clear()
                rds.add(forged)
    with open(os.path.join(opts.out, "anchor"), "w") as f:
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

    udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
    dns_port = udp.server_address[1]
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", dns_port), Tcp)
    for server in (udp, tcp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("DNS %d" % dns_port, flush=True)

if opts.sts:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    policy_file, cert, key = opts.sts
    fetches = [0]

    class Policy(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/.well-known/mta-sts.txt":
                self.send_error(404)
                return
            with open(policy_file, "rb") as f:
                body = f.read()
            with lock:
                fetches[0] += 1
                with open(os.path.join(opts.out, "sts-fetches"), "w") as f:
                    f.write(str(fetches[0]))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    https = ThreadingHTTPServer(("127.0.0.1", 0), Policy)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    https.socket = context.wrap_socket(https.socket, server_side=True)
    threading.Thread(target=https.serve_forever, daemon=True).start()
    print("HTTPS %d" % https.server_address[1], flush=True)

# Until the test kills us.
while True:
    time.sleep(3600)
