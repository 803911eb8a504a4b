#!/usr/bin/env bash
# The room server against the raw engine, in the same run: what the JSON
# path, authentication and the room directory cost on top of the engine.
#
#   benches/rooms.sh [--rounds N] [--duration SECS] [--cells "fanout echo density"]
#                    [--connections N] [--out FILE]
#
# Cells (each alternates raw and rooms runs, the order swapping every round):
#   fanout   edgews echo --pubsub + `edgews-load fanout` (1,000 subscribers, one
#            publisher, 100-byte payload) against the room server +
#            `edgews-load rooms-fanout` (1,000 members, one publishing member,
#            100-byte `data`): deliveries/s and deliveries per server CPU-s.
#   echo     edgews echo + `edgews-load echo` (100 connections, 100 bytes)
#            against the room server + `rooms-echo` (100 connections, each a
#            `message` with an `id` to its own room, acked): server CPU per
#            message.
#   density  N idle connections (default 15,000; the open-files limit here is
#            20,000 per process): edgews echo + `idle` against the room server
#            + `rooms-idle`, authenticated and joined to one room (own room,
#            and rooms of 100): server RSS per connection, after a warm-up
#            of 200 connections of the same kind (so the process's one-off
#            costs, e.g. code pages first touched by the set-up path, are
#            not divided among the connections).
#
# The room server is `edgews serve` with one worker and its limits opened
# for load: no rate limit, no per-IP limit, no pings or idle timeout (the
# generator does not answer pings), 60 s to authenticate (15,000 set-ups on
# a busy machine can take longer than the default 5 s), a known HS256
# secret (--set flags).
# Servers run on core 0 (taskset -c 0), the load generator on core 1;
# loopback only; every run is bounded in time. Prints medians and ratios
# rooms/raw; raw results go to --out (JSON lines).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
rounds=3 duration=5 cells="fanout echo density" conns=15000 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --cells) cells="$2"; shift 2 ;;
    --connections) conns="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "rooms.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

echo "building (release)..." >&2
(cd "$root" && cargo build --release --quiet --bin edgews --bin edgews-load)
edgews="$root/target/release/edgews"
load="$root/target/release/edgews-load"
secret="rooms-bench-$$-secret"
hard=$(ulimit -Hn)
ulimit -n "$hard"
if [ "$conns" -gt $((hard - 100)) ]; then
  echo "rooms.sh: $conns connections need more than this machine's $hard open files per process; using $((hard - 5000))" >&2
  conns=$((hard - 5000))
fi
results="${out:-$(mktemp /tmp/edgews-rooms.XXXXXX.jsonl)}"
: >"$results"

wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
port=9800
# run ROUND CELL SIDE LOAD-ARGS... : starts the side's server, runs the load, records the JSON.
run() {
  local round=$1 cell=$2 side=$3
  shift 3
  port=$((port + 1))
  if [ "$side" = raw ]; then
    local extra=""
    [ "$cell" = fanout ] && extra="--pubsub"
    # shellcheck disable=SC2086
    taskset -c 0 "$edgews" echo --workers 1 $extra --idle-timeout 0 --max-connections 100000 \
      --listen "127.0.0.1:$port" >/dev/null 2>&1 &
    url="ws://127.0.0.1:$port/"
  else
    taskset -c 0 "$edgews" serve --workers 1 --listen "127.0.0.1:$port" \
      --set max_connections=100000 --set max_connections_per_ip=0 \
      --set rate_limit.messages_per_sec=0 --set ping_interval_secs=0 \
      --set idle_timeout_secs=0 --set auth_timeout_secs=60 \
      --set auth.hs256_secret="$secret" >/dev/null 2>&1 &
    url="ws://127.0.0.1:$port/ws"
  fi
  pid=$!
  if ! wait_port "$port"; then echo "rooms.sh: the $side server did not start" >&2; exit 1; fi
  sleep 0.3
  if [ "$cell" = density ]; then
    # Warm-up: 200 connections of the same kind first, so the one-off costs
    # (code pages touched the first time, the allocator's first arenas) are
    # in the "before" reading and the figure is the cost per connection.
    local warm=() prev=""
    for a in "$@"; do
      case "$prev" in
        -c) a=200 ;;
        --settle) a=0.5 ;;
        --duration) a=0 ;;
      esac
      warm+=("$a"); prev="$a"
      [ "$a" = -c ] || [ "$a" = --settle ] || [ "$a" = --duration ] || prev=""
    done
    taskset -c 1 "$load" "${warm[@]}" --url "$url" >/dev/null 2>&1 || true
    sleep 1
  fi
  echo "round $round: $cell $side: edgews-load $* --url $url" >&2
  local line
  line=$(taskset -c 1 "$load" "$@" --url "$url" --server-pid "$pid" --json) || {
    echo "rooms.sh: load run failed: $cell $side" >&2; line='{}'; }
  echo "{\"round\":$round,\"cell\":\"$cell\",\"side\":\"$side\",\"args\":\"$*\",\"result\":$line}" >>"$results"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}

common="--warmup 1 --duration $duration"
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="raw rooms"; else order="rooms raw"; fi
  for cell in $cells; do
    for side in $order; do
      case "$cell/$side" in
        fanout/raw) run "$round" fanout raw fanout -c 1000 --publishers 1 --size 100 $common ;;
        fanout/rooms) run "$round" fanout rooms rooms-fanout -c 1000 --publishers 1 --size 100 --secret "$secret" $common ;;
        echo/raw) run "$round" echo raw echo -c 100 --size 100 $common ;;
        echo/rooms) run "$round" echo rooms rooms-echo -c 100 --size 100 --secret "$secret" $common ;;
        density/raw) run "$round" density raw idle -c "$conns" --sources 4 --threads 1 --settle 3 --duration 1 --open-timeout 120 ;;
        density/rooms)
          run "$round" density rooms rooms-idle -c "$conns" --members-per-room 1 --sources 4 --threads 1 --settle 3 --duration 1 --open-timeout 120 --secret "$secret"
          run "$round" density rooms100 rooms-idle -c "$conns" --members-per-room 100 --sources 4 --threads 1 --settle 3 --duration 1 --open-timeout 120 --secret "$secret" ;;
        *) echo "rooms.sh: unknown cell $cell" >&2; exit 2 ;;
      esac
    done
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(cell, side, field):
    vals = [r["result"].get(field) for r in rows if r["cell"] == cell and r["side"] == side]
    vals = [v for v in vals if v is not None]
    return (statistics.median(vals), len(vals)) if vals else (None, 0)
def f(v, d=0):
    return "n/a" if v is None else f"{v:,.{d}f}"
def ratio(a, b, d=2):
    return "n/a" if a is None or not b else f"{a / b:.{d}f}"
cells = []
for r in rows:
    if r["cell"] not in cells:
        cells.append(r["cell"])
if "fanout" in cells:
    raw, n = med("fanout", "raw", "delivered_per_s")
    room, m = med("fanout", "rooms", "delivered_per_s")
    rawc, _ = med("fanout", "raw", "msgs_per_server_cpu_s")
    roomc, _ = med("fanout", "rooms", "msgs_per_server_cpu_s")
    print("| fan-out, 1,000 members, 100 B | deliveries/s | per server CPU-s | p50 µs | p99 µs | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for side, label, k in (("raw", "raw `--pubsub`", n), ("rooms", "room server (JSON)", m)):
        p50, _ = med("fanout", side, "latency_p50_us")
        p99, _ = med("fanout", side, "latency_p99_us")
        d, _ = med("fanout", side, "delivered_per_s")
        c, _ = med("fanout", side, "msgs_per_server_cpu_s")
        print(f"| {label} | {f(d)} | {f(c)} | {f(p50)} | {f(p99)} | {k} |")
    print(f"| **rooms / raw** | **{ratio(room, raw)}** | **{ratio(roomc, rawc)}** | | | |\n")
if "echo" in cells:
    print("| request path, 100 connections, 100 B | msgs/s | per server CPU-s | server CPU per msg | p50 µs | p99 µs | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    per = {}
    for side, label in (("raw", "raw echo"), ("rooms", "room `message`, acked")):
        d, k = med("echo", side, "msgs_per_s")
        c, _ = med("echo", side, "msgs_per_server_cpu_s")
        p50, _ = med("echo", side, "latency_p50_us")
        p99, _ = med("echo", side, "latency_p99_us")
        per[side] = c
        us = None if not c else 1e6 / c
        print(f"| {label} | {f(d)} | {f(c)} | {f(us, 2)} µs | {f(p50)} | {f(p99)} | {k} |")
    print(f"| **rooms / raw, CPU per message** | | | **{ratio(per.get('raw'), per.get('rooms'))}** | | | |\n")
if "density" in cells:
    print("| idle connections | connections | server RSS per connection | runs |")
    print("|---|---:|---:|---:|")
    base, _ = med("density", "raw", "server_rss_per_conn_bytes")
    for side, label in (("raw", "raw `edgews echo`, idle"), ("rooms", "room server, authenticated, own room"),
                        ("rooms100", "room server, authenticated, rooms of 100")):
        b, k = med("density", side, "server_rss_per_conn_bytes")
        c, _ = med("density", side, "connections")
        if k:
            print(f"| {label} | {f(c)} | {f(b)} B | {k} |")
    print()
# Same-round ratios (raw and rooms ran back to back): the median of those
# is less exposed to the machine's drift over the run than a ratio of medians.
def round_ratios(cell, field, invert=False):
    out = []
    for rnd in sorted({r["round"] for r in rows}):
        get = lambda side: next((r["result"].get(field) for r in rows
                                 if r["round"] == rnd and r["cell"] == cell and r["side"] == side), None)
        a, b = get("rooms"), get("raw")
        if a and b:
            out.append(b / a if invert else a / b)
    return out
for cell, field, invert, label in (
        ("fanout", "delivered_per_s", False, "fan-out deliveries/s, rooms/raw"),
        ("fanout", "msgs_per_server_cpu_s", False, "fan-out deliveries per server CPU-s, rooms/raw"),
        ("echo", "msgs_per_server_cpu_s", True, "request path server CPU per message, rooms/raw")):
    rs = round_ratios(cell, field, invert)
    if rs:
        print(f"{label}: per round {', '.join(f'{x:.2f}' for x in rs)}; median {statistics.median(rs):.2f}")
failed = [r for r in rows if not r["result"]]
print(f"{len(rows)} runs ({len(failed)} failed), raw results in {sys.argv[1]}")
PY
