#!/usr/bin/env bash
# Schemathesis against a live server: every operation of /openapi.json is sent
# schema-valid and schema-invalid requests, and the answers must conform to the
# document (every check, schemathesis's default; not `--checks all`, which would
# override the per-operation switches in .ci/schemathesis.toml: no 5xx, only documented status codes, content types,
# headers and bodies; valid data accepted, invalid data refused). Fails on any
# failure; run by .ci/run; takes about a minute. The few answers that depend on
# stored state (unknown credential names, normalised package names, sealing a
# credential stored without hosts) are allowed per operation in
# .ci/schemathesis.toml, each with its reason.
#
# What is covered: every operation in the document. Admin routes run with the
# admin session cookie (and an Origin header for the CSRF check); agent routes
# with the key id (both given as the document's security schemes, in
# .ci/schemathesis.toml, with the few expectations the schema cannot express) of a locked profile (`Authorization: Bearer ark_…`), so they get
# past authentication; `POST /execute` then stops at the HMAC check (schemathesis
# cannot sign scripts), so no script runs. Excluded: `POST /api/admin/logout` and
# `POST /api/admin/password`, which would end or invalidate the session mid-run,
# and `POST /api/admin/notifications/webhooks` and `PUT /api/admin/notifications/email`,
# whose generated URLs and hosts the server would then send notices to
# (tests/notifications.rs covers both against loopback servers).
# The package index is off (`AIRLOCK_PIP_INDEX_URL=none`),
# so no request leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-25}
# Extra CLI arguments, e.g. SCHEMATHESIS_ARGS='--include-path /api/admin/status'.
# shellcheck disable=SC2206
SCHEMATHESIS_EXTRA=(${SCHEMATHESIS_ARGS:-})
VENV=target/schemathesis-venv

if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q -p airlock --bin airlock
BIN=target/debug/airlock

# Under target/ and traversable, so package installs are available (the data
# directory's parents must be searchable by the sandbox uids; not under /tmp,
# which every sandbox replaces with its own: a checkout under /tmp uses /var/tmp).
mkdir -p target
case "$PWD/" in
  /tmp/*) WORK=$(mktemp -d /var/tmp/airlock-schemathesis.XXXXXX) ;;
  *) WORK=$(mktemp -d "$PWD/target/schemathesis.XXXXXX") ;;
esac
chmod 0755 "$WORK"
PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
B=http://127.0.0.1:$PORT
SERVER_PID=
stop() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap stop EXIT

AIRLOCK_BIND=127.0.0.1:$PORT AIRLOCK_DATA_DIR="$WORK/data" AIRLOCK_SANDBOX=permissive \
  AIRLOCK_PIP_INDEX_URL=none AIRLOCK_LOG=warn \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -sf "$B/health" >/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.1
done

JSON='Content-Type: application/json'
curl -sf -c "$WORK/cookies" -H "$JSON" -d '{"password":"schemathesis admin password"}' \
  "$B/api/admin/setup" >/dev/null
AIRLOCK_ST_SESSION=$(awk '$6 == "airlock_session" {print $7}' "$WORK/cookies")
[ -n "$AIRLOCK_ST_SESSION" ] || { echo "no session cookie after setup" >&2; exit 1; }
# A locked profile for the agent routes.
curl -sf -b "$WORK/cookies" -H "$JSON" -d '{"name":"ST_TOKEN","description":"schemathesis","value":"st-token-value"}' \
  "$B/api/admin/credentials" >/dev/null
PROFILE=$(curl -sf -b "$WORK/cookies" -H "$JSON" -d '{"description":"schemathesis","credentials":["ST_TOKEN"]}' \
  "$B/api/admin/profiles" | jq -r .id)
KEY=$(curl -sf -b "$WORK/cookies" -H "$JSON" -X POST "$B/api/admin/profiles/$PROFILE/lock" | jq -r .key)
AIRLOCK_ST_KEY_ID=${KEY%%:*}
export AIRLOCK_ST_SESSION AIRLOCK_ST_KEY_ID

# One worker: Debian's Python 3.11 can fail compiling schemathesis's generated
# code from two threads at once ("AST constructor recursion depth mismatch").
"$VENV/bin/schemathesis" --config-file .ci/schemathesis.toml run "$B/openapi.json" \
  "${SCHEMATHESIS_EXTRA[@]}" \
  --max-examples "$MAX_EXAMPLES" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --workers 1 \
  --request-timeout 70 \
  --header "Origin: $B" \
  --exclude-path /api/admin/logout \
  --exclude-path /api/admin/password \
  --exclude-path /api/admin/notifications/webhooks \
  --exclude-path /api/admin/notifications/email \
  || { echo "schemathesis failed; server log:" >&2; tail -50 "$WORK/server.log" >&2; exit 1; }
