#!/usr/bin/env bash
# Memory per idle connection: opens N idle WebSocket connections to a server
# and reports the growth of the server's resident memory (VmRSS) per
# connection, for edgews in each mode and, with --peers, the peers.
#
#   benches/density.sh [--connections N] [--modes "plain shared dedicated tls"] [--peers]
#
# Modes: plain, shared, dedicated, dedicated11 (11-bit window), tls: idle after
# the handshake (deflate negotiated where named); shared-used, dedicated-used,
# dedicated11-used: after each connection had one 1 KiB message echoed
# compressed (so a dedicated connection holds its compressor; the generator
# sends uncompressed, so no inflater is built).
# preset:C:D[:BYTES]: dedicated with --compression-preset C and
# --decompression-preset D (D "-": the hello goes uncompressed, so only the
# compressor is built), after one BYTES-long message (default 1024) went
# compressed each way: the memory of a connection in active use. A hello of
# 65536 fills every window, the steady state of a busy connection.
#   benches/density.sh --modes "preset:3kb:512b preset:256kb:32kb:65536"
# The open-files limit is raised to the hard limit for both processes. On
# machines where that limit is 20,000 per process, N stays at 15,000; the
# figure is per connection, so it holds at 100,000 as well (one process per
# 15,000 connections, or a higher limit). Loopback only; bounded in time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
n=15000 modes="plain shared dedicated shared-used dedicated-used dedicated11-used tls" peers=0
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) n="$2"; shift 2 ;;
    --modes) modes="$2"; shift 2 ;;
    --peers) peers=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "density.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
(cd "$root" && cargo build --release --quiet --bin edgews --bin edgews-load)
hard=$(ulimit -Hn)
ulimit -n "$hard"
if [ "$n" -gt $((hard - 100)) ]; then
  echo "density.sh: $n connections need more than this machine's $hard open files per process; using $((hard - 5000))" >&2
  n=$((hard - 5000))
fi
load="$root/target/release/edgews-load"
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1

run() { # label url server-command...
  local label=$1 url=$2 extra=$3
  shift 3
  taskset -c 0 "$@" >/dev/null 2>&1 &
  pid=$!
  local port=${url##*:}; port=${port%%/*}
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
    sleep 0.1
  done
  sleep 0.5
  # shellcheck disable=SC2086
  taskset -c 1 "$load" idle -c "$n" --sources 4 --threads 1 --duration 1 --settle 3 \
    --url "$url" --server-pid "$pid" --json $extra |
    python3 -c "import json,sys; d=json.load(sys.stdin); print(f'| $label | {d[\"connections\"]:,} | {d.get(\"server_rss_per_conn_bytes\",\"?\")} | {d.get(\"failed\",0)} |')"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

edgews="$root/target/release/edgews"
common="echo --workers 1 --idle-timeout 0 --max-connections 100000"
echo "| server | idle connections | server RSS per connection (bytes) | failed |"
echo "|---|---:|---:|---:|"
port=9950
for mode in $modes; do
  port=$((port + 1))
  case "$mode" in
    plain) run "edgews, plain ws" "ws://127.0.0.1:$port/" "" $edgews $common --listen 127.0.0.1:$port ;;
    shared) run "edgews, permessage-deflate shared" "ws://127.0.0.1:$port/" "--deflate" $edgews $common --compression shared --listen 127.0.0.1:$port ;;
    dedicated) run "edgews, permessage-deflate dedicated (15-bit window)" "ws://127.0.0.1:$port/" "--deflate" $edgews $common --compression dedicated --listen 127.0.0.1:$port ;;
    dedicated-used) run "edgews, permessage-deflate dedicated (15-bit window), after one compressed 1 KiB echo" "ws://127.0.0.1:$port/" "--deflate --hello 1024 --open-timeout 120" $edgews $common --compression dedicated --listen 127.0.0.1:$port ;;
    dedicated11-used) run "edgews, permessage-deflate dedicated (11-bit window), after one compressed 1 KiB echo" "ws://127.0.0.1:$port/" "--deflate --hello 1024 --open-timeout 120" $edgews $common --compression dedicated --compression-window-bits 11 --listen 127.0.0.1:$port ;;
    shared-used) run "edgews, permessage-deflate shared, after one compressed 1 KiB echo" "ws://127.0.0.1:$port/" "--deflate --hello 1024 --open-timeout 120" $edgews $common --compression shared --listen 127.0.0.1:$port ;;
    dedicated11) run "edgews, permessage-deflate dedicated (11-bit window)" "ws://127.0.0.1:$port/" "--deflate" $edgews $common --compression dedicated --compression-window-bits 11 --listen 127.0.0.1:$port ;;
    preset:*)
      IFS=: read -r _ cpre dpre bytes <<<"$mode"
      bytes=${bytes:-1024}
      if [ "$dpre" = "-" ]; then
        run "edgews, dedicated, compressor preset $cpre, after one compressed $bytes-byte echo (no inflater)" "ws://127.0.0.1:$port/" "--deflate --hello $bytes --open-timeout 45" \
          $edgews $common --compression dedicated --compression-preset "$cpre" --listen 127.0.0.1:$port
      else
        run "edgews, dedicated, presets $cpre / $dpre, after one $bytes-byte message compressed each way" "ws://127.0.0.1:$port/" "--deflate --hello $bytes --compress-hello --open-timeout 45" \
          $edgews $common --compression dedicated --compression-preset "$cpre" --decompression-preset "$dpre" --listen 127.0.0.1:$port
      fi ;;
    tls) run "edgews, TLS (wss, ECDSA P-256)" "wss://127.0.0.1:$port/" "" $edgews $common --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --listen 127.0.0.1:$port ;;
    *) echo "density.sh: unknown mode $mode" >&2; exit 2 ;;
  esac
done
if [ $peers = 1 ]; then
  "$here/peers/build.sh" >/dev/null
  for peer in tungstenite fastwebsockets; do
    port=$((port + 1))
    run "peer: $peer" "ws://127.0.0.1:$port/" "" "$here/peers/target/release/peer-$peer" --listen 127.0.0.1:$port
  done
  port=$((port + 1))
  run "peer: uWebSockets.js 3.0.6" "ws://127.0.0.1:$port/" "" node "$here/peers/uws/echo.js" --listen 127.0.0.1:$port
fi
