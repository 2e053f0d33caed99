#!/usr/bin/env python3
"""Turns bench/tcp.sh's raw.tsv into the markdown table recorded in bench/RESULTS.md.

Medians over rounds; ratios against the direct connection and against HAProxy.
"""
import statistics
import sys
from collections import defaultdict

raw, cmdline, workers = sys.argv[1], sys.argv[2], sys.argv[3]
values = defaultdict(list)
with open(raw) as f:
    next(f)
    for line in f:
        _, target, kind, value = line.rstrip("\n").split("\t")
        if value:
            values[(target, kind)].append(float(value))


def med(target, kind):
    v = values.get((target, kind))
    return statistics.median(v) if v else None


def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"


rounds = len(values.get(("direct", "rps"), []))
print(f"command: `{cmdline}`  ({rounds} rounds, {workers} worker(s) per proxy)\n")
print("| target | req/s (median) | vs direct | vs haproxy | p99 ms | proxy CPU µs/req | bulk GiB/s | bulk vs direct | bulk vs haproxy | proxy CPU s/GiB | idle bytes/conn |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
d_rps, h_rps = med("direct", "rps"), med("haproxy", "rps")
d_bulk, h_bulk = med("direct", "bulk_gib_s"), med("haproxy", "bulk_gib_s")
for t in ["direct", "corelane", "haproxy", "nginx"]:
    rps, bulk = med(t, "rps"), med(t, "bulk_gib_s")
    print(
        f"| {t} | {fmt(rps)} | {ratio(rps, d_rps)} | {ratio(rps, h_rps)} | {fmt(med(t, 'p99_ms'), 2)} "
        f"| {fmt(med(t, 'cpu_us_per_req'), 2)} | {fmt(bulk, 2)} | {ratio(bulk, d_bulk)} | {ratio(bulk, h_bulk)} "
        f"| {fmt(med(t, 'bulk_cpu_s_per_gib'), 2)} "
        f"| {fmt(med(t, 'idle_bytes_per_conn'))} |"
    )
print()
for t in ["corelane", "haproxy", "nginx"]:
    rs = values.get((t, "rps"), [])
    print(f"- {t} req/s per round: {', '.join(f'{x:,.0f}' for x in rs)}")
