#!/usr/bin/env bash
# Deflate bombs against one worker: how long the loop is held, and what a
# bystander's echo latency is meanwhile (issue 12, item 2).
#
#   benches/bombs.sh [BINARY]      (default target/release/edgews)
#   PRIO="nice -n -15" benches/bombs.sh ...   runs the server and the bystander
#                                  at that priority (on a machine busy with
#                                  other work, so what is left is edgews' own)
#
# The server runs on core 0 (`--compression shared`, one worker, 16 MiB
# limit), the clients on core 1, everything on 127.0.0.1.
# 1. Three bombs (64 MiB of zeros, ~286 KiB compressed, benches/bomb.py);
#    strace -T of the worker thread's epoll_wait calls gives the longest
#    turns (from one epoll_wait's return to the next call).
# 2. Bombs back to back for 9 s while `edgews-load echo -c 1 --rate 1000`
#    echoes 16-byte messages: the bystander's latency, and bombs answered;
#    before it, the same bystander alone (what the machine gives without bombs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
bin="$(realpath "${1:-$root/target/release/edgews}")"
prio="${PRIO:-}"
load="$root/target/release/edgews-load"
[ -x "$load" ] || (cd "$root" && cargo build --release --quiet --bin edgews-load)
tmp="$(mktemp -d /tmp/edgews-bombs.XXXXXX)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
start() {
  port=$((9300 + RANDOM % 500))
  $prio taskset -c 0 "$bin" echo --workers 1 --idle-timeout 0 --compression shared \
    --listen 127.0.0.1:$port >/dev/null 2>&1 &
  pid=$!
  sleep 0.5
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

start
tid=$(ls /proc/$pid/task | sort -n | tail -1)
strace -tt -T -e trace=epoll_wait -p "$tid" -o "$tmp/strace.txt" 2>/dev/null &
sp=$!
sleep 0.5
taskset -c 1 python3 "$here/bomb.py" "$port" 3 | tail -1
sleep 0.3
kill "$sp"; wait "$sp" 2>/dev/null || true
stop
python3 - "$tmp/strace.txt" <<'PY'
import re, sys
ev = []
for l in open(sys.argv[1]):
    m = re.match(r'(\d+):(\d+):(\d+\.\d+) epoll_wait\(.*<(\d+\.\d+)>', l)
    if m:
        ev.append((int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]), float(m[4])))
busy = sorted((b[0] - (a[0] + a[1])) * 1000 for a, b in zip(ev, ev[1:]))
print(f"{len(ev)} turns; longest (ms): {[round(g, 2) for g in busy[-5:]]}")
PY

# The same bystander without bombs first: on a busy machine its tail is the
# scheduler's, and only the difference is the bombs'.
start
$prio taskset -c 1 "$load" echo -c 1 --size 16 --rate 1000 --url "ws://127.0.0.1:$port/" \
  --warmup 1 --duration 8 --json >"$tmp/alone.json"
stop
python3 - "$tmp/alone.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"no bombs: bystander p50 {r['latency_p50_us']:.0f} us, p99 {r['latency_p99_us']:.0f} us, p99.9 {r['latency_p999_us']:.0f} us")
PY

start
taskset -c 1 python3 "$here/bomb.py" "$port" 100000 >"$tmp/bombs.txt" 2>&1 &
bp=$!
sleep 1
$prio taskset -c 1 "$load" echo -c 1 --size 16 --rate 1000 --url "ws://127.0.0.1:$port/" \
  --warmup 1 --duration 8 --json >"$tmp/bystander.json"
kill "$bp" 2>/dev/null || true
wait "$bp" 2>/dev/null || true
stop
python3 - "$tmp/bystander.json" "$tmp/bombs.txt" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n = sum(1 for l in open(sys.argv[2]) if 'answer' in l)
print(f"{n} bombs answered; bystander p50 {r['latency_p50_us']:.0f} us, p99 {r['latency_p99_us']:.0f} us, p99.9 {r['latency_p999_us']:.0f} us")
PY
