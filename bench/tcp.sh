#!/usr/bin/env bash
# L4 (TCP) benchmark: corelane vs HAProxy (mode tcp) vs nginx (stream) vs a direct connection,
# all in ONE run with rounds interleaved, against the same nginx HTTP backend.
#
#   bench/tcp.sh [--workers N] [--rounds R] [--duration S] [--conns C] [--bulk-mib M]
#                [--idle-conns K] [placement options of bench/lib.sh]
#
# Measures, per target:
#   - wrk keep-alive req/s and p99 latency (small response), median over rounds;
#   - proxy CPU time per request (user+sys from /proc), the efficiency figure that does not
#     depend on which process is the bottleneck;
#   - bulk throughput: curl downloads a M MiB file through each target, every round;
#   - memory per idle client connection: K connections opened (in 4 batches) and left idle,
#     RSS delta / K.
# Ratios are against the direct connection (req/s, bulk) and against HAProxy.
#
# By default the proxy under test is pinned to CPU 1 and wrk, curl and the backend to CPU 0,
# so every proxy gets one whole core and the same neighbours; bench/lib.sh's placement options
# give each group its own CPUs on a larger machine. Each proxy runs with the same number of
# workers/threads/processes. --idle-conns 0 skips the idle-memory measurement.
#
# Needs: wrk, haproxy, nginx with the stream module, curl, python3 (Debian: wrk haproxy
# nginx-light libnginx-mod-stream curl python3). Everything listens on 127.0.0.1 only and stops
# by itself; results go to bench/out/ and the summary table to stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

WORKERS=1 ROUNDS=5 DURATION=10 CONNS=64 BULK_MIB=1024 IDLE_CONNS=4000
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --bulk-mib) BULK_MIB=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    *) common_opt "$@" && shift "$TOOK" || { echo "unknown option $1" >&2; exit 2; } ;;
  esac
done
placement
CMDLINE="bench/tcp.sh --workers $WORKERS --rounds $ROUNDS --duration $DURATION --conns $CONNS --bulk-mib $BULK_MIB --idle-conns $IDLE_CONNS$PLACEMENT"

ulimit -n "$(ulimit -Hn)"
OUT=$ROOT/bench/out/tcp
mkdir -p "$OUT"
rm -f "$OUT"/*.pid "$OUT"/raw.tsv

for tool in wrk haproxy nginx curl python3; do
  command -v $tool >/dev/null || { echo "missing $tool (see the header of this script)" >&2; exit 1; }
done
NGINX_STREAM=$NGINX_MODULES/ngx_stream_module.so
[ -f $NGINX_STREAM ] || { echo "missing $NGINX_STREAM (apt-get install libnginx-mod-stream)" >&2; exit 1; }

BACKEND=127.0.0.1:18080
declare -A PORT=([direct]=18080 [corelane]=7100 [haproxy]=7101 [nginx]=7102)
TARGETS=(direct corelane haproxy nginx)

cleanup() {
  for f in "$OUT"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  rm -f /dev/shm/corelane-bench-big.bin
  sleep 1.5
}
trap cleanup EXIT

# --- the backend: nginx serving a small body at / and a large file at /big ---------------
head -c $((BULK_MIB << 20)) /dev/zero > /dev/shm/corelane-bench-big.bin
cat > "$OUT/backend.conf" <<EOF
worker_processes $BACKEND_WORKERS;
daemon off;
pid $OUT/backend.nginx.pid;
error_log $OUT/backend.err warn;
events { worker_connections 32768; }
http {
  access_log off;
  default_type text/plain;
  sendfile on;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_header_timeout 300s;
  server {
    listen $BACKEND backlog=4096;
    location = / { return 200 "hello, corelane bench\n"; }
    location = /big { alias /dev/shm/corelane-bench-big.bin; }
  }
}
EOF
"${BACKEND_PIN[@]}" nginx -c "$OUT/backend.conf" -e "$OUT/backend.err" & echo $! > "$OUT/backend.pid"

# --- the proxies, same worker count, same backend -----------------------------------------
cat > "$OUT/corelane.toml" <<EOF
workers = $WORKERS
shutdown_timeout = "1s"
[admin]
listen = "127.0.0.1:9911"
[log]
level = "warn"
[listeners.bench]
listen = "127.0.0.1:${PORT[corelane]}"
cluster = "backend"
backlog = 4096
[clusters.backend]
endpoints = [{ addr = "$BACKEND" }]
EOF
"${PROXY[@]}" "$BIN" run -c "$OUT/corelane.toml" 2> "$OUT/corelane.err" & echo $! > "$OUT/corelane.pid"

cat > "$OUT/haproxy.cfg" <<EOF
global
  nbthread $WORKERS
  maxconn 9000
defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
frontend bench
  bind 127.0.0.1:${PORT[haproxy]}
  default_backend backend
backend backend
  server b1 $BACKEND
EOF
"${PROXY[@]}" haproxy -f "$OUT/haproxy.cfg" -db > "$OUT/haproxy.err" 2>&1 & echo $! > "$OUT/haproxy.pid"

cat > "$OUT/nginx-stream.conf" <<EOF
load_module $NGINX_STREAM;
worker_processes $WORKERS;
daemon off;
pid $OUT/stream.nginx.pid;
error_log $OUT/nginx-stream.err warn;
events { worker_connections 32768; }
stream {
  upstream backend { server $BACKEND; }
  server {
    listen 127.0.0.1:${PORT[nginx]} backlog=4096;
    proxy_pass backend;
    proxy_timeout 1h;
  }
}
EOF
"${PROXY[@]}" nginx -c "$OUT/nginx-stream.conf" -e "$OUT/nginx-stream.err" & echo $! > "$OUT/nginx.pid"

sleep 1
for t in "${TARGETS[@]}"; do
  curl -fsS -o /dev/null "http://127.0.0.1:${PORT[$t]}/" || { echo "$t is not answering" >&2; exit 1; }
done

rss_kib() {
  local sum=0 p
  for p in "$@"; do
    [ -r /proc/$p/status ] && sum=$((sum + $(awk '/^VmRSS/ {print $2}' /proc/$p/status)))
  done
  echo $sum
}

echo -e "round\ttarget\tkind\tvalue" > "$OUT/raw.tsv"
# Memory per idle client connection, measured first, on processes that have served nothing
# yet (after load, pooled memory would hide the growth): open K connections in 4 batches,
# leave each batch idle for IDLE_WAIT seconds (longer than corelane's default `park_after`,
# 5 s, so its idle connections are parked), and compare RSS before the first batch and after
# the last. Batches, because memory a process frees is given back to the system only as it
# goes on allocating: the steady cost of an idle connection is what stays after the next
# batch came and went, not the peak of one burst. Same procedure for every proxy.
IDLE_BATCHES=4 IDLE_WAIT=7
IDLE_CONNS=$(( IDLE_CONNS / IDLE_BATCHES * IDLE_BATCHES ))
for t in corelane haproxy nginx; do
  [ "$IDLE_CONNS" = 0 ] && break
  pids=$(pids_of "$t")
  before=$(rss_kib $pids)
  python3 - "${PORT[$t]}" "$IDLE_CONNS" "$IDLE_BATCHES" "$OUT/idle-$t" <<'PY' &
import socket, sys, time, os
port, n, batches, ready = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conns = []
for b in range(batches):
    for _ in range(n // batches):
        conns.append(socket.create_connection(("127.0.0.1", port)))
    open(f"{ready}.{b}", "w").close()
    while not os.path.exists(f"{ready}.{b}.go"):
        time.sleep(0.1)
time.sleep(60)
PY
  holder=$!
  for b in $(seq 0 $((IDLE_BATCHES - 1))); do
    while [ ! -f "$OUT/idle-$t.$b" ]; do sleep 0.2; done
    sleep $IDLE_WAIT
    echo "idle $t: after batch $((b + 1)): $(( ($(rss_kib $pids) - before) * 1024 * IDLE_BATCHES / ((b + 1) * IDLE_CONNS) )) bytes/connection" >&2
    touch "$OUT/idle-$t.$b.go"
  done
  after=$(rss_kib $pids)
  kill $holder 2>/dev/null || true
  wait $holder 2>/dev/null || true
  rm -f "$OUT/idle-$t".*
  printf '0\t%s\tidle_bytes_per_conn\t%s\n' "$t" "$(python3 -c "print(($after-$before)*1024/$IDLE_CONNS)")" >> "$OUT/raw.tsv"
  echo "idle $t: $(( (after - before) * 1024 / IDLE_CONNS )) bytes/connection" >&2
  sleep 1
done

HZ=$(getconf CLK_TCK)
for r in $(seq 1 "$ROUNDS"); do
  # Rotate the order every round so no target always runs first or last.
  order=("${TARGETS[@]:$((r % 4))}" "${TARGETS[@]:0:$((r % 4))}")
  for t in "${order[@]}"; do
    pids=""
    [ "$t" != direct ] && pids=$(pids_of "$t")
    c0=$(cpu_ticks $pids)
    "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT[$t]}/" > "$OUT/wrk-$t-$r.txt"
    c1=$(cpu_ticks $pids)
    rps=$(awk '/^Requests\/sec/ {print $2}' "$OUT/wrk-$t-$r.txt")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$OUT/wrk-$t-$r.txt")
    errs=$(awk '/Socket errors|Non-2xx/ {print}' "$OUT/wrk-$t-$r.txt" | tr '\n' ' ')
    reqs=$(awk '/requests in/ {print $1}' "$OUT/wrk-$t-$r.txt")
    printf '%s\t%s\trps\t%s\n%s\t%s\tp99_ms\t%s\n' "$r" "$t" "$rps" "$r" "$t" "$p99" >> "$OUT/raw.tsv"
    if [ "$t" != direct ]; then
      printf '%s\t%s\tcpu_us_per_req\t%s\n' "$r" "$t" "$(python3 -c "print(($c1-$c0)/$HZ*1e6/$reqs)")" >> "$OUT/raw.tsv"
    fi
    echo "round $r $t: $rps req/s, p99 ${p99} ms ${errs}" >&2
  done
  for t in "${order[@]}"; do
    pids=""
    [ "$t" != direct ] && pids=$(pids_of "$t")
    c0=$(cpu_ticks $pids)
    bps=$("${LOAD[@]}" curl -fsS -o /dev/null -w '%{speed_download}' "http://127.0.0.1:${PORT[$t]}/big")
    c1=$(cpu_ticks $pids)
    printf '%s\t%s\tbulk_gib_s\t%s\n' "$r" "$t" "$(python3 -c "print($bps/2**30)")" >> "$OUT/raw.tsv"
    if [ "$t" != direct ]; then
      printf '%s\t%s\tbulk_cpu_s_per_gib\t%s\n' "$r" "$t" "$(python3 -c "print(($c1-$c0)/$HZ/($BULK_MIB/1024))")" >> "$OUT/raw.tsv"
    fi
    echo "round $r $t: bulk $(python3 -c "print(round($bps/2**30, 2))") GiB/s" >&2
  done
done

python3 "$ROOT/bench/summarize.py" "$OUT/raw.tsv" "$CMDLINE" "$WORKERS" | tee "$OUT/summary.md"
