#!/usr/bin/env python3
"""Turns bench/redis.sh's raw.tsv into a markdown table (the form of bench/RESULTS.md).

Medians over rounds; req/s ratios corelane/twemproxy and against the direct connection; proxy
CPU per request for both proxies. Lists every run whose load generator wrote to stderr.
"""
import glob
import os
import statistics
import sys
from collections import defaultdict

out, cmdline, workers = sys.argv[1], sys.argv[2], sys.argv[3]
TESTS = [
    ("set_p1", "redis SET -P 1"),
    ("get_p1", "redis GET -P 1"),
    ("set_p16", "redis SET -P 16"),
    ("get_p16", "redis GET -P 16"),
    ("mget10_p1", "redis MGET 10 keys -P 1"),
    ("mc_set", "memcache set (memcslap)"),
    ("mc_get", "memcache get (memcslap)"),
]

values = defaultdict(list)
with open(os.path.join(out, "raw.tsv")) as f:
    next(f)
    for line in f:
        _, test, target, kind, value = line.rstrip("\n").split("\t")
        if value:
            values[(test, target, kind)].append(float(value))


def med(test, target, kind):
    v = values.get((test, target, kind))
    return statistics.median(v) if v else None


def fmt(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"


tests = [(t, label) for t, label in TESTS if any(k[0] == t for k in values)]
rounds = max((len(values.get((t, "direct", "rps"), [])) for t, _ in tests), default=0)
print(
    f"command: `{cmdline}`  ({rounds} rounds; corelane {workers} worker(s), "
    "twemproxy 1 process)\n"
)
print(
    "| test | direct req/s | twemproxy req/s | corelane req/s | corelane / twemproxy "
    "| corelane / direct | twemproxy CPU µs/req | corelane CPU µs/req "
    "| CPU twemproxy / corelane | p99 ms twemproxy | p99 ms corelane |"
)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for t, label in tests:
    d, tw, cl = (med(t, x, "rps") for x in ("direct", "twemproxy", "corelane"))
    cpu_tw, cpu_cl = med(t, "twemproxy", "cpu_us_per_req"), med(t, "corelane", "cpu_us_per_req")
    print(
        f"| {label} | {fmt(d)} | {fmt(tw)} | {fmt(cl)} | {ratio(cl, tw)} | {ratio(cl, d)} "
        f"| {fmt(cpu_tw, 2)} | {fmt(cpu_cl, 2)} | {ratio(cpu_tw, cpu_cl)} "
        f"| {fmt(med(t, 'twemproxy', 'p99_ms'), 2)} | {fmt(med(t, 'corelane', 'p99_ms'), 2)} |"
    )
print()
print("Per round (req/s; proxy CPU µs/req):\n")
print("| test | direct req/s | twemproxy req/s | corelane req/s | twemproxy CPU | corelane CPU |")
print("|---|---|---|---|---|---|")


def series(t, target, kind, digits):
    return " / ".join(f"{x:,.{digits}f}" for x in values.get((t, target, kind), [])) or "-"


for t, label in tests:
    print(
        f"| {label} | {series(t, 'direct', 'rps', 0)} | {series(t, 'twemproxy', 'rps', 0)} "
        f"| {series(t, 'corelane', 'rps', 0)} | {series(t, 'twemproxy', 'cpu_us_per_req', 2)} "
        f"| {series(t, 'corelane', 'cpu_us_per_req', 2)} |"
    )

noisy = []
for path in sorted(glob.glob(os.path.join(out, "*.err"))):
    with open(path, errors="replace") as f:
        text = f.read().strip()
    if text:
        noisy.append((os.path.basename(path), text.splitlines()[0][:160]))
if noisy:
    print(f"\n{len(noisy)} run(s) wrote to stderr (first line of each):\n")
    for name, first in noisy:
        print(f"- `{name}`: {first}")
