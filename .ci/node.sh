# Sourced by .ci/run and by the suites that run Node.js: `use_node20` makes `node` on PATH a
# Node.js 20 or newer. Debian 12's nodejs is 18, and playwright-core, the eventsource package
# and `node --test --test-concurrency` need 20. When the machine's node is older (or missing,
# npm being there), the npm registry's `node` package, which carries the official binary, is
# installed under target/ci-node and put first on PATH (exported). Fails when it cannot be.

CI_NODE_VERSION=20.20.2

node_major() {
  node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

use_node20() {
  (($(node_major) >= 20)) && return 0
  local prefix="${CARGO_TARGET_DIR:-target}/ci-node"
  if [ ! -x "$prefix/node_modules/.bin/node" ]; then
    command -v npm >/dev/null || return 1
    echo "node $(node --version 2>/dev/null || echo 'not found'): installing node@$CI_NODE_VERSION from the npm registry into $prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error \
      "node@$CI_NODE_VERSION" || return 1
  fi
  PATH="$(cd "$prefix" && pwd)/node_modules/.bin:$PATH"
  export PATH
  (($(node_major) >= 20))
}
