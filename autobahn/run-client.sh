#!/usr/bin/env bash
# The Autobahn conformance run for the client role: install wstest if needed,
# start its fuzzing server, run examples/autobahn_client.rs against it (every
# case, echoing each message), stop the server, check the report.
#
#   autobahn/run-client.sh [--deflate] [--cases 1-10|all] [--name NAME]
#                          [--bin PATH] [--no-build]
#
# Defaults: no permessage-deflate offer and cases 1.* to 10.*; with --deflate,
# all cases (12.* and 13.* test the client's permessage-deflate). Reports go to
# autobahn/reports/NAME/ (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
deflate=0 cases="" name="" bin="" build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --deflate) deflate=1; shift ;;
    --cases) cases="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --bin) bin="$2"; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "run-client.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$cases" ] || { [ $deflate = 1 ] && cases=all || cases=1-10; }
case "$cases" in
  1-10) case_list='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","8.*","9.*","10.*"]' ;;
  all) case_list='["*"]' ;;
  *) echo "run-client.sh: --cases 1-10|all" >&2; exit 2 ;;
esac
[ -n "$name" ] || name="client-$([ $deflate = 1 ] && echo deflate || echo plain)-$cases"

wstest="$("$here/install-wstest.sh")"
outdir="$here/reports/$name"
rm -rf "$outdir"
mkdir -p "$outdir"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ $build = 1 ]; then
  (cd "$root" && cargo build --release --quiet --example autobahn_client)
fi
[ -n "$bin" ] || bin="$root/target/release/examples/autobahn_client"

# wstest's fuzzing server binds the port it is given; loopback/sitecustomize.py
# keeps it on 127.0.0.1 (it would listen on every interface), --webport 0
# drops its report web server (port 8080 by default). The port is picked
# below the ephemeral range, where load tests' outgoing connections do not
# take it; if it is taken anyway, another one is tried.
pick_port='import random, socket
for _ in range(500):
    p = random.randint(20000, 32767)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break'
listening=0
for attempt in 1 2 3 4 5; do
  port="$(python3 -c "$pick_port")"
  cat >"$work/spec.json" <<SPEC
{"url": "ws://127.0.0.1:$port", "outdir": "$outdir",
 "cases": $case_list, "exclude-cases": [], "exclude-agent-cases": {}}
SPEC
  # The wrapper execs python, so this pid is the fuzzing server itself.
  (cd "$work" && PYTHONPATH="$here/loopback${PYTHONPATH:+:$PYTHONPATH}" \
    exec "$wstest" -m fuzzingserver --webport 0 -s "$work/spec.json") >"$outdir/wstest.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do
    kill -0 "$server_pid" 2>/dev/null || break
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null \
      && kill -0 "$server_pid" 2>/dev/null && ! grep -q CannotListenError "$outdir/wstest.log"; then
      listening=1
      break
    fi
    sleep 0.1
  done
  [ $listening = 1 ] && break
  if kill -0 "$server_pid" 2>/dev/null || ! grep -q "Address already in use" "$outdir/wstest.log"; then
    echo "run-client.sh: the fuzzing server did not start:" >&2; tail -20 "$outdir/wstest.log" >&2; exit 1
  fi
  echo "run-client.sh: port $port taken, trying another (attempt $attempt)" >&2
  server_pid=""
done
[ $listening = 1 ] || { echo "run-client.sh: no free port for the fuzzing server" >&2; exit 1; }

echo "autobahn $name: running cases $cases against the edgews client" >&2
started=$(date +%s)
args=(--addr "127.0.0.1:$port")
[ $deflate = 1 ] && args+=(--deflate)
"$bin" "${args[@]}" 2>"$outdir/client.log" || {
  echo "run-client.sh: the client failed:" >&2; tail -20 "$outdir/client.log" >&2; exit 1; }
echo "autobahn $name: the client took $(( $(date +%s) - started ))s" >&2
python3 "$here/check.py" "$outdir/index.json" "$name" "$cases"
