#!/usr/bin/env bash
# Everything CI checks: formatting, lints, the whole test suite, and a smoke
# run of every benchmark (figures printed, never asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# The browser test (runtime/tests/all/browser.rs) runs Debian's Chromium,
# headless. LOGBOOK_SKIP_BROWSER=1 skips that test, and this install.
if [ "${LOGBOOK_SKIP_BROWSER:-}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing Chromium for the browser test"
    started=$SECONDS
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
    echo "== Chromium installed in $((SECONDS - started)) s"
  else
    echo "test.sh: /usr/bin/chromium is missing and this is not root." >&2
    echo "  install it: sudo apt-get update && sudo apt-get install -y chromium" >&2
    echo "  or skip the browser test: LOGBOOK_SKIP_BROWSER=1 scripts/test.sh" >&2
    exit 1
  fi
fi

# The PostgreSQL journal's tests (runtime/tests/all/postgres.rs) need a
# PostgreSQL (15 or later) and a role that may create databases, named by
# LOGBOOK_TEST_POSTGRES. When none is given, this starts Debian's (installing
# it with apt when missing) and creates the role logbook/logbook for TCP.
# LOGBOOK_SKIP_POSTGRES=1 skips those tests, and this.
if [ "${LOGBOOK_SKIP_POSTGRES:-}" != 1 ] && [ -z "${LOGBOOK_TEST_POSTGRES:-}" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test.sh: LOGBOOK_TEST_POSTGRES is not set and this is not root to start PostgreSQL." >&2
    echo "  set it to a role that may create databases:" >&2
    echo "    LOGBOOK_TEST_POSTGRES=postgres://USER:PASSWORD@127.0.0.1:5432/postgres scripts/test.sh" >&2
    echo "  or skip the PostgreSQL tests: LOGBOOK_SKIP_POSTGRES=1 scripts/test.sh" >&2
    exit 1
  fi
  if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    echo "== installing PostgreSQL for the journal tests"
    started=$SECONDS
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    echo "== PostgreSQL installed in $((SECONDS - started)) s"
  fi
  # The newest cluster: Debian 12's is 15/main.
  read -r pg_version pg_cluster pg_port pg_status _ < <(pg_lsclusters -h | sort -n | tail -1)
  if [ "$pg_status" != online ]; then
    pg_ctlcluster "$pg_version" "$pg_cluster" start
  fi
  runuser -u postgres -- psql -q -p "$pg_port" -v ON_ERROR_STOP=1 -c "DO \$\$BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'logbook') THEN
      CREATE ROLE logbook LOGIN SUPERUSER PASSWORD 'logbook';
    END IF; END\$\$"
  export LOGBOOK_TEST_POSTGRES="postgres://logbook:logbook@127.0.0.1:$pg_port/postgres"
  echo "== PostgreSQL $pg_version/$pg_cluster on port $pg_port for the journal tests"
fi

# LiteLLM's proxy for runtime/tests/all/litellm.rs (pip, into a venv under
# target/; needs Python 3 with venv). LOGBOOK_SKIP_LITELLM=1 skips both.
scripts/litellm.sh

# The MCP reference server "everything" (npm, pinned, under target/) for
# runtime/tests/all/mcp_everything.rs. LOGBOOK_SKIP_MCP_EVERYTHING=1 skips both.
scripts/mcp-everything.sh

# The OpenTelemetry project's Python OTLP definitions (pip, pinned, under
# target/) read `logbook export --format otel` in runtime/tests/all/otel_export.rs.
# LOGBOOK_SKIP_OTEL_PROTO=1 skips both.
scripts/otel-proto.sh

# runtime/tests/all/metrics.rs reads /metrics with the Python client's OpenMetrics
# parser: it installs prometheus_client (pinned, pure Python, ~6 s once) into a
# venv under target/tmp on first use, with python3 -m venv and pip.

# The TypeScript guests (runtime/tests/all/typescript.rs) and the SDK's node
# tests: node and npm, and the toolchain pinned in package-lock.json (npm ci
# into ./node_modules). LOGBOOK_SKIP_TS=1 skips both.
if [ "${LOGBOOK_SKIP_TS:-}" != 1 ]; then
  echo "== building the TypeScript guests"
  started=$SECONDS
  scripts/build-ts-guests.sh
  echo "== TypeScript guests built in $((SECONDS - started)) s"
else
  echo "== LOGBOOK_SKIP_TS=1: the TypeScript guests and their tests are skipped"
fi

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The fuzz targets (fuzz/), each for a bounded time; LOGBOOK_SKIP_FUZZ=1 skips them.
if [ "${LOGBOOK_SKIP_FUZZ:-}" != 1 ]; then
  scripts/fuzz.sh
fi
# The HTTP API against its OpenAPI document, fuzzed by schemathesis (pip, into
# a venv under target/) on a live `logbook serve`; bounded at ~2 minutes.
# LOGBOOK_SKIP_SCHEMATHESIS=1 skips it.
if [ "${LOGBOOK_SKIP_SCHEMATHESIS:-}" != 1 ]; then
  scripts/schemathesis.sh
fi
# The debug build the tests made: this checks that every benchmark runs. Its
# figures are a debug build's; the figures we quote come from
# `cargo build --release -p logbook && target/release/logbook bench`.
echo "== smoke run of the benchmarks (debug build; figures not meaningful)"
cargo run --quiet -p logbook -- bench --quick
# The same benches on PostgreSQL, each on a database it creates and drops, and
# the failover bench (two `logbook serve` workers, one SIGKILLed).
if [ "${LOGBOOK_SKIP_POSTGRES:-}" != 1 ]; then
  echo "== smoke run of the PostgreSQL benchmarks (debug build; figures not meaningful)"
  cargo run --quiet -p logbook -- bench --quick --journal "$LOGBOOK_TEST_POSTGRES" \
    --only step,throughput,turn,failover
fi
