#!/usr/bin/env python3
"""Memory per idle Redis client of a running proxy, by RSS.

    bench/redis_idle.py PORT PER_BATCH BATCHES PID WAIT_S

Opens BATCHES batches of PER_BATCH client connections to PORT; each client sends one SET and
reads its reply, then stays idle. After each batch it waits WAIT_S seconds (longer than
corelane's `park_after` to see parking) and prints the RSS growth of process PID since the
start, per client so far. At the end every client sends PING and must get PONG. Batches,
because memory a process frees goes back to the system only as it goes on allocating.
"""
import socket
import sys
import time

port, n, batches, pid, wait = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                               int(sys.argv[4]), float(sys.argv[5]))


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


socks, base, out = [], rss_kib(), []
for b in range(batches):
    batch = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"*3\r\n$3\r\nSET\r\n$6\r\nidle:%d\r\n$1\r\nv\r\n" % (i % 10))
        batch.append(s)
    for s in batch:
        d = b""
        while not d.endswith(b"\r\n"):
            d += s.recv(100)
    socks += batch
    time.sleep(wait)
    out.append((rss_kib() - base) * 1024 // len(socks))
print("RSS growth per client after each batch (bytes):", " / ".join(map(str, out)))
for s in socks:
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
ok = sum(1 for s in socks if s.recv(100).startswith(b"+PONG"))
print(f"answered after idling: {ok} of {len(socks)}")
