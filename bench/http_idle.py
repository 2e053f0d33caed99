#!/usr/bin/env python3
"""Memory per idle HTTP/1.1 keep-alive client of a running proxy, by RSS.

    bench/http_idle.py PORT PER_BATCH BATCHES PID WAIT_S [--tls]

Opens BATCHES batches of PER_BATCH client connections to PORT; each client sends one GET and
reads its whole response (Content-Length), then stays idle with its connection open. After
each batch it waits WAIT_S seconds and prints the RSS growth of process PID since the start,
per client so far (the upstream pool's connections included, which stay bounded by the
backend's concurrency). At the end every client sends another GET and must get a 200 on the
same connection. Batches, because memory a process frees goes back to the system only as it
goes on allocating. With `--tls` the clients speak HTTPS (HTTP/1.1 by ALPN, the certificate
not verified: a test certificate on loopback).
"""
import socket
import ssl
import sys
import time

port, n, batches, pid, wait = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                               int(sys.argv[4]), float(sys.argv[5]))
REQ = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"
TLS = None
if "--tls" in sys.argv[6:]:
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    TLS.check_hostname = False
    TLS.verify_mode = ssl.CERT_NONE
    TLS.set_alpn_protocols(["http/1.1"])


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
for b in range(batches):
    batch = []
    for i in range(n):
        s = connect()
        s.sendall(REQ)
        batch.append(s)
    for s in batch:
        response(s)
    socks += batch
    time.sleep(wait)
    grew = rss_kib() - base
    print(f"{len(socks)} idle clients: RSS +{grew} KiB, {grew * 1024 / len(socks):.0f} bytes each",
          flush=True)
bad = 0
for s in socks:
    s.sendall(REQ)
for s in socks:
    if not response(s).startswith(b"HTTP/1.1 200"):
        bad += 1
print(f"after idling: {len(socks) - bad} of {len(socks)} clients answered 200 on the same connection")
