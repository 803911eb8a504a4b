#!/usr/bin/env bash
# Renders the shipped nginx site (deploy/nginx/edgews.conf) into a complete,
# self-contained nginx configuration for tests: listening on 127.0.0.1:PORT,
# proxying to UPSTREAM (host:port), logs, pid and temp files in DIR.
# Everything else (headers, timeouts, proxy_bind, access rules) is the shipped
# file verbatim.
#
#   deploy/test/nginx-conf.sh DIR PORT UPSTREAM     # writes DIR/nginx.conf
#
# Run it with: nginx -p DIR -c DIR/nginx.conf -e DIR/error.log
set -euo pipefail
[ $# -eq 3 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
dir="$1" port="$2" upstream="$3"
site="$(cd "$(dirname "$0")/.." && pwd)/nginx/edgews.conf"
mkdir -p "$dir/tmp"
sed -e "s#server 127\.0\.0\.1:8080;#server $upstream;#" \
    -e "s#^\( *\)listen 80;#\1listen 127.0.0.1:$port;#" \
    -e '/^ *listen \[::\]:80;/d' \
    -e "s#/var/log/nginx/#$dir/#g" \
    "$site" >"$dir/edgews.conf"
# The substitutions must all have applied, or the test would run something
# other than the shipped file.
grep -q "server $upstream;" "$dir/edgews.conf" &&
  grep -q "listen 127.0.0.1:$port;" "$dir/edgews.conf" &&
  ! grep -q -e '/var/log/' -e 'listen 80;' -e 'listen \[::\]:80;' "$dir/edgews.conf" || {
  echo "nginx-conf.sh: $site no longer has the upstream/listen/log lines this script rewrites" >&2
  exit 1
}
user=""
[ "$(id -u)" = 0 ] && user="user root;"
cat >"$dir/nginx.conf" <<CONF
$user
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # Which nginx answered: a free port can be taken by another process
    # between the probe and nginx's bind; the caller checks this header.
    add_header X-Test-Instance "$dir" always;
    include $dir/edgews.conf;
}
CONF
