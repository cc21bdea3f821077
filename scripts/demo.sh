#!/usr/bin/env bash
# The README's main job: build rollbridge and the example app, start the
# daemon, deploy two releases while a client keeps sending requests and an
# SSE stream stays open, show that traffic switched with zero failures, and
# shut everything down again. Needs Go and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

work=$(mktemp -d /tmp/rollbridge-demo.XXXXXX)
bin="$work/bin"
say "building rollbridged, rollbridgectl and the example app into $bin"
go build -o "$bin/" ./cmd/rollbridged ./cmd/rollbridgectl
go build -o "$bin/demo-app" ./examples/app

# A free proxy port: 8182 unless something holds it.
port=${ROLLBRIDGE_DEMO_PORT:-8182}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
export ROLLBRIDGE_DEMO_PORT=$port
export ROLLBRIDGE_DEMO_SOCKET="$work/control.sock"
export ROLLBRIDGE_DEMO_APP="$bin/demo-app"
ctl() { "$bin/rollbridgectl" "$@" -c examples/demo.jsonnet; }

daemon_pid=""
cleanup() {
  [ -n "${load_pid:-}" ] && kill "$load_pid" 2>/dev/null || true
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    ctl shutdown >/dev/null 2>&1 || kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "starting rollbridged (proxy 127.0.0.1:$port, control $ROLLBRIDGE_DEMO_SOCKET); its event log: $work/daemon.log"
"$bin/rollbridged" -c examples/demo.jsonnet >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.05; done
ctl status >/dev/null

say "before any deploy the proxy answers 503"
curl -s -o /dev/null -w 'GET / -> HTTP %{http_code}\n' "http://127.0.0.1:$port/"

mkdir -p "$work/releases/v1" "$work/releases/v2"
say "rollbridgectl deploy --release-path $work/releases/v1 --release-id v1"
ctl deploy --release-path "$work/releases/v1" --release-id v1
curl -s "http://127.0.0.1:$port/"

say "a client sends requests in a loop and an SSE stream stays open while v2 deploys"
fails="$work/failures"
: >"$fails"
(
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/") || code=000
    [ "$code" = 200 ] || echo "$code" >>"$fails"
    echo ok >>"$work/requests"
  done
) &
load_pid=$!
curl -sN "http://127.0.0.1:$port/events?count=20" >"$work/sse" &
sse_pid=$!
sleep 0.5

say "rollbridgectl deploy --release-path $work/releases/v2 --release-id v2"
ctl deploy --release-path "$work/releases/v2" --release-id v2
sleep 0.5
kill "$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true
load_pid=""
curl -s "http://127.0.0.1:$port/"

say "status: v2 active, v1 draining while the SSE stream it accepted is still open"
ctl status | grep -E '"(releaseId|state|websocket|http)"' | head -12

wait "$sse_pid" || true
say "the SSE stream (opened on v1) finished all its events across the deploy"
grep -c '^data: tick' "$work/sse" | sed 's/^/events received: /'

requests=$(wc -l <"$work/requests")
failed=$(wc -l <"$fails")
say "requests during the deploy: $requests, failed: $failed"

say "recent events"
ctl events --limit 12

say "rollbridgectl shutdown"
ctl shutdown
daemon_pid=""
if [ "$failed" -ne 0 ]; then
  echo "demo: $failed requests failed during the deploy" >&2
  exit 1
fi
echo
echo "demo finished: traffic switched from v1 to v2 with zero failed requests."
