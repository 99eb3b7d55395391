# Installs what building Logbook needs: the wasm32-wasip2 target for guests,
# and clippy/rustfmt for the checks. Sourced by demo.sh and test.sh.
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
for component in clippy rustfmt; do
  if ! rustup component list --installed | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
