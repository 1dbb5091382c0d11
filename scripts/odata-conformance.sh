#!/usr/bin/env bash
# OData conformance of GetItems: a differential test of the service's $filter, $orderby, $select,
# $top/$skip, $count and $search against an independent OData 4.01 reference evaluator
# (tests/odata/reference.py), plus the OASIS ABNF test cases that apply to one flat entity.
# tests/odata/differential.py generates seeded data and queries, and compares every answer.
#
# The server and the driver run inside a fresh network namespace that has only a loopback
# interface (`unshare --net`, then `ip link set lo up`): no packet can leave 127.0.0.1.
# It does not build: it runs ./target/debug/insights-connector (the test run builds it), or
# $CONNECTOR_BIN. Extra arguments go to the driver (e.g. --seed 7 --count 2000 --report FILE).
# ODATA_ABNF_CASES names the OASIS odata-abnf-testcases.yaml (default: the copy in tests/odata/abnf/).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${CONNECTOR_BIN:-./target/debug/insights-connector}"
if [ ! -x "$BIN" ]; then
  echo "odata-conformance: no executable at $BIN (build it, or set CONNECTOR_BIN)" >&2
  exit 2
fi
VENV=.venv
./scripts/python-tools.sh

DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
export OC_BIN="$BIN" OC_DATA="$DATA" OC_VENV="$VENV"
export ODATA_API_KEY="odata-conformance-key-0123456789ab"
export ODATA_ABNF_CASES="${ODATA_ABNF_CASES-$PWD/tests/odata/abnf/odata-abnf-testcases.yaml}"

unshare --net bash -euo pipefail -c '
  ip link set lo up
  PORT=18390
  BASE="http://127.0.0.1:$PORT"
  export ODATA_BASE_URL="$BASE"
  # No request budget: the driver sends well over a thousand queries.
  env -u CONNECTOR_RATE_LIMIT RUST_LOG=info,tracing_actix_web=error "$OC_BIN" serve --bind "127.0.0.1:$PORT" \
      --data-dir "$OC_DATA" --api-keys "odata:$ODATA_API_KEY" --public-url "$BASE" >"$OC_DATA/server.log" 2>&1 &
  SERVER=$!
  trap "kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true" EXIT
  for _ in $(seq 1 100); do
    curl -sf "$BASE/ready" >/dev/null && break
    sleep 0.1
  done
  if ! curl -sf "$BASE/ready" >/dev/null; then
    echo "odata-conformance: the server did not become ready"; tail -n 20 "$OC_DATA/server.log"; exit 1
  fi

  status=0
  "$OC_VENV/bin/python" tests/odata/differential.py "$@" || status=$?
  if grep -q "panicked" "$OC_DATA/server.log"; then
    echo "the server panicked:"; grep -A3 panicked "$OC_DATA/server.log" | head -40
    status=1
  fi
  if [ $status -ne 0 ]; then
    echo "--- server log (tail)"; grep -v " WARN " "$OC_DATA/server.log" | tail -n 20 || true
  fi
  exit $status
' odata-conformance "$@"
