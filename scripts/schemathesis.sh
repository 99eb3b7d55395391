#!/usr/bin/env bash
# Fuzz the HTTP API against its own document: schemathesis (pinned, in a venv
# under target/) reads /v1/openapi.json from a live `logbook serve` (the debug
# binary) on loopback, over a fresh data directory holding the `counter` guest
# and a session `c1`, and fails on any 5xx, any answer whose status, content
# type, headers or body the document does not describe. Bounded in time:
# LOGBOOK_SCHEMATHESIS_SECONDS (default 75) for schemathesis itself.
# The server is killed and the data directory removed on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
venv=target/schemathesis/venv-$version
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "== installing schemathesis $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

# A no-op after `cargo test`, which built both.
cargo build --quiet -p logbook
bin=target/debug/logbook
guest=target/guests/wasm32-wasip2/guest/counter.wasm

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --data "$work/data" --listen 127.0.0.1:0 2>"$work/serve.log" &
pid=$!
url=
for _ in $(seq 1 600); do
  url=$(sed -n 's|^logbook: serving .* on \(http://[^ ]*\)$|\1|p' "$work/serve.log")
  [ -n "$url" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$work/serve.log" >&2
    echo "schemathesis.sh: logbook serve did not start" >&2
    exit 1
  fi
  sleep 0.1
done
[ -n "$url" ] || { echo "schemathesis.sh: no address from logbook serve" >&2; exit 1; }

curl -fsS -o /dev/null -X POST -H 'content-type: application/wasm' \
  --data-binary @"$guest" "$url/v1/guests?name=counter"
curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' \
  -d '{"guest": "counter"}' "$url/v1/sessions/by-name/c1"
curl -fsS -o /dev/null -X POST -H 'content-type: application/json' \
  -d '{"text": "add 2"}' "$url/v1/sessions/c1/input?wait=idle"

echo "== schemathesis against $url/v1/openapi.json"
started=$SECONDS
status=0
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$url/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-time "${LOGBOOK_SCHEMATHESIS_SECONDS:-75}" \
  --max-examples 100 \
  --workers 2 \
  --request-timeout 20 \
  --seed "${LOGBOOK_SCHEMATHESIS_SEED:-1}" || status=$?
echo "== schemathesis ran $((SECONDS - started)) s (exit $status)"
if [ "$status" != 0 ]; then
  echo "== the server's log:" >&2
  tail -50 "$work/serve.log" >&2
fi
exit "$status"
