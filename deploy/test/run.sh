#!/usr/bin/env bash
# The deployment files, tried for real (a CI step, about 2 minutes):
#   1. deploy/systemd/edgews.service passes `systemd-analyze verify` (with
#      ExecStart pointed at the built binary) without a single warning;
#   2. every key of deploy/sysctl/90-edgews.conf exists under /proc/sys and
#      its value has the shape of the current one (count of integers);
#   3. the nginx site, rendered by deploy/test/nginx-conf.sh, passes `nginx -t`;
#   4. tests/deploy_nginx.rs: nginx in front of the room server (room protocol,
#      every token source, X-Forwarded-For trusted and spoofed), nginx required;
#   5. Autobahn cases 1-10 against `edgews echo` behind nginx.
#
#   deploy/test/run.sh [--bin PATH_TO_RELEASE_EDGEWS] [--no-autobahn]
#
# Needs nginx (Debian's; .ci/run installs it) and python3. Never touches the
# system's nginx service: its own nginx runs in the foreground on a free
# loopback port with a config in a temp dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deploy="$(dirname "$here")"
root="$(dirname "$deploy")"
bin="$root/target/release/edgews" autobahn=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --no-autobahn) autobahn=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "deploy/test/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
nginx="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$nginx" ] || { echo "deploy/test/run.sh: nginx is not installed (apt-get install -y nginx)" >&2; exit 1; }
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet --bin edgews)
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "deploy/test/run.sh: nothing listens on port $1" >&2; return 1
}

echo "deploy: systemd unit"
if command -v systemd-analyze >/dev/null; then
  sed "s#^ExecStart=/usr/local/bin/edgews #ExecStart=$bin #" "$deploy/systemd/edgews.service" >"$work/edgews.service"
  grep -q "^ExecStart=$bin " "$work/edgews.service" || { echo "deploy: the unit's ExecStart changed; update run.sh" >&2; exit 1; }
  out="$(systemd-analyze verify "$work/edgews.service" 2>&1)" || { echo "$out" >&2; exit 1; }
  [ -z "$out" ] || { echo "deploy: systemd-analyze verify warns:" >&2; echo "$out" >&2; exit 1; }
  systemd-analyze security --offline=true --threshold=20 "$work/edgews.service" | tail -1
else
  echo "deploy: systemd-analyze is not installed: the unit is not verified"
fi

echo "deploy: sysctl file"
python3 - "$deploy/sysctl/90-edgews.conf" <<'PY'
import os, sys
seen, bad = set(), []
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.strip()
    if not line or line.startswith(("#", ";")):
        continue
    key, sep, value = (p.strip() for p in line.partition("="))
    path = "/proc/sys/" + key.replace(".", "/")
    if not sep or not key or not value:
        bad.append(f"line {n}: not `key = value`: {line}")
    elif key in seen:
        bad.append(f"line {n}: {key} set twice")
    elif not os.path.exists(path):
        bad.append(f"line {n}: {key}: no {path} on this kernel")
    else:
        current = open(path).read().split()
        try:
            [int(v) for v in value.split()]
        except ValueError:
            bad.append(f"line {n}: {key}: {value!r} is not integers")
            continue
        if len(value.split()) != len(current):
            bad.append(f"line {n}: {key}: {len(value.split())} values, the kernel has {len(current)}")
    seen.add(key)
print("\n".join(bad) or f"deploy: {len(seen)} sysctl keys exist and parse")
sys.exit(1 if bad else 0)
PY

echo "deploy: nginx -t"
"$here/nginx-conf.sh" "$work/t" 1 127.0.0.1:2
"$nginx" -t -q -p "$work/t" -c "$work/t/nginx.conf" -e "$work/t/error.log"

echo "deploy: nginx in front of the room server (cargo test --test deploy_nginx)"
(cd "$root" && DEPLOY_REQUIRE_NGINX=1 cargo test --quiet --test deploy_nginx)

if [ $autobahn = 1 ]; then
  echo "deploy: Autobahn 1-10 through nginx"
  eport="$(free_port)"
  "$bin" echo --listen "127.0.0.1:$eport" >"$work/echo.log" 2>&1 &
  pids+=($!)
  wait_port "$eport"
  nport="$(free_port)"
  "$here/nginx-conf.sh" "$work/n" "$nport" "127.0.0.1:$eport"
  "$nginx" -p "$work/n" -c "$work/n/nginx.conf" -e "$work/n/error.log" &
  pids+=($!)
  wait_port "$nport"
  "$root/autobahn/run.sh" --url "ws://127.0.0.1:$nport/ws" --cases 1-10 --name nginx
fi
echo "deploy: all checks passed"
