#!/usr/bin/env bash
# Run the better-sse peer in the foreground: start.sh ADDR
#   ADDR  listen address, host:port (e.g. 127.0.0.1:8083)
# Execs into a single `node` process (no cluster): its pid is the server's,
# so taskset, /proc/PID/status and kill apply to it directly.
# Prints `listening on http://ADDR` on stdout when ready.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 ADDR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)

node=${NODE:-$(command -v node || true)}
if [ -z "$node" ]; then
    echo "better-sse peer: node not found; run bench/peers/install.sh" >&2
    exit 1
fi
if [ ! -d "$here/node_modules/better-sse" ] || [ ! -d "$here/node_modules/express" ]; then
    echo "better-sse peer: dependencies missing; run bench/peers/install.sh" >&2
    exit 1
fi

cd "$here"
ADDR=$1 exec "$node" server.mjs
