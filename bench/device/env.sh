# Sourced on the machine that runs the benchmarks from a bundle (bench/device/bundle.sh DIR):
#   . bench/device/env.sh DIR
# puts the bundled tools first on PATH, points the scripts at the bundled corelane and nginx
# modules (run them with --no-build), and prepares what the bundled nginx expects of the
# filesystem. Meant for a bare machine where the benchmarks run as root.
B=$(cd "$1" && pwd)
export PATH="$B/bin:$PATH" CORELANE_BIN="$B/bin/corelane" NGINX_MODULES="$B/nginx-modules"
mkdir -p /var/lib/nginx /var/log/nginx
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Many connections at once need a deep accept queue. (The ephemeral port range is left alone:
# widening it down to 1024 collides with the ports the benchmarks listen on.)
sysctl -qw net.core.somaxconn=65535 2>/dev/null || true
