#!/usr/bin/env bash
# What active health checks cost the data path: corelane with a 1,000-endpoint cluster, once
# without checks and once with every endpoint checked, in ONE run with rounds interleaved.
#
#   bench/health.sh [--endpoints N] [--kind tcp|http] [--interval 1s] [--rounds R]
#                   [--duration S] [--conns C] [--control-core C]
#                   [placement options of bench/lib.sh]
#
# The backend is one nginx listening on N ports (one per endpoint), pinned to CPU 0 with wrk
# (--backend-cpus, --load-cpus).
# corelane (1 worker) is pinned to CPU 1 (--proxy-cpus): its control thread, which runs the
# checks, shares that core with the worker, so any cost of the checks shows up in the worker's
# req/s; with --control-core C the control thread is moved to core C after start (the worker
# keeps its CPU to itself), which is how the data path and the control plane are meant to share a machine. Each
# round starts each variant fresh (so the idle one's checks do not run during the other's
# measurement), waits 3 s for the checks to settle in, then measures:
#   - keep-alive: wrk, C connections kept open (the endpoint is picked per connection);
#   - close: wrk with `Connection: close`, a new upstream pick per request, where a pick reads
#     the endpoints' health.
# Reported: median req/s of each variant and their ratio; CPU per request of the worker thread
# alone (the data path: /proc/PID/task/TID/stat of `corelane-w0`) and of the whole process
# (worker + control thread, which runs the checks); how many checks ran per second (/metrics).
#
# Needs: wrk, nginx, curl, python3. Everything listens on 127.0.0.1 and stops by itself;
# results go to bench/out/health/ and the summary table to stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

ENDPOINTS=1000 KIND=tcp INTERVAL=1s ROUNDS=5 DURATION=10 CONNS=64 CONTROL_CORE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --endpoints) ENDPOINTS=$2; shift 2 ;;
    --kind) KIND=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --control-core) CONTROL_CORE=$2; shift 2 ;;
    *) common_opt "$@" && shift "$TOOK" || { echo "unknown option $1" >&2; exit 2; } ;;
  esac
done
placement
CMDLINE="bench/health.sh --endpoints $ENDPOINTS --kind $KIND --interval $INTERVAL --rounds $ROUNDS --duration $DURATION --conns $CONNS"
[ -n "$CONTROL_CORE" ] && CMDLINE="$CMDLINE --control-core $CONTROL_CORE"
CMDLINE="$CMDLINE$PLACEMENT"

ulimit -n "$(ulimit -Hn)"
OUT=$ROOT/bench/out/health
mkdir -p "$OUT"
rm -f "$OUT"/*.pid "$OUT"/raw.tsv
for tool in wrk nginx curl python3; do
  command -v $tool >/dev/null || { echo "missing $tool (see the header of this script)" >&2; exit 1; }
done

FIRST_PORT=20000 LISTEN=7190 ADMIN=127.0.0.1:9919
cleanup() {
  for f in "$OUT"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 1
}
trap cleanup EXIT

# --- the backend: one nginx on N ports --------------------------------------------------
{
  echo "worker_processes $BACKEND_WORKERS; daemon off; pid $OUT/backend.nginx.pid; error_log $OUT/backend.err warn;"
  echo "events { worker_connections 16384; }"
  echo "http { access_log off; default_type text/plain; keepalive_requests 100000000; keepalive_timeout 300s;"
  echo "  server {"
  for i in $(seq 0 $((ENDPOINTS - 1))); do echo "    listen 127.0.0.1:$((FIRST_PORT + i)) backlog=4096;"; done
  echo "    location = / { return 200 \"hello, corelane bench\\n\"; }"
  echo "    location = /healthz { return 200 \"ok\\n\"; }"
  echo "  }"
  echo "}"
} > "$OUT/backend.conf"
"${BACKEND_PIN[@]}" nginx -c "$OUT/backend.conf" -e "$OUT/backend.err" & echo $! > "$OUT/backend.pid"

endpoints_toml() {
  local i sep=""
  printf 'endpoints = ['
  for i in $(seq 0 $((ENDPOINTS - 1))); do printf '%s{ addr = "127.0.0.1:%d" }' "$sep" $((FIRST_PORT + i)); sep=", "; done
  printf ']\n'
}
write_config() { # $1: plain | checked
  {
    printf 'workers = 1\nshutdown_timeout = "1s"\n[admin]\nlisten = "%s"\n[log]\nlevel = "warn"\n' "$ADMIN"
    printf '[listeners.bench]\nlisten = "127.0.0.1:%d"\ncluster = "fleet"\nbacklog = 4096\n' $LISTEN
    printf '[clusters.fleet]\nlb = "round_robin"\n'
    endpoints_toml
    if [ "$1" = checked ]; then
      printf '[clusters.fleet.health_check]\nkind = "%s"\ninterval = "%s"\n' "$KIND" "$INTERVAL"
      if [ "$KIND" = http ]; then printf 'path = "/healthz"\n'; fi
    fi
  } > "$OUT/$1.toml"
}
write_config plain
write_config checked

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
worker_tid() { grep -l '^corelane-w0$' /proc/"$1"/task/*/comm | head -1 | cut -d/ -f5; }
thread_ticks() { awk '{print $14 + $15}' "/proc/$1/task/$2/stat"; }
checks_total() { # health-check latency samples summed over endpoints
  curl -fsS "http://$ADMIN/metrics" | awk '/^corelane_endpoint_health_check_duration_seconds_count/ {s += $2} END {print s + 0}'
}

echo -e "round\tvariant\tkind\tvalue" > "$OUT/raw.tsv"
sleep 1
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order=(plain checked); else order=(checked plain); fi
  for v in "${order[@]}"; do
    "${PROXY[@]}" "$BIN" run -c "$OUT/$v.toml" 2> "$OUT/corelane-$v.err" & pid=$!
    echo $pid > "$OUT/corelane.pid"
    for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$LISTEN/" 2>/dev/null && break; sleep 0.1; done
    sleep 3
    tid=$(worker_tid $pid)
    if [ -n "$CONTROL_CORE" ]; then
      # The control thread (the main thread: it runs the checks) moves to its own core; the
      # worker keeps its CPU to itself.
      taskset -p -c "$CONTROL_CORE" $pid > /dev/null
    fi
    k0=$(checks_total)
    for mode in keepalive close; do
      hdr=()
      [ $mode = close ] && hdr=(-H "Connection: close")
      c0=$(cpu_ticks $pid) w0=$(thread_ticks $pid $tid)
      "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "${hdr[@]}" "http://127.0.0.1:$LISTEN/" > "$OUT/wrk-$v-$mode-$r.txt"
      c1=$(cpu_ticks $pid) w1=$(thread_ticks $pid $tid)
      rps=$(awk '/^Requests\/sec/ {print $2}' "$OUT/wrk-$v-$mode-$r.txt")
      reqs=$(awk '/requests in/ {print $1}' "$OUT/wrk-$v-$mode-$r.txt")
      errs=$(awk '/Socket errors|Non-2xx/ {print}' "$OUT/wrk-$v-$mode-$r.txt" | tr '\n' ' ')
      printf '%s\t%s\t%s_rps\t%s\n' "$r" "$v" $mode "$rps" >> "$OUT/raw.tsv"
      printf '%s\t%s\t%s_cpu_us_per_req\t%s\n' "$r" "$v" $mode "$(python3 -c "print(($c1-$c0)/$HZ*1e6/$reqs)")" >> "$OUT/raw.tsv"
      printf '%s\t%s\t%s_worker_us_per_req\t%s\n' "$r" "$v" $mode "$(python3 -c "print(($w1-$w0)/$HZ*1e6/$reqs)")" >> "$OUT/raw.tsv"
      echo "round $r $v $mode: $rps req/s $errs" >&2
    done
    k1=$(checks_total)
    printf '%s\t%s\tchecks_per_s\t%s\n' "$r" "$v" "$(python3 -c "print(($k1-$k0)/(2*$DURATION))")" >> "$OUT/raw.tsv"
    up=$(curl -fsS "http://$ADMIN/metrics" | awk '/^corelane_endpoint_up/ {s += $2} END {print s + 0}')
    [ "$up" = "$ENDPOINTS" ] || { echo "only $up of $ENDPOINTS endpoints up in $v" >&2; exit 1; }
    kill $pid; wait $pid 2>/dev/null || true
    rm -f "$OUT/corelane.pid"
    sleep 1
  done
done

python3 - "$OUT/raw.tsv" "$CMDLINE" <<'PY' | tee "$OUT/summary.md"
import statistics, sys
from collections import defaultdict
raw, cmdline = sys.argv[1], sys.argv[2]
v = defaultdict(list)
with open(raw) as f:
    next(f)
    for line in f:
        _, variant, kind, value = line.rstrip("\n").split("\t")
        if value:
            v[(variant, kind)].append(float(value))
med = lambda variant, kind: statistics.median(v[(variant, kind)])
print(f"command: `{cmdline}`\n")
print("| mode | req/s without checks | req/s with checks | with / without | worker CPU µs/req without | with | process CPU µs/req without | with |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for mode in ["keepalive", "close"]:
    a, b = med("plain", f"{mode}_rps"), med("checked", f"{mode}_rps")
    wa, wb = med("plain", f"{mode}_worker_us_per_req"), med("checked", f"{mode}_worker_us_per_req")
    ca, cb = med("plain", f"{mode}_cpu_us_per_req"), med("checked", f"{mode}_cpu_us_per_req")
    print(f"| {mode} | {a:,.0f} | {b:,.0f} | {b / a:.3f}x | {wa:.2f} | {wb:.2f} | {ca:.2f} | {cb:.2f} |")
print(f"\nchecks per second while measuring (median): {med('checked', 'checks_per_s'):,.0f}")
print("\nper round (req/s, run order):\n")
for mode in ["keepalive", "close"]:
    for variant in ["plain", "checked"]:
        print(f"- {mode} {variant}: " + " / ".join(f"{x:,.0f}" for x in v[(variant, f'{mode}_rps')]))
PY
