#!/usr/bin/env bash
# Redis and Memcached benchmark: corelane vs twemproxy (nutcracker) vs a direct connection to
# ONE server, all in ONE run with rounds interleaved, over the same servers.
#
#   bench/redis.sh [--workers N] [--rounds R] [--requests N] [--requests-p16 N]
#                  [--mc-requests N] [--clients C] [--keys K]
#                  [--no-redis] [--no-memcache] [placement options of bench/lib.sh]
#
# Servers: 3 redis-server (127.0.0.1:17101-17103, no persistence) and 2 memcached
# (127.0.0.1:11401-11402, 1 thread each): not the ports of config/examples (17001-17003,
# 11301-11302), so that servers started from the examples can keep running beside it.
# twemproxy has a redis pool and a memcache pool over them; corelane has a redis and a memcache
# listener over the same servers, with the same key placement (hash fnv1a_64, distribution
# ketama, hash_tag "{}", one connection per server per worker, 5 s server timeout, no
# ejection). Placement is checked before measuring: keys written through either proxy must be
# read back through the other. "direct" is the first server alone.
#
# Tests, per round, per target (the target order rotates every round):
#   redis-benchmark -c C -r K --csv (3-byte values; every key preloaded): -t set and -t get
#     with -P 1 (-n N, default 200,000) and -P 16 (-n N16, default 10 x N), and MGET of 10
#     random keys (-P 1, -n N; the keys fall on all three shards);
#   memcslap (libmemcached's memslap): C threads, one blocking connection each, one request in
#     flight: set, and get (after setting the keys it gets); --mc-requests in all (default N).
#     Its keys and values are random alphanumerics (about 50-byte keys, values ~2.6 KiB average).
#     memaslap, the event-driven one, cannot be used: its keys start with 8 binary bytes
#     (0x10-0x1f), which corelane refuses (CLIENT_ERROR) as control characters.
# Measures req/s (median over rounds; ratios corelane/twemproxy and against direct), redis p99
# latency, and proxy CPU time per request: user+sys of the proxy process from /proc/PID/stat
# before and after each run, divided by the requests of the run. With one core per proxy and
# the load generator on the other, req/s is often capped by the client; CPU per request does
# not depend on which process is the bottleneck.
#
# Placement (as bench/tcp.sh): both proxies pinned to CPU 1; the load generators and the
# servers on CPU 0, so each proxy has a whole core and the same neighbours (bench/lib.sh's
# placement options change that; --threads runs that many redis-benchmark processes). corelane runs
# `workers = N` (--workers, default 1); twemproxy is single-threaded by design and always runs
# one process. With N > 1 on a 2-core machine use --no-pin (the scheduler places everything),
# otherwise the N workers share CPU 1.
#
# Needs: redis-server, redis-benchmark, memcached, memcslap, nutcracker, taskset, python3
# (Debian: redis-server redis-tools memcached libmemcached-tools nutcracker util-linux python3).
# Everything listens on 127.0.0.1 only and is stopped on exit (Ctrl-C included); raw outputs go
# to bench/out/redis/ and the summary table to stdout. The binary is built with
# `cargo build --release` into $CARGO_TARGET_DIR (default target/) unless --no-build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"

WORKERS=1 ROUNDS=5 REQUESTS=200000 REQUESTS_P16="" MC_REQUESTS="" CLIENTS=50 KEYS=100000
REDIS=1 MEMCACHE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) WORKERS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --requests-p16) REQUESTS_P16=$2; shift 2 ;;
    --mc-requests) MC_REQUESTS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --no-redis) REDIS=0; shift ;;
    --no-memcache) MEMCACHE=0; shift ;;
    *) common_opt "$@" && shift "$TOOK" || { echo "unknown option $1 (see the header of $0)" >&2; exit 2; } ;;
  esac
done
REQUESTS_P16=${REQUESTS_P16:-$((REQUESTS * 10))}
MC_REQUESTS=${MC_REQUESTS:-$REQUESTS}
CMDLINE="bench/redis.sh --workers $WORKERS --rounds $ROUNDS --clients $CLIENTS"
if [ $REDIS = 1 ]; then
  CMDLINE="$CMDLINE --requests $REQUESTS --requests-p16 $REQUESTS_P16 --keys $KEYS"
else
  CMDLINE="$CMDLINE --no-redis"
fi
if [ $MEMCACHE = 1 ]; then CMDLINE="$CMDLINE --mc-requests $MC_REQUESTS"; else CMDLINE="$CMDLINE --no-memcache"; fi
[ $REDIS = 1 ] || [ $MEMCACHE = 1 ] || { echo "nothing to do" >&2; exit 2; }
[ $((MC_REQUESTS / CLIENTS)) -gt 0 ] || { echo "--mc-requests must be at least --clients" >&2; exit 2; }
[ $((CLIENTS % THREADS)) = 0 ] || { echo "--clients must be a multiple of --threads (redis-benchmark processes)" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)"
OUT=$ROOT/bench/out/redis
mkdir -p "$OUT"
rm -f "$OUT"/*.pid "$OUT"/raw.tsv "$OUT"/*.csv "$OUT"/*.err "$OUT"/*.txt "$OUT"/*.log

tools="nutcracker python3"
[ $REDIS = 1 ] && tools="$tools redis-server redis-benchmark"
[ $MEMCACHE = 1 ] && tools="$tools memcached memcslap"
[ $PIN = 1 ] && tools="$tools taskset"
for tool in $tools; do
  command -v $tool >/dev/null || { echo "missing $tool (see the header of this script)" >&2; exit 1; }
done

placement
CMDLINE="$CMDLINE$PLACEMENT"

REDIS_SERVERS=(17101 17102 17103)
MC_SERVERS=(11401 11402)
declare -A REDIS_PORT=([direct]=17101 [twemproxy]=7201 [corelane]=7211)
declare -A MC_PORT=([direct]=11401 [twemproxy]=7202 [corelane]=7212)
TARGETS=(direct twemproxy corelane)
# Load generators run under `timeout --foreground`: without --foreground, timeout moves to a
# process group of its own and Ctrl-C would not reach them.
TMP=$(mktemp -d /tmp/corelane-bench-redis.XXXXXX)

# Whether a process runs (a zombie, exited but not yet reaped by this shell, does not).
running() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ]
}
cleanup() {
  local f pids="" p alive=""
  for f in "$OUT"/*.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  # Wait up to 3 s for them to exit, then kill what is left.
  for _ in $(seq 30); do
    alive=""
    for p in $pids; do running "$p" && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in $alive; do kill -9 "$p" 2>/dev/null || true; done
  rm -f "$OUT"/*.pid
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Stops the run when a server or proxy has exited (a crash, or Ctrl-C: they exit on SIGINT).
check_alive() {
  local f
  for f in "$OUT"/*.pid; do
    running "$(cat "$f")" || { echo "$(basename "$f" .pid) has exited: stopping" >&2; exit 1; }
  done
}

# Waits until something accepts on 127.0.0.1:$2, and checks that the process in $OUT/$1.pid is
# the one still running (a leftover listener on the port would otherwise pass).
wait_ready() {
  local name=$1 port=$2
  for _ in $(seq 100); do
    running "$(cat "$OUT/$name.pid")" || { echo "$name exited (see $OUT/$name.log)" >&2; exit 1; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$name is not listening on $port" >&2
  exit 1
}

# --- the servers --------------------------------------------------------------------------
if [ $REDIS = 1 ]; then
  for p in "${REDIS_SERVERS[@]}"; do
    mkdir -p "$TMP/redis-$p"
    "${BACKEND_PIN[@]}" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$TMP/redis-$p" --maxclients 10000 --logfile "$OUT/redis-$p.log" & echo $! > "$OUT/redis-$p.pid"
  done
fi
if [ $MEMCACHE = 1 ]; then
  for p in "${MC_SERVERS[@]}"; do
    "${BACKEND_PIN[@]}" memcached -l 127.0.0.1 -p "$p" -U 0 -t 1 -m 256 -c 10000 -u "$(id -un)" \
      > "$OUT/memcached-$p.log" 2>&1 & echo $! > "$OUT/memcached-$p.pid"
  done
fi
if [ $REDIS = 1 ]; then for p in "${REDIS_SERVERS[@]}"; do wait_ready "redis-$p" "$p"; done; fi
if [ $MEMCACHE = 1 ]; then for p in "${MC_SERVERS[@]}"; do wait_ready "memcached-$p" "$p"; done; fi

# --- the proxies, same servers, same placement --------------------------------------------
pool_yml() { # name, listen port, redis true/false, server ports...
  local name=$1 port=$2 redis=$3 p
  shift 3
  cat <<EOF
$name:
  listen: 127.0.0.1:$port
  redis: $redis
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: ketama
  timeout: 5000
  backlog: 4096
  server_connections: 1
  auto_eject_hosts: false
  servers:
EOF
  for p in "$@"; do echo "   - 127.0.0.1:$p:1"; done
}
{
  if [ $REDIS = 1 ]; then pool_yml redis "${REDIS_PORT[twemproxy]}" true "${REDIS_SERVERS[@]}"; fi
  if [ $MEMCACHE = 1 ]; then pool_yml memcache "${MC_PORT[twemproxy]}" false "${MC_SERVERS[@]}"; fi
} > "$OUT/nutcracker.yml"
"${PROXY[@]}" nutcracker -c "$OUT/nutcracker.yml" -a 127.0.0.1 -s 22299 -o "$OUT/twemproxy.log" \
  & echo $! > "$OUT/twemproxy.pid"

listener_toml() { # name (also the protocol and the cluster), listen port, server ports...
  local name=$1 port=$2 p eps=""
  shift 2
  for p in "$@"; do eps="$eps{ addr = \"127.0.0.1:$p\" }, "; done
  cat <<EOF
[listeners.$name]
listen = "127.0.0.1:$port"
protocol = "$name"
cluster = "$name"
backlog = 4096
[clusters.$name]
hash = "fnv1a_64"
hash_tag = "{}"
distribution = "ketama"
timeout = "5s"
server_connections = 1
auto_eject_hosts = false
endpoints = [${eps%, }]
EOF
}
{
  cat <<EOF
workers = $WORKERS
shutdown_timeout = "1s"
[admin]
listen = "127.0.0.1:9912"
[log]
level = "warn"
EOF
  if [ $REDIS = 1 ]; then listener_toml redis "${REDIS_PORT[corelane]}" "${REDIS_SERVERS[@]}"; fi
  if [ $MEMCACHE = 1 ]; then listener_toml memcache "${MC_PORT[corelane]}" "${MC_SERVERS[@]}"; fi
} > "$OUT/corelane.toml"
"${PROXY[@]}" "$BIN" run -c "$OUT/corelane.toml" 2> "$OUT/corelane.log" & echo $! > "$OUT/corelane.pid"

for t in twemproxy corelane; do
  if [ $REDIS = 1 ]; then wait_ready $t "${REDIS_PORT[$t]}"; fi
  if [ $MEMCACHE = 1 ]; then wait_ready $t "${MC_PORT[$t]}"; fi
done

# --- same placement: what twemproxy writes, corelane must read, and vice versa -------------
check_placement() { # protocol, port to write, port to read
  python3 - "$@" <<'PY'
import socket, sys
proto, wport, rport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = 300
keys = [f"bench:check:{wport}:{i}" for i in range(n)]
def roundtrip(port, payload, done):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    buf = b""
    while not done(buf):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf
if proto == "redis":
    cmd = lambda *a: b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a)
    w = b"".join(cmd(b"SET", k.encode(), k.encode()) for k in keys)
    roundtrip(wport, w, lambda b: b.count(b"\r\n") >= n)
    r = b"".join(cmd(b"GET", k.encode()) for k in keys)
    got = roundtrip(rport, r, lambda b: b.count(b"\r\n") >= 2 * n)
    ok = got == b"".join(b"$%d\r\n%s\r\n" % (len(k), k.encode()) for k in keys)
else:
    w = b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k.encode(), len(k), k.encode()) for k in keys)
    roundtrip(wport, w, lambda b: b.count(b"\r\n") >= n)
    r = b"".join(b"get %s\r\n" % k.encode() for k in keys)
    got = roundtrip(rport, r, lambda b: b.count(b"END\r\n") >= n)
    ok = got == b"".join(b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (k.encode(), len(k), k.encode()) for k in keys)
if not ok:
    sys.exit(f"{proto}: keys written through port {wport} are not all read back through port {rport}")
PY
}
if [ $REDIS = 1 ]; then
  check_placement redis "${REDIS_PORT[twemproxy]}" "${REDIS_PORT[corelane]}"
  check_placement redis "${REDIS_PORT[corelane]}" "${REDIS_PORT[twemproxy]}"
fi
if [ $MEMCACHE = 1 ]; then
  check_placement memcache "${MC_PORT[twemproxy]}" "${MC_PORT[corelane]}"
  check_placement memcache "${MC_PORT[corelane]}" "${MC_PORT[twemproxy]}"
fi

# --- preload: every redis key the GET and MGET tests ask for exists (direct server and shards)
# (random keys: 8 x K sets leave about 0.03% of them unset).
for t in "${TARGETS[@]}"; do
  [ $REDIS = 1 ] || break
  "${LOAD[@]}" redis-benchmark -p "${REDIS_PORT[$t]}" -c "$CLIENTS" -r "$KEYS" -n $((KEYS * 8)) -P 16 \
    -t set --csv > "$OUT/preload-$t.csv" 2> "$OUT/preload-$t.err"
  sed -i '/^WARNING: Could not fetch server CONFIG$/d' "$OUT/preload-$t.err"
done

cpu_ticks() { # user+sys clock ticks of one process (all its threads); 0 for none
  if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi
}
HZ=$(getconf CLK_TCK)
echo -e "round\ttest\ttarget\tkind\tvalue" > "$OUT/raw.tsv"
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUT/raw.tsv"; }
# Records proxy CPU per request for a run: round, test, target, ticks before, after, requests.
record_cpu() {
  if [ "$3" != direct ] && [ "${6:-0}" -gt 0 ]; then
    record "$1" "$2" "$3" cpu_us_per_req "$(python3 -c "print(($5-$4)/$HZ*1e6/$6)")"
  fi
}

MGET_ARGS=(MGET)
for _ in $(seq 10); do MGET_ARGS+=("key:__rand_int__"); done
# name, pipeline, requests, redis-benchmark arguments
REDIS_TESTS=(
  "set_p1|1|$REQUESTS|-t set"
  "get_p1|1|$REQUESTS|-t get"
  "set_p16|16|$REQUESTS_P16|-t set"
  "get_p16|16|$REQUESTS_P16|-t get"
  "mget10_p1|1|$REQUESTS|${MGET_ARGS[*]}"
)
# More load than one redis-benchmark thread gives (--threads T): T redis-benchmark processes,
# each single-threaded with C/T clients and N/T requests, timed together by the wall clock;
# p99 is the worst of theirs. Not redis-benchmark's own --threads: it ends a threaded run only
# at its 250 ms progress tick, so its elapsed time, and its req/s, come rounded by up to 250 ms
# (20-25% of a 1 s run, always against the faster target).
run_redis() { # round, target
  local r=$1 t=$2 spec name pipe n args pid c0 c1 t0 t1 f rps p99 i gen
  pid=""; [ "$t" = direct ] || pid=$(cat "$OUT/$t.pid")
  for spec in "${REDIS_TESTS[@]}"; do
    IFS='|' read -r name pipe n args <<< "$spec"
    f="$OUT/$name-$t-$r"
    c0=$(cpu_ticks "$pid") t0=$(date +%s%N) gen=()
    for i in $(seq "$THREADS"); do
      # shellcheck disable=SC2086 # $args is a list of words
      "${LOAD[@]}" timeout --foreground 600 redis-benchmark -p "${REDIS_PORT[$t]}" -c $((CLIENTS / THREADS)) \
        -r "$KEYS" -n $((n / THREADS)) -P "$pipe" --csv $args > "$f.$i.csv" 2> "$f.$i.err" \
        || echo "exit status $?" >> "$f.$i.err" &
      gen+=($!)
    done
    wait "${gen[@]}"
    t1=$(date +%s%N) c1=$(cpu_ticks "$pid")
    cat "$f".*.err > "$f.err"
    # redis-benchmark asks CONFIG GET first; neither proxy forwards CONFIG, so it warns.
    sed -i '/^WARNING: Could not fetch server CONFIG$/d' "$f.err"
    check_alive
    if [ "$THREADS" = 1 ]; then
      mv "$f.1.csv" "$f.csv"
      rps=$(awk -F'"' 'NR == 2 {print $4}' "$f.csv")
    else
      cat "$f".*.csv > "$f.csv"
      rps=$(python3 -c "print(round($((n / THREADS * THREADS)) * 1e9 / ($t1 - $t0), 2))")
    fi
    rm -f "$f".*.csv "$f".*.err
    p99=$(awk -F'"' '$4 ~ /^[0-9.]+$/ && $14 > m {m = $14} END {print m}' "$f.csv")
    record "$r" "$name" "$t" rps "$rps"
    record "$r" "$name" "$t" p99_ms "$p99"
    record_cpu "$r" "$name" "$t" "$c0" "$c1" "$n"
    echo "round $r $t $name: $rps req/s, p99 $p99 ms$( [ -s "$f.err" ] && echo " (stderr: $f.err)")" >&2
  done
}

# memcslap (libmemcached's memslap): C threads, one blocking connection each, one request in
# flight. -e is per thread. A get run first sets its keys over one connection (not timed, but
# counted in the proxy's requests); it then reports how many gets succeeded.
MC_TESTS=(mc_set mc_get)
run_memcache() { # round, target
  local r=$1 t=$2 name pid c0 c1 f per done secs reqs rps
  pid=""; [ "$t" = direct ] || pid=$(cat "$OUT/$t.pid")
  per=$((MC_REQUESTS / CLIENTS))
  for name in "${MC_TESTS[@]}"; do
    f="$OUT/$name-$t-$r"
    c0=$(cpu_ticks "$pid")
    "${LOAD[@]}" timeout --foreground 600 memcslap -s "127.0.0.1:${MC_PORT[$t]}" -t "${name#mc_}" -c "$CLIENTS" \
      -e "$per" -N > "$f.txt" 2> "$f.err" || echo "exit status $?" >> "$f.err"
    c1=$(cpu_ticks "$pid")
    check_alive
    # "Time to get 100000 keys by 50 threads: 2.436 seconds."
    read -r done secs < <(awk '$1 == "Time" && $6 == "by" {print $4, $9}' "$f.txt")
    if [ "${done:-0}" != $((per * CLIENTS)) ]; then
      echo "memcslap: ${done:-no} of $((per * CLIENTS)) requests succeeded" >> "$f.err"
    fi
    reqs=$((per * CLIENTS)); [ "$name" = mc_get ] && reqs=$((reqs + per))
    rps=$(python3 -c "print(round(${done:-0} / ${secs:-0}, 2) if ${secs:-0} else '')")
    record "$r" "$name" "$t" rps "$rps"
    record_cpu "$r" "$name" "$t" "$c0" "$c1" "$reqs"
    echo "round $r $t $name: $rps req/s$( [ -s "$f.err" ] && echo " (stderr: $f.err)")" >&2
  done
}

for r in $(seq 1 "$ROUNDS"); do
  # Rotate the order every round so no target always runs first or last.
  order=("${TARGETS[@]:$((r % 3))}" "${TARGETS[@]:0:$((r % 3))}")
  if [ $REDIS = 1 ]; then
    for t in "${order[@]}"; do run_redis "$r" "$t"; done
  fi
  if [ $MEMCACHE = 1 ]; then
    for t in "${order[@]}"; do run_memcache "$r" "$t"; done
  fi
done

python3 "$ROOT/bench/summarize_keyed.py" "$OUT" "$CMDLINE" "$WORKERS" | tee "$OUT/summary.md"
