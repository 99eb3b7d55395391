#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ for a bounded time: the decoder of stored event
# bodies, JSONL import and the configuration parser. They fuzz two small crates
# (logbook-log, logbook-config), so this never builds wasmtime.
#
#   scripts/fuzz.sh [SECONDS]     # per target; default 45 (LOGBOOK_FUZZ_SECONDS)
#
# Each run first replays fuzz/seeds/TARGET and fuzz/regressions/TARGET (inputs
# that once failed), then explores from a corpus in a temporary directory. A
# finding is written to fuzz/artifacts/TARGET/ and fails this script: fix it,
# then keep the input in fuzz/regressions/TARGET/ with a name saying what it was.
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain,
# the only one this project assumes, take them for this build alone.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${LOGBOOK_FUZZ_SECONDS:-45}}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  started=$SECONDS
  cargo install cargo-fuzz --locked --version 0.13.2
  echo "== cargo-fuzz installed in $((SECONDS - started)) s"
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for target in decode_body jsonl config; do
  mkdir -p "$corpus/$target" "fuzz/regressions/$target"
  echo "== fuzzing $target for $seconds s"
  started=$SECONDS
  log="$corpus/$target.log"
  status=0
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" \
    "$corpus/$target" "fuzz/seeds/$target" "fuzz/regressions/$target" \
    -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done [0-9]+ runs)' "$log" || true
  echo "== $target: exit $status after $((SECONDS - started)) s"
  if [ "$status" != 0 ]; then
    tail -60 "$log"
    exit "$status"
  fi
done
