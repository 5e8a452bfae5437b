"""The RFC 7208 SPF test suite (pyspf 2.0.14's test/rfc7208-tests.yml,
fetched by `cargo xtask test`) for mta/tests/it/spf_suite.rs.

  spf_suite.py list YML          prints the scenarios' tests as JSON
  spf_suite.py serve YML N       serves scenario N's zonedata over DNS
                                 (UDP and TCP on 127.0.0.1), prints the
                                 port, and runs until killed

The zone data is served as the suite's own driver (pyspf's testspf.py)
serves it: an SPF entry is also a TXT record unless the name has TXT
entries of its own (TXT: NONE stands for none); a TXT value that is a
list is one record of several strings; TIMEOUT (for a whole name, or as
a value) and names starting with "error." make the server fail
(SERVFAIL, which resolvers report as a temporary error, as a time-out
would be, without waiting); with records of its own, a TIMEOUT name
answers the types it has and fails the others."""

import json
import sys

import yaml
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


def scenarios(path):
    with open(path, "rb") as f:
        return list(yaml.safe_load_all(f))


def as_list(result):
    return result if isinstance(result, list) else [result]


def listing(path):
    out = []
    for n, doc in enumerate(scenarios(path)):
        tests = {}
        for name, t in doc["tests"].items():
            tests[name] = {
                "host": str(t["host"]),
                "mailfrom": t.get("mailfrom", "") or "",
                "helo": t.get("helo", "") or "",
                "result": as_list(t["result"]),
                "explanation": t.get("explanation"),
                "spec": str(t.get("spec", "")),
            }
        out.append({"index": n, "description": doc["description"], "tests": tests})
    print(json.dumps(out))


def text_of(value):
    """A TXT value as dnslib wants it: a list of byte strings."""
    parts = value if isinstance(value, list) else [value]
    out = []
    for p in parts:
        if isinstance(p, bytes):
            out.append(p)
        else:
            # The suite writes raw bytes as \\xNN escapes in YAML strings.
            out.append(str(p).encode("latin-1", "backslashreplace"))
    return out


class Zone(BaseResolver):
    def __init__(self, data):
        self.records = {}
        self.timeout = set()
        for name, entries in (data or {}).items():
            key = name.lower().rstrip(".")
            recs = self.records.setdefault(key, [])
            has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
            for e in entries:
                if e == "TIMEOUT":
                    self.timeout.add(key)
                    continue
                (kind, value), = e.items()
                if kind == "TIMEOUT":
                    self.timeout.add(key)
                elif kind == "SPF":
                    recs.append(("SPF", value))
                    if not has_txt:
                        recs.append(("TXT", value))
                elif kind == "TXT" and value == "NONE":
                    continue
                else:
                    recs.append((kind, value))

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        # TIMEOUT: the name's other types time out; the types it lists
        # answer (as pyspf's driver has it).
        listed = any(kind == qtype or kind == "CNAME" for kind, _ in self.records.get(qname, []))
        if (qname in self.timeout and not listed) or qname.startswith("error."):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if qname not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for kind, value in self.records[qname]:
            rr = None
            if kind == "CNAME" and qtype != "CNAME":
                rr = RR(request.q.qname, QTYPE.CNAME, rdata=CNAME(value), ttl=60)
            elif kind != qtype:
                continue
            elif kind == "A":
                rr = RR(request.q.qname, QTYPE.A, rdata=A(value), ttl=60)
            elif kind == "AAAA":
                rr = RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(value), ttl=60)
            elif kind == "MX":
                rr = RR(request.q.qname, QTYPE.MX, rdata=MX(value[1], value[0]), ttl=60)
            elif kind == "PTR":
                rr = RR(request.q.qname, QTYPE.PTR, rdata=PTR(value), ttl=60)
            elif kind == "CNAME":
                rr = RR(request.q.qname, QTYPE.CNAME, rdata=CNAME(value), ttl=60)
            elif kind in ("TXT", "SPF"):
                rr = RR(request.q.qname, getattr(QTYPE, kind), rdata=TXT(text_of(value)), ttl=60)
            if rr is not None:
                reply.add_answer(rr)
        return reply


def serve(path, n):
    doc = scenarios(path)[n]
    quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
    zone = Zone(doc.get("zonedata"))
    # UDP picks a free port; TCP needs the same number, which another
    # program may hold (tests run in parallel): then both try again.
    for attempt in range(100):
        udp = DNSServer(zone, port=0, address="127.0.0.1", logger=quiet)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(zone, port=port, address="127.0.0.1", tcp=True, logger=quiet)
            break
        except OSError:
            udp.server.server_close()
    else:
        sys.exit("no port free for both UDP and TCP after 100 tries")
    udp.start_thread()
    tcp.start_thread()
    print(port, flush=True)
    sys.stdin.read()  # until the test closes it (or is gone)


if __name__ == "__main__":
    if sys.argv[1] == "list":
        listing(sys.argv[2])
    else:
        serve(sys.argv[2], int(sys.argv[3]))
