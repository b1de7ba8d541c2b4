#!/usr/bin/env bash
# Benchmark harness smoke run (issue 6): tiny counts, tower-sse and the axum baseline only,
# every scenario (per-user and many-topics included), and the same two on jemalloc
# (`tower-sse+jemalloc`, `baseline+jemalloc`, in the memory scenarios) when libjemalloc2 is
# installed (not measured otherwise, which does not fail), ~2.5 min on 2 cores. Fails if any
# scenario did not deliver (a per-user stream without its own event, a many-topics publish
# refused).
# Writes target/bench-smoke.md (and target/bench-smoke-plots/), never the committed
# BENCHMARKS.md. Needs taskset (util-linux).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v taskset >/dev/null; then
  if [ "${CI:-}" = true ]; then
    echo "bench-smoke: taskset (util-linux) missing — failing, because CI=true" >&2
    exit 1
  fi
  echo "bench-smoke: skipped: taskset (util-linux) is not installed"
  exit 0
fi

cargo run --release -p tower-sse-bench --bin run -- --smoke --out target/bench-smoke.md
