"""Uses each Python peer the tests need, the way the tests use it.

`cargo xtask doctor` runs `probe.py NAME` for each name below; it prints
nothing and exits 0 when NAME works, or prints what failed and exits 1.
"""

import sys


def dkimpy():
    # Ed25519 signing and verification (dkimpy with PyNaCl), as the DKIM
    # tests verify the mta's signatures.
    import base64

    import dkim
    import nacl.signing

    key = nacl.signing.SigningKey.generate()
    record = ("v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(key.verify_key)).decode()).encode()
    msg = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: probe\r\n\r\nbody\r\n"
    sig = dkim.sign(msg, b"probe", b"example.org", base64.b64encode(bytes(key)),
                    signature_algorithm=b"ed25519-sha256")
    lookup = lambda name, timeout=5: record  # noqa: E731
    assert dkim.verify(sig + msg, dnsfunc=lookup), "a fresh Ed25519 signature did not verify"
    assert not dkim.verify(sig + msg.replace(b"body", b"bodx"), dnsfunc=lookup), "a changed body verified"


def aiosmtpd():
    # The names peer_smtp.py imports: SMTP and LMTP servers with AUTH.
    from aiosmtpd.controller import Controller  # noqa: F401
    from aiosmtpd.lmtp import LMTP  # noqa: F401
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword  # noqa: F401


def dnslib():
    import dnslib

    rr = dnslib.RR.fromZone("a.test. 60 IN MX 10 mx.test.")[0]
    assert str(rr.rdata) == "10 mx.test.", rr


def dnspython():
    # Signing a zone with an ECDSA key and validating the result, as peer_dns.py
    # does for the DANE tests (dnspython's DNSSEC support needs cryptography).
    import time

    import dns.dnssec
    import dns.name
    import dns.rdatatype
    import dns.zone
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    zone = dns.zone.from_text("@ 60 IN SOA ns. h. 1 2 3 4 5\n@ 60 IN NS ns.\n",
                              origin=".", relativize=False)
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
    now = int(time.time())
    dns.dnssec.sign_zone(zone, keys=[(key, dnskey)], inception=now - 60, expiration=now + 3600)
    root = dns.name.root
    dns.dnssec.validate(zone.find_rrset(root, dns.rdatatype.SOA),
                        zone.find_rrset(root, dns.rdatatype.RRSIG, dns.rdatatype.SOA),
                        {root: zone.find_rrset(root, dns.rdatatype.DNSKEY)})


def authres():
    # Parsing an Authentication-Results field as the inbound tests do.
    import authres as ar

    h = ar.AuthenticationResultsHeader.parse(
        "Authentication-Results: mx.test; dkim=pass header.d=a.test; spf=fail smtp.mailfrom=b@a.test")
    assert h.authserv_id == "mx.test", h.authserv_id
    assert [(r.method, r.result) for r in h.results] == [("dkim", "pass"), ("spf", "fail")], h.results


def yaml():
    # Loading YAML documents as the SPF test suite's server does.
    import yaml as y

    docs = list(y.safe_load_all('a: "\\xEF"\n---\nb: [1, "two"]\n'))
    assert docs == [{"a": "\xef"}, {"b": [1, "two"]}], docs


def srslib():
    # Rewriting a sender and reading it back with a secret, as the
    # forwarding tests check our SRS addresses.
    import srslib as s

    srs = s.SRS("secret")
    out = srs.forward("alice@sender.example", "our.example")
    assert out.startswith("SRS0=") and out.endswith("=sender.example=alice@our.example"), out
    assert srs.reverse(out) == "alice@sender.example"


PROBES = {"srslib": srslib, "yaml": yaml, "authres": authres, "dkimpy": dkimpy, "aiosmtpd": aiosmtpd, "dnslib": dnslib, "dnspython": dnspython}

if __name__ == "__main__":
    try:
        PROBES[sys.argv[1]]()
    except Exception as e:  # any failure is the answer
        print(f"{type(e).__name__}: {e}")
        sys.exit(1)
