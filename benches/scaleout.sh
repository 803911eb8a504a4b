#!/usr/bin/env bash
# Scale-out through Redis against one node's own fan-out, in the same run.
#
#   benches/scaleout.sh [--rounds N] [--duration SECS] [--members N]
#                       [--rate MSGS_PER_SEC] [--out FILE]
#
# Sides (alternating, the order swapping every round):
#   one    one `edgews serve` (no broker), N members of one room, one
#          publishing member (`edgews-load rooms-fanout`).
#   three  three `edgews serve --set broker=redis` nodes and one
#          `redis-server`; the same N members spread round-robin over the
#          nodes (--also-url), so 2/3 of the deliveries cross Redis.
# Both at the same publish rate (--rate, default 200/s: 180,000 deliveries/s,
# within what one load-generator core reads), 100-byte `data`.
# Reported: deliveries/s, p50/p99 publish-to-receive latency, deliveries per
# server CPU-second (utime+stime from /proc over the measured window, summed
# over every server process: the nodes, and redis-server for `three`), and
# Redis commands per published message: the commands the nodes sent (INFO
# commandstats before/after the whole run, without those the Lua scripts run
# inside), so the N connects, joins, leaves and disconnects are in it, over
# the publishes of warm-up + window; and PUBLISH calls alone.
# Servers (nodes and Redis) run on core 0 (taskset -c 0), the load generator
# on core 1; loopback only; every run is bounded in time. Needs redis-server.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
rounds=3 duration=5 members=900 rate=200 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --members) members="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "scaleout.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v redis-server >/dev/null || { echo "scaleout.sh: needs redis-server (apt-get install redis-server)" >&2; exit 1; }
echo "building (release)..." >&2
(cd "$root" && cargo build --release --quiet --bin edgews --bin edgews-load)
edgews="$root/target/release/edgews"
load="$root/target/release/edgews-load"
secret="scaleout-bench-$$-secret"
results="${out:-$(mktemp /tmp/edgews-scaleout.XXXXXX.jsonl)}"
: >"$results"
ulimit -n "$(ulimit -Hn)"

wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
commands() { # redis port -> "total publish" calls the nodes sent (INFO commandstats
  # also counts the commands the Lua scripts run inside; only these are sent by nodes)
  redis-cli -p "$1" INFO commandstats | tr -d '\r' |
    awk -F'[=,:]' '/^cmdstat_(evalsha|publish|set|exists|smembers|sadd|subscribe|unsubscribe|script|del|ping):/ {s+=$3}
      /^cmdstat_publish:/ {p=$3} END {print s+0, p+0}'
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); }
trap cleanup EXIT
port=9900
node() { # port [extra --set...]
  local p=$1
  shift
  taskset -c 0 "$edgews" serve --workers 1 --listen "127.0.0.1:$p" \
    --set max_connections=100000 --set max_connections_per_ip=0 \
    --set rate_limit.messages_per_sec=0 --set ping_interval_secs=0 \
    --set idle_timeout_secs=0 --set auth_timeout_secs=60 \
    --set member_events_max_room_size=10 \
    --set auth.hs256_secret="$secret" "$@" >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$p" || { echo "scaleout.sh: node on $p did not start" >&2; exit 1; }
}

run() { # round side
  local round=$1 side=$2 rport="" urls=() also=() cmd0="0 0" cmd1="0 0" line
  port=$((port + 10))
  if [ "$side" = one ]; then
    node "$port"
    urls=(--url "ws://127.0.0.1:$port/ws")
  else
    rport=$((port + 5))
    taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$rport"
    for i in 0 1 2; do
      node $((port + i)) --set broker=redis --set redis.url="redis://127.0.0.1:$rport/"
    done
    sleep 1.5 # heartbeats and subscriptions up
    urls=(--url "ws://127.0.0.1:$port/ws" --also-url "ws://127.0.0.1:$((port + 1))/ws" --also-url "ws://127.0.0.1:$((port + 2))/ws")
  fi
  for p in "${pids[@]:1}"; do also+=(--also-server-pid "$p"); done
  [ -n "$rport" ] && cmd0=$(commands "$rport")
  echo "round $round: $side: edgews-load rooms-fanout -c $members --publishers 1 --size 100 --rate $rate --warmup 1 --duration $duration ${urls[*]} --server-pid ${pids[0]} ${also[*]}" >&2
  line=$(taskset -c 1 "$load" rooms-fanout -c "$members" --publishers 1 --size 100 --rate "$rate" \
    --warmup 1 --duration "$duration" --secret "$secret" "${urls[@]}" \
    --server-pid "${pids[0]}" "${also[@]}" --json) || line='{}'
  [ -n "$rport" ] && cmd1=$(commands "$rport")
  local t0 p0 t1 p1
  read -r t0 p0 <<<"$cmd0"
  read -r t1 p1 <<<"$cmd1"
  echo "{\"round\":$round,\"side\":\"$side\",\"redis_commands\":$((t1 - t0)),\"redis_publish\":$((p1 - p0)),\"duration\":$duration,\"result\":$line}" >>"$results"
  cleanup
  sleep 0.5
}

for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="one three"; else order="three one"; fi
  for side in $order; do run "$round" "$side"; done
done

python3 - "$results" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")
out = {}
for side in ("one", "three"):
    rs = [r for r in rows if r["side"] == side and r["result"]]
    g = lambda k: med([r["result"].get(k) for r in rs])
    o = dict(n=len(rs), deliveries=g("delivered_per_s"), publishes=g("publishes_per_s"),
             p50=g("latency_p50_us"), p99=g("latency_p99_us"), per_cpu=g("msgs_per_server_cpu_s"),
             cpu=g("server_cpu_s"), missing=g("missing"), ooo=g("out_of_order"))
    line = (f"{side:6} ({o['n']} runs) deliveries/s {o['deliveries']:,.0f}  publishes/s {o['publishes']:,.0f}  "
            f"p50 {o['p50']} us  p99 {o['p99']} us  deliveries per server CPU-s {o['per_cpu']:,.0f} "
            f"(server CPU {o['cpu']} s in the window)  missing {o['missing']}  out of order {o['ooo']}")
    if side == "three":
        # Commands over the whole run (connect, joins, warm-up, window) per publish in warm-up + window.
        pubs = lambda r: max(1.0, r["result"]["publishes_per_s"] * (r["duration"] + 1))
        o["cmds"] = med([r["redis_commands"] / pubs(r) for r in rs])
        o["pub"] = med([r["redis_publish"] / pubs(r) for r in rs])
        line += f"  Redis commands per publish {o['cmds']:.3f} (PUBLISH {o['pub']:.3f})"
    out[side] = o
    print(line)
a, b = out["one"], out["three"]
if a["n"] and b["n"]:
    print(f"three/one: deliveries/s {b['deliveries']/a['deliveries']:.2f}x  p99 {b['p99']/a['p99']:.2f}x  "
          f"deliveries per server CPU-s {b['per_cpu']/a['per_cpu']:.2f}x")
print(f"raw results: {sys.argv[1]}")
PYEOF
