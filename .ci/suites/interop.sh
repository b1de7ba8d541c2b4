#!/usr/bin/env bash
# Independent parsers: the `eventsource` npm package and Python's httpx-sse read what the hub
# server (examples/hub.rs) writes, and reconnect with Last-Event-ID; see tests/interop/driver.mjs.
# Builds the hub, installs both clients from their lockfiles (npm ci; pip with hashes, into a venv
# under target/), then runs the driver, whose last line is `interop: N passed, M failed`.
# Under CI=true a missing tool or package, or a failed download, fails the suite; elsewhere it is
# skipped with a notice.
set -euo pipefail
cd "$(dirname "$0")/../.."

skip() {
  if [ "${CI:-}" = true ]; then
    echo "interop: $* — failing, because CI=true (.ci/run must provide it)" >&2
    exit 1
  fi
  echo "interop: skipped: $*"
  exit 0
}

for tool in node npm python3; do
  command -v "$tool" >/dev/null || skip "$tool not found"
done
source .ci/node.sh
use_node20 || skip "Node.js 20 or newer is needed (see .ci/node.sh)"

target=${CARGO_TARGET_DIR:-target}
cargo build --examples
hub="$target/debug/examples/hub"
[ -x "$hub" ] || { echo "interop: $hub was not built" >&2; exit 1; }

echo "interop: npm ci (tests/interop/package-lock.json)"
if ! (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error); then
  skip "npm ci failed in tests/interop (no network, or the registry refused)"
fi

venv="$target/interop-venv"
echo "interop: pip install into $venv (tests/interop/requirements.txt)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || skip "python3 -m venv failed"
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
  -r tests/interop/requirements.txt; then
  skip "pip install -r tests/interop/requirements.txt failed (no network, or the index refused)"
fi

HUB_BIN="$hub" PYTHON="$venv/bin/python" node tests/interop/driver.mjs
