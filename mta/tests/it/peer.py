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
import time

import peer_dns
import peer_smtp
import peer_sts

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

port = peer_smtp.start(opts)
print("SMTP %d" % port, flush=True)
if opts.zone:
    print("DNS %d" % peer_dns.start_zone(opts.zone), flush=True)
if opts.signed_zone:
    print("DNS %d" % peer_dns.start_signed(opts.signed_zone, port, opts.out, opts.tamper), flush=True)
if opts.sts:
    print("HTTPS %d" % peer_sts.start(*opts.sts, opts.out), flush=True)

# Until the test kills us.
while True:
    time.sleep(3600)
