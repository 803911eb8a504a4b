#!/usr/bin/env bash
# The browser tests: edgews.js's unit tests in Node (client.test.mjs), then
# builds the edgews binary (debug) and drives the demo
# page in headless Chromium against it (chat.test.mjs starts, restarts and
# stops the server itself, in a temporary working directory so the dev-mode
# secret file lands there). Screenshots and the server log go to
# target/browser/.
#
# Needs Debian's chromium and Node.js with npm; installs playwright-core
# (the driver only, no bundled browser) and typescript (to check edgews.d.ts)
# from package-lock.json when missing.
#   tests/browser/run.sh            # build and test
#   tests/browser/run.sh --no-build # use the existing target/debug/edgews
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
  esac
done

command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null \
  || { echo "chromium is missing: apt-get install -y chromium" >&2; exit 1; }
command -v node >/dev/null || { echo "node is missing: apt-get install -y nodejs npm" >&2; exit 1; }
if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -x "$here/node_modules/.bin/tsc" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

# The client library first: its declarations type-check against a use of
# the documented API, and its logic passes in Node (mocked timers, a second).
"$here/node_modules/.bin/tsc" -p "$here"
node --test "$here/client.test.mjs"

if [ "$build" = 1 ]; then
  cargo build --bin edgews
fi
bin="${SERVER_BIN:-$root/target/debug/edgews}"

artifacts="$root/target/browser"
rm -rf "$artifacts"
mkdir -p "$artifacts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

SERVER_BIN="$bin" WORK_DIR="$work" ARTIFACTS="$artifacts" node "$here/chat.test.mjs"
