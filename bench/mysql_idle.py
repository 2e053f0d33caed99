#!/usr/bin/env python3
"""Memory of idle MySQL sessions in corelane: opens N sessions through a mysql listener
(PyMySQL, autocommit), optionally has each run one read (which opens its replica
connection), leaves them idle, and prints corelane's RSS growth per session.

    bench/mysql_idle.py PID PORT N login|read

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
    warm = [session(port, mode) for _ in range(50)]
    time.sleep(0.5)
    before = rss_kib(pid)
    conns = [session(port, mode) for _ in range(n)]
    time.sleep(1)
    after = rss_kib(pid)
    print(f"{mode}\t{n}\t{(after - before) * 1024 / n:.0f}")
    for c in conns + warm:
        c.close()


main()
