#!/usr/bin/env bash
# Resident memory per idle SSE connection of one bench server, in one process, pinned like the
# benchmark (server on core 0, client on core 1).
#
#   bench/profile/rss.sh SERVER CONNECTIONS [VAR=VALUE ...]
#
# SERVER is a binary of the bench crate (`baseline`, `tower-sse-server`); the VAR=VALUE pairs go
# to its environment, e.g. NOOP_LAYER=1, OUTER_LAYER=1, NO_LAYER=1, or
# LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 (apt-get install libjemalloc2) to see
# how much of a difference is glibc malloc's. Build first:
# cargo build --release -p tower-sse-bench --bins
set -euo pipefail
server=$1; n=$2; shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/target/release}
port=${PORT:-22900}
log=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$log"' EXIT
# env and taskset exec into the server: $! is its pid.
env ADDR=127.0.0.1:$port WORKERS=1 "$@" taskset -c 0 "$bin/$server" > "$log/server" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q listening "$log/server" && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
before=$(rss)
taskset -c 1 "$bin/loadgen" subscribe --url "http://127.0.0.1:$port/events/idle" \
  --connections "$n" --source-ips 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4 \
  --report "$log/report.json" --duration 30 > "$log/client" 2>&1 &
for _ in $(seq 300); do grep -q ready "$log/client" && break; sleep 0.1; done
sleep 2
after=$(rss)
echo "$server $* : $(head -1 "$log/client"); RSS $before -> $after KiB:" \
  "$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }') KiB per connection"
