#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind (callgrind), for corelane's HTTP
# paths: HTTP/1.1 keep-alive on the fast path (h2load --h1) and h2c (h2load, 10 streams per
# connection), against an nginx backend on loopback, HTTP/1.1 keep-alive to a `respond`
# route (answered by corelane itself), and HTTP/1.1 keep-alive to the same nginx over TLS (a
# cluster with `tls`, the test certificate). Instruction counts do not depend on what
# else the machine is doing, so two builds compare exactly on a noisy machine where req/s
# cannot (they do not count the kernel's part, which is most of a request's CPU: see
# bench/http.sh for that).
#
#   bench/http_instructions.sh [--baseline BIN] [--requests N]
#
# For each build (this one, and BIN if given) and each protocol, corelane runs under callgrind
# twice, serving 2,000 requests and then 2,000 + N (default 10,000); the difference in total
# instructions over N is what one request costs, start-up and connection set-up left out.
# Needs: valgrind, h2load (nghttp2-client), nginx. Results go to bench/out/instructions/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
BASELINE="" N=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) BASELINE=$2; shift 2 ;;
    --requests) N=$2; shift 2 ;;
    *) common_opt "$@" && shift "$TOOK" || { echo "unknown option $1" >&2; exit 2; } ;;
  esac
done
PIN=0
placement
for tool in valgrind h2load nginx; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
OUT=$ROOT/bench/out/instructions
mkdir -p "$OUT"
BACKEND=127.0.0.1:18070 TLS_BACKEND=127.0.0.1:18071 PORT=7170 TLS_UP_PORT=7171
cleanup() { [ -f "$OUT/backend.pid" ] && kill "$(cat "$OUT/backend.pid")" 2>/dev/null || true; }
trap cleanup EXIT
nginx_backend "$OUT" "$BACKEND" "$TLS_BACKEND"
cat > "$OUT/corelane.toml" <<EOF
workers = 1
shutdown_timeout = "1s"
[admin]
listen = "127.0.0.1:9970"
[log]
level = "warn"
[listeners.bench]
listen = "127.0.0.1:$PORT"
protocol = "http"
cluster = "backend"
[[listeners.bench.routes]]
path = "/local"
respond = { status = 200, body = "local answer", headers = { content-type = "text/plain" } }
[listeners.to_tls]
listen = "127.0.0.1:$TLS_UP_PORT"
protocol = "http"
cluster = "tls_backend"
[clusters.backend]
endpoints = [{ addr = "$BACKEND" }]
pool_max_idle = 1024
[clusters.tls_backend]
endpoints = [{ addr = "$TLS_BACKEND" }]
pool_max_idle = 1024
[clusters.tls_backend.tls]
ca = "$ROOT/config/examples/certs/ca.crt"
server_name = "localhost"
EOF

# Total instructions of one corelane run under callgrind serving $3 requests of kind $2.
count() {
  local bin=$1 kind=$2 n=$3
  rm -f "$OUT"/cg.out.*
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out.%p" "$bin" run -c "$OUT/corelane.toml" 2> "$OUT/valgrind.err" &
  local vp=$!
  for _ in $(seq 1 150); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break; sleep 0.2; done
  case $kind in
    h1) h2load --h1 -c4 -n"$n" "http://127.0.0.1:$PORT/" > "$OUT/load.txt" ;;
    h2c) h2load -c4 -m10 -n"$n" "http://127.0.0.1:$PORT/" > "$OUT/load.txt" ;;
    local) h2load --h1 -c4 -n"$n" "http://127.0.0.1:$PORT/local" > "$OUT/load.txt" ;;
    tls_up) h2load --h1 -c4 -n"$n" "http://127.0.0.1:$TLS_UP_PORT/" > "$OUT/load.txt" ;;
  esac
  grep -q "$n succeeded" "$OUT/load.txt" || { echo "not every request succeeded:" >&2; cat "$OUT/load.txt" >&2; exit 1; }
  kill -INT $vp; wait $vp || true
  awk '/^summary:/ {print $2}' "$OUT"/cg.out.*
}

CMDLINE="bench/http_instructions.sh --requests $N${BASELINE:+ --baseline $BASELINE}"
{
  echo "command: \`$CMDLINE\` (instructions per request)"
  echo
  echo "| build | HTTP/1.1 keep-alive | h2c, 10 streams per connection | HTTP/1.1 keep-alive, \`respond\` route | HTTP/1.1 keep-alive to a TLS upstream |"
  echo "|---|---:|---:|---:|---:|"
  for build in corelane ${BASELINE:+baseline}; do
    bin=$BIN
    [ $build = baseline ] && bin=$BASELINE
    row="| $build"
    for kind in h1 h2c local tls_up; do
      a=$(count "$bin" $kind 2000)
      b=$(count "$bin" $kind $((2000 + N)))
      row="$row | $(( (b - a) / N ))"
    done
    echo "$row |"
  done
} | tee "$OUT/summary.md"
