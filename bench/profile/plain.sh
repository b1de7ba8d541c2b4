#!/usr/bin/env bash
# Instructions per ordinary request (`GET /plain`) with callgrind, for the layer-overhead target.
#
#   bench/profile/plain.sh NAME [VAR=VALUE ...]    # e.g. NO_LAYER=1, NOOP_LAYER=1, OUTER_LAYER=1
#
# Runs tower-sse-server under callgrind (apt-get install valgrind), sends `loadgen plain` at it
# for 6 s and prints the instructions per request (server start-up, ~0.6M, is included and is
# negligible). Annotate with `callgrind_annotate target/profile/NAME.callgrind`. Build with
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p tower-sse-bench --bins
set -euo pipefail
name=$1; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$root/target/release}
port=${PORT:-22902}
out=$root/target/profile
mkdir -p "$out"
rm -f "$out/$name.callgrind"
env ADDR=127.0.0.1:$port WORKERS=1 "$@" taskset -c 0 valgrind --tool=callgrind \
  --callgrind-out-file="$out/$name.callgrind" "$bin/tower-sse-server" > "$out/$name.valgrind" 2>&1 &
server=$!  # env, taskset and valgrind exec: the server runs under this pid
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/plain" && break; sleep 0.2; done
requests=$(taskset -c 1 "$bin/loadgen" plain --url "http://127.0.0.1:$port/plain" \
  --connections 10 --duration 6 | sed 's/.*"requests":\([0-9]*\).*/\1/')
kill -INT "$server" || true
wait || true
total=$(callgrind_annotate "$out/$name.callgrind" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }')
echo "$name $*: $requests requests, $(awk -v t="$total" -v r="$requests" 'BEGIN { printf "%.0f", t / r }') instructions per request"
