"""The SMTP/LMTP peer (aiosmtpd) of peer.py: accepts mail and writes each
message to OUT as <n>.eml and <n>.json; counts connections. See peer.py."""

import asyncio
import json
import os
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

opts = None
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



def start(options):
    """Starts the server on a free port; returns the port."""
    global opts
    opts = options
    server_tls = None
    if opts.implicit_tls:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(*opts.tls)
    # The free port may be taken by another test before we bind it: try
    # another. A loaded machine may take a while to run the server thread.
    for attempt in range(5):
        port = free_port()
        controller = Peer(
            Handler(), hostname="127.0.0.1", port=port, ssl_context=server_tls, ready_timeout=60
        )
        try:
            controller.start()
            return port
        except OSError:
            if attempt == 4:
                raise
            try:
                controller.stop()
            except Exception:
                pass
