#!/usr/bin/env bash
# Live heap per idle SSE connection by allocation site, with heaptrack, and a comparison of two
# runs site by site.
#
#   bench/profile/heap.sh NAME SERVER CONNECTIONS [VAR=VALUE ...]   # writes target/profile/NAME.*
#   bench/profile/heap.sh --compare NAME_A NAME_B [DEPTH]           # bytes per connection, B - A
#
# Build with line tables so the sites have names:
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p tower-sse-bench --bins
# (apt-get install heaptrack). The peak is taken while every connection is open and idle.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/target/profile
mkdir -p "$out"
if [ "$1" = --compare ]; then
  exec python3 "$(dirname "$0")/compare_heap.py" "$out/$2" "$out/$3" "${4:-6}"
fi
name=$1; server=$2; n=$3; shift 3
bin=${BIN:-$root/target/release}
port=${PORT:-22901}
rm -f "$out/$name".*
env ADDR=127.0.0.1:$port WORKERS=1 "$@" heaptrack -o "$out/$name" "$bin/$server" > "$out/$name.log" 2>&1 &
tracker=$!  # heaptrack's script; the server is its child
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/plain" && break; sleep 0.2; done
taskset -c 1 "$bin/loadgen" subscribe --url "http://127.0.0.1:$port/events/idle" \
  --connections "$n" --source-ips 127.0.0.1,127.0.0.2,127.0.0.3 \
  --report "$out/$name.report.json" --duration 8 > "$out/$name.client" 2>&1 &
client=$!
sleep 7
pkill -INT -P "$tracker" -f "^$bin/$server\$" || true
wait "$client" || true
wait || true
data=
for f in "$out/$name".zst "$out/$name".gz; do [ -e "$f" ] && data=$f; done
heaptrack_print -f "$data" -p 0 -a 0 -T 0 --flamegraph-cost-type peak -F "$out/$name.peak" > /dev/null
heaptrack_print -f "$data" -p 0 -a 0 -T 0 --flamegraph-cost-type allocations -F "$out/$name.allocs" > /dev/null
echo "$n" > "$out/$name.n"
echo "$name: $(head -1 "$out/$name.client"); stacks in $out/$name.peak and $out/$name.allocs"
