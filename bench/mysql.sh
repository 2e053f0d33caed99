#!/usr/bin/env bash
# MySQL benchmark: sysbench through corelane (read/write splitting over a MariaDB primary and
# replica) and directly to the primary, in ONE run with rounds interleaved.
#
#   bench/mysql.sh [--workers N] [--rounds R] [--time S] [--threads T] [--idle N] [--pin]
#                  [--no-build] [--baseline BIN]
#
# Servers: a MariaDB primary and replica from scripts/mariadb-pair.sh on 127.0.0.1:13406 and
# 13407 (not the example's ports), in a temporary directory, default settings. sysbench
# prepares 4 tables of 10,000 rows through the primary, waits for the replica, then per round,
# per target (the order rotates every round):
#   oltp_point_select            one primary-key SELECT per event: corelane sends it to the
#                                replica (autocommit read), "direct" to the primary;
#   oltp_read_only --skip_trx=on the read-only mix (point, range, sum, order, distinct)
#                                without BEGIN/COMMIT: replica through corelane;
#   oltp_read_only               the same inside BEGIN/COMMIT: all on the primary;
#   oltp_read_write              transactions with writes: all on the primary.
# (--rounds 0 runs none of them, only the idle sessions below.) Each run: --threads T
# (default 8) for --time S seconds (default 10), prepared statements (--db-ps-mode=auto, the
# binary protocol). Reported: QPS and 95th-percentile latency (median
# over rounds), errors, and the ratio corelane/direct. By default nothing is pinned:
# corelane, sysbench and both servers share the machine's cores, so corelane's CPU cost shows
# in QPS. With --pin the proxies run on CPU 1 and sysbench and the servers on CPU 0 (how
# bench/redis.sh places them): the proxy has a core of its own, as in a deployment, and what
# shows is the latency it adds.
#
# --baseline BIN adds a target "baseline": another corelane binary (an earlier build) with the
# same configuration on port 7326, run interleaved with the others, to compare builds in one run.
#
# A third target, when haproxy is installed: HAProxy in `mode tcp` in front of the primary
# (nbthread = workers). It splits nothing and parses nothing; it is the cost of one more hop
# on this machine, the floor for any proxy.
#
# Then (--idle N, default 2000; 0 skips it) the memory of idle sessions: corelane's RSS growth
# per session with N sessions opened in four batches, each left idle 7 s, after login only and
# after one read each (which opens the session's replica connection), on a listener that parks
# them (`park_after`, 5 s by default) and on one that never does (`park_after = "0s"`, port
# 7318), and how many answered a statement afterwards (bench/mysql_idle.py); then the same
# over TLS (ports 7319, parked, and 7320, never; config/examples/certs).
#
# Needs: mariadb-server, mariadb-client, sysbench, python3, python3-pymysql (Debian packages
# of those names).
# Everything listens on 127.0.0.1 only and is stopped on exit; raw outputs go to
# bench/out/mysql/ and the summary table to stdout.
set -euo pipefail

WORKERS=1 ROUNDS=3 TIME=10 THREADS=8 BUILD=1 PIN=0 IDLE=2000 BASELINE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --time) TIME=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --pin) PIN=1; shift ;;
    --idle) IDLE=$2; shift 2 ;;
    --baseline) BASELINE=$2; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
CMDLINE="bench/mysql.sh --workers $WORKERS --rounds $ROUNDS --time $TIME --threads $THREADS --idle $IDLE"
[ $PIN = 1 ] && CMDLINE="$CMDLINE --pin"
[ -n "$BASELINE" ] && CMDLINE="$CMDLINE --baseline $BASELINE"
ulimit -n "$(ulimit -Hn)"
if [ $PIN = 1 ]; then LOAD=(taskset -c 0) PROXY=(taskset -c 1); else LOAD=() PROXY=(); fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/bench/out/mysql
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/corelane
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/*.log "$OUT"/raw.tsv "$OUT"/idle.tsv
HAPROXY=0
command -v haproxy >/dev/null && HAPROXY=1
for tool in mariadbd sysbench python3; do
  command -v $tool >/dev/null || { echo "missing $tool (see the header of this script)" >&2; exit 1; }
done
if [ $BUILD = 1 ]; then (cd "$ROOT" && cargo build --release --quiet); fi
[ -x "$BIN" ] || { echo "no corelane binary at $BIN" >&2; exit 1; }

DB=$(mktemp -d /tmp/corelane-bench-mysql.XXXXXX)
CL_PID="" HA_PID="" BL_PID=""
cleanup() {
  [ -n "$CL_PID" ] && kill "$CL_PID" 2>/dev/null || true
  [ -n "$BL_PID" ] && kill "$BL_PID" 2>/dev/null || true
  [ -n "$HA_PID" ] && kill "$HA_PID" 2>/dev/null || true
  "$ROOT/scripts/mariadb-pair.sh" stop "$DB" || true
  rm -rf "$DB"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${LOAD[@]}" "$ROOT/scripts/mariadb-pair.sh" start "$DB" 13406 13407
cat > "$OUT/corelane.toml" <<EOF
workers = $WORKERS
[admin]
listen = "127.0.0.1:9913"
[log]
level = "warn"
[listeners.db]
listen = "127.0.0.1:7316"
protocol = "mysql"
cluster = "primary"
[listeners.db.mysql]
users = [{ user = "app", password = "app" }]
replicas = "replicas"
[listeners.never]
listen = "127.0.0.1:7318"
protocol = "mysql"
cluster = "primary"
park_after = "0s"
[listeners.never.mysql]
users = [{ user = "app", password = "app" }]
replicas = "replicas"
[listeners.dbtls]
listen = "127.0.0.1:7319"
protocol = "mysql"
cluster = "primary"
[listeners.dbtls.mysql]
users = [{ user = "app", password = "app" }]
replicas = "replicas"
[listeners.dbtls.tls]
certificates = [{ cert = "$ROOT/config/examples/certs/localhost.crt", key = "$ROOT/config/examples/certs/localhost.key", names = ["localhost"] }]
[listeners.nevertls]
listen = "127.0.0.1:7320"
protocol = "mysql"
cluster = "primary"
park_after = "0s"
[listeners.nevertls.mysql]
users = [{ user = "app", password = "app" }]
replicas = "replicas"
[listeners.nevertls.tls]
certificates = [{ cert = "$ROOT/config/examples/certs/localhost.crt", key = "$ROOT/config/examples/certs/localhost.key", names = ["localhost"] }]
[clusters.primary]
endpoints = [{ addr = "127.0.0.1:13406" }]
[clusters.primary.health_check]
kind = "mysql"
user = "corelane_check"
password = "corelane_check"
[clusters.replicas]
endpoints = [{ addr = "127.0.0.1:13407" }]
[clusters.replicas.health_check]
kind = "mysql"
user = "corelane_check"
password = "corelane_check"
max_replication_lag = "10s"
EOF
start_corelane() {
  "${PROXY[@]}" "$BIN" run -c "$OUT/corelane.toml" 2>> "$OUT/corelane.log" &
  CL_PID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/7316) 2>/dev/null && break; sleep 0.1; done
}
start_corelane

TARGETS=(direct corelane)
declare -A PORT=([direct]=13406 [corelane]=7316 [haproxy]=7317 [baseline]=7326)
if [ -n "$BASELINE" ]; then
  sed -e 's/7316/7326/; s/7318/7328/; s/9913/9923/' "$OUT/corelane.toml" > "$OUT/baseline.toml"
  "${PROXY[@]}" "$BASELINE" run -c "$OUT/baseline.toml" 2>> "$OUT/baseline.log" &
  BL_PID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/7326) 2>/dev/null && break; sleep 0.1; done
  kill -0 "$BL_PID" || { echo "the baseline exited, see $OUT/baseline.log" >&2; exit 1; }
  TARGETS+=(baseline)
fi
if [ $HAPROXY = 1 ]; then
  cat > "$OUT/haproxy.cfg" <<EOF
global
  nbthread $WORKERS
  maxconn 1000
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
listen db
  bind 127.0.0.1:7317
  server primary 127.0.0.1:13406
EOF
  "${PROXY[@]}" haproxy -f "$OUT/haproxy.cfg" -db > "$OUT/haproxy.log" 2>&1 &
  HA_PID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/7317) 2>/dev/null && break; sleep 0.1; done
  kill -0 "$HA_PID" || { echo "haproxy exited, see $OUT/haproxy.log" >&2; exit 1; }
  TARGETS+=(haproxy)
fi
sb() { # port, test, extra args...
  local port=$1 test=$2
  shift 2
  "${LOAD[@]}" sysbench "$test" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$port" \
    --mysql-user=app --mysql-password=app --mysql-db=shop --tables=4 --table-size=10000 \
    --db-ps-mode=auto "$@"
}
sb 13406 oltp_read_write --threads=4 prepare > "$OUT/prepare.log"
pos=$(mariadb --protocol=socket -S "$DB/primary.sock" -uroot -N -B -e "SELECT @@gtid_binlog_pos")
mariadb --protocol=socket -S "$DB/replica.sock" -uroot -N -B -e "SELECT MASTER_GTID_WAIT('$pos', 60)" > /dev/null
# Placement check: through corelane a point select is answered by the replica (server_id 2).
sid=$(mariadb -h127.0.0.1 -P7316 -uapp -papp shop -N -B -e "SELECT @@server_id")
[ "$sid" = 2 ] || { echo "corelane sent a read to server_id $sid, not the replica" >&2; exit 1; }

TESTS=("oltp_point_select" "oltp_read_only --skip_trx=on" "oltp_read_only" "oltp_read_write")
printf 'round\ttest\ttarget\tqps\tp95_ms\terrors\n' > "$OUT/raw.tsv"
for round in $(seq "$ROUNDS"); do
  # Rotate the order every round.
  order=()
  for i in "${!TARGETS[@]}"; do order+=("${TARGETS[$(( (i + round) % ${#TARGETS[@]} ))]}"); done
  for t in "${TESTS[@]}"; do
    for target in "${order[@]}"; do
      name=$(echo "$t" | tr -d ' -' | tr '=' '_')
      f="$OUT/$round-$name-$target.txt"
      # shellcheck disable=SC2086
      sb "${PORT[$target]}" $t --threads="$THREADS" --time="$TIME" --report-interval=0 run > "$f" 2>&1 \
        || { echo "sysbench failed, see $f" >&2; exit 1; }
      qps=$(awk '/queries:/ {gsub(/[(]/, "", $3); print $3}' "$f")
      p95=$(awk '/95th percentile:/ {print $3}' "$f")
      errs=$(awk '/ignored errors:/ {print $3}' "$f")
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$target" "$qps" "$p95" "$errs" >> "$OUT/raw.tsv"
      kill -0 "$CL_PID" || { echo "corelane exited, see $OUT/corelane.log" >&2; exit 1; }
      [ -z "$HA_PID" ] || kill -0 "$HA_PID" || { echo "haproxy exited, see $OUT/haproxy.log" >&2; exit 1; }
      [ -z "$BL_PID" ] || kill -0 "$BL_PID" || { echo "the baseline exited, see $OUT/baseline.log" >&2; exit 1; }
    done
  done
done

if [ "$IDLE" -gt 0 ]; then
  for s in primary replica; do
    mariadb --protocol=socket -S "$DB/$s.sock" -uroot -e "SET GLOBAL max_connections = $((IDLE + 200))"
  done
  # A fresh corelane for each kind, so that one's freed memory does not serve the other.
  CA=$ROOT/config/examples/certs/ca.crt
  for mode in login read; do
    for port in 7316 7318 7319 7320; do
      kill "$CL_PID"; wait "$CL_PID" || true
      start_corelane
      case $port in
        7316) label='"5s" (parked)' tls=() ;;
        7318) label='"0s" (never)' tls=() ;;
        7319) label='"5s" (parked), TLS' tls=("$CA") ;;
        7320) label='"0s" (never), TLS' tls=("$CA") ;;
      esac
      printf '%s\t' "$label" >> "$OUT/idle.tsv"
      "${LOAD[@]}" /usr/bin/python3 "$ROOT/bench/mysql_idle.py" "$CL_PID" $port $((IDLE / 4)) 4 "$mode" 7 "${tls[@]}" >> "$OUT/idle.tsv"
    done
  done
fi

echo "# $CMDLINE"
echo "# $(nproc) cores; corelane workers = $WORKERS (haproxy nbthread = $WORKERS); sysbench threads = $THREADS, $TIME s per run; pinned: $PIN"
[ "$(wc -l < "$OUT/raw.tsv")" -gt 1 ] && python3 - "$OUT/raw.tsv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
tests = list(dict.fromkeys(r["test"] for r in rows))
targets = list(dict.fromkeys(r["target"] for r in rows))
others = [t for t in targets if t != "direct"]
head = ["test"] + [f"{t} QPS" for t in targets] + [f"{t}/direct QPS" for t in others]
head += [f"{t} p95 ms" for t in targets] + [f"{t}/direct p95" for t in others]
head += ["errors (" + "/".join(targets) + ")"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for t in tests:
    m = {}
    for tgt in targets:
        rs = [r for r in rows if r["test"] == t and r["target"] == tgt]
        m[tgt] = (statistics.median(float(r["qps"]) for r in rs),
                  statistics.median(float(r["p95_ms"]) for r in rs),
                  sum(int(r["errors"] or 0) for r in rs))
    cells = [t] + [f"{m[x][0]:.0f}" for x in targets]
    cells += [f"{m[x][0] / m['direct'][0]:.2f}x" for x in others]
    cells += [f"{m[x][1]:.2f}" for x in targets]
    cells += [f"{m[x][1] / m['direct'][1]:.2f}x" for x in others]
    cells += ["/".join(str(m[x][2]) for x in targets)]
    print("| " + " | ".join(cells) + " |")
EOF
if [ -s "$OUT/idle.tsv" ]; then
  echo
  echo "| park_after | sessions | kind | corelane RSS growth per session so far after each batch (bytes) | answered afterwards |"
  echo "|---|---|---|---|---|"
  awk -F'\t' '{printf "| %s | %s | %s | %s | %s |\n", $1, $3, ($2 == "login" ? "after login" : "after one read (replica connection open)"), $4, $5}' "$OUT/idle.tsv"
fi
