#!/usr/bin/env bash
# Benchmarks (issue 7; BENCHMARKS.md): installs wrk if missing, builds the release binary and the
# bench harness, and runs the items given (default: all of footprint, actions, engine, webhooks).
#
#   scripts/bench.sh                      # everything, full size (about 45 minutes on 2 cores)
#   scripts/bench.sh actions --runs 3     # one item, fewer runs
#   scripts/bench.sh --quick              # small sizes, a smoke test of the harness
#
# PostgreSQL (the actions and webhooks items only):
#   scripts/bench.sh --postgres actions webhooks --replicas 3
#       wraps the run in scripts/with-postgres.sh (a throw-away cluster, removed afterwards) and
#       hands its server to the harness as CONNECTOR_BENCH_POSTGRES_URL; every server start
#       gets a fresh database there, with --replicas N binaries (default 1) on it.
#   scripts/bench.sh actions --postgres postgres://user@127.0.0.1:5432/postgres
#       the same on a server you run (databases bench_* are created and dropped on it).
#
# Raw results: $CARGO_TARGET_DIR/bench/<item>.json (<item>-postgres-r<N>.json on PostgreSQL),
# tables: <item>.md and summary.md, server logs: logs/. Every server and load generator binds
# 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

# `--postgres` without a URL after it: run again inside a throw-away cluster.
args=()
throwaway=0
while [ $# -gt 0 ]; do
    if [ "$1" = "--postgres" ] && { [ $# -eq 1 ] || [[ "$2" != postgres*://* ]]; }; then
        throwaway=1
    else
        args+=("$1")
    fi
    shift
done
if [ "$throwaway" = 1 ]; then
    exec scripts/with-postgres.sh bash -c \
        'export CONNECTOR_BENCH_POSTGRES_URL="$CONNECTOR_TEST_POSTGRES_URL"; exec "$0" "$@"' \
        "$0" ${args[@]+"${args[@]}"}
fi
set -- ${args[@]+"${args[@]}"}

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
