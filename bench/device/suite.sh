#!/usr/bin/env bash
# The benchmarks as run on a 16-CPU machine from a bundle (bench/device/bundle.sh), each proxy
# with CPUs of its own and the load generators and backends on others, so that the proxy,
# not the client, is what saturates:
#   CPUs 0-3 (0 for one-worker runs)  the proxy under test (corelane, HAProxy, nginx, twemproxy)
#   CPUs 4-9                          backends: nginx (6 workers) or redis/memcached servers
#   CPUs 10-15 (8-15 for redis)       load generators (6 wrk/h2load threads; 2 or 4 redis-benchmark
#                                     processes)
#
#   bench/device/suite.sh BUNDLE_DIR [tcp] [tcp5] [http] [httpprof] [redis] [redis4] [health] [reload] ...
#
# (reload has not run on the device machine yet; bench/mysql.sh is not part of the suite: it
# needs MariaDB, which the bundle does not carry.)
#
# Summaries are copied to $RESULTS (default bench/out/device/) as <name>.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/bench/device/env.sh" "$1"
shift
RESULTS=${RESULTS:-$ROOT/bench/out/device}
mkdir -p "$RESULTS"
{ nproc; grep -m1 'model name' /proc/cpuinfo; uname -r; } > "$RESULTS/machine.txt"
W4=(--workers 4 --proxy-cpus 0-3 --backend-cpus 4-9 --backend-workers 6 --load-cpus 10-15 --threads 6 --conns 256)
for b in "$@"; do
  echo "=== $b $(date +%T)" >&2
  case $b in
    tcp) "$ROOT/bench/tcp.sh" --no-build "${W4[@]}" --rounds 3 --duration 8 --bulk-mib 1024 --idle-conns 0 ;;
    http) "$ROOT/bench/http.sh" --no-build "${W4[@]}" --rounds 3 --duration 6 ;;
    # One round with each proxy sampled by perf (needs perf in the bundle: bundle.sh DIR --perf).
    httpprof) "$ROOT/bench/http.sh" --no-build "${W4[@]}" --rounds 1 --duration 6 --profile
      # One file: a device run brings back only a few files.
      tar cf "$RESULTS/perf.tar" -C "$ROOT/bench/out/http" $(cd "$ROOT/bench/out/http" && ls perf-*.txt) ;;
    redis) "$ROOT/bench/redis.sh" --no-build --workers 1 --proxy-cpus 0 --backend-cpus 4-6 --load-cpus 8-15 \
      --threads 2 --rounds 3 --clients 50 --requests 400000 --requests-p16 4000000 --keys 100000 --mc-requests 200000 ;;
    # All workers: corelane with 4 (twemproxy is one process by design; it gets the same CPUs).
    redis4) "$ROOT/bench/redis.sh" --no-build --workers 4 --proxy-cpus 0-3 --backend-cpus 4-6 --load-cpus 8-15 \
      --threads 4 --rounds 3 --clients 100 --requests 400000 --requests-p16 4000000 --keys 100000 --no-memcache ;;
    tcp5) "$ROOT/bench/tcp.sh" --no-build "${W4[@]}" --rounds 5 --duration 8 --bulk-mib 1024 --idle-conns 0 ;;
    health) "$ROOT/bench/health.sh" --no-build --proxy-cpus 0 --control-core 1 --backend-cpus 4-9 --backend-workers 6 \
      --load-cpus 10-15 --threads 6 --conns 256 --rounds 3 --duration 6 ;;
    reload) "$ROOT/bench/reload.sh" --no-build --proxy-cpus 0 --backend-cpus 4-9 --backend-workers 6 --load-cpus 10-15 \
      --threads 6 --conns 256 --reloads 100 --rounds 2 --duration 20 ;;
    *) echo "unknown benchmark $b" >&2; exit 2 ;;
  esac
  d=${b%[0-9]}; d=${d%prof}
  cp "$ROOT/bench/out/$d/summary.md" "$RESULTS/$b.md" 2>/dev/null || true
  cp "$ROOT/bench/out/$d/raw.tsv" "$RESULTS/$b.tsv" 2>/dev/null || true
done
