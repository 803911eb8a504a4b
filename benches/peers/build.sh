#!/usr/bin/env bash
# Builds the benchmark peer servers (idempotent; safe to re-run).
#   - Rust peers (tokio-tungstenite, fastwebsockets) + peer-check, release + fat LTO
#   - uWebSockets.js peer: npm ci in uws/ (exact versions from package-lock.json)
# Prints the commands that start each server.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

echo "==> cargo build --release --manifest-path $DIR/Cargo.toml" >&2
cargo build --release --manifest-path "$DIR/Cargo.toml" >&2

echo "==> npm ci in $DIR/uws" >&2
(
  cd "$DIR/uws"
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund >&2
  else
    npm install --no-audit --no-fund >&2
  fi
  # Fail early (with the loader's error) if the prebuilt binary cannot load here.
  node -e "require('uwebsockets')" >&2
)

T="$DIR/target/release"
for b in peer-tungstenite peer-fastwebsockets peer-check; do
  [ -x "$T/$b" ] || { echo "missing $T/$b" >&2; exit 1; }
done

cat <<OUT
peer-tungstenite:    $T/peer-tungstenite --listen 127.0.0.1:PORT [--threads N]
peer-fastwebsockets: $T/peer-fastwebsockets --listen 127.0.0.1:PORT [--threads N]
peer-uws:            node $DIR/uws/echo.js --listen 127.0.0.1:PORT
peer-check:          $T/peer-check --url ws://127.0.0.1:PORT/ [--bench SECS --conns N --size B --window W]
OUT
