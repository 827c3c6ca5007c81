#!/usr/bin/env python3
"""Writes the checked-in seed corpora (fuzz/corpus/TARGET/NAME) from the cases of the unit-test
tables (src/policy_tests.rs, src/domain.rs, src/mx.rs) and shared/RFC.md's examples. Run it
again after adding a case; the files are small and named after their content's hash."""
import hashlib, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "corpus")

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)

sts = ["v=STSv1; id=20160831085700Z;", "v=STSv1;id=abc", "v=STSv1 ; id=abc ;", "v=STSv1;\tid=abc",
       "v=STSv1; id=abc; ext=x.y-z;", "v=STSv1; ext=1; id=abc", "v=STSv1; id=first; id=second",
       "v=STSv1; id=" + "a" * 33, "v=STSv1; id=a-b", "v=STSv1; id=", "v=STSv1; id = abc", "v=STSv1;",
       "v=STSv1", "v=STSv1; id=abc;; x=y", "v=STSv1; id=abc; bad=a=b", "v=stsv1; id=abc",
       "v=STSv1;        id=20160831085700Z   ", "v=STSv1; id=abc\0v=STSv1; id=def",
       "v=STSv1; id=abc\0v=spf1 -all\0hello", "v=spf1 -all"]
for s in sts:
    put("sts_record", s)

policies = [
    "version: STSv1\nmode: testing\nmx: mx1.example.com\nmx: mx2.example.com\nmx: mx.backup-example.com\nmax_age: 604800\n",
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n",
    "\ufeffversion: STSv1\nmode: none\nmax_age: 60\n",
    "version: STSv1\nmode: enforce\nmx: host.example.\nmax_age: 99999999999\n",
    "version: STSv1\nmode: Enforce\nmx: a.*.example.com\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmx:\nmax_age: 0\nunknown_field: value\n",
    "version: STSv1\nversion: STSv2\nmode: testing\nmode: enforce\nmx: xn--bcher-kva.example\nmax_age: 0086400\n",
]
for p in policies:
    put("policy", p)

tlsrpt = ["v=TLSRPTv1; rua=mailto:tlsrpt@example.com", "v=TLSRPTv1;rua=https://reports.example.com/tlsrpt",
          "v=TLSRPTv1; rua=mailto:a@example.com, https://r.example/x ;",
          "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com",
          "v=TLSRPTv1; rua=ftp://x.example/, mailto:a@example.com", "v=TLSRPTv1; rua=MAILTO:a@example.com",
          "v=TLSRPTv1; rua=mailto:a@example.com!10m", "v=TLSRPTv1; rua=mailto:a@example.com%2110m",
          "v=TLSRPTv1; ext=1", "v=TLSRPTv1; rua=mailto:a@example.com\0v=TLSRPTv1; rua=mailto:b@example.com"]
for t in tlsrpt:
    put("tlsrpt", t)

mx = [("mx.example.com", "mx.example.com"), ("mx.example.com", "MX.Example.COM."),
      ("*.example.com", "a.example.com"), ("*.example.com", "example.com"),
      ("*.example.com", "a.b.example.com"), ("mx.example.com", "mx.example.com.attacker.net"),
      ("*.xn--bcher-kva.example", "mx.bücher.example"), ("*.example.com", ".example.com")]
for p, h in mx:
    put("mx_match", p + "\0" + h)

domains = ["Example.COM", "example.com.", "mx-1.example.com", "xn--bcher-kva.example", "bücher.example",
           "[192.0.2.1]", "[IPv6:2001:db8::1]", "", ".", "example..com", "-a.example.com", "a_b.example.com",
           "*.example.com", "example.com:25", "a\0b", "a" * 63 + ".com", ".".join(["ü" * 10] * 13)]
for d in domains:
    put("domain", d)

# DNS responses to "_mta-sts.example.com." (id 0x1234): a TXT answer, a CNAME chain, NXDOMAIN.
def name(n):
    out = b""
    for label in n.strip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"

def rr(owner, rtype, rdata, ttl=300):
    return name(owner) + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata

def response(rcode, answers, qtype=16):
    head = struct.pack(">HHHHHH", 0x1234, 0x8180 | rcode, 1, len(answers), 0, 0)
    return head + name("_mta-sts.example.com") + struct.pack(">HH", qtype, 1) + b"".join(answers)

txt = lambda s: bytes([len(s)]) + s.encode()
q = "_mta-sts.example.com"
put("dns_answer", b"\0" + response(0, [rr(q, 16, txt("v=STSv1; id=1"))]))
put("dns_answer", b"\0" + response(0, [rr(q, 5, name("_mta-sts.provider.net")),
                                       rr("_mta-sts.provider.net", 16, txt("v=STSv1; id=2"))]))
put("dns_answer", b"\0" + response(3, []))
put("dns_answer", b"\1" + response(0, [rr(q, 15, struct.pack(">H", 10) + name("mx.example.com"))], qtype=15))
put("dns_answer", b"\0" + response(0, [rr(q, 5, name("a.example")), rr("a.example", 5, name(q))]))
# A compression pointer to itself.
put("dns_answer", b"\0" + struct.pack(">HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + name(q) + b"\0\x10\0\x01" + b"\xc0\x0c\0\x10")

def entry(kind, mode, dane, cause, times, strings):
    out = bytes([ord("S"), kind, mode, dane, cause]) + b"".join(struct.pack("<Q", t) for t in times)
    for s in strings:
        s = s.encode()
        out += struct.pack("<I", len(s)) + s
    return out

put("entry", entry(1, 1, 0, 0, [1700000000 + i for i in range(8)],
                   ["id1", "mx.example.com:*.example.net", "tls@example.com", "version: STSv1\n", "", ""]))
put("entry", entry(2, 0, 1, 1, [0] * 8, ["", "", "", "", "no _mta-sts record", ""]))
put("entry", entry(3, 0, 0, 9, [5] * 8, ["id2", "", "", "", "fetch failed", "id2"]))

with open(os.path.join(here, "..", "..", "exim-config", "mta-sts.toml"), "rb") as f:
    put("config", f.read())
for c in ['fetch_failure = "fail"\nrecheck_interval = 0\n', 'dane = maybe\n', 'database = "relative"\n',
          'unknown = 1\n', 'cold_deadline = 0\n', 'state = "/a"\ndatabase = "/a"\n']:
    put("config", c)
