#!/usr/bin/env bash
# Walk-through of insights-connector against a running server, end to end:
#
#   instance → data sources (the example files, uploaded inline) → unification → segments and
#   measures → a local webhook receiver subscribed to two triggers → full refresh (202, polled
#   until 200) → summary → the notifications that arrived → clean-up.
#
# Usage:
#   examples/walkthrough.sh [API_KEY]
#
# Environment:
#   CONNECTOR_KEY       API key (when no argument is given)
#   CONNECTOR_URL       the server (default http://127.0.0.1:8080)
#   RECEIVER_PORT       port of the local webhook receiver (default 9090)
#   SEGMENT_THRESHOLD   threshold of the segment trigger (default 15; "Berlin customers" has 20)
#
# The receiver listens on 127.0.0.1, so the server must allow private callbacks (development
# only) and must not restrict callback hosts:
#
#   cargo run --release -- --allow-private-callbacks
#
# Needs bash, curl, jq and cargo (the receiver is the cargo example `webhook_receiver`).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BASE=${CONNECTOR_URL:-http://127.0.0.1:8080}
BASE=${BASE%/}
KEY=${1:-${CONNECTOR_KEY:-}}
RECEIVER_PORT=${RECEIVER_PORT:-9090}
SEGMENT_NAME="Berlin customers"
SEGMENT_THRESHOLD=${SEGMENT_THRESHOLD:-15}
START_SERVER_HINT="cargo run --release -- --allow-private-callbacks"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
    printf '\nerror: %s\n' "$*" >&2
    exit 1
}

for tool in curl jq cargo; do
    command -v "$tool" >/dev/null || die "$tool is required (e.g. apt-get install $tool)"
done
[[ -n $KEY ]] || die "no API key: pass it as the first argument or set CONNECTOR_KEY
       (the server prints one at its first start; or: insights-connector keys create --tenant NAME)"

TMP=$(mktemp -d)
RECEIVER_PID=""
INSTANCE=""
SUBSCRIPTIONS=()
cleanup() {
    if [[ -n $RECEIVER_PID ]]; then
        kill "$RECEIVER_PID" 2>/dev/null || true
        wait "$RECEIVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# api METHOD PATH_OR_URL [JSON_BODY]: sets STATUS, BODY and LOCATION.
api() {
    local method=$1 url=$2
    [[ $url == http://* || $url == https://* ]] || url="$BASE$url"
    local args=(-sS -X "$method" -H "X-API-Key: $KEY" -D "$TMP/headers" -o "$TMP/body"
        -w '%{http_code}')
    if [[ $# -ge 3 ]]; then
        STATUS=$(printf '%s' "$3" | curl "${args[@]}" -H 'Content-Type: application/json' \
            --data-binary @- "$url") || die "$method $url: no answer from the server"
    else
        STATUS=$(curl "${args[@]}" "$url") || die "$method $url: no answer from the server"
    fi
    BODY=$(cat "$TMP/body")
    LOCATION=$(tr -d '\r' <"$TMP/headers" | sed -n 's/^[Ll]ocation: *//p' | tail -n 1)
    RETRY_AFTER=$(tr -d '\r' <"$TMP/headers" | sed -n 's/^[Rr]etry-[Aa]fter: *//p' | tail -n 1)
}

# expect STATUS...: dies with the problem details unless the last call answered one of them.
expect() {
    local s
    for s in "$@"; do [[ $STATUS == "$s" ]] && return 0; done
    die "expected HTTP $* but got $STATUS: $(jq -r '.detail // .' <<<"$BODY" 2>/dev/null || echo "$BODY")"
}

uri() { jq -rn --arg v "$1" '$v|@uri'; }

# ---------------------------------------------------------------------------------------------
step "Checking the server at $BASE"
curl -fsS "$BASE/health" >/dev/null 2>&1 || die "no server answers at $BASE/health. Start one with:
       $START_SERVER_HINT
       (or set CONNECTOR_URL)"
api GET /instances
[[ $STATUS != 401 ]] || die "the server refused the API key (401)"
expect 200
info "server is up, key accepted ($(jq '.value | length' <<<"$BODY") instance(s) visible)"

# ---------------------------------------------------------------------------------------------
step "Creating an instance (CreateInstance)"
api POST /instances "$(jq -n --arg n "Walkthrough $(date -u +%Y-%m-%dT%H:%M:%SZ)" '{name: $n}')"
expect 201
INSTANCE=$(jq -r .instanceId <<<"$BODY")
info "instance $INSTANCE ($(jq -r .name <<<"$BODY"))"

# ---------------------------------------------------------------------------------------------
step "Creating the data sources, uploading the example files inline (CreateDataSource)"
while read -r source; do
    file=$(jq -r .file <<<"$source")
    body=$(jq --rawfile content "$HERE/$file" 'del(.file) + {content: $content}' <<<"$source")
    api POST "/instances/$INSTANCE/datasources" "$body"
    expect 201
    rows=$(grep -c . "$HERE/$file" || true)
    [[ $(jq -r .format <<<"$BODY") == csv ]] && rows=$((rows - 1)) # the header
    printf '    %-18s → %-17s %-5s %4s rows  (%s)\n' "$(jq -r .name <<<"$BODY")" \
        "$(jq -r .entityName <<<"$BODY")" "$(jq -r .format <<<"$BODY")" "$rows" "$file"
done < <(jq -c '.[]' "$HERE/datasources.json")

# ---------------------------------------------------------------------------------------------
step "Setting the unification configuration (SetUnificationConfig)"
api PUT "/instances/$INSTANCE/unification" "$(cat "$HERE/unification.json")"
expect 200
jq -r '"    sources: " + ([.sources[] | "\(.entityName) (priority \(.priority))"] | join(", ")),
       (.rules[] | "    rule \"\(.name)\": " + ([.conditions[] | "\(.field) \(.normalization) \(.precision)"
           + (if .threshold then " ≥ \(.threshold)" else "" end)] | join(" and "))),
       "    merge: \(.merge.policy)"' <<<"$BODY"

# ---------------------------------------------------------------------------------------------
step "Creating segments (CreateSegment) and measures (CreateMeasure)"
SEGMENT_ID=""
while read -r segment; do
    api POST "/instances/$INSTANCE/segments" "$segment"
    expect 201
    printf '    segment %-28s %s\n' "$(jq -r .name <<<"$BODY")" "$(jq -r .filter <<<"$BODY")"
    if [[ $(jq -r .name <<<"$BODY") == "$SEGMENT_NAME" ]]; then
        SEGMENT_ID=$(jq -r .segmentId <<<"$BODY")
    fi
done < <(jq -c '.[]' "$HERE/segments.json")
[[ -n $SEGMENT_ID ]] || die "segments.json has no segment named '$SEGMENT_NAME'"
while read -r measure; do
    api POST "/instances/$INSTANCE/measures" "$measure"
    expect 201
    printf '    measure %-28s %s(%s) of %s%s\n' "$(jq -r .name <<<"$BODY")" \
        "$(jq -r .aggregate <<<"$BODY")" "$(jq -r '.field // ""' <<<"$BODY")" \
        "$(jq -r .entityName <<<"$BODY")" "$(jq -r '.filter // "" | if . != "" then " where " + . else "" end' <<<"$BODY")"
done < <(jq -c '.[]' "$HERE/measures.json")

# ---------------------------------------------------------------------------------------------
step "Starting the webhook receiver (cargo example webhook_receiver) on 127.0.0.1:$RECEIVER_PORT"
if curl -s -o /dev/null "http://127.0.0.1:$RECEIVER_PORT/" 2>/dev/null; then
    die "port $RECEIVER_PORT is already in use; set RECEIVER_PORT to a free port"
fi
info "building: cargo build --release --example webhook_receiver"
RECEIVER_BIN=$(cd "$ROOT" && cargo build --release --example webhook_receiver \
    --message-format=json-render-diagnostics 2>"$TMP/build.log" |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "webhook_receiver")
           | .executable // empty' | tail -n 1) || true
[[ -n $RECEIVER_BIN && -x $RECEIVER_BIN ]] || {
    cat "$TMP/build.log" >&2
    die "building the webhook receiver failed"
}
# A fresh Standard Webhooks secret: the service signs every notification with it and the
# receiver refuses (401) anything whose signature does not verify.
SECRET="whsec_$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
WEBHOOK_SECRET=$SECRET "$RECEIVER_BIN" --host 127.0.0.1 --port "$RECEIVER_PORT" \
    >"$TMP/receiver.out" 2>"$TMP/receiver.err" &
RECEIVER_PID=$!
for _ in $(seq 1 50); do
    curl -fs -o /dev/null "http://127.0.0.1:$RECEIVER_PORT/" && break
    kill -0 "$RECEIVER_PID" 2>/dev/null || {
        cat "$TMP/receiver.err" >&2
        die "the webhook receiver did not start"
    }
    sleep 0.2
done
curl -fs -o /dev/null "http://127.0.0.1:$RECEIVER_PORT/" || die "the webhook receiver does not answer"
info "$(head -n 1 "$TMP/receiver.err")"

# ---------------------------------------------------------------------------------------------
step "Subscribing the receiver to two triggers (what Power Automate does when a flow is saved)"
subscribe() { # subscribe OPERATION_ID PATH BODY
    api POST "/instances/$INSTANCE/triggers/$2" "$3"
    if [[ $STATUS == 400 ]]; then
        local detail
        detail=$(jq -r '.detail // empty' <<<"$BODY")
        if [[ $detail == *"notificationUrl is not allowed"* ]]; then
            api DELETE "/instances/$INSTANCE" # the instance is of no use without triggers
            die "the server refused the local callback URL:
       $detail
       A receiver on 127.0.0.1 needs a server started for development with private callbacks
       allowed (and no --callback-hosts allowlist), e.g. on a fresh data directory:
           $START_SERVER_HINT
       or CONNECTOR_ALLOW_PRIVATE_CALLBACKS=true. Never allow them in production."
        fi
    fi
    expect 201
    SUBSCRIPTIONS+=("$LOCATION")
    printf '    %-26s subscription %s\n    %-26s Location %s\n' "$1" \
        "$(jq -r .subscriptionId <<<"$BODY")" "" "$LOCATION"
}
subscribe OnFullRefreshCompleted full-refresh-completed "$(jq -n \
    --arg url "http://127.0.0.1:$RECEIVER_PORT/flows/full-refresh-completed" --arg secret "$SECRET" \
    '{notificationUrl: $url, secret: $secret}')"
subscribe OnSegmentThresholdCrossed segment-threshold "$(jq -n \
    --arg url "http://127.0.0.1:$RECEIVER_PORT/flows/segment-threshold" --arg secret "$SECRET" \
    --arg segment "$SEGMENT_ID" --argjson threshold "$SEGMENT_THRESHOLD" \
    '{notificationUrl: $url, secret: $secret, segmentId: $segment, threshold: $threshold}')"
info "(segment \"$SEGMENT_NAME\", threshold $SEGMENT_THRESHOLD)"

# ---------------------------------------------------------------------------------------------
step "Running a full refresh (StartFullRefresh → 202, then polling the Location until 200)"
api POST "/instances/$INSTANCE/refresh"
expect 202
JOB_URL=$LOCATION
info "202 Accepted, Location $JOB_URL"
polls=0
while :; do
    sleep "${RETRY_AFTER:-1}"
    api GET "$JOB_URL"
    polls=$((polls + 1))
    [[ $STATUS == 202 ]] || break
    ((polls < 300)) || die "the job did not finish in time"
done
expect 200
JOB=$BODY
info "200 OK after $polls poll(s): job $(jq -r .status <<<"$JOB")$(jq -r '.error // "" | if . != "" then " (" + . + ")" else "" end' <<<"$JOB")"
jq -r '.result.stages[] | "      \(.stage | . + " " * (12 - length)) \(.name | . + " " * (31 - length)) \(.status)  "
      + (if .detail then (.detail | to_entries | map("\(.key)=\(.value)") | join(" ")) else .error end)' <<<"$JOB"

# ---------------------------------------------------------------------------------------------
step "Summary"
api GET "/instances/$INSTANCE/entities"
expect 200
info "Entities (GetEntities):"
jq -r '.value[] | "      \(.name | . + " " * (20 - length)) \(.kind | . + " " * (8 - length)) \(.itemCount | tostring | " " * (5 - length) + .) items"' <<<"$BODY"

jq -r '.result.stages[] | select(.stage == "unification") | .detail
       | "    Unification: \(.sourceRecords) source records → \(.unifiedProfiles) unified customer profiles (\(.matchedRecords) records matched with another)"' <<<"$JOB"
api GET "/instances/$INSTANCE/entities/Customer/items?\$top=1000"
expect 200
info "A profile merged from the most records (GetItems on Customer):"
jq -r '[.value[]] | max_by(.sources | length)
       | "      \(.CustomerId): \(.firstName) \(.lastName), \(.email), \(.phone // "-"), \(.city // "-")",
         "        from " + ([.sources[] | "\(.entityName)/\(.key)"] | join(", "))' <<<"$BODY"

api GET "/instances/$INSTANCE/segments"
expect 200
info "Segments (ListSegments):"
jq -r '.value[] | "      \(.name | . + " " * (28 - length)) \(.memberCount | tostring | " " * (4 - length) + .) members   \(.filter)"' <<<"$BODY"
api GET "/instances/$INSTANCE/segments/$SEGMENT_ID/members?\$top=3"
expect 200
info "First members of \"$SEGMENT_NAME\" (GetSegmentMembers, \$top=3):"
jq -r '.value[] | "      \(.firstName) \(.lastName) <\(.email // "no e-mail")>"' <<<"$BODY"

api GET "/instances/$INSTANCE/measures"
expect 200
info "Measures (ListMeasures):"
jq -r '.value[] | "      \(.name | . + " " * (30 - length)) \(.value | if type == "number" then (. * 100 | round / 100 | tostring) else "n/a" end)"' <<<"$BODY"
api GET "/instances/$INSTANCE/entities/Customer/items?\$filter=$(uri "totalSpend gt 250")&\$select=firstName,lastName,totalSpend&\$orderby=$(uri "totalSpend desc")"
expect 200
info "OData query on Customer: \$filter=totalSpend gt 250, \$orderby=totalSpend desc:"
jq -r '.value[] | "      \(.firstName) \(.lastName): \(.totalSpend)"' <<<"$BODY"

# ---------------------------------------------------------------------------------------------
step "Notifications received by the webhook receiver"
expected=${#SUBSCRIPTIONS[@]}
for _ in $(seq 1 150); do
    got=$(grep -c '^=== notification' "$TMP/receiver.out" || true)
    ((got >= expected)) && break
    sleep 0.2
done
got=$(grep -c '^=== notification' "$TMP/receiver.out" || true)
sed 's/^/    /' "$TMP/receiver.out"
if [[ -s $TMP/receiver.err ]] && grep -q 'refused' "$TMP/receiver.err"; then
    sed 's/^/    receiver: /' "$TMP/receiver.err"
fi
((got >= expected)) || die "only $got of $expected notifications arrived within 30 s"
for location in "${SUBSCRIPTIONS[@]}"; do
    api GET "$location"
    expect 200
    jq -r '"    \(.trigger): status \(.status), signed \(.signed), last delivery \(.lastDeliveryAt), consecutive failures \(.consecutiveFailures)"' <<<"$BODY"
done

# ---------------------------------------------------------------------------------------------
step "Cleaning up"
for location in "${SUBSCRIPTIONS[@]}"; do
    api DELETE "$location"
    expect 204
    info "unsubscribed: DELETE $location → $STATUS"
done
kill "$RECEIVER_PID" 2>/dev/null || true
wait "$RECEIVER_PID" 2>/dev/null || true
RECEIVER_PID=""
info "webhook receiver stopped"
info "the instance is kept for exploring; Swagger UI: $BASE/docs/ — to delete it:"
info "  curl -X DELETE -H \"X-API-Key: \$CONNECTOR_KEY\" $BASE/instances/$INSTANCE"
printf '\nDone in %d s.\n' "$SECONDS"
