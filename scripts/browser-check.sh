#!/usr/bin/env bash
# Loads Swagger UI (/docs/) from the running service in headless Debian Chromium and checks that
# the rendered page lists every operation of openapi/openapi.json (by its summary and path).
# Server and browser run in a fresh network namespace with only a loopback interface, so no
# request can leave 127.0.0.1 (Swagger UI's assets are vendored; its validator is off).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian chromium"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# The debug binary is built by the test run already; fuzzing does not need an optimised one.
cargo build --locked --quiet
WORK="$(mktemp -d)"
trap "rm -rf \"$WORK\"" EXIT
export BC_WORK="$WORK"

unshare --net bash -euo pipefail -c '
  ip link set lo up
  BASE=http://127.0.0.1:18480
  ./target/debug/insights-connector serve --bind 127.0.0.1:18480 --data-dir "$BC_WORK/data" \
      --api-keys "ui:browser-check-key-0123456789" >"$BC_WORK/server.log" 2>&1 &
  SERVER=$!
  trap "kill $SERVER 2>/dev/null || true" EXIT
  for _ in $(seq 1 100); do curl -sf "$BASE/ready" >/dev/null && break; sleep 0.1; done
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$BC_WORK/profile" --virtual-time-budget=20000 \
      --dump-dom "$BASE/docs/" >"$BC_WORK/dom.html" 2>"$BC_WORK/chromium.log"
'

python3 - "$WORK/dom.html" <<'PY'
import html, json, re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
spec = json.load(open("openapi/openapi.json", encoding="utf-8"))
# Each rendered operation: method, path, deep link (#/Tag/operationId) and summary.
rendered = {
    (m.upper(), p, op, html.unescape(summary))
    for m, p, op, summary in re.findall(
        r'opblock-summary-method">(\w+)</span>.*?data-path="([^"]+)">'
        r'<a class="nostyle" href="#/[^/"]+/(\w+)">.*?opblock-summary-description">([^<]*)<',
        dom,
        re.S,
    )
}
expected = {
    (method.upper(), path, op["operationId"], op["summary"])
    for path, item in spec["paths"].items()
    for method, op in item.items()
    if method in ("get", "post", "put", "patch", "delete")
}
print(f"Swagger UI rendered {len(rendered)} operations; the spec has {len(expected)}")
missing = sorted(expected - rendered)
if missing:
    print("not rendered:", *missing, sep="\n  ")
    sys.exit(1)
print("browser check: every operation is listed with its operationId and summary")
PY
