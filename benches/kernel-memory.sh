#!/usr/bin/env bash
# What the kernel holds per idle WebSocket connection, beside edgews' own
# bytes (benches/density.sh): `edgews echo` (core 0) and `edgews-load idle`
# (core 1) hold N connections over loopback; the kernel's slab caches
# (/proc/slabinfo), Slab/SUnreclaim (/proc/meminfo) and TCP buffer pages
# (/proc/net/sockstat `mem`) are read before, while the connections are open
# (after they settled) and after they closed. Repeated --rounds times; prints
# the median of each figure per connection.
#
#   benches/kernel-memory.sh [--connections 15000] [--rounds 3] [--no-build]
#
# Both ends of a loopback connection are sockets of this kernel: the object
# counts show two of each per connection (server and client side hold the
# same set of objects), so one side, what a server with remote clients holds,
# is half. Needs root for /proc/slabinfo. Bounded: each round holds the
# connections ~45 s at most.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
n=15000 rounds=3 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) n="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "kernel-memory.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -r /proc/slabinfo ] || { echo "kernel-memory.sh: /proc/slabinfo is not readable (run as root)" >&2; exit 1; }
[ $build = 0 ] || (cd "$root" && cargo build --release --quiet --bin edgews --bin edgews-load)
ulimit -n "$(ulimit -Hn)"
work="$(mktemp -d)"
pid="" lpid=""
trap '[ -n "$lpid" ] && kill "$lpid" 2>/dev/null; [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
snap() { # file
  { echo "== slabinfo"; cat /proc/slabinfo; echo "== meminfo"; cat /proc/meminfo
    echo "== sockstat"; cat /proc/net/sockstat; } >"$1"
}
port=9870
for r in $(seq "$rounds"); do
  port=$((port + 1))
  taskset -c 0 "$root/target/release/edgews" echo --workers 1 --idle-timeout 0 \
    --max-connections 100000 --listen "127.0.0.1:$port" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
    sleep 0.1
  done
  sleep 1
  snap "$work/$r.before"
  taskset -c 1 "$root/target/release/edgews-load" idle -c "$n" --sources 4 --threads 1 \
    --settle 3 --duration 10 --url "ws://127.0.0.1:$port/" --server-pid "$pid" --json >"$work/$r.load" &
  lpid=$!
  # The report line appears once every connection is open and settled; the
  # connections stay open for --duration after it.
  for _ in $(seq 600); do [ -s "$work/$r.load" ] && break; sleep 0.1; done
  [ -s "$work/$r.load" ] || { echo "kernel-memory.sh: the load generator did not report" >&2; exit 1; }
  sleep 1
  snap "$work/$r.open"
  wait "$lpid"
  lpid=""
  sleep 3
  snap "$work/$r.closed"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=""
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
CACHES = ["TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "ep_head", "lsm_file_cache"]

def parse(path):
    slab, mem, sock, part = {}, {}, {}, None
    for line in open(path):
        if line.startswith("== "):
            part = line[3:].strip(); continue
        f = line.split()
        if part == "slabinfo" and f and not line.startswith(("slabinfo", "#")):
            slab[f[0]] = (int(f[1]), int(f[2]), int(f[3]))  # active, total, objsize
        elif part == "meminfo" and len(f) >= 2:
            mem[f[0].rstrip(":")] = int(f[1]) * 1024
        elif part == "sockstat" and f and f[0] == "TCP:":
            sock = dict(zip(f[1::2], map(int, f[2::2])))
    return slab, mem, sock

rows = {}
def add(key, v): rows.setdefault(key, []).append(v)
for r in range(1, rounds + 1):
    load = json.load(open(f"{work}/{r}.load"))
    conns = load["connections"]
    (s0, m0, k0), (s1, m1, k1), (s2, m2, k2) = (parse(f"{work}/{r}.{p}") for p in ("before", "open", "closed"))
    add("connections", conns)
    add("edgews RSS per connection (B)", load.get("server_rss_per_conn_bytes", float("nan")))
    add("TCP sockets in use per connection", (k1["inuse"] - k0["inuse"]) / conns)
    add("sockstat mem per connection (B, TCP buffer pages)", (k1["mem"] - k0["mem"]) * 4096 / conns)
    add("meminfo Slab per connection (B)", (m1["Slab"] - m0["Slab"]) / conns)
    add("meminfo SUnreclaim per connection (B)", (m1["SUnreclaim"] - m0["SUnreclaim"]) / conns)
    total = 0
    for c in CACHES:
        if c not in s0 or c not in s1: continue
        d = s1[c][0] - s0[c][0]
        add(f"{c}: objects per connection", d / conns)
        add(f"{c}: bytes per connection ({s1[c][2]} B objects)", d * s1[c][2] / conns)
        total += d * s1[c][2]
    add("listed caches: bytes per connection (both sides)", total / conns)
    add("after close: TCP sockets in use, back to", k2["inuse"] - k0["inuse"])
print(f"| kernel memory, {rounds} rounds (median) | per connection |")
print("|---|---:|")
for k, v in rows.items():
    print(f"| {k} | {statistics.median(v):,.2f} |")
PY
