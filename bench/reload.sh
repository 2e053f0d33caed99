#!/usr/bin/env bash
# Reloads under load: wrk (keep-alive HTTP) through corelane, HAProxy and nginx while each one's
# configuration is reloaded N times, in ONE run with rounds interleaved; counts the requests
# that failed (wrk's socket errors plus non-2xx responses).
#
#   bench/reload.sh [--reloads N] [--rounds R] [--duration S] [--conns C]
#                   [placement options of bench/lib.sh]
#
# Reloads: corelane: SIGHUP, alternating two control files that differ in a response header
# (so every reload builds and swaps a new routing table); HAProxy: master-worker mode (-W),
# SIGUSR2 to the master (a new worker process takes over, the old one finishes); nginx:
# SIGHUP to the master (new workers; old ones finish). The reloads are spread over the middle
# of the wrk run. Same backend (nginx), 1 worker each, the proxy pinned to CPU 1 and wrk and
# the backend to CPU 0 (bench/lib.sh's placement options change that; --threads is wrk's).
#
# Needs: wrk, haproxy, nginx, python3. Results go to bench/out/reload/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

RELOADS=100 ROUNDS=2 DURATION=20 CONNS=64
while [ $# -gt 0 ]; do
  case "$1" in
    --reloads) RELOADS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    *) common_opt "$@" && shift "$TOOK" || { echo "unknown option $1" >&2; exit 2; } ;;
  esac
done
placement
CMDLINE="bench/reload.sh --reloads $RELOADS --rounds $ROUNDS --duration $DURATION --conns $CONNS$PLACEMENT"

ulimit -n "$(ulimit -Hn)"
OUT=$ROOT/bench/out/reload
mkdir -p "$OUT"
rm -f "$OUT"/*.pid "$OUT"/raw.tsv
for tool in wrk haproxy nginx python3; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

BACKEND=127.0.0.1:18080
declare -A PORT=([corelane]=7280 [haproxy]=7281 [nginx]=7282)
TARGETS=(corelane haproxy nginx)
cleanup() {
  for f in "$OUT"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 1
}
trap cleanup EXIT

cat > "$OUT/backend.conf" <<EOF
worker_processes $BACKEND_WORKERS; daemon off; pid $OUT/backend.nginx.pid; error_log $OUT/backend.err warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  server { listen $BACKEND backlog=4096; location = / { return 200 "hello, corelane bench\n"; } } }
EOF
"${BACKEND_PIN[@]}" nginx -c "$OUT/backend.conf" -e "$OUT/backend.err" & echo $! > "$OUT/backend.pid"

corelane_conf() { # $1: variant
  cat <<EOF
workers = 1
shutdown_timeout = "1s"
[admin]
listen = "127.0.0.1:9913"
[log]
level = "warn"
[listeners.bench]
listen = "127.0.0.1:${PORT[corelane]}"
protocol = "http"
cluster = "backend"
backlog = 4096
response_headers = { set = { x-variant = "$1" } }
[clusters.backend]
endpoints = [{ addr = "$BACKEND" }]
EOF
}
corelane_conf a > "$OUT/corelane.toml"
"${PROXY[@]}" "$BIN" run -c "$OUT/corelane.toml" 2> "$OUT/corelane.err" & echo $! > "$OUT/corelane.pid"

cat > "$OUT/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9000
defaults
  mode http
  option http-keep-alive
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  timeout http-keep-alive 1h
frontend bench
  bind 127.0.0.1:${PORT[haproxy]}
  default_backend backend
backend backend
  http-reuse always
  server b1 $BACKEND
EOF
"${PROXY[@]}" haproxy -W -f "$OUT/haproxy.cfg" -db > "$OUT/haproxy.err" 2>&1 & echo $! > "$OUT/haproxy.pid"

cat > "$OUT/nginx-proxy.conf" <<EOF
worker_processes 1; daemon off; pid $OUT/proxy.nginx.pid; error_log $OUT/nginx-proxy.err warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  upstream backend { server $BACKEND; keepalive 1024; }
  server { listen 127.0.0.1:${PORT[nginx]} backlog=4096;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
"${PROXY[@]}" nginx -c "$OUT/nginx-proxy.conf" -e "$OUT/nginx-proxy.err" & echo $! > "$OUT/nginx.pid"
sleep 1.5

reload() { # $1: target, $2: reload number
  case $1 in
    corelane)
      if [ $(($2 % 2)) = 1 ]; then corelane_conf b; else corelane_conf a; fi > "$OUT/corelane.toml.new"
      mv "$OUT/corelane.toml.new" "$OUT/corelane.toml"
      kill -HUP "$(cat "$OUT/corelane.pid")" ;;
    haproxy) kill -USR2 "$(cat "$OUT/haproxy.pid")" ;;
    nginx) kill -HUP "$(cat "$OUT/nginx.pid")" ;;
  esac
}

echo -e "round\ttarget\tkind\tvalue" > "$OUT/raw.tsv"
gap=$(python3 -c "print(($DURATION * 0.8) / $RELOADS)")
for r in $(seq 1 "$ROUNDS"); do
  order=("${TARGETS[@]:$((r % 3))}" "${TARGETS[@]:0:$((r % 3))}")
  for t in "${order[@]}"; do
    f="$OUT/wrk-$t-$r.txt"
    "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:${PORT[$t]}/" > "$f" &
    wrk_pid=$!
    sleep "$(python3 -c "print($DURATION * 0.1)")"
    for i in $(seq 1 "$RELOADS"); do reload "$t" "$i"; sleep "$gap"; done
    wait $wrk_pid
    reqs=$(awk '/requests in/ {print $1}' "$f")
    sock=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$f")
    non2xx=$(awk '/Non-2xx/ {print $5}' "$f")
    failed=$(( ${sock:-0} + ${non2xx:-0} ))
    printf '%s\t%s\trequests\t%s\n%s\t%s\tfailed\t%s\n' "$r" "$t" "$reqs" "$r" "$t" "$failed" >> "$OUT/raw.tsv"
    echo "round $r $t: $reqs requests, $failed failed ($(grep -E 'Socket errors|Non-2xx' "$f" | tr '\n' ' '))" >&2
    sleep 2
  done
done
# Proof that the reloads happened.
echo "corelane reloads: $(curl -fsS http://127.0.0.1:9913/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["reloads"])')" | tee "$OUT/reloads.txt" >&2
echo "haproxy reloads: $(grep -c 'Reloading HAProxy' "$OUT/haproxy.err" || true)" | tee -a "$OUT/reloads.txt" >&2

python3 - "$OUT/raw.tsv" "$CMDLINE" "$RELOADS" <<'PY' | tee "$OUT/summary.md"
import sys
from collections import defaultdict
raw, cmdline, reloads = sys.argv[1:4]
v = defaultdict(list)
with open(raw) as f:
    next(f)
    for line in f:
        _, t, kind, value = line.rstrip("\n").split("\t")
        v[(t, kind)].append(int(float(value or 0)))
print(f"command: `{cmdline}`\n")
print(f"| target | rounds | reloads per round | requests (per round) | failed requests (per round) |")
print("|---|---:|---:|---|---|")
for t in ["corelane", "haproxy", "nginx"]:
    reqs, failed = v[(t, "requests")], v[(t, "failed")]
    print(f"| {t} | {len(reqs)} | {reloads} | {' / '.join(f'{x:,}' for x in reqs)} | {' / '.join(f'{x:,}' for x in failed)} |")
PY
