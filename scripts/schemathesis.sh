#!/usr/bin/env bash
# Fuzzes the running service with schemathesis against both the OpenAPI 3.1 document and the
# Swagger 2.0 connector definition, all phases (examples, coverage, fuzzing, stateful), bounded by
# --max-examples.
#
# Fuzzed subscribe calls hand the server arbitrary callback URLs, so the server AND schemathesis
# run inside a fresh network namespace that has only a loopback interface (`unshare -n`, then
# `ip link set lo up`), with private callbacks disallowed: no packet can leave 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
VENV=.venv
./scripts/python-tools.sh

# The debug binary is built by the test run already; fuzzing does not need an optimised one.
cargo build --locked --quiet
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
export ST_KEY="schemathesis-key-0123456789abcdef"
export ST_DATA="$DATA" ST_MAX="$MAX_EXAMPLES" ST_VENV="$VENV"

exec unshare --net bash -euo pipefail -c '
  ip link set lo up
  PORT=18380
  BASE="http://127.0.0.1:$PORT"
  RUST_LOG=info,tracing_actix_web=error ./target/debug/insights-connector serve --bind "127.0.0.1:$PORT" --data-dir "$ST_DATA" \
      --api-keys "st:$ST_KEY" --public-url "$BASE" >"$ST_DATA/server.log" 2>&1 &
  SERVER=$!
  trap "kill $SERVER 2>/dev/null || true" EXIT
  for _ in $(seq 1 100); do
    curl -sf "$BASE/ready" >/dev/null && break
    sleep 0.1
  done
  # A realistic instance so generated ids sometimes hit real objects.
  curl -sf -H "X-API-Key: $ST_KEY" -H "content-type: application/json" \
       -d "{\"name\":\"Fuzzed\"}" "$BASE/instances" >/dev/null

  status=0
  common=(--header "X-API-Key: $ST_KEY" --max-examples "$ST_MAX" --seed 1
          --generation-database none --no-color --workers 2)
  echo "== schemathesis: OpenAPI 3.1 ($BASE/openapi.json)"
  "$ST_VENV/bin/schemathesis" --config-file tests/schemathesis.toml run "$BASE/openapi.json" "${common[@]}" || status=1
  echo "== schemathesis: Swagger 2.0 connector definition"
  "$ST_VENV/bin/schemathesis" --config-file tests/schemathesis.toml run connector-definition/apiDefinition.swagger.json \
      --url "$BASE" "${common[@]}" || status=1
  if [ $status -ne 0 ]; then
    echo "--- server log (tail)"; grep -v " WARN " "$ST_DATA/server.log" | tail -n 20
  fi
  if grep -q "panicked" "$ST_DATA/server.log"; then
    echo "the server panicked during fuzzing:"; grep -A3 panicked "$ST_DATA/server.log" | head -40
    status=1
  fi
  exit $status
'
