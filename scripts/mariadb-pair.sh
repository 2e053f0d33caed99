#!/usr/bin/env bash
# A real MariaDB primary and replica on loopback, with GTID replication, for the MySQL
# engine's tests and benchmarks (the MySQL engine, still to come, will use the default ports).
#
#   scripts/mariadb-pair.sh start DIR [PRIMARY_PORT] [REPLICA_PORT]   (defaults 13306 13307)
#   scripts/mariadb-pair.sh stop DIR
#
# `start` creates two data directories under DIR (mariadb-install-db), starts both servers
# bound to 127.0.0.1, creates the users below on the primary, points the replica at it
# (MASTER_USE_GTID = slave_pos) and returns once the replica has caught up. The replica runs
# with read_only = 1. Users (password = name, except root, which has none and only a socket):
#   app             ALL on shop.*          what clients log in as (through corelane)
#   repl            REPLICATION SLAVE      the replica's
#   corelane_check  REPLICATION CLIENT, SLAVE MONITOR, PROCESS: health checks
# Needs: mariadb-server, mariadb-client (Debian packages). Everything stays on 127.0.0.1.
set -euo pipefail
trap 'echo "mariadb-pair.sh: line $LINENO: a command failed (exit $?)" >&2' ERR

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,16p' "$0" >&2; exit 2; }
primary_port=${3:-13306}
replica_port=${4:-13307}
user_args=()
[ "$(id -u)" = 0 ] && user_args=(--user=root)

sql() { # port, statements
  mariadb --protocol=socket -S "$dir/$1.sock" -uroot -N -B -e "$2"
}

stop() {
  for s in replica primary; do
    if [ -f "$dir/$s.pid" ]; then
      kill "$(cat "$dir/$s.pid")" 2>/dev/null || true
      for _ in $(seq 100); do [ -f "$dir/$s.pid" ] || break; sleep 0.1; done
    fi
  done
}

start_server() { # name, port, server id, extra args...
  local name=$1 port=$2 id=$3
  shift 3
  if [ -f "$dir/$name.pid" ] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
    return 0 # already running
  fi
  # A tmpdir of its own: servers installed at the same time in one /tmp were seen to remove
  # each other's temporary tables.
  mkdir -p "$dir/$name-tmp"
  if [ ! -d "$dir/$name/mysql" ]; then
    mariadb-install-db --datadir="$dir/$name" --tmpdir="$dir/$name-tmp" "${user_args[@]}" \
      --auth-root-authentication-method=socket --skip-test-db > "$dir/$name-install.log" 2>&1 \
      || { echo "mariadb-install-db failed for $name:" >&2; tail -20 "$dir/$name-install.log" >&2; exit 1; }
  fi
  mariadbd --no-defaults --datadir="$dir/$name" --tmpdir="$dir/$name-tmp" "${user_args[@]}" --port="$port" \
    --bind-address=127.0.0.1 --socket="$dir/$name.sock" --pid-file="$dir/$name.pid" \
    --log-error="$dir/$name.err" --server-id="$id" --log-bin="$dir/$name/bin" \
    --binlog-format=ROW --gtid-strict-mode=1 --skip-name-resolve "$@" 2>> "$dir/$name.err" &
  for _ in $(seq 300); do
    mariadb-admin --protocol=socket -S "$dir/$name.sock" -uroot ping > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "mariadbd $name did not start; see $dir/$name.err" >&2
  exit 1
}

case $cmd in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    start_server primary "$primary_port" 1
    start_server replica "$replica_port" 2 --read-only=1
    sql primary "
      CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY 'repl';
      GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';
      CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app';
      GRANT ALL ON shop.* TO 'app'@'%';
      CREATE USER IF NOT EXISTS 'corelane_check'@'%' IDENTIFIED BY 'corelane_check';
      GRANT REPLICATION CLIENT, SLAVE MONITOR, PROCESS ON *.* TO 'corelane_check'@'%';
      CREATE DATABASE IF NOT EXISTS shop;"
    sql replica "
      STOP SLAVE;
      CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$primary_port,
        MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos;
      START SLAVE;"
    pos=$(sql primary "SELECT @@gtid_binlog_pos")
    caught=$(sql replica "SELECT MASTER_GTID_WAIT('$pos', 30)")
    if [ "$caught" != 0 ]; then
      echo "the replica did not catch up with $pos; see $dir/replica.err" >&2
      exit 1
    fi
    echo "primary 127.0.0.1:$primary_port, replica 127.0.0.1:$replica_port (GTID $pos)"
    ;;
  stop) stop ;;
  *) echo "unknown command $cmd (start or stop)" >&2; exit 2 ;;
esac
