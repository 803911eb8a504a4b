#!/usr/bin/env bash
# The Autobahn conformance run: install wstest if needed, build and start
# `edgews echo`, run the fuzzing client, stop the server, check the report.
#
#   autobahn/run.sh [--compression off|shared|dedicated] [--cases 1-10|deflate|windows|all]
#                   [--tls] [--name NAME] [--bin PATH] [--no-build]
#                   [--url ws://...] [--server-arg ARG]...
#                   [--preset COMPRESSOR/DECOMPRESSOR]
#
# Defaults: no compression and cases 1.* to 10.*; with --compression shared or
# dedicated, all cases (12.* and 13.*, the `deflate` set, are permessage-deflate;
# `windows` is 13.* alone: every window-size offer, the cases a preset changes). --url runs
# against a server that is already running (nothing is built or started).
# --preset (with --compression dedicated) picks the per-connection deflate
# presets, e.g. 3kb/512b (see `edgews echo --help`).
# Reports go to autobahn/reports/NAME/ (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
compression=off cases="" tls=0 name="" bin="" build=1 url="" server_args=() preset=""
while [ $# -gt 0 ]; do
  case "$1" in
    --compression) compression="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    --tls) tls=1; shift ;;
    --name) name="$2"; shift 2 ;;
    --bin) bin="$2"; build=0; shift 2 ;;
    --no-build) build=0; shift ;;
    --url) url="$2"; build=0; shift 2 ;;
    --server-arg) server_args+=("$2"); shift 2 ;;
    --preset) preset="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$compression" in off|shared|dedicated) ;; *) echo "run.sh: --compression off|shared|dedicated" >&2; exit 2 ;; esac
[ -n "$cases" ] || { [ "$compression" = off ] && cases=1-10 || cases=all; }
case "$cases" in
  1-10) case_list='["1.*","2.*","3.*","4.*","5.*","6.*","7.*","8.*","9.*","10.*"]' ;;
  deflate) case_list='["12.*","13.*"]' ;;
  windows) case_list='["13.*"]' ;;
  all) case_list='["*"]' ;;
  *) echo "run.sh: --cases 1-10|deflate|windows|all" >&2; exit 2 ;;
esac
if [ -n "$preset" ]; then
  [ "$compression" = dedicated ] || { echo "run.sh: --preset needs --compression dedicated" >&2; exit 2; }
  case "$preset" in */*) ;; *) echo "run.sh: --preset COMPRESSOR/DECOMPRESSOR, e.g. 3kb/512b" >&2; exit 2 ;; esac
  server_args+=(--compression-preset "${preset%/*}" --decompression-preset "${preset#*/}")
fi
[ -n "$name" ] || name="$compression-$cases$([ -n "$preset" ] && echo "-${preset/\//-}" || true)$([ $tls = 1 ] && echo -tls || true)"

wstest="$("$here/install-wstest.sh")"
outdir="$here/reports/$name"
rm -rf "$outdir"
mkdir -p "$outdir"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -INT "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

if [ -z "$url" ]; then
  if [ $build = 1 ]; then
    (cd "$root" && cargo build --release --quiet --bin edgews)
  fi
  [ -n "$bin" ] || bin="$root/target/release/edgews"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  args=(echo --listen "127.0.0.1:$port" --compression "$compression")
  scheme=ws
  if [ $tls = 1 ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
    args+=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    scheme=wss
  fi
  "$bin" "${args[@]}" "${server_args[@]+"${server_args[@]}"}" >"$outdir/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { echo "run.sh: the server exited:" >&2; cat "$outdir/server.log" >&2; exit 1; }
    sleep 0.1
  done
  url="$scheme://127.0.0.1:$port"
fi

cat >"$work/spec.json" <<SPEC
{"outdir": "$outdir", "servers": [{"agent": "edgews", "url": "$url"}],
 "cases": $case_list, "exclude-cases": [], "exclude-agent-cases": {}}
SPEC
echo "autobahn $name: running cases $cases against $url" >&2
started=$(date +%s)
(cd "$work" && "$wstest" -m fuzzingclient -s "$work/spec.json") >"$outdir/wstest.log" 2>&1 || {
  echo "run.sh: wstest failed:" >&2; tail -20 "$outdir/wstest.log" >&2; exit 1; }
echo "autobahn $name: wstest took $(( $(date +%s) - started ))s" >&2
python3 "$here/check.py" "$outdir/index.json" "$name" "$cases"
