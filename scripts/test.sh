#!/usr/bin/env bash
# Everything CI checks: formatting, lints, the whole test suite, and a quick
# benchmark run (figures printed, never asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
cargo run --quiet --release -p logbook -- bench --quick
