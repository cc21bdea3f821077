#!/usr/bin/env bash
# The Debian package lane: builds the .deb twice (this checkout's version,
# then the same code with a higher version; with LANE_DEB=FILE.deb, as
# .ci/run sets it, that file is the first), runs lintian, and in a real
# systemd (../shared/tools/systemd-sandbox):
#   - installs it with dpkg: binaries in /usr/bin, units from
#     /lib/systemd/system, the "rollbridge" user and "deploy" group
#     (sysusers.d), /run/rollbridge (tmpfiles.d), nothing started;
#   - runs the package-facing part of the systemd lane from the installed
#     files: drop-ins from `systemd units --install` naming /usr/bin, socket
#     activation, deploys, the app running as "rollbridge", the control
#     socket's group, journald fields, doctor, and systemctl restart under a
#     client loop with the app's pids unchanged, with the package's own
#     user, group and directories. (The daemon's behaviour under systemd —
#     watchdog, fd store, adoption — is the systemd lane's, which CI runs
#     from the installed package too: systemd-lane.sh --from-deb.)
#   - upgrades to the second build with a release live under a client loop:
#     no failed request, the app's pids and the daemon unchanged, a message
#     naming the daemon still on the old binary; a deploy through that
#     daemon; then a reinstall with ROLLBRIDGE_RESTART_ON_UPGRADE=yes under
#     load: the daemon restarted on the new binary, the app's pids unchanged;
#   - removes it under load: the daemon and the app keep serving, the
#     message names them, config and state stay; then stops the app by hand
#     and purges: config, state and drop-ins gone.
#
# Needs root and lintian. If the sandbox cannot boot here, it says so loudly
# and exits 0 (1 under CI, see lane-common.sh); any failed check exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
LANE="DEB LANE"
export SANDBOX_NAME=${SANDBOX_NAME:-rollbridge-deb}
. scripts/lane-common.sh
command -v lintian >/dev/null || not_run "lintian is not installed (apt-get install lintian)"
command -v dpkg-deb >/dev/null || not_run "dpkg-deb is missing"
prop() { sb systemctl show "$1" -p "$2" --value; }

build=$(mktemp -d)
trap '[ "${KEEP:-0}" = 1 ] || "$SB" down >/dev/null 2>&1; rm -rf "$build"' EXIT

if [ -n "${LANE_DEB:-}" ]; then
  # A package built already (.ci/run's make deb): only the higher one is built.
  echo "== the package: $LANE_DEB; building the same code with a higher version"
  deb1=$LANE_DEB
  v1=$(dpkg-deb -f "$deb1" Version) || exit 1
else
  echo "== building the package twice: this checkout's version, then a higher one"
  v1=$(packaging/deb/version.sh)
  deb1=$(DEB_VERSION=$v1 DEB_OUT="$build" ./packaging/deb/build.sh) || exit 1
fi
v2="$v1+lane1"
deb2=$(DEB_VERSION=$v2 DEB_OUT="$build" ./packaging/deb/build.sh) || exit 1
echo "  $deb1"; echo "  $deb2"
check "dpkg sorts the second build higher ($v1 < $v2)" dpkg --compare-versions "$v1" lt "$v2"
CGO_ENABLED=0 go build -o "$build/rollbridge-demo-app" ./examples/app || exit 1

echo "== lintian"
lintian --fail-on error --info "$deb1" >"$build/lintian" 2>&1; rc=$?
grep -v '^N:\|root privileges' "$build/lintian" | sed 's/^/  /'
check "lintian: no errors (exit $rc; warnings above)" test "$rc" = 0

echo "== booting systemd in the sandbox ($SB)"
if ! "$SB" up >/dev/null; then
  "$SB" logs 2>/dev/null | tail -20
  not_run "the systemd sandbox did not boot on this machine"
fi
ROOT=$("$SB" root)
# Only the package's binaries: none left in /usr/local/bin by a hand install.
rm -f "$ROOT/usr/local/bin/rollbridged" "$ROOT/usr/local/bin/rollbridgectl"
# A build machine's policy-rc.d (exit 101: start nothing) would veto the
# opt-in restart on upgrade, as deb-systemd-invoke honours it; a server has
# none. The sandbox's copy only: its root is an overlay.
rm -f "$ROOT/usr/sbin/policy-rc.d"
install -m 0644 "$deb1" "$deb2" "$ROOT/tmp/"
D1=/tmp/$(basename "$deb1") D2=/tmp/$(basename "$deb2")
install -m 0755 "$build/rollbridge-demo-app" "$ROOT/usr/local/bin/"

echo "== dpkg -i: installs the files, creates the user, group and directories, starts nothing"
out=$(sb dpkg -i "$D1" 2>&1); rc=$?
echo "$out" | sed 's/^/  /'
check "dpkg -i $v1 (exit $rc)" test "$rc" = 0
check "dpkg knows version $v1" test "$(sb dpkg-query -W -f '${Version}' rollbridge)" = "$v1"
check "/usr/bin/rollbridged and rollbridgectl run" bash -c "'$SB' exec -- /usr/bin/rollbridged --version | grep -q '^rollbridged ' && '$SB' exec -- /usr/bin/rollbridgectl --version | grep -q ."
check "rollbridge@x.service comes from /lib/systemd/system, ExecStart /usr/bin/rollbridged" \
  bash -c "[ \"\$('$SB' exec -- systemctl show rollbridge@x.service -p FragmentPath --value)\" = /lib/systemd/system/rollbridge@.service ] && '$SB' exec -- systemctl cat rollbridge@x.service | grep -qx 'ExecStart=/usr/bin/rollbridged --config /etc/rollbridge/%i.jsonnet'"
check "sysusers.d: system user rollbridge (nologin) and group deploy exist" \
  bash -c "'$SB' exec -- getent passwd rollbridge | grep -q ':/usr/sbin/nologin\$' && '$SB' exec -- getent group deploy >/dev/null"
check "tmpfiles.d: /run/rollbridge is 755 root" test "$(sb stat -c '%a %U' /run/rollbridge)" = "755 root"
check "nothing started: no rollbridge unit active" test -z "$(sb systemctl list-units --plain --no-legend --state=active 'rollbridge*')"
check "bash completion loads and completes rollbridgectl" \
  bash -c "'$SB' exec -- bash -c 'source /usr/share/bash-completion/completions/rollbridgectl && complete -p rollbridgectl' | grep -q rollbridgectl"
check "man pages, zsh and fish completions, example config in place" \
  sb test -s /usr/share/man/man1/rollbridgectl.1.gz -a -s /usr/share/man/man8/rollbridged.8.gz \
    -a -s /usr/share/zsh/vendor-completions/_rollbridgectl -a -s /usr/share/fish/vendor_completions.d/rollbridgectl.fish \
    -a -s /usr/share/doc/rollbridge/examples/app.jsonnet
check "the packaged example config validates" sb /usr/bin/rollbridgectl validate -c /usr/share/doc/rollbridge/examples/app.jsonnet

echo "== an application from the installed package"
install -d "$ROOT/srv/demo/releases/v1" "$ROOT/srv/demo/releases/v2" "$ROOT/srv/demo/releases/v3"
cat >"$ROOT/etc/rollbridge/demo.jsonnet" <<'JSONNET'
{
  application: 'demo',
  user: 'rollbridge',  // the package's user
  control: { path: '/run/rollbridge/demo.sock', mode: '660', group: 'deploy' },  // the package's group
  proxy: { host: '127.0.0.1', port: 18080, drainTimeoutMs: 5000 },
  processes: [
    { id: 'web', policy: 'proxied', command: 'exec /usr/local/bin/rollbridge-demo-app --port {{port}}',
      port: { from: 18100, to: 18199 }, health: { path: '/ping', intervalMs: 25 } },
    { id: 'worker', command: 'while :; do echo "worker of {{releaseId}}"; sleep 1; done' },
  ],
}
JSONNET
C=/etc/rollbridge/demo.jsonnet
ctl() { sb /usr/bin/rollbridgectl "$@" -c "$C"; }
body() { sb curl -s --max-time 10 http://127.0.0.1:18080/; }
serves() { [[ "$(body)" == "hello from release $1" ]]; }
out=$(ctl systemd units --install 2>&1); echo "$out" | sed 's/^/  /'
check "systemd units --install wrote drop-ins only (the package has the templates) and reloaded" \
  bash -c "grep -q 'systemd reloaded' <<<\"\$1\" && ! grep -q '^installed' <<<\"\$1\"" _ "$out"
check "the drop-ins name /usr/bin/rollbridged" \
  grep -qx 'ExecStart=/usr/bin/rollbridged --config /etc/rollbridge/demo.jsonnet' "$ROOT/etc/systemd/system/rollbridge@demo.service.d/50-rollbridge.conf"
sb systemctl start rollbridge-proxy@demo.socket rollbridge-control@demo.socket
check "control socket: group deploy, mode 660" test "$(sb stat -c '%G %a' /run/rollbridge/demo.sock)" = "deploy 660"
first=$(sb curl -s -o /dev/null -w '%{http_code}' --max-time 15 http://127.0.0.1:18080/)
check "the first connection activates rollbridge@demo (HTTP $first: no release yet)" test "$first" = 503
ctl deploy --release-path /srv/demo/releases/v1 --release-id v1 >/dev/null 2>&1
check "deploy v1 switches traffic ($(body))" serves v1
ctl deploy --release-path /srv/demo/releases/v2 --release-id v2 >/dev/null 2>&1
check "deploy v2 switches traffic ($(body))" serves v2
WEB=rollbridge-demo-v2-web.service WORKER=rollbridge-demo-v2-worker.service
RB_UID=$(sb id -u rollbridge)
check "the web runs as its own unit, as user rollbridge (uid $RB_UID)" \
  wait_for 15 bash -c "p=\$('$SB' exec -- systemctl show $WEB -p MainPID --value); [ \"\$p\" != 0 ] && [ \"\$('$SB' exec -- stat -c %u /proc/\$p)\" = $RB_UID ]"
check "state file in the packaged state directory (/var/lib/rollbridge/demo.state.json)" \
  wait_for 10 test -s "$ROOT/var/lib/rollbridge/demo.state.json"
check "journal: the worker's lines carry ROLLBRIDGE_* fields" \
  wait_for 10 bash -c "'$SB' exec -- journalctl ROLLBRIDGE_APPLICATION=demo ROLLBRIDGE_PROCESS_ID=worker -o cat --no-pager | grep -q 'worker of v2'"
dj=$(ctl doctor --json 2>/dev/null)
check "doctor: drop-ins match the config, both sockets listen, all checks pass" \
  bash -c "jq -e '.ok and (.checks[] | select(.name==\"systemd drop-ins\") | .ok)' >/dev/null <<<\"\$1\"" _ "$dj"

app_pids() { echo "$(prop "$WEB" MainPID) $(prop "$WORKER" MainPID)"; }
daemon_pid() { prop rollbridge@demo.service MainPID; }
# load_while STOPFILE: sequential requests, one connection each, until
# STOPFILE exists and 50 more after it; prints "FAILED TOTAL", and each
# failure's number and HTTP code (000: no answer) on stderr.
load_while() {
  sb bash -c "n=0 t=0 more=50; while [ \$more -gt 0 ]; do c=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 http://127.0.0.1:18080/); t=\$((t+1)); [ \"\$c\" = 200 ] || { n=\$((n+1)); echo \"request \$t: HTTP \$c\" >&2; }; [ -e $1 ] && more=\$((more-1)); done; echo \$n \$t"
}
# under_load WHAT CMD...: runs CMD (its output in $build/out) under a
# client loop that starts before it and ends 50 requests after it; checks
# that no request failed and that the app's pids did not change.
under_load() {
  local what=$1; shift
  local pids0 pids1 failed total
  pids0=$(app_pids)
  rm -f "$ROOT/tmp/lane-stop"
  load_while /tmp/lane-stop >"$build/failed" 2>"$build/failures" &
  local lp=$!
  sleep 1 # let the loop get going
  "$@" >"$build/out" 2>&1; echo $? >"$build/rc"
  touch "$ROOT/tmp/lane-stop"
  wait "$lp"; read -r failed total <"$build/failed"
  sed 's/^/  /' "$build/out"
  check "$what: exit $(cat "$build/rc")" test "$(cat "$build/rc")" = 0
  check "$what: $failed of $total requests failed" test "$failed" = 0
  [ "$failed" = 0 ] || sed 's/^/   /' "$build/failures"
  pids1=$(app_pids)
  check "$what: app pids unchanged ($pids0 -> $pids1)" test "$pids0" = "$pids1"
}

echo "== systemctl restart rollbridge@demo under load (the installed units)"
d0=$(daemon_pid)
under_load "systemctl restart" sb systemctl restart rollbridge@demo.service
check "a new daemon serves v2 (pid $d0 -> $(daemon_pid))" bash -c "[ \"\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value)\" != $d0 ] && [[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"

echo "== upgrade to $v2 with v2 live, under load: nothing restarted"
d0=$(daemon_pid)
under_load "dpkg -i $v2" sb dpkg -i "$D2"
check "dpkg knows version $v2" test "$(sb dpkg-query -W -f '${Version}' rollbridge)" = "$v2"
check "the daemon was not restarted (pid $d0 -> $(daemon_pid)); it still runs the replaced binary" \
  bash -c "[ \"\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value)\" = $d0 ] && '$SB' exec -- readlink /proc/$d0/exe | grep -q deleted"
check "postinst named the daemon still on the previous version" grep -q "still run the previous version: rollbridge@demo.service" "$build/out"
check "still serving v2 ($(body))" serves v2
ctl deploy --release-path /srv/demo/releases/v3 --release-id v3 >/dev/null 2>&1
check "a deploy through the old daemon after the upgrade switches to v3 ($(body))" serves v3
WEB=rollbridge-demo-v3-web.service WORKER=rollbridge-demo-v3-worker.service
wait_for 15 bash -c "[ \"\$('$SB' exec -- systemctl show $WEB -p MainPID --value)\" != 0 ]"

echo "== reinstall with ROLLBRIDGE_RESTART_ON_UPGRADE=yes under load: the daemon restarts, the app does not"
d0=$(daemon_pid)
under_load "ROLLBRIDGE_RESTART_ON_UPGRADE=yes dpkg -i $v2" sb env ROLLBRIDGE_RESTART_ON_UPGRADE=yes dpkg -i "$D2"
check "postinst restarted rollbridge@demo.service (pid $d0 -> $(daemon_pid)) onto /usr/bin/rollbridged" \
  bash -c "p=\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value); [ \"\$p\" != $d0 ] && [ \"\$('$SB' exec -- readlink /proc/\$p/exe)\" = /usr/bin/rollbridged ]"
check "postinst said so" grep -q "restarting rollbridge@demo.service" "$build/out"
check "still serving v3 ($(body))" serves v3

echo "== dpkg -r under load: the daemon and the app keep running"
d0=$(daemon_pid)
under_load "dpkg -r rollbridge" sb dpkg -r rollbridge
check "prerm listed what keeps running and said nothing was stopped" \
  bash -c "grep -q 'nothing was stopped' '$build/out' && grep -q 'rollbridge@demo.service' '$build/out' && grep -q 'rollbridge-proxy@demo.socket' '$build/out'"
check "binaries and units gone" bash -c "! '$SB' exec -- test -e /usr/bin/rollbridged && ! '$SB' exec -- test -e /lib/systemd/system/rollbridge@.service"
check "the same daemon still serves v3 (pid $(daemon_pid))" bash -c "[ \"\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value)\" = $d0 ] && [[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v3' ]]"
check "the unit files were kept in /run/systemd/system for the running instances" \
  sb test -s /run/systemd/system/rollbridge@.service -a -s /run/systemd/system/rollbridge-proxy@.socket
sb systemctl daemon-reload
check "after another daemon-reload the same daemon still serves v3" bash -c "sleep 12; [ \"\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value)\" = $d0 ] && [[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v3' ]]"
check "config and state stay after remove" sb test -s /etc/rollbridge/demo.jsonnet -a -s /var/lib/rollbridge/demo.state.json

echo "== stopping by hand, then dpkg -P: config, state and drop-ins gone"
sb systemctl stop rollbridge@demo.service rollbridge-proxy@demo.socket rollbridge-control@demo.socket
check "systemctl stop stopped the app's units" \
  wait_for 20 bash -c "[ -z \"\$('$SB' exec -- systemctl list-units --plain --no-legend --state=active 'rollbridge-demo-*')\" ]"
out=$(sb dpkg -P rollbridge 2>&1); rc=$?
echo "$out" | sed 's/^/  /'
check "dpkg -P (exit $rc)" test "$rc" = 0
check "/etc/rollbridge and /var/lib/rollbridge removed" bash -c "! '$SB' exec -- test -e /etc/rollbridge && ! '$SB' exec -- test -e /var/lib/rollbridge"
check "the drop-ins removed" bash -c "! ls -d '$ROOT'/etc/systemd/system/rollbridge*@demo.* 2>/dev/null | grep -q ."
check "dpkg no longer knows rollbridge" bash -c "! '$SB' exec -- dpkg-query -W rollbridge 2>/dev/null | grep -q ."

echo
echo "deb lane: $PASS passed, $FAIL failed"
if [ "$FAIL" -ne 0 ]; then
  echo "--- journal (last 60 lines)"
  sb journalctl -u rollbridge@demo.service -o short-precise --no-pager | tail -60
  exit 1
fi
