#!/usr/bin/env python3
"""Memory of idle MySQL sessions in corelane: opens N sessions through a mysql listener
(PyMySQL, autocommit), optionally has each run one read (which opens its replica
connection), leaves them idle, and prints corelane's RSS growth per session 1 s later (still
live) and PARKED s later (past the listener's `park_after`, default 5 s: parked), then has
every session run one statement and prints how many answered.

    bench/mysql_idle.py PID PORT N login|read [PARKED]

Output: mode, N, bytes per session live, bytes per session parked, sessions that answered.
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


def session(port, mode):
    c = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app",
                        database="shop", autocommit=True)
    if mode == "read":
        c.cursor().execute("SELECT @@server_id")
    return c


def main():
    pid, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    parked_after = float(sys.argv[5]) if len(sys.argv) > 5 else 7.0
    warm = [session(port, mode) for _ in range(50)]
    time.sleep(0.5)
    before = rss_kib(pid)
    start = time.monotonic()
    conns = [session(port, mode) for _ in range(n)]
    time.sleep(1)
    live = rss_kib(pid)
    time.sleep(max(0.0, parked_after - (time.monotonic() - start)))
    parked = rss_kib(pid)
    answered = 0
    for c in conns:
        try:
            c.cursor().execute("SELECT 1")
            answered += 1
        except pymysql.MySQLError:
            pass
    per = lambda kib: f"{(kib - before) * 1024 / n:.0f}"
    print(f"{mode}\t{n}\t{per(live)}\t{per(parked)}\t{answered}")
    for c in conns + warm:
        c.close()


main()
