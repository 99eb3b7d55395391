#!/usr/bin/env bash
# Install the MCP reference server "everything" (pinned, from npm) under
# target/ for runtime/tests/all/mcp_everything.rs, which checks typed tool
# content, progress and structured results against a server nobody here
# wrote. A no-op once installed (about 15 s when not). Needs Node.js and npm.
# LOGBOOK_SKIP_MCP_EVERYTHING=1 skips the install here and the test.
set -euo pipefail
cd "$(dirname "$0")/.."

version=2026.8.31
dir=target/mcp-everything/$version
if [ "${LOGBOOK_SKIP_MCP_EVERYTHING:-}" = 1 ]; then
  echo "== MCP everything server: skipped (LOGBOOK_SKIP_MCP_EVERYTHING=1)"
  exit 0
fi
entry=$dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js
if [ ! -f "$entry" ]; then
  if ! command -v npm >/dev/null; then
    echo "mcp-everything.sh: npm is missing; install Node.js, or set LOGBOOK_SKIP_MCP_EVERYTHING=1" >&2
    exit 1
  fi
  echo "== installing @modelcontextprotocol/server-everything@$version into $dir"
  started=$SECONDS
  rm -rf "$dir"
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" \
    "@modelcontextprotocol/server-everything@$version"
  echo "== MCP everything server installed in $((SECONDS - started)) s"
fi
