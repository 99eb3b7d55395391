#!/usr/bin/env bash
# Builds Logbook and shows its main job on embedded defaults (a redb journal in
# ./.logbook-demo, EchoModel, no account, no key): a session is killed with
# SIGKILL in the middle of a model call, and resumes from its log.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --quiet --release -p logbook
logbook=target/release/logbook
data=.logbook-demo
rm -rf "$data"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "A counter guest: every input and output is a durable event"
$logbook --data $data run counter --session tally -i inc -i inc -i get

say "An assistant asks the model (EchoModel, 3 s per answer); we kill -9 the host mid-call"
LOGBOOK_ECHO_DELAY_MS=3000 $logbook --data $data run assistant --session helper -i "hello, log" &
pid=$!
sleep 1.5
kill -9 $pid
wait $pid 2>/dev/null || true
echo "(killed process $pid)"

say "A new process resumes the session from its log: the call is re-run once"
$logbook --data $data run --session helper

say "The log: the request was written before the call, the answer once after"
$logbook --data $data log helper

say "A tool that needs approval survives the host too"
$logbook --data $data run --session helper -i '/tool fs.write {"path":"hello.txt","content":"written after approval"}'
$logbook --data $data sessions
$logbook --data $data approve helper call-3
cat "$data"/workspaces/*/hello.txt; echo
