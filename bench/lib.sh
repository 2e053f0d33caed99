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

# wrk's 99th percentile latency in milliseconds, from its --latency output file $1.
p99_ms() {
  awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$1"
}
