"""The MTA-STS policy server of peer.py: HTTPS (Python's http.server)
serving a file as /.well-known/mta-sts.txt, counting the fetches in
OUT/sts-fetches. See peer.py."""

import os
import ssl
import threading

lock = threading.Lock()


def start(policy_file, cert, key, out):
    """Starts the server on a free port; returns the port."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
                with open(os.path.join(out, "sts-fetches"), "w") as f:
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
    return https.server_address[1]
