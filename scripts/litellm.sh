#!/usr/bin/env bash
# Install LiteLLM's proxy (pinned) into a venv under target/ for the test
# runtime/tests/all/litellm.rs, which runs a tool-using turn through it to an
# OpenAI-compatible upstream on loopback. A no-op once installed (about 45 s
# on this project's 2-core machine when not). LOGBOOK_SKIP_LITELLM=1 skips the
# install here and the test in `cargo test`.
#
# Pinned, never floating: releases 1.82.7, 1.82.8 and 1.107.0 were
# compromised and withdrawn; 1.81.13 is older than all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.81.13
venv=target/litellm/venv-$version
if [ "${LOGBOOK_SKIP_LITELLM:-}" = 1 ]; then
  echo "== LiteLLM: skipped (LOGBOOK_SKIP_LITELLM=1)"
  exit 0
fi
if [ ! -x "$venv/bin/litellm" ]; then
  echo "== installing LiteLLM $version (proxy) into $venv"
  started=$SECONDS
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "litellm[proxy]==$version"
  echo "== LiteLLM installed in $((SECONDS - started)) s"
fi
