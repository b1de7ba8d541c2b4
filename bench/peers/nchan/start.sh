#!/usr/bin/env bash
# Run the nchan peer in the foreground: start.sh ADDR DIR
#   ADDR  listen address, host:port (e.g. 127.0.0.1:8082)
#   DIR   run directory (created); gets nginx.conf, nginx.pid, error.log, tmp/
# Env: HISTORY_AGE_MS (nchan_message_timeout, default 1h), TOPIC_IDLE_TTL_MS
# (nchan_channel_timeout, nchan's default 5s), NCHAN_SHARED_MEMORY (default 128M);
# NGINX and NCHAN_MODULE override the binaries found.
# The script execs into the nginx master (`daemon off;`), which forks ONE
# worker process that serves every connection:
#   - pinning: `taskset -c N start.sh ...` (the worker inherits the affinity);
#   - memory/CPU: read the worker, `pgrep -P <master pid>` (the master is idle);
#   - stopping: SIGTERM (fast) or SIGQUIT (graceful) to the master pid; SIGKILL
#     of the master would leave the worker running and holding the port.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 ADDR DIR" >&2
    exit 2
fi
addr=$1
dir=$2
here=$(cd "$(dirname "$0")" && pwd)

nginx=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [ ! -x "$nginx" ]; then
    echo "nchan peer: nginx not found; run bench/peers/install.sh" >&2
    exit 1
fi
module=${NCHAN_MODULE:-}
if [ -z "$module" ]; then
    for m in /usr/lib/nginx/modules/ngx_nchan_module.so \
             /usr/share/nginx/modules/ngx_nchan_module.so; do
        if [ -f "$m" ]; then module=$m; break; fi
    done
fi
if [ -z "$module" ] || [ ! -f "$module" ]; then
    echo "nchan peer: ngx_nchan_module.so not found; run bench/peers/install.sh" >&2
    exit 1
fi

# Milliseconds (HISTORY_AGE_MS, TOPIC_IDLE_TTL_MS) to nginx seconds, rounded up, at least 1.
seconds() { echo "$(( ($1 + 999) / 1000 > 0 ? ($1 + 999) / 1000 : 1 ))s"; }
message_timeout=1h
channel_timeout=5s
if [ -n "${HISTORY_AGE_MS:-}" ]; then message_timeout=$(seconds "$HISTORY_AGE_MS"); fi
if [ -n "${TOPIC_IDLE_TTL_MS:-}" ]; then channel_timeout=$(seconds "$TOPIC_IDLE_TTL_MS"); fi
shm=${NCHAN_SHARED_MEMORY:-128M}
if [ -n "${HISTORY_AGE_MS:-}${TOPIC_IDLE_TTL_MS:-}" ]; then
    echo "expiry: nchan_message_timeout $message_timeout, nchan_channel_timeout $channel_timeout" \
        "(empty channels), nchan_shared_memory_size $shm"
fi

mkdir -p "$dir/tmp"
dir=$(cd "$dir" && pwd)
sed -e "s|@LISTEN@|$addr|g" -e "s|@DIR@|$dir|g" -e "s|@MODULE@|$module|g" \
    -e "s|@MESSAGE_TIMEOUT@|$message_timeout|g" -e "s|@CHANNEL_TIMEOUT@|$channel_timeout|g" \
    -e "s|@SHM@|$shm|g" \
    "$here/nginx.conf.template" >"$dir/nginx.conf"

# -e: log startup errors to DIR too (the compiled-in default is stderr/var/log).
exec "$nginx" -e "$dir/error.log" -c "$dir/nginx.conf" -p "$dir" \
    -g 'daemon off;'
