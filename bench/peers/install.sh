#!/usr/bin/env bash
# Install the external benchmark peers (idempotent):
#   - nchan:      Debian's nginx-light + libnginx-mod-nchan (apt-get; needs root)
#   - better-sse: `npm ci` in bench/peers/better-sse (needs Node.js >= 20 and npm)
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

# --- nchan ---------------------------------------------------------------
if command -v nginx >/dev/null 2>&1 && nchan_module >/dev/null; then
    say "nchan: nginx and the nchan module are already installed"
else
    pkgs=(nginx-light libnginx-mod-nchan)
    if ! command -v apt-get >/dev/null 2>&1; then
        say "nchan: apt-get not found; install ${pkgs[*]} (Debian) by hand"
        failed+=(nchan)
    elif [ "$(id -u)" -ne 0 ]; then
        say "nchan: must run as root to apt-get install ${pkgs[*]}"
        failed+=(nchan)
    else
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1; then
            say "nchan: first apt-get install failed; running apt-get update and retrying"
            apt-get update -qq >/dev/null 2>&1 || true
            apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null ||
                say "nchan: apt-get install ${pkgs[*]} failed"
        fi
        if command -v nginx >/dev/null 2>&1 && nchan_module >/dev/null; then
            say "nchan: installed ($(nginx -v 2>&1), module $(nchan_module))"
        else
            say "nchan: nginx or ngx_nchan_module.so still missing after apt-get"
            failed+=(nchan)
        fi
    fi
fi

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
say "all peers installed"
