#!/usr/bin/env bash
# Benchmarks (issue 7; BENCHMARKS.md): installs wrk if missing, builds the release binary and the
# bench harness, and runs the items given (default: all of footprint, actions, engine, webhooks).
#
#   scripts/bench.sh                      # everything, full size (about 45 minutes on 2 cores)
#   scripts/bench.sh actions --runs 3     # one item, fewer runs
#   scripts/bench.sh --quick              # small sizes, a smoke test of the harness
#
# Raw results: $CARGO_TARGET_DIR/bench/<item>.json, tables: <item>.md and summary.md,
# server logs: logs/. Every server and load generator binds 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "== installing wrk (Debian package)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq wrk
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
echo "== cargo bench --bench service -- $*"
cargo bench --locked --bench service -- "$@"
echo "== results in $CARGO_TARGET_DIR/bench/ (summary.md, <item>.json, <item>.md, logs/)"
