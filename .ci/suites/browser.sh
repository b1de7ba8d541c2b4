#!/usr/bin/env bash
# Suite: a real browser. Debian's Chromium, driven from Node (playwright-core, no browser
# download), opens real EventSource streams against the hub and the examples (tests/browser).
# Under CI=true a missing browser or package is installed or fails the suite, never skips it;
# locally a missing Chromium skips with a message.
set -euo pipefail
cd "$(dirname "$0")/../.."

ci=false
[ "${CI:-}" = true ] && ci=true
chromium_bin=${CHROMIUM:-/usr/bin/chromium}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
  else
    return 1
  fi
}

if [ ! -x "$chromium_bin" ]; then
  if ! apt_install chromium || [ ! -x "$chromium_bin" ]; then
    if $ci; then
      echo "browser suite: no Chromium at $chromium_bin and it could not be installed" >&2
      exit 1
    fi
    echo "browser suite: SKIPPED: no Chromium at $chromium_bin (apt-get install chromium)"
    exit 0
  fi
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm || { echo "browser suite: node and npm are needed" >&2; exit 1; }
fi
source .ci/node.sh
use_node20 || { echo "browser suite: Node.js 20 or newer is needed (see .ci/node.sh)" >&2; exit 1; }
if ! command -v redis-server >/dev/null && ! apt_install redis-server && $ci; then
  echo "browser suite: redis-server is needed for the Redis reconnect case" >&2
  exit 1
fi

echo "browser suite: $("$chromium_bin" --version 2>/dev/null | head -1), node $(node --version)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# The hub and the examples, as the tests spawn them (target/debug/examples/...); `compression`
# for the compression example.
cargo build --examples --features compression

export CHROMIUM="$chromium_bin"
node --test --test-concurrency=1 --test-timeout=120000 tests/browser/*.test.mjs
