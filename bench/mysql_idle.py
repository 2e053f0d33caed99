#!/usr/bin/env python3
"""Memory per idle MySQL session of a running corelane, by RSS.

    bench/mysql_idle.py PID PORT PER_BATCH BATCHES login|read WAIT_S [CA]

Opens BATCHES batches of PER_BATCH sessions through the mysql listener on PORT (PyMySQL,
autocommit); with `read` each session runs one read (which opens its replica connection).
After each batch it waits WAIT_S seconds (longer than the listener's `park_after` to see
parking) and records the RSS growth of process PID since the start, per session so far.
Batches, because memory a process frees goes back to the system only as it goes on
allocating: what parked sessions freed serves the next batch. At the end every session runs
one statement. With CA (a PEM file), sessions use TLS (the listener's `tls`), checked against
CA without a host name check.

Output (one line, tab-separated): mode, sessions, the growth per session after each batch
(bytes, " / "-separated), sessions that answered afterwards.
Warms up with 50 sessions first so that one-time allocations are not counted.
"""
import sys
import time

import pymysql


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise SystemExit(f"no process {pid}")


def session(port, mode, ca=None):
    tls = {"ca": ca, "check_hostname": False} if ca else None
    c = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app",
                        database="shop", autocommit=True, ssl=tls)
    if mode == "read":
        c.cursor().execute("SELECT @@server_id")
    return c


def main():
    pid, port, n, batches, mode, wait = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                         int(sys.argv[4]), sys.argv[5], float(sys.argv[6]))
    ca = sys.argv[7] if len(sys.argv) > 7 else None
    warm = [session(port, mode, ca) for _ in range(50)]
    time.sleep(0.5)
    base = rss_kib(pid)
    conns, growth = [], []
    for _ in range(batches):
        conns += [session(port, mode, ca) for _ in range(n)]
        time.sleep(wait)
        growth.append((rss_kib(pid) - base) * 1024 // len(conns))
    answered = 0
    for c in conns:
        try:
            c.cursor().execute("SELECT 1")
            answered += 1
        except pymysql.MySQLError:
            pass
    print(f"{mode}\t{len(conns)}\t{' / '.join(map(str, growth))}\t{answered}")
    for c in conns + warm:
        c.close()


main()
