#!/usr/bin/env python3
"""Memory per idle HTTP/1.1 keep-alive (or HTTP/2) client of a running proxy, by RSS.

    bench/http_idle.py PORT PER_BATCH BATCHES PID WAIT_S [--tls] [--h2]

Opens BATCHES batches of PER_BATCH client connections to PORT; each client sends one GET and
reads its whole response (Content-Length), then stays idle with its connection open. After
each batch it waits WAIT_S seconds and prints the RSS growth of process PID since the start,
per client so far (the upstream pool's connections included, which stay bounded by the
backend's concurrency). At the end every client sends another GET and must get a 200 on the
same connection. Batches, because memory a process frees goes back to the system only as it
goes on allocating. With `--tls` the clients speak HTTPS (HTTP/1.1 by ALPN, the certificate
not verified: a test certificate on loopback). With `--h2` the clients speak HTTP/2 (h2c with
prior knowledge, or ALPN `h2` with `--tls`), one request per stream, with a minimal client
written here (no library): the preface, an empty SETTINGS, and a GET as literal fields.
"""
import socket
import ssl
import sys
import time

port, n, batches, pid, wait = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                               int(sys.argv[4]), float(sys.argv[5]))
REQ = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"
H2 = "--h2" in sys.argv[6:]
TLS = None
if "--tls" in sys.argv[6:]:
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    TLS.check_hostname = False
    TLS.verify_mode = ssl.CERT_NONE
    TLS.set_alpn_protocols(["h2" if H2 else "http/1.1"])


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return bytes([n >> 16, (n >> 8) & 255, n & 255, kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_get(stream):
    """HEADERS (END_STREAM, END_HEADERS) for GET / as literals without indexing."""
    block = b""
    for k, v in ((b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"idle"), (b":path", b"/")):
        block += bytes([0, len(k)]) + k + bytes([len(v)]) + v
    return frame(1, 0x5, stream, block)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)


def h2_response(s, stream, pending):
    """Reads frames until `stream` ends; acks the server's SETTINGS; returns its :status
    block's first byte as a status line (0x88 is 200 from the static table)."""
    status = None
    while True:
        while len(pending[0]) < 9 or len(pending[0]) < 9 + int.from_bytes(pending[0][:3], "big"):
            c = s.recv(65536)
            if not c:
                raise SystemExit("connection closed before a response")
            pending[0] += c
        n = int.from_bytes(pending[0][:3], "big")
        kind, flags = pending[0][3], pending[0][4]
        sid = int.from_bytes(pending[0][5:9], "big") & 0x7FFFFFFF
        payload, pending[0] = pending[0][9:9 + n], pending[0][9 + n:]
        if kind == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0))
        if sid != stream:
            continue
        if kind == 1 and status is None:
            # A connection's first block starts with a table size update (0x20).
            status = b"HTTP/2 200" if payload.lstrip(b"\x20")[:1] == b"\x88" else b"HTTP/2 other"
        if kind == 3 or kind in (0, 1) and flags & 1:
            return status or b"HTTP/2 reset"


def connect():
    s = socket.create_connection(("127.0.0.1", port))
    return TLS.wrap_socket(s, server_hostname="localhost") if TLS else s


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


def response(s):
    d = b""
    while b"\r\n\r\n" not in d:
        c = s.recv(4096)
        if not c:
            raise SystemExit("connection closed before a response")
        d += c
    head, body = d.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += s.recv(4096)
    return head.split(b"\r\n")[0]


socks, base = [], rss_kib()
pending = {}
for b in range(batches):
    batch = []
    for i in range(n):
        s = connect()
        if H2:
            pending[s] = [b""]
            s.sendall(PREFACE + h2_get(1))
        else:
            s.sendall(REQ)
        batch.append(s)
    for s in batch:
        h2_response(s, 1, pending[s]) if H2 else response(s)
    socks += batch
    time.sleep(wait)
    grew = rss_kib() - base
    print(f"{len(socks)} idle clients: RSS +{grew} KiB, {grew * 1024 / len(socks):.0f} bytes each",
          flush=True)
bad = 0
for s in socks:
    s.sendall(h2_get(3) if H2 else REQ)
for s in socks:
    line = h2_response(s, 3, pending[s]) if H2 else response(s)
    if not line.endswith(b" 200") and not line.startswith(b"HTTP/1.1 200"):
        bad += 1
print(f"after idling: {len(socks) - bad} of {len(socks)} clients answered 200 on the same connection")
