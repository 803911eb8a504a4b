#!/usr/bin/env bash
# Starts each peer on 127.0.0.1, runs peer-check against it, stops it.
# Exits non-zero if any peer fails. Run ./build.sh first.
#   PORT_BASE (default 19101): peers use PORT_BASE, +1, +2.
#   BENCH_SECS (default 0): if > 0, also print a rough pipelined echo figure
#     (server pinned to core 0, client to core 1 when taskset is available).
set -uo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T="$DIR/target/release"
BASE="${PORT_BASE:-19101}"
BENCH_SECS="${BENCH_SECS:-0}"
PIN0=(); PIN1=()
if [ "$BENCH_SECS" -gt 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN0=(taskset -c 0); PIN1=(taskset -c 1)
fi

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

rc=0
run() {
  local name="$1" port="$2"; shift 2
  echo "=== $name ($*)"
  "${PIN0[@]}" "$@" --listen "127.0.0.1:$port" &
  local pid=$!
  if ! wait_port "$port"; then
    echo "FAIL $name: not listening on $port"; rc=1; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return
  fi
  local extra=()
  [ "$BENCH_SECS" -gt 0 ] && extra=(--bench "$BENCH_SECS")
  "${PIN1[@]}" "$T/peer-check" --url "ws://127.0.0.1:$port/" "${extra[@]}" || rc=1
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
}

run peer-tungstenite    "$BASE"           "$T/peer-tungstenite"
run peer-fastwebsockets "$((BASE + 1))"   "$T/peer-fastwebsockets"
run peer-uws            "$((BASE + 2))"   node "$DIR/uws/echo.js"
[ "$rc" -eq 0 ] && echo "all peers passed" || echo "some peer FAILED"
exit "$rc"
