#!/usr/bin/env bash
# Install the OpenTelemetry project's Python protobuf definitions of OTLP
# (`opentelemetry-proto`, pinned, from PyPI) into a venv under target/, for
# runtime/tests/all/otel_export.rs: `logbook export --format otel` must be
# read by the official definitions, not only by our own code. A no-op once
# installed (about 10 s when not). LOGBOOK_SKIP_OTEL_PROTO=1 skips the
# install here and that check in the test.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.45.2
venv=target/otel-proto/$version
if [ "${LOGBOOK_SKIP_OTEL_PROTO:-}" = 1 ]; then
  echo "== opentelemetry-proto: skipped (LOGBOOK_SKIP_OTEL_PROTO=1)"
  exit 0
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import opentelemetry.proto' 2>/dev/null; then
  echo "== installing opentelemetry-proto==$version into $venv"
  started=$SECONDS
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "opentelemetry-proto==$version"
  echo "== opentelemetry-proto installed in $((SECONDS - started)) s"
fi
