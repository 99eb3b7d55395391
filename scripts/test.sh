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

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The debug build the tests made: this checks that every benchmark runs. Its
# figures are a debug build's; the figures we quote come from
# `cargo build --release -p logbook && target/release/logbook bench`.
echo "== smoke run of the benchmarks (debug build; figures not meaningful)"
cargo run --quiet -p logbook -- bench --quick
