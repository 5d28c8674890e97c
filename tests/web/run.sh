#!/usr/bin/env bash
# End-to-end tests of the web client: one ucserver (SQLite, in-process bus), ucweb in front of
# it, two users made through the admin API, then `node --test` drives headless Chromium.
#
# Binaries come from target/debug (built by `cargo build --workspace --bins`); override with
# UC_BIN_DIR, or UCSERVER_BIN / UCWEB_BIN one by one. Chromium: $CHROMIUM or /usr/bin/chromium.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_DIR=${UC_BIN_DIR:-$ROOT/target/debug}
UCSERVER_BIN=${UCSERVER_BIN:-$BIN_DIR/ucserver}
UCWEB_BIN=${UCWEB_BIN:-$BIN_DIR/ucweb}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

for bin in "$UCSERVER_BIN" "$UCWEB_BIN"; do
  [[ -x $bin ]] || { echo "missing $bin: run cargo build --workspace --bins" >&2; exit 1; }
done
if [[ ! -x $CHROMIUM ]]; then
  echo "installing chromium (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get install -y chromium >/dev/null 2>&1 \
    || { timeout 300 apt-get update >/dev/null && timeout 600 apt-get install -y chromium >/dev/null; }
fi
cd "$HERE"
timeout 300 npm ci --no-audit --no-fund --loglevel=error

WORK=$(mktemp -d -t switchboard-web.XXXXXX)
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    echo "--- ucserver log (tail)"; tail -n 40 "$WORK/ucserver.log" 2>/dev/null || true
    echo "--- ucweb log (tail)"; tail -n 20 "$WORK/ucweb.log" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
wait_http() { # url, seconds
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null --max-time 2 "$1"; do
    (( SECONDS < deadline )) || { echo "timed out waiting for $1" >&2; return 1; }
    sleep 0.2
  done
}

SERVER_PORT=$(free_port)
WEB_PORT=$(free_port)
export UC_TEST_ADMIN_PASSWORD="admin-$RANDOM-secret"
mkdir -p "$WORK/data"
UC_LISTEN=127.0.0.1:$SERVER_PORT UC_PUBLIC_URL=http://127.0.0.1:$SERVER_PORT \
  UC_ADMIN_PASSWORD=$UC_TEST_ADMIN_PASSWORD UC_DATA_DIR=$WORK/data RUST_LOG=${RUST_LOG:-warn} \
  "$UCSERVER_BIN" >"$WORK/ucserver.log" 2>&1 &
PIDS+=($!)
UC_UPSTREAM=http://127.0.0.1:$SERVER_PORT UC_WEB_LISTEN=127.0.0.1:$WEB_PORT RUST_LOG=${RUST_LOG:-warn} \
  "$UCWEB_BIN" >"$WORK/ucweb.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SERVER_PORT/readyz" 30
wait_http "http://127.0.0.1:$WEB_PORT/healthz" 30

# Two users through the admin API (via ucweb, which is what the browser talks to).
API=http://127.0.0.1:$WEB_PORT/api/v1
ADMIN_TOKEN=$(curl -fsS --max-time 10 -H 'Content-Type: application/json' \
  -d "{\"user\":\"admin\",\"password\":\"$UC_TEST_ADMIN_PASSWORD\"}" "$API/admin/login" \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))')
export UC_TEST_PASSWORD="pw-$RANDOM-web-test"
for spec in "alice:Alice Anders" "bob:Bob Berger"; do
  curl -fsS --max-time 10 -o /dev/null -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"id\":\"${spec%%:*}\",\"password\":\"$UC_TEST_PASSWORD\",\"display_name\":\"${spec#*:}\"}" "$API/admin/users"
done

export UC_WEB_URL=http://localhost:$WEB_PORT
export UC_TEST_SCREENSHOTS=$HERE/screenshots
mkdir -p "$UC_TEST_SCREENSHOTS"
timeout 300 node --test --test-concurrency=1 --test-timeout=240000 "$HERE"/*.test.mjs
