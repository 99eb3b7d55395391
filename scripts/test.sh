#!/usr/bin/env bash
# Everything CI checks: formatting, lints, the whole test suite, and a smoke
# run of every benchmark (figures printed, never asserted).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The debug build the tests made: this checks that every benchmark runs. Its
# figures are a debug build's; the figures we quote come from
# `cargo build --release -p logbook && target/release/logbook bench`.
echo "== smoke run of the benchmarks (debug build; figures not meaningful)"
cargo run --quiet -p logbook -- bench --quick
