#!/usr/bin/env bash
# Builds the TypeScript guests into target/ts/guests/*.wasm:
#   examples/counter-ts          -> counter_ts.wasm   (world `agent`, wit/agent.wit)
#   runtime/tests/guests-ts/fs   -> fixture_fs_ts.wasm (a test fixture)
# with the toolchain pinned in package.json / package-lock.json, installed by
# `npm ci` into ./node_modules (never globally). Only the npm registry is
# reached, and only when ./node_modules is missing or older than the lock;
# with a warm npm cache, LOGBOOK_NPM_OFFLINE=1 installs without any network.
#
# The steps, which are all a TypeScript guest needs:
#   tsc -p tsconfig.json                       TypeScript -> ES modules (target/ts/js)
#   componentize-js SRC.js --wit WIT --world-name WORLD --disable http fetch-event -o OUT.wasm
#     run from target/ts/js, so that the guest's relative imports (the SDK)
#     resolve inside the directory componentize-js maps as the guest's root.
#     `--disable http fetch-event`: no wasi:http imports (the host refuses them).
#   jco transpile OUT.wasm                     for the SDK's node tests (guest-sdk-ts/test)
# (Why componentize-js directly and not `jco componentize`: examples/counter-ts/README.md.)
# Afterwards it runs those tests: node --test guest-sdk-ts/test/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=target/ts
mkdir -p "$out/guests"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "build-ts-guests.sh: node and npm are needed (Node 20 or later)." >&2
  exit 1
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci (the pinned toolchain, into ./node_modules)"
  started=$SECONDS
  offline=()
  if [ "${LOGBOOK_NPM_OFFLINE:-}" = 1 ]; then offline=(--offline); else offline=(--prefer-offline); fi
  npm ci --no-audit --no-fund --ignore-scripts "${offline[@]}"
  echo "== npm ci took $((SECONDS - started)) s"
fi
bin=$root/node_modules/.bin

echo "== tsc"
"$bin/tsc" -p tsconfig.json

# The fixture's world includes wit/agent.wit and WASI's; its deps are put
# together here from the repository's WIT and the WASI packages jco ships.
fixture_wit=$out/wit/fs
rm -rf "$fixture_wit"
mkdir -p "$fixture_wit/deps"
cp runtime/tests/guests-ts/fs/wit/world.wit "$fixture_wit/"
mkdir -p "$fixture_wit/deps/logbook-agent"
cp wit/agent.wit "$fixture_wit/deps/logbook-agent/"
for pkg in io clocks filesystem sockets; do
  cp -r "node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12/wasi-$pkg" "$fixture_wit/deps/"
done

# componentize STEM SOURCE(.js, under target/ts/js) WIT WORLD SRC_DIR: skipped
# when the component is newer than everything it is built from (each build
# differs by a few bytes, so a rebuild is a new guest digest and a new
# compilation for the host), unless LOGBOOK_TS_REBUILD=1.
componentize() {
  local stem=$1 source=$2 wit=$3 world=$4 src=$5
  local target=$out/guests/$stem.wasm
  if [ "${LOGBOOK_TS_REBUILD:-}" != 1 ] && [ -f "$target" ] &&
    [ -z "$(find "$src" guest-sdk-ts/src wit tsconfig.json package-lock.json -newer "$target" -print -quit)" ]; then
    echo "== $target is up to date ($(stat -c %s "$target") bytes)"
    return
  fi
  local started=$SECONDS
  (cd "$out/js" && "$bin/componentize-js" "$source" --wit "$wit" --world-name "$world" \
    --disable http fetch-event -o "$root/$out/guests/$stem.wasm.tmp")
  mv "$out/guests/$stem.wasm.tmp" "$out/guests/$stem.wasm"
  echo "== $out/guests/$stem.wasm: $(stat -c %s "$out/guests/$stem.wasm") bytes, componentized in $((SECONDS - started)) s"
}

componentize counter_ts examples/counter-ts/src/counter.js "$root/wit" agent examples/counter-ts/src
componentize fixture_fs_ts runtime/tests/guests-ts/fs/src/fs.js "$root/$fixture_wit" agent-fs runtime/tests/guests-ts/fs

echo "== node --test guest-sdk-ts/test/"
rm -rf "$out/transpiled/counter_ts"
"$bin/jco" transpile "$out/guests/counter_ts.wasm" -o "$out/transpiled/counter_ts" --name counter_ts --quiet
node --test guest-sdk-ts/test/
