#!/usr/bin/env bash
# Install the external benchmark peers, and what the harness's allocator rows need (idempotent):
#   - nchan:      Debian's nginx-light + libnginx-mod-nchan (apt-get; needs root)
#   - better-sse: `npm ci` in bench/peers/better-sse (needs Node.js >= 20 and npm)
#   - jemalloc:   Debian's libjemalloc2 (apt-get; needs root), preloaded into the Rust servers
#                 for the `tower-sse+jemalloc` and `baseline+jemalloc` rows
# Exits non-zero with a message naming what could not be installed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
failed=()

say() { echo "peers/install: $*" >&2; }

nchan_module() {
    for m in /usr/lib/nginx/modules/ngx_nchan_module.so \
             /usr/share/nginx/modules/ngx_nchan_module.so; do
        if [ -f "$m" ]; then echo "$m"; return 0; fi
    done
    return 1
}

# apt_install NAME CHECK PKG...: apt-get installs PKG... unless CHECK (a function) already succeeds;
# CHECK prints what is there. Adds NAME to `failed` if it still does not succeed.
apt_install() {
    local name=$1 check=$2 found
    shift 2
    if found=$($check); then
        say "$name: already installed ($found)"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "$name: apt-get not found; install $* (Debian) by hand"
        failed+=("$name")
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        say "$name: must run as root to apt-get install $*"
        failed+=("$name")
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1; then
        say "$name: first apt-get install failed; running apt-get update and retrying"
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y --no-install-recommends "$@" >/dev/null ||
            say "$name: apt-get install $* failed"
    fi
    if found=$($check); then
        say "$name: installed ($found)"
    else
        say "$name: still missing after apt-get install $*"
        failed+=("$name")
    fi
}

# --- nchan ---------------------------------------------------------------
nchan_found() {
    local module
    command -v nginx >/dev/null 2>&1 && module=$(nchan_module) &&
        echo "$(nginx -v 2>&1), module $module"
}
apt_install nchan nchan_found nginx-light libnginx-mod-nchan

# --- jemalloc ------------------------------------------------------------
# The path the harness preloads (bench/src/bin/run/servers.rs, `jemalloc()`).
jemalloc_found() {
    local lib
    lib=/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2
    [ -f "$lib" ] && echo "$lib"
}
apt_install jemalloc jemalloc_found libjemalloc2

# --- better-sse ----------------------------------------------------------
bsse=$here/better-sse
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ! command -v npm >/dev/null 2>&1 || [ "$node_major" -lt 20 ]; then
    say "better-sse: needs Node.js >= 20 with npm (found node major '${node_major}');" \
        "Debian bookworm's nodejs is 18, so use the machine's Node.js"
    failed+=(better-sse)
else
    stamp=$bsse/node_modules/.peers-lock-sha256
    want=$(sha256sum "$bsse/package-lock.json" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        [ -d "$bsse/node_modules/better-sse" ] && [ -d "$bsse/node_modules/express" ]; then
        say "better-sse: node_modules already match package-lock.json"
    elif (cd "$bsse" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
        echo "$want" >"$stamp"
        say "better-sse: installed with npm ci"
    else
        say "better-sse: npm ci failed in $bsse"
        failed+=(better-sse)
    fi
fi

if [ ${#failed[@]} -ne 0 ]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all installed"
