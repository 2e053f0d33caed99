#!/usr/bin/env bash
# Packs corelane's release binary and every tool the benchmarks run (wrk, h2load, curl,
# haproxy, nginx and its modules, redis, nutcracker, memcached, memcslap, taskset, pgrep) with
# ALL their shared libraries, glibc's loader included, into one folder that runs on another
# x86-64 Linux machine with nothing of theirs installed (the scripts still need bash, coreutils,
# awk and python3 there): the 16-core device machine this project is
# sometimes lent, which has no package registry. Each tool becomes a wrapper in DIR/bin that
# `exec`s the bundled loader on the real binary (so a pid taken with `$!` is the tool's own,
# and CPU affinity set by taskset carries over), with the bundled libraries only.
#
#   bench/device/bundle.sh DIR [--perf]  # then, there: . bench/device/env.sh DIR; bench/....sh --no-build
#                                        # or bench/device/suite.sh DIR tcp http ...
#
# --perf adds perf (for `suite.sh DIR httpprof`). perf brings python's and perl's libraries:
# the bundle then passes 64 MiB, so carry it compressed (`tar cJf bundle.tar.xz DIR`, about
# 21 MB) and unpack it there.
#
# Only the wrappers find the bundled libraries: nothing else on that machine is affected.
# This is a measuring aid, not a way to ship corelane (see Dockerfile for that).
set -euo pipefail
# DIR is emptied of what an earlier bundle put there: refuse a folder that holds anything else.
if [ -d "$1" ] && [ -n "$(ls -A "$1")" ] && [ ! -f "$1/.corelane-bundle" ]; then
  echo "$1 is not empty and not a corelane bundle: give a new or empty folder" >&2
  exit 1
fi
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
touch "$DIR/.corelane-bundle"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS="wrk h2load curl haproxy nginx redis-server redis-benchmark redis-cli nutcracker memcached memcslap taskset pgrep"
[ "${2:-}" = --perf ] && TOOLS="$TOOLS perf"
rm -rf "$DIR/bin" "$DIR/real" "$DIR/lib" "$DIR/nginx-modules"
mkdir -p "$DIR/bin" "$DIR/real" "$DIR/lib" "$DIR/nginx-modules"

(cd "$ROOT" && cargo build --release --quiet)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/corelane
objs=()
add() { # $1: a binary or module to bundle
  objs+=("$1")
}
strip -o "$DIR/real/corelane" "$BIN"
add "$DIR/real/corelane"
for t in $TOOLS; do
  p=$(command -v "$t") || { echo "missing $t" >&2; exit 1; }
  cp -L "$p" "$DIR/real/$t"
  add "$DIR/real/$t"
done
for m in /usr/lib/nginx/modules/*.so; do cp -L "$m" "$DIR/nginx-modules/"; add "$m"; done
# Every library any of them loads, resolved here (glibc and its loader too).
for o in "${objs[@]}"; do
  if ldd "$o" | grep -q 'not found'; then echo "$o: a library is missing here (ldd)" >&2; exit 1; fi
  ldd "$o" | awk '/=>/ && $3 ~ /^\// {print $3} /^\t\/lib/ {print $1}'
done | sort -u | while read -r lib; do cp -L "$lib" "$DIR/lib/"; done
cp -L /lib64/ld-linux-x86-64.so.2 "$DIR/lib/"
for t in corelane $TOOLS; do
  cat > "$DIR/bin/$t" <<W
#!/bin/sh
d=\$(dirname "\$(readlink -f "\$0")")/..
exec "\$d/lib/ld-linux-x86-64.so.2" --library-path "\$d/lib" --argv0 "\$0" "\$d/real/$t" "\$@"
W
  chmod +x "$DIR/bin/$t"
done
du -sh "$DIR"
