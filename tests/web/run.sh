#!/usr/bin/env bash
# End-to-end tests of the web client: first `tsc` checks the client's and the console's JSDoc
# types, then two UCServers on a real Redis and PostgreSQL with ucweb in front and two
# MediaServers for calls (the web-lab harness binary), users on both servers made through the admin API, then
# `node --test` drives headless Chromium through ucweb's one origin (calls with Chromium's
# fake microphone and camera, media over loopback; the admin console at /admin).
#
# Binaries come from target/debug (built by `cargo build --workspace --bins`); override with
# UC_BIN_DIR. Chromium: $CHROMIUM or /usr/bin/chromium.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_DIR=${UC_BIN_DIR:-$ROOT/target/debug}
LAB_BIN=$BIN_DIR/web-lab
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

for bin in "$LAB_BIN" "$BIN_DIR/ucserver" "$BIN_DIR/ucweb" "$BIN_DIR/mediaserver"; do
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
# The client's JSDoc types (ucweb/jsconfig.json: strict, no emit): a type error fails the run
# before any server starts.
echo "type-checking the web client and the admin console (tsc)"
"$HERE/node_modules/.bin/tsc" -p "$ROOT/ucweb/jsconfig.json"
"$HERE/node_modules/.bin/tsc" -p "$ROOT/ucadmin/console/jsconfig.json"

WORK=$(mktemp -d -t switchboard-web.XXXXXX)
PIDS=()
cleanup() {
  local status=$?
  # Closing the lab's input lets it stop its servers in order; the kills are the fallback.
  exec 3>&- 2>/dev/null || true
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ $status -ne 0 ]]; then
    # The lab writes the tails of its servers' logs when it stops.
    echo "--- web lab log (tail)"; tail -n 100 "$WORK/ucserver.log" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The lab: Redis, PostgreSQL, UCServers s1 and s2, MediaServers m1 and m2, ucweb in front
# (tests/src/bin/web-lab.rs).
# It runs until its standard input (a fifo we hold open on fd 3) closes.
mkfifo "$WORK/lab.in"
"$LAB_BIN" <"$WORK/lab.in" >"$WORK/lab.out" 2>"$WORK/ucserver.log" &
PIDS+=($!)
exec 3>"$WORK/lab.in"
deadline=$((SECONDS + 120))
until grep -q '^READY$' "$WORK/lab.out" 2>/dev/null; do
  (( SECONDS < deadline )) || { echo "the web lab did not come up" >&2; exit 1; }
  kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "the web lab exited" >&2; exit 1; }
  sleep 0.2
done
WEB_URL=$(sed -n 's/^WEB_URL=//p' "$WORK/lab.out")
export UC_TEST_ADMIN_PASSWORD=$(sed -n 's/^ADMIN_PASSWORD=//p' "$WORK/lab.out")

# Two users through the admin API of ucweb, each on a different home server.
API=$WEB_URL/api/v1
ADMIN_TOKEN=$(curl -fsS --max-time 10 -H 'Content-Type: application/json' \
  -d "{\"user\":\"admin\",\"password\":\"$UC_TEST_ADMIN_PASSWORD\"}" "$API/admin/login" \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))')
export UC_TEST_PASSWORD="pw-$RANDOM-web-test"
for spec in "alice:Alice Anders:s1" "bob:Bob Berger:s2" "carol:Carol Clark:s1"; do
  IFS=: read -r id name home <<<"$spec"
  curl -fsS --max-time 10 -o /dev/null -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"id\":\"$id\",\"password\":\"$UC_TEST_PASSWORD\",\"display_name\":\"$name\",\"home_server\":\"$home\"}" "$API/admin/users"
done
# bob and carol share a group, which lets each pick up the other's calls.
admin_post() {
  curl -fsS --max-time 10 -o /dev/null -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' -d "$2" "$API$1"
}
admin_post /admin/groups '{"id":"support","display_name":"Support"}'
admin_post /admin/groups/support/members '{"user":"bob"}'
admin_post /admin/groups/support/members '{"user":"carol"}'

export UC_WEB_URL=$WEB_URL
# The test restarts a UCServer by writing `restart s1` to the lab and waiting for `RESTARTED s1`.
export UC_LAB_CONTROL=$WORK/lab.in UC_LAB_OUTPUT=$WORK/lab.out
export UC_TEST_SCREENSHOTS=$HERE/screenshots
mkdir -p "$UC_TEST_SCREENSHOTS"
# UC_WEB_TESTS=console runs only console.test.mjs.
timeout 300 node --test --test-concurrency=1 --test-timeout=240000 "$HERE"/${UC_WEB_TESTS:-*}.test.mjs
