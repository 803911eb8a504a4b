#!/usr/bin/env bash
# Runs the same load against edgews and the peers people use today, and
# prints medians and the ratio edgews/peer.
#
#   benches/compare.sh [--rounds N] [--duration SECS] [--servers "edgews tungstenite ..."]
#                      [--scenarios "echo100 echo1000 ..."] [--out FILE] [--baseline BINARY]
#                      [--no-build]
#
# Servers: edgews, tungstenite (tokio-tungstenite), fastwebsockets, uws
# (uWebSockets.js from the npm package uwebsockets@3.0.6), and with
# --baseline BINARY also "baseline": another edgews build (e.g. the one before
# a change), run like edgews. Only the peers named are built. Each server runs on
# core 0 (taskset -c 0, one worker/thread), the load generator on core 1. Runs
# alternate between servers (the order rotates every round) so machine noise
# spreads evenly; figures are medians over rounds. Everything talks to
# 127.0.0.1 only and every run is bounded in time.
#
# Scenarios: echo100, echo1000 (C connections, one 16-byte message in flight
# each, as fast as the server answers), echo100x16 (16 in flight), echo1000x1k
# (1 KiB), echo100r / echo1000r (paced at 100k / 80k messages/s in all, so
# latency is compared at the same throughput), echo100x1k, echo100x16k,
# echo100x64k, echo100x256k (100 connections, one binary message of that size
# in flight each), fanout1000, fanout1000x1k, fanout1000x16k, fanout10000,
# fanout10000x1k (C subscribers, one publisher, 16 B, 1 KiB or 16 KiB).
# Any echoCxNk (C connections, N KiB binary) and fanoutC / fanoutCxNk (C
# subscribers, 16 B or N KiB publishes) is accepted too; the grid of sizes
# 16 B..256 KiB by 1..10,000 subscribers is
#   --scenarios "echo100 echo100x1k echo100x16k echo100x64k echo100x256k"
#   --scenarios "fanout1 fanout1x1k fanout1x16k fanout1x64k fanout1x256k"   (and 100, 1000, 10000)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
rounds=3 duration=5 out="" servers="edgews tungstenite fastwebsockets uws" baseline="" build=1
scenarios="echo100 echo1000 echo100x16 fanout1000"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --baseline) baseline="$(realpath "$2")"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

echo "building edgews and the peers..." >&2
[ "$build" = 0 ] || (cd "$root" && cargo build --release --quiet --bin edgews --bin edgews-load)
case " $servers " in
  *" tungstenite "*|*" fastwebsockets "*) "$here/peers/build.sh" >/dev/null ;;
  *" uws "*) (cd "$here/peers/uws" && { [ -d node_modules/uwebsockets ] || npm ci --no-audit --no-fund >&2; }) ;;
esac
if [ -n "$baseline" ]; then
  [ -x "$baseline" ] || { echo "compare.sh: --baseline $baseline is not an executable" >&2; exit 2; }
  case " $servers " in *" baseline "*) ;; *) servers="$servers baseline" ;; esac
fi
load="$root/target/release/edgews-load"
peers="$here/peers/target/release"
results="${out:-$(mktemp /tmp/edgews-compare.XXXXXX.jsonl)}"
: >"$results"

port=9900
server_cmd() { # name port
  case "$1" in
    edgews) echo "$root/target/release/edgews echo --workers 1 --pubsub --idle-timeout 0 --listen 127.0.0.1:$2" ;;
    baseline) echo "$baseline echo --workers 1 --pubsub --idle-timeout 0 --listen 127.0.0.1:$2" ;;
    tungstenite) echo "$peers/peer-tungstenite --listen 127.0.0.1:$2" ;;
    fastwebsockets) echo "$peers/peer-fastwebsockets --listen 127.0.0.1:$2" ;;
    uws) echo "node $here/peers/uws/echo.js --listen 127.0.0.1:$2" ;;
    *) echo "compare.sh: unknown server $1" >&2; exit 2 ;;
  esac
}
scenario_args() { # name
  case "$1" in
    echo100) echo "echo -c 100 --size 16" ;;
    echo1000) echo "echo -c 1000 --size 16" ;;
    echo1000r) echo "echo -c 1000 --size 16 --rate 80000" ;;
    echo100r) echo "echo -c 100 --size 16 --rate 100000" ;;
    echo100x16) echo "echo -c 100 --size 16 --in-flight 16" ;;
    echo1000x1k) echo "echo -c 1000 --size 1024" ;;
    echo100x1k) echo "echo -c 100 --size 1024 --binary" ;;
    echo100x16k) echo "echo -c 100 --size 16384 --binary" ;;
    echo100x64k) echo "echo -c 100 --size 65536 --binary" ;;
    echo100x256k) echo "echo -c 100 --size 262144 --binary" ;;
    fanout1000) echo "fanout -c 1000 --publishers 1 --size 16" ;;
    fanout1000x1k) echo "fanout -c 1000 --publishers 1 --size 1024" ;;
    fanout1000x16k) echo "fanout -c 1000 --publishers 1 --size 16384" ;;
    fanout10000) echo "fanout -c 10000 --publishers 1 --size 16 --threads 1" ;;
    fanout10000x1k) echo "fanout -c 10000 --publishers 1 --size 1024 --threads 1" ;;
    *)
      # The grid (issue 12): echoCxNk = C connections, one N KiB binary
      # message in flight each; fanoutC = C subscribers, 16 B publishes;
      # fanoutCxNk = N KiB publishes. 10,000 subscribers take one load thread.
      if [[ "$1" =~ ^echo([0-9]+)x([0-9]+)k$ ]]; then
        echo "echo -c ${BASH_REMATCH[1]} --size $((BASH_REMATCH[2] * 1024)) --binary"
      elif [[ "$1" =~ ^fanout([0-9]+)(x([0-9]+)k)?$ ]]; then
        local c=${BASH_REMATCH[1]} size=16
        [ -z "${BASH_REMATCH[3]}" ] || size=$((BASH_REMATCH[3] * 1024))
        local extra=""
        [ "$c" -lt 10000 ] || extra="--threads 1"
        echo "fanout -c $c --publishers 1 --size $size $extra"
      else
        echo "compare.sh: unknown scenario $1" >&2; exit 2
      fi ;;
  esac
}
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
read -r -a server_list <<<"$servers"
n=${#server_list[@]}
for round in $(seq "$rounds"); do
  for scenario in $scenarios; do
    for i in $(seq 0 $((n - 1))); do
      server=${server_list[$(( (i + round) % n ))]}
      port=$((port + 1))
      # shellcheck disable=SC2046
      taskset -c 0 $(server_cmd "$server" "$port") >/dev/null 2>&1 &
      pid=$!
      if ! wait_port "$port"; then echo "compare.sh: $server did not start" >&2; exit 1; fi
      echo "round $round: $scenario on $server" >&2
      # shellcheck disable=SC2046
      line=$(prlimit --nofile=20000:20000 taskset -c 1 "$load" $(scenario_args "$scenario") \
        --url "ws://127.0.0.1:$port/" --warmup 1 --duration "$duration" --server-pid "$pid" --json) || {
        echo "compare.sh: load run failed for $server/$scenario" >&2; line='{}'; }
      echo "{\"round\":$round,\"server\":\"$server\",\"scenario\":\"$scenario\",\"result\":$line}" >>"$results"
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      pid=""
    done
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def key_rate(r):
    return r.get("msgs_per_s") or r.get("delivered_per_s")
table = {}
for row in rows:
    r = row["result"]
    if not r:
        continue
    table.setdefault((row["scenario"], row["server"]), []).append(r)
scen = []
for row in rows:
    if row["scenario"] not in scen:
        scen.append(row["scenario"])
servers = []
for row in rows:
    if row["server"] not in servers:
        servers.append(row["server"])
def med(results, field):
    vals = [r[field] for r in results if r.get(field) is not None]
    return statistics.median(vals) if vals else None
print(f"| scenario | server | msgs/s (median) | per server CPU-s | p50 µs | p99 µs | edgews/peer msgs/s | edgews/peer per CPU-s |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for s in scen:
    base = table.get((s, "edgews"), [])
    base_rate = med([{"x": key_rate(r)} for r in base], "x")
    base_cpu = med(base, "msgs_per_server_cpu_s")
    for sv in servers:
        res = table.get((s, sv))
        if not res:
            continue
        rate = med([{"x": key_rate(r)} for r in res], "x")
        cpu = med(res, "msgs_per_server_cpu_s")
        p50, p99 = med(res, "latency_p50_us"), med(res, "latency_p99_us")
        ratio = f"{base_rate / rate:.2f}" if sv != "edgews" and rate and base_rate else ""
        ratio_cpu = f"{base_cpu / cpu:.2f}" if sv != "edgews" and cpu and base_cpu else ""
        fmt = lambda v, d=0: "" if v is None else f"{v:,.{d}f}"
        print(f"| {s} | {sv} | {fmt(rate)} | {fmt(cpu)} | {fmt(p50)} | {fmt(p99)} | {ratio} | {ratio_cpu} |")
print(f"\n{len(rows)} runs, raw results in {sys.argv[1]}")
PY
