#!/usr/bin/env bash
# L7 (HTTP) benchmark: corelane vs HAProxy (mode http) vs nginx (proxy_pass) vs a direct
# connection, all in ONE run with rounds interleaved, against the same nginx backend.
# `corelane-hyper` is the same corelane process on listeners with `fast_path = false` (every
# request through hyper, client side included), to show what the hand-written HTTP/1.1 path,
# and for h2c its upstream side (src/proto/http/h1/bridge.rs), are worth.
#
#   bench/http.sh [--workers N] [--rounds R] [--duration S] [--conns C] [--profile]
#                 [--baseline BIN] [placement options of bench/lib.sh]
#
# --baseline BIN adds a target `baseline`: another corelane binary (an earlier build) with the
# fast-path listeners of the same configuration (ports 7190 and 7193), interleaved with the
# others, to compare builds in one run.
#
# Per target and round:
#   - wrk, C keep-alive connections, small response (`/`, 22 bytes);
#   - wrk, C keep-alive connections, 16 KiB response (`/16k`);
#   - h2load, HTTP/2 with prior knowledge (h2c), C connections x 10 streams, small response
#     (not for `direct`: the backend speaks HTTP/1.1 only);
#   - h2load over TLS (ALPN h2), the same, each proxy terminating TLS (not for `direct`);
#   - wrk over TLS (HTTPS, keep-alive, small response), each proxy terminating TLS with the
#     same test certificate (config/examples/certs/localhost.*) (not for `direct`);
#   - wrk, C keep-alive connections, a response the proxy makes itself (`/local`, 12 bytes:
#     a corelane `respond` route, HAProxy `http-request return`, nginx `return`): no upstream,
#     two system calls per request, so the proxy's own HTTP handling shows (not for `direct`).
# Reported: median req/s, p99 (wrk), the proxy's CPU time per request (user+sys from /proc:
# what a request costs, whichever process is the bottleneck) and the part of it spent in user
# space (the rest is the kernel's: system calls, TCP, wake-ups), and ratios against the better
# of HAProxy and nginx. `--profile` also samples each proxy with `perf record` (cpu-clock) in
# the middle of each of its runs and writes the top symbols to bench/out/http/perf-TEST-TARGET-ROUND.txt
# (the sampling costs the proxy a little: leave it off for the numbers you report). Every proxy keeps its upstream connections alive (HAProxy
# `http-reuse always`, nginx `keepalive` + HTTP/1.1 upstream).
#
# By default the proxy under test is pinned to CPU 1 and the load generator and the backend to
# CPU 0 (bench/lib.sh's placement options change that). Equal worker counts for every proxy.
#
# Needs: wrk, h2load (nghttp2-client), haproxy, nginx, python3. Everything listens on
# 127.0.0.1 and stops by itself; results go to bench/out/http/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

WORKERS=1 ROUNDS=5 DURATION=10 CONNS=64 PROFILE=0 BASELINE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) BASELINE=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --profile) PROFILE=1; shift ;;
    *) common_opt "$@" && shift "$TOOK" || { echo "unknown option $1" >&2; exit 2; } ;;
  esac
done
placement
CMDLINE="bench/http.sh --workers $WORKERS --rounds $ROUNDS --duration $DURATION --conns $CONNS$PLACEMENT"
[ "$PROFILE" = 1 ] && CMDLINE="$CMDLINE --profile"
[ -n "$BASELINE" ] && CMDLINE="$CMDLINE --baseline $BASELINE"

ulimit -n "$(ulimit -Hn)"
OUT=$ROOT/bench/out/http
mkdir -p "$OUT"
rm -f "$OUT"/*.pid "$OUT"/raw.tsv "$OUT"/perf-*
tools="wrk h2load haproxy nginx python3"
[ "$PROFILE" = 1 ] && tools="$tools perf"
for tool in $tools; do
  command -v $tool >/dev/null || { echo "missing $tool (see the header of this script)" >&2; exit 1; }
done

BACKEND=127.0.0.1:18080
declare -A PORT=([direct]=18080 [corelane]=7180 [corelane-hyper]=7186 [haproxy]=7181 [nginx]=7182 [baseline]=7190)
declare -A TLS_PORT=([corelane]=7183 [corelane-hyper]=7187 [haproxy]=7184 [nginx]=7185 [baseline]=7193)
CERT=$ROOT/config/examples/certs/localhost.crt KEY=$ROOT/config/examples/certs/localhost.key
cat "$CERT" "$KEY" > "$OUT/haproxy.pem"
TARGETS=(direct corelane corelane-hyper haproxy nginx)
if [ -n "$BASELINE" ]; then
  [ -x "$BASELINE" ] || { echo "no baseline binary at $BASELINE" >&2; exit 1; }
  TARGETS+=(baseline)
fi

cleanup() {
  for f in "$OUT"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 1
}
trap cleanup EXIT

head -c 16384 /dev/zero | tr '\0' 'x' > "$OUT/16k.txt"
cat > "$OUT/backend.conf" <<EOF
worker_processes $BACKEND_WORKERS;
daemon off;
pid $OUT/backend.nginx.pid;
error_log $OUT/backend.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  default_type text/plain;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen $BACKEND backlog=4096;
    location = / { return 200 "hello, corelane bench\n"; }
    location = /16k { alias $OUT/16k.txt; }
  }
}
EOF
"${BACKEND_PIN[@]}" nginx -c "$OUT/backend.conf" -e "$OUT/backend.err" & echo $! > "$OUT/backend.pid"

cat > "$OUT/corelane.toml" <<EOF
workers = $WORKERS
shutdown_timeout = "1s"
[admin]
listen = "127.0.0.1:9912"
[log]
level = "warn"
[listeners.bench]
listen = "127.0.0.1:${PORT[corelane]}"
protocol = "http"
cluster = "backend"
backlog = 4096
[[listeners.bench.routes]]
path = "/local"
respond = { status = 200, body = "local answer", headers = { content-type = "text/plain" } }
[listeners.bench_tls]
listen = "127.0.0.1:${TLS_PORT[corelane]}"
protocol = "http"
cluster = "backend"
backlog = 4096
[listeners.bench_tls.tls]
certificates = [{ cert = "$CERT", key = "$KEY", names = ["localhost"] }]
[listeners.bench_hyper]
listen = "127.0.0.1:${PORT[corelane-hyper]}"
protocol = "http"
cluster = "backend"
backlog = 4096
fast_path = false
[[listeners.bench_hyper.routes]]
path = "/local"
respond = { status = 200, body = "local answer", headers = { content-type = "text/plain" } }
[listeners.bench_hyper_tls]
listen = "127.0.0.1:${TLS_PORT[corelane-hyper]}"
protocol = "http"
cluster = "backend"
backlog = 4096
fast_path = false
[listeners.bench_hyper_tls.tls]
certificates = [{ cert = "$CERT", key = "$KEY", names = ["localhost"] }]
[clusters.backend]
endpoints = [{ addr = "$BACKEND" }]
pool_max_idle = 1024
EOF
"${PROXY[@]}" "$BIN" run -c "$OUT/corelane.toml" 2> "$OUT/corelane.err" & echo $! > "$OUT/corelane.pid"
cp "$OUT/corelane.pid" "$OUT/corelane-hyper.pid"
if [ -n "$BASELINE" ]; then
  # The fast-path listeners only, on the baseline's own ports and admin port.
  awk '/^\[listeners.bench_hyper\]/ {exit} {print}' "$OUT/corelane.toml" \
    | sed -e "s/127.0.0.1:9912/127.0.0.1:9922/" \
          -e "s/:${PORT[corelane]}\"/:${PORT[baseline]}\"/" \
          -e "s/:${TLS_PORT[corelane]}\"/:${TLS_PORT[baseline]}\"/" > "$OUT/baseline.toml"
  cat >> "$OUT/baseline.toml" <<EOF
[clusters.backend]
endpoints = [{ addr = "$BACKEND" }]
pool_max_idle = 1024
EOF
  "${PROXY[@]}" "$BASELINE" run -c "$OUT/baseline.toml" 2> "$OUT/baseline.err" & echo $! > "$OUT/baseline.pid"
fi

cat > "$OUT/haproxy.cfg" <<EOF
global
  nbthread $WORKERS
  maxconn 9000
defaults
  mode http
  option http-keep-alive
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  timeout http-keep-alive 1h
frontend bench
  bind 127.0.0.1:${PORT[haproxy]} proto h2 alpn h2,http/1.1
  bind 127.0.0.1:$((PORT[haproxy] + 10))
  bind 127.0.0.1:${TLS_PORT[haproxy]} ssl crt $OUT/haproxy.pem alpn h2,http/1.1
  http-request return status 200 content-type text/plain string "local answer" if { path /local }
  default_backend backend
backend backend
  http-reuse always
  server b1 $BACKEND
EOF
# HAProxy needs `proto h2` to take h2c, which then refuses HTTP/1.1 on that bind: h2load uses
# the first bind, wrk the second.
"${PROXY[@]}" haproxy -f "$OUT/haproxy.cfg" -db > "$OUT/haproxy.err" 2>&1 & echo $! > "$OUT/haproxy.pid"

cat > "$OUT/nginx-proxy.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $OUT/proxy.nginx.pid;
error_log $OUT/nginx-proxy.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream backend { server $BACKEND; keepalive 1024; keepalive_requests 100000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:${PORT[nginx]} backlog=4096;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location = /local { default_type text/plain; return 200 "local answer"; }
  }
  server {
    listen 127.0.0.1:${TLS_PORT[nginx]} ssl http2 backlog=4096;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_session_cache shared:SSL:10m;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$((PORT[nginx] + 10)) http2 backlog=4096;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
"${PROXY[@]}" nginx -c "$OUT/nginx-proxy.conf" -e "$OUT/nginx-proxy.err" & echo $! > "$OUT/nginx.pid"

sleep 1
h1_url() { # wrk's port for target $1
  case $1 in haproxy) echo "http://127.0.0.1:$((PORT[haproxy] + 10))" ;; *) echo "http://127.0.0.1:${PORT[$1]}" ;; esac
}
h2_url() {
  case $1 in nginx) echo "http://127.0.0.1:$((PORT[nginx] + 10))" ;; *) echo "http://127.0.0.1:${PORT[$1]}" ;; esac
}
for t in "${TARGETS[@]}"; do
  curl -fsS -o /dev/null "$(h1_url $t)/" || { echo "$t is not answering" >&2; exit 1; }
  [ $t = direct ] || [ "$(curl -fsS "$(h1_url $t)/local")" = "local answer" ] \
    || { echo "$t does not answer /local itself" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
echo -e "round\ttarget\tkind\tvalue" > "$OUT/raw.tsv"
record() { printf '%s\t%s\t%s\t%s\n' "$@" >> "$OUT/raw.tsv"; }
for r in $(seq 1 "$ROUNDS"); do
  k=$((r % ${#TARGETS[@]}))
  order=("${TARGETS[@]:$k}" "${TARGETS[@]:0:$k}")
  for test in small 16k h2 h2tls tls local; do
    for t in "${order[@]}"; do
      [ $test != small ] && [ $test != 16k ] && [ $t = direct ] && continue
      # h2c: hyper's server on both corelane listeners; upstream, the fast path's sockets
      # (h1/bridge.rs) on `corelane`, hyper's client on `corelane-hyper`.
      pids=""
      [ "$t" != direct ] && pids=$(pids_of "$t")
      f="$OUT/$test-$t-$r.txt"
      c0=$(cpu_ticks $pids) u0=$(user_ticks $pids)
      if [ "$PROFILE" = 1 ] && [ "$t" != direct ]; then
        (sleep 1; perf record -q -e cpu-clock -F 2000 -p "$(echo $pids | tr ' ' ,)" -o "$OUT/perf.data" -- sleep "$((DURATION > 3 ? DURATION - 2 : 1))" >/dev/null 2>&1
         perf report -i "$OUT/perf.data" --no-children --sort dso,sym 2>/dev/null | grep -v "^#" | grep . | sed -n 1,60p > "$OUT/perf-$test-$t-$r.txt" || true) &
        perf_pid=$!
      fi
      case $test in
        small) "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$(h1_url $t)/" > "$f" ;;
        16k) "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$(h1_url $t)/16k" > "$f" ;;
        h2) "${LOAD[@]}" h2load -t"$THREADS" -c"$CONNS" -m10 -D"$DURATION" "$(h2_url $t)/" > "$f" 2>&1 ;;
        h2tls) "${LOAD[@]}" h2load -t"$THREADS" -c"$CONNS" -m10 -D"$DURATION" "https://localhost:${TLS_PORT[$t]}/" > "$f" 2>&1 ;;
        tls) "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "https://localhost:${TLS_PORT[$t]}/" > "$f" ;;
        local) "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$(h1_url $t)/local" > "$f" ;;
      esac
      c1=$(cpu_ticks $pids) u1=$(user_ticks $pids)
      [ "$PROFILE" = 1 ] && [ "$t" != direct ] && { wait "$perf_pid" || true; }
      if [ $test = h2 ] || [ $test = h2tls ]; then
        rps=$(awk '/^finished in/ {print $4}' "$f")
        reqs=$(awk '/^requests:/ {print $8}' "$f")
        fails=$(awk '/^requests:/ {print $10 + $12}' "$f")
      else
        rps=$(awk '/^Requests\/sec/ {print $2}' "$f")
        reqs=$(awk '/requests in/ {print $1}' "$f")
        fails=$(awk '/Socket errors|Non-2xx/ {print}' "$f" | tr '\n' ' ')
        record "$r" "$t" "${test}_p99_ms" "$(p99_ms "$f")"
      fi
      record "$r" "$t" "${test}_rps" "$rps"
      if [ "$t" != direct ] && [ -n "$reqs" ] && [ "$reqs" != 0 ]; then
        record "$r" "$t" "${test}_cpu_us_per_req" "$(python3 -c "print(($c1-$c0)/$HZ*1e6/$reqs)")"
        record "$r" "$t" "${test}_user_us_per_req" "$(python3 -c "print(($u1-$u0)/$HZ*1e6/$reqs)")"
      fi
      echo "round $r $test $t: $rps req/s ${fails:+(errors: $fails)}" >&2
    done
  done
done

python3 - "$OUT/raw.tsv" "$CMDLINE" "$WORKERS" <<'PY' | tee "$OUT/summary.md"
import statistics, sys
from collections import defaultdict
raw, cmdline, workers = sys.argv[1:4]
v = defaultdict(list)
with open(raw) as f:
    next(f)
    for line in f:
        _, t, kind, value = line.rstrip("\n").split("\t")
        if value:
            v[(t, kind)].append(float(value))
med = lambda t, k: statistics.median(v[(t, k)]) if v.get((t, k)) else None
fmt = lambda x, d=0: "-" if x is None else f"{x:,.{d}f}"
print(f"command: `{cmdline}`  ({workers} worker(s) per proxy)\n")
for test, title in [("small", "keep-alive, small response (wrk)"), ("16k", "keep-alive, 16 KiB response (wrk)"), ("h2", "h2c, 10 streams per connection (h2load)"), ("h2tls", "HTTP/2 over TLS, 10 streams per connection (h2load)"), ("tls", "HTTPS keep-alive, small response (wrk)"), ("local", "keep-alive, answered by the proxy itself (wrk; corelane `respond`, HAProxy `http-request return`, nginx `return`)")]:
    best = max((med(t, f"{test}_rps") or 0) for t in ["haproxy", "nginx"])
    print(f"**{title}**\n")
    print("| target | req/s | vs better of haproxy/nginx | p99 ms | proxy CPU µs/req | of which user |")
    print("|---|---:|---:|---:|---:|---:|")
    for t in ["direct", "corelane", "corelane-hyper", "baseline", "haproxy", "nginx"]:
        rps = med(t, f"{test}_rps")
        if rps is None:
            continue
        print(f"| {t} | {fmt(rps)} | {rps / best:.2f}x | {fmt(med(t, f'{test}_p99_ms'), 2)} | {fmt(med(t, f'{test}_cpu_us_per_req'), 2)} | {fmt(med(t, f'{test}_user_us_per_req'), 2)} |")
    print()
    for t in ["corelane", "corelane-hyper", "baseline", "haproxy", "nginx"]:
        rs = v.get((t, f"{test}_rps"), [])
        if not rs:
            continue
        print(f"- {t} req/s per round: {' / '.join(f'{x:,.0f}' for x in rs)}")
    print()
PY
