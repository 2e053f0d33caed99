# Helpers shared by the benchmark scripts (sourced, not run). They read $OUT, where each
# script keeps a `<target>.pid` file per process it started.

# All pids of a target's process tree (nginx forks workers; threads share the pid).
pids_of() {
  local todo all p t
  todo=$(cat "$OUT/$1.pid") all=""
  while [ -n "$todo" ]; do
    all="$all $todo"
    p=""
    for t in $todo; do p="$p $(pgrep -P "$t" | tr '\n' ' ')"; done
    todo=$(echo $p)
  done
  echo $all
}

# user+sys clock ticks summed over pids.
cpu_ticks() {
  local sum=0 p
  for p in "$@"; do
    [ -r /proc/$p/stat ] && sum=$((sum + $(awk '{print $14 + $15}' /proc/$p/stat)))
  done
  echo $sum
}

# user clock ticks alone summed over pids (the share of cpu_ticks spent outside the kernel).
user_ticks() {
  local sum=0 p
  for p in "$@"; do
    [ -r /proc/$p/stat ] && sum=$((sum + $(awk '{print $14}' /proc/$p/stat)))
  done
  echo $sum
}

# wrk's 99th percentile latency in milliseconds, from its --latency output file $1.
p99_ms() {
  awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$1"
}

# Options every benchmark takes, for where its processes run and which binary it measures:
#   --proxy-cpus LIST    CPUs of the proxy under test (taskset list; default 1)
#   --load-cpus LIST     CPUs of the load generators (default 0)
#   --backend-cpus LIST  CPUs of the backends/servers (default: the load CPUs)
#   --threads T          load generator threads (wrk -t, h2load -t, redis-benchmark --threads;
#                        default 1)
#   --backend-workers N  worker processes of an nginx backend (default 1)
#   --no-pin             pin nothing: the scheduler places every process
#   --no-build           measure the binary as it is, without `cargo build --release` first
# The binary measured is $CORELANE_BIN if set (then nothing is built), else
# $CARGO_TARGET_DIR/release/corelane (default target/).
# The defaults fit a 2-CPU machine: each proxy gets CPU 1 to itself, everything else shares
# CPU 0. On a larger machine give each group its own CPUs (bench/device/suite.sh).
PROXY_CPUS=1 LOAD_CPUS=0 BACKEND_CPUS="" THREADS=1 BACKEND_WORKERS=1 PIN=1 BUILD=1
# Takes one of the options above at $1 (value at $2); sets TOOK to the words used, or fails.
common_opt() {
  case "$1" in
    --proxy-cpus) PROXY_CPUS=$2; TOOK=2 ;;
    --load-cpus) LOAD_CPUS=$2; TOOK=2 ;;
    --backend-cpus) BACKEND_CPUS=$2; TOOK=2 ;;
    --threads) THREADS=$2; TOOK=2 ;;
    --backend-workers) BACKEND_WORKERS=$2; TOOK=2 ;;
    --no-pin) PIN=0; TOOK=1 ;;
    --no-build) BUILD=0; TOOK=1 ;;
    *) return 1 ;;
  esac
}
# After parsing: the command prefixes LOAD, PROXY and BACKEND_PIN (arrays, not functions: a
# function run with `&` forks a subshell, and $! would then name the subshell rather than the
# server), the options as given for CMDLINE (PLACEMENT), and BIN, built unless --no-build.
placement() {
  BACKEND_CPUS=${BACKEND_CPUS:-$LOAD_CPUS}
  if [ $PIN = 1 ]; then
    LOAD=(taskset -c "$LOAD_CPUS") PROXY=(taskset -c "$PROXY_CPUS") BACKEND_PIN=(taskset -c "$BACKEND_CPUS")
    PLACEMENT=""
    [ "$PROXY_CPUS" != 1 ] && PLACEMENT="$PLACEMENT --proxy-cpus $PROXY_CPUS"
    [ "$LOAD_CPUS" != 0 ] && PLACEMENT="$PLACEMENT --load-cpus $LOAD_CPUS"
    [ "$BACKEND_CPUS" != "$LOAD_CPUS" ] && PLACEMENT="$PLACEMENT --backend-cpus $BACKEND_CPUS"
  else
    LOAD=() PROXY=() BACKEND_PIN=() PLACEMENT=" --no-pin"
  fi
  [ "$THREADS" != 1 ] && PLACEMENT="$PLACEMENT --threads $THREADS"
  [ "$BACKEND_WORKERS" != 1 ] && PLACEMENT="$PLACEMENT --backend-workers $BACKEND_WORKERS"
  BIN=${CORELANE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/corelane}
  if [ $BUILD = 1 ] && [ -z "${CORELANE_BIN:-}" ]; then (cd "$ROOT" && cargo build --release --quiet); fi
  [ -x "$BIN" ] || { echo "no corelane binary at $BIN" >&2; exit 1; }
  NGINX_MODULES=${NGINX_MODULES:-/usr/lib/nginx/modules}
}

# A one-worker nginx on $2 (host:port) answering `GET /` with a short text, its files in $1;
# its pid goes to $1/backend.pid (the caller stops it).
nginx_backend() {
  # $3 (optional): an address for the same server over TLS (config/examples/certs/localhost.*).
  local tls=""
  [ -n "${3:-}" ] && tls="server { listen $3 ssl backlog=4096; ssl_certificate $ROOT/config/examples/certs/localhost.crt; ssl_certificate_key $ROOT/config/examples/certs/localhost.key; ssl_protocols TLSv1.2 TLSv1.3; location = / { return 200 \"hello, corelane bench\\n\"; } }"
  cat > "$1/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $1/backend.nginx.pid;
error_log $1/backend.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server { listen $2 backlog=4096; location = / { return 200 "hello, corelane bench\n"; } }
  $tls
}
CONF
  nginx -c "$1/backend.conf" -e "$1/backend.err" & echo $! > "$1/backend.pid"
}
