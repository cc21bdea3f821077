#!/usr/bin/env bash
# The real-systemd lane: boots systemd 252 in a sandbox (../shared/tools/
# systemd-sandbox), installs rollbridge's units and drop-ins generated from a
# config, and checks socket activation, deploys, journald fields, reload,
# ensure-daemon over D-Bus, the watchdog (SIGSTOP -> kill -> restart with
# connections queued meanwhile), restore after a crash, and a clean stop.
#
# Needs root. If the sandbox cannot boot here, it says so loudly and exits 0
# (1 under CI, see lane-common.sh); any failed check exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
LANE="SYSTEMD LANE"
export SANDBOX_NAME=${SANDBOX_NAME:-rollbridge-lane}
. scripts/lane-common.sh
prop() { sb systemctl show "$1" -p "$2" --value; }

build=$(mktemp -d)
# KEEP=1 leaves the sandbox up for inspection (SANDBOX_NAME=rollbridge-lane).
trap '[ "${KEEP:-0}" = 1 ] || "$SB" down >/dev/null 2>&1; rm -rf "$build"' EXIT
echo "== building static binaries"
CGO_ENABLED=0 go build -o "$build/" ./cmd/rollbridged ./cmd/rollbridgectl || exit 1
CGO_ENABLED=0 go build -o "$build/rollbridge-demo-app" ./examples/app || exit 1

echo "== booting systemd in the sandbox ($SB)"
if ! "$SB" up >/dev/null; then
  "$SB" logs 2>/dev/null | tail -20
  not_run "the systemd sandbox did not boot on this machine"
fi
ROOT=$("$SB" root)
install -m 0755 "$build/rollbridged" "$build/rollbridgectl" "$build/rollbridge-demo-app" "$ROOT/usr/local/bin/"
install -d "$ROOT/etc/rollbridge" "$ROOT/srv/demo/releases/v1" "$ROOT/srv/demo/releases/v2" "$ROOT/var/lib/rollbridge"
cat >"$ROOT/etc/rollbridge/demo.jsonnet" <<'JSONNET'
{
  application: 'demo',
  control: { path: '/run/rollbridge-demo.sock', mode: '660' },
  proxy: { host: '127.0.0.1', port: 18080, drainTimeoutMs: 5000 },
  statePath: '/var/lib/rollbridge/demo.state.json',
  processes: [
    { id: 'web', policy: 'proxied', command: 'exec /usr/local/bin/rollbridge-demo-app --port {{port}}',
      port: { from: 18100, to: 18199 }, health: { path: '/ping', intervalMs: 25 } },
    { id: 'worker', command: 'while :; do echo "worker of {{releaseId}}"; sleep 1; done' },
  ],
}
JSONNET
C=/etc/rollbridge/demo.jsonnet
ctl() { sb /usr/local/bin/rollbridgectl "$@" -c "$C"; }
body() { sb curl -s --max-time 10 http://127.0.0.1:18080/; }
journal_json() { sb journalctl -u rollbridge@demo.service -o json --no-pager; }

echo "== installing units and drop-ins generated from the config"
out=$(ctl systemd units --install 2>&1); echo "$out" | sed 's/^/  /'
check "systemd units --install wrote the drop-ins and reloaded systemd over D-Bus" grep -q "systemd reloaded" <<<"$out"
# A short watchdog for this lane, so the SIGSTOP check is quick.
install -d "$ROOT/etc/systemd/system/rollbridge@demo.service.d"
printf '[Unit]\nStartLimitIntervalSec=0\n[Service]\nWatchdogSec=3\n' >"$ROOT/etc/systemd/system/rollbridge@demo.service.d/60-lane.conf"
sb systemctl daemon-reload
check "drop-in carries the proxy address" bash -c "grep -q 'ListenStream=127.0.0.1:18080' '$ROOT/etc/systemd/system/rollbridge-proxy@demo.socket.d/50-rollbridge.conf'"

sb systemctl start rollbridge-proxy@demo.socket rollbridge-control@demo.socket
check "sockets listening, service not started yet" bash -c "[ \"\$('$SB' exec -- systemctl is-active rollbridge@demo.service)\" = inactive ]"
first=$(sb curl -s -o /dev/null -w '%{http_code}' --max-time 15 http://127.0.0.1:18080/)
check "the first connection activates rollbridge@demo and gets an answer (HTTP $first: no release yet)" test "$first" = 503
check "service active after activation" bash -c "[ \"\$('$SB' exec -- systemctl is-active rollbridge@demo.service)\" = active ]"

dj=$(ctl doctor --json 2>/dev/null)
check "doctor over D-Bus: drop-ins match the config, sockets listen, all checks pass" \
  bash -c "jq -e '.ok and (.checks[] | select(.name==\"systemd drop-ins\") | .ok) and ([.checks[] | select(.name|startswith(\"socket \")) | select(.ok)] | length == 2)' >/dev/null <<<\"\$1\"" _ "$dj"
ctl deploy --release-path /srv/demo/releases/v1 --release-id v1 >/dev/null 2>&1
check "deploy v1 switches traffic ($(body))" bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v1' ]]"
ctl deploy --release-path /srv/demo/releases/v2 --release-id v2 >/dev/null 2>&1
check "deploy v2 switches traffic ($(body))" bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"
st=$(prop rollbridge@demo.service StatusText)
check "sd_notify STATUS shows the active release ($st)" grep -q "active v2" <<<"$st"

sleep 1
J="$build/journal.json"
journal_json >"$J"
jq_has() { jq -c "select($1)" "$J" | grep -q .; }
check "journal: daemon event with structured fields (traffic switched, ROLLBRIDGE_RELEASE_ID=v2)" \
  jq_has '.ROLLBRIDGE_EVENT=="traffic switched" and .ROLLBRIDGE_RELEASE_ID=="v2" and .ROLLBRIDGE_APPLICATION=="demo" and .SYSLOG_IDENTIFIER=="rollbridged"'
check "journal: the app's own output with ROLLBRIDGE_PROCESS_ID=web, its release and stream" \
  jq_has '.ROLLBRIDGE_PROCESS_ID=="web" and .ROLLBRIDGE_RELEASE_ID=="v2" and .ROLLBRIDGE_STREAM=="stdout" and (.MESSAGE|tostring|test("listening on"))'

check "journalctl ROLLBRIDGE_PROCESS_ID=worker filters a worker's lines" \
  bash -c "'$SB' exec -- journalctl -u rollbridge@demo.service ROLLBRIDGE_PROCESS_ID=worker -o cat --no-pager | grep -q 'worker of v2'"

# A stale drop-in is caught: change the proxy port in the config only.
sed -i 's/port: 18080/port: 18081/' "$ROOT/etc/rollbridge/demo.jsonnet"
dj=$(ctl doctor --json 2>/dev/null)
check "doctor flags drop-ins that no longer match the config" \
  bash -c "jq -e '(.ok|not) and (.checks[] | select(.name==\"systemd drop-ins\") | (.ok|not))' >/dev/null <<<\"\$1\"" _ "$dj"
out=$(ctl predeploy-cleanup 2>&1); rc=$?
check "predeploy-cleanup refuses a proxy change under socket activation (exit $rc), naming systemd units --install" \
  bash -c "[ $rc = 1 ] && grep -q 'systemd holds its sockets' <<<\"\$1\" && grep -q 'rollbridgectl systemd units --install' <<<\"\$1\"" _ "$out"
check "the daemon still serves v2 after the refusal" bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"
sed -i 's/port: 18081/port: 18080/' "$ROOT/etc/rollbridge/demo.jsonnet"
sb systemctl reload rollbridge@demo.service
check "systemctl reload: config reloaded, still active" \
  wait_for 10 bash -c "'$SB' exec -- journalctl -u rollbridge@demo.service ROLLBRIDGE_EVENT='config reloaded' -o cat --no-pager | grep -q 'config reloaded'"
check "still serving v2 after reload" bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"

echo "== watchdog: SIGSTOP the daemon; systemd must kill and restart it while connections queue"
pid1=$(prop rollbridge@demo.service MainPID)
n1=$(prop rollbridge@demo.service NRestarts)
sb kill -STOP "$pid1"
# Opened while the daemon is frozen: it must be queued and answered after the restart.
sb curl -s --max-time 40 -o /tmp/queued -w '%{http_code}' http://127.0.0.1:18080/ >"$build/queued-code" 2>/dev/null &
curl_pid=$!
check "systemd restarted the frozen daemon (NRestarts $n1 -> more, new MainPID)" \
  wait_for 40 bash -c "[ \"\$('$SB' exec -- systemctl show rollbridge@demo.service -p NRestarts --value)\" -gt $n1 ] && [ \"\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value)\" != $pid1 ] && [ \"\$('$SB' exec -- systemctl is-active rollbridge@demo.service)\" = active ]"
wait "$curl_pid"
code=$(cat "$build/queued-code")
check "the connection opened meanwhile was queued and answered (HTTP $code), not refused" test "$code" = 200 -o "$code" = 503
check "the restarted daemon restored release v2 from its state file and serves it without a deploy ($(body))" \
  wait_for 20 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"

echo "== SIGKILL the daemon (systemctl kill): systemd restarts it, it restores v2"
pid2=$(prop rollbridge@demo.service MainPID)
sb systemctl kill -s SIGKILL rollbridge@demo.service
check "restarted after SIGKILL" wait_for 30 bash -c "p=\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value); [ -n \"\$p\" ] && [ \"\$p\" != 0 ] && [ \"\$p\" != $pid2 ]"
check "traffic served again without any deploy ($(body))" \
  wait_for 20 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"

echo "== ensure-daemon over D-Bus: stop everything, then let ensure-daemon start the unit"
sb systemctl stop rollbridge@demo.service rollbridge-control@demo.socket rollbridge-proxy@demo.socket
out=$(ctl ensure-daemon 2>&1)
check "ensure-daemon started rollbridge@demo.service through systemd" grep -q "started rollbridge@demo.service through systemd" <<<"$out"
check "ensure-daemon printed the status JSON" grep -q '"application": "demo"' <<<"$out"
out=$(ctl ensure-daemon 2>&1)
check "ensure-daemon again: reuses the running daemon" grep -q "daemon already running" <<<"$out"

echo "== systemctl stop leaves nothing behind"
sb systemctl stop rollbridge@demo.service rollbridge-control@demo.socket rollbridge-proxy@demo.socket
sleep 0.5
left=$(sb pgrep -f 'rollbridge-demo-app|worker of|rollbridged' || true)
check "no managed or daemon process left after systemctl stop (${left:-none})" test -z "$left"
check "journal: daemon stopping recorded" bash -c "'$SB' exec -- journalctl -u rollbridge@demo.service ROLLBRIDGE_EVENT='daemon stopping' -o cat --no-pager | grep -q stopping"

echo
echo "systemd lane: $PASS passed, $FAIL failed"
if [ "$FAIL" -ne 0 ]; then
  echo "--- journal (last 60 lines)"
  sb journalctl -u rollbridge@demo.service -o short-precise --no-pager | tail -60
  exit 1
fi
