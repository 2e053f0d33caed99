#!/usr/bin/env bash
# Memory per idle HTTP/2 (h2c) client, by RSS, one proxy after the other with the same
# clients (bench/http_idle.py --h2: batches of clients that each make one request, then stay
# idle; at the end each makes another on the same connection):
#   - corelane, idle connections parked after park_after (5 s);
#   - corelane with park_after = "0s" (never parked);
#   - an earlier corelane build (--baseline BIN), as it serves HTTP/2;
#   - nginx (http2, proxy_pass with keep-alive), one worker.
#
#   bench/http2_idle.sh [--baseline BIN] [--clients N] [--batches B] [--wait S]
#
# Defaults: 4 batches of 1,000 clients, 7 s after each (past park_after). Everything listens on
# 127.0.0.1; results go to bench/out/http2_idle/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
BASELINE="" CLIENTS=1000 BATCHES=4 WAIT=7
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) BASELINE=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --batches) BATCHES=$2; shift 2 ;;
    --wait) WAIT=$2; shift 2 ;;
    *) common_opt "$@" && shift "$TOOK" || { echo "unknown option $1" >&2; exit 2; } ;;
  esac
done
PIN=0
placement
ulimit -n "$(ulimit -Hn)"
OUT=$ROOT/bench/out/http2_idle
mkdir -p "$OUT"
BACKEND=127.0.0.1:18060
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
nginx_backend "$OUT" "$BACKEND"
pids+=("$(cat "$OUT/backend.pid")")

# A corelane configuration on port $1, admin $2, with listener lines $3.
corelane_toml() {
  cat <<EOF
workers = 1
shutdown_timeout = "1s"
[admin]
listen = "127.0.0.1:$2"
[log]
level = "warn"
[listeners.idle]
listen = "127.0.0.1:$1"
protocol = "http"
cluster = "backend"
backlog = 4096
idle_timeout = "300s"
$3
[clusters.backend]
endpoints = [{ addr = "$BACKEND" }]
EOF
}
corelane_toml 7160 9961 "" > "$OUT/parked.toml"
corelane_toml 7161 9962 'park_after = "0s"' > "$OUT/live.toml"
corelane_toml 7162 9963 "" > "$OUT/baseline.toml"
cat > "$OUT/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  upstream backend { server $BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:7163 http2 backlog=4096;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF

{
  echo "command: \`bench/http2_idle.sh --clients $CLIENTS --batches $BATCHES --wait $WAIT${BASELINE:+ --baseline $BASELINE}\`"
  for t in corelane-parked corelane-never-parked ${BASELINE:+baseline} nginx; do
    case $t in
      corelane-parked) "$BIN" run -c "$OUT/parked.toml" 2> "$OUT/parked.err" & pid=$! port=7160 ;;
      corelane-never-parked) "$BIN" run -c "$OUT/live.toml" 2> "$OUT/live.err" & pid=$! port=7161 ;;
      baseline) "$BASELINE" run -c "$OUT/baseline.toml" 2> "$OUT/baseline.err" & pid=$! port=7162 ;;
      nginx) nginx -c "$OUT/nginx.conf" -e "$OUT/nginx.err" & master=$!
        sleep 0.5
        pid=$(pgrep -P $master | head -1) port=7163 ;;
    esac
    pids+=($pid ${master:-})
    for _ in $(seq 1 50); do curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break; sleep 0.1; done
    echo
    echo "**$t**"
    echo
    python3 "$ROOT/bench/http_idle.py" $port "$CLIENTS" "$BATCHES" "$pid" "$WAIT" --h2 | sed 's/^/    /'
    kill $pid ${master:-} 2>/dev/null || true
    master=""
    sleep 1
  done
} | tee "$OUT/summary.md"
