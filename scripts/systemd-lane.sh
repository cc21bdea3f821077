#!/usr/bin/env bash
# The real-systemd lane: boots systemd 252 in a sandbox (../shared/tools/
# systemd-sandbox), installs rollbridge's units and drop-ins generated from a
# config, and checks socket activation, deploys, journald fields, reload,
# ensure-daemon over D-Bus, the watchdog (SIGSTOP -> kill -> restart with
# connections queued meanwhile), restore after a crash, and a clean stop.
#
# The daemon runs with runtime auto, i.e. every process instance is a
# transient unit in rollbridge-demo.slice: the lane checks one unit per
# instance, their journal fields, `systemctl restart` and SIGKILL of the
# daemon under a client loop with the app's pids unchanged and no failed
# request (SIGKILL: at most the one in flight), the app's uid (user:
# 'nobody' in the config; the daemon is root), a unit killed
# while no daemon runs, two live copies of the web at adoption (one kept,
# the other stopped, no failed request), a service that left the config
# stopped at the next restart with the stop signal it was started with, the
# stop sequence on `systemctl stop`, the runner's supervision and the
# supervisor's adoption tests under real systemd, and the deploy's start ->
# spawned -> switched times with the systemd and the exec runtime (the
# benchmark suite's runtime section, run inside the sandbox). WebSockets (200, or
# LANE_WEBSOCKETS) stream numbered echoes through systemctl restart, SIGKILL
# and a watchdog kill of the daemon: all stay open, every echo once and in
# order (the fd store hand-over); systemctl stop closes them and leaves the
# store empty. Beside them, keep-alive GET and POST load (kaload): 0 failed
# requests and 0 connections closed across systemctl restart (the idle
# ones parked in the fd store and served by the next daemon); after a
# SIGKILL or watchdog kill, the requests lost are counted (at most one per
# connection). All on the event loop (the default); the same restart
# twice more, out of it and back (ROLLBRIDGE_EVENT_LOOP=off in a drop-in).
#
# Two modes, the same checks:
#   scripts/systemd-lane.sh                       from source: builds the
#       binaries into /usr/local/bin, `systemd units --install` puts the
#       template units in /etc/systemd/system (a developer's checkout);
#   scripts/systemd-lane.sh --from-deb FILE.deb   (or LANE_DEB=FILE.deb)
#       from the Debian package, as CI runs it: dpkg -i inside the sandbox,
#       /usr/bin/rollbridged and /usr/bin/rollbridgectl, the packaged units
#       in /lib/systemd/system; nothing of rollbridge in /usr/local/bin. The
#       lane asserts that before it starts and, at the end, that dpkg
#       --verify finds every packaged file unchanged. Its own settings (a
#       short watchdog, no start limit) go in /etc/systemd/system/*.d
#       drop-ins either way.
# The test tools (demo app, wsstream, kaload, the Go test binaries of
# pkg/systemd and pkg/supervisor, the benchmark suite) are built from this
# checkout in both modes; with --from-deb the suite drives the packaged
# daemon.
#
# Needs root. If the sandbox cannot boot here, it says so loudly and exits 0
# (1 under CI, see lane-common.sh); any failed check exits 1.
set -uo pipefail
DEB=${LANE_DEB:-}
while [ $# -gt 0 ]; do
  case $1 in
    --from-deb) DEB=${2:?--from-deb needs the path of a .deb}; shift 2 ;;
    --from-deb=*) DEB=${1#--from-deb=}; shift ;;
    *) echo "usage: $0 [--from-deb FILE.deb]" >&2; exit 2 ;;
  esac
done
if [ -n "$DEB" ]; then
  [ -f "$DEB" ] || { echo "systemd-lane: no such .deb: $DEB" >&2; exit 2; }
  DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
fi
cd "$(dirname "$0")/.."
LANE="SYSTEMD LANE"
export SANDBOX_NAME=${SANDBOX_NAME:-rollbridge-lane}
. scripts/lane-common.sh
prop() { sb systemctl show "$1" -p "$2" --value; }
# BIN: where rollbridged and rollbridgectl are (the package's, or ours);
# UNITDIR: where systemd must find the template units.
if [ -n "$DEB" ]; then
  BIN=/usr/bin UNITDIR='/lib/systemd/system /usr/lib/systemd/system'
  command -v dpkg-deb >/dev/null || not_run "dpkg-deb is missing"
else
  BIN=/usr/local/bin UNITDIR=/etc/systemd/system
fi
RBCTL=$BIN/rollbridgectl

build=$(mktemp -d)
# KEEP=1 leaves the sandbox up for inspection (SANDBOX_NAME=rollbridge-lane).
trap '[ "${KEEP:-0}" = 1 ] || "$SB" down >/dev/null 2>&1; rm -rf "$build"' EXIT
echo "== building static binaries${DEB:+ (test tools only: rollbridged and rollbridgectl come from $(basename "$DEB"))}"
if [ -z "$DEB" ]; then
  CGO_ENABLED=0 go build -o "$build/" ./cmd/rollbridged ./cmd/rollbridgectl || exit 1
fi
CGO_ENABLED=0 go build -o "$build/rollbridge-demo-app" ./examples/app || exit 1
CGO_ENABLED=0 go build -o "$build/" ./bench/cmd/wsstream ./bench/cmd/kaload || exit 1
# The benchmark suite's runtime section runs inside the sandbox (-bin dir).
mkdir -p "$build/bench"
if [ -z "$DEB" ]; then
  CGO_ENABLED=0 go build -o "$build/bench/" ./cmd/rollbridged ./cmd/rollbridgectl || exit 1
fi
CGO_ENABLED=0 go build -o "$build/bench/" ./bench/cmd/suite || exit 1
cp "$build/rollbridge-demo-app" "$build/bench/demo-app"
# The runner's supervision tests, run inside the sandbox against real systemd.
go test -c -o "$build/systemd.test" ./pkg/systemd || exit 1
go test -c -o "$build/supervisor.test" ./pkg/supervisor || exit 1

echo "== booting systemd in the sandbox ($SB)"
if ! "$SB" up >/dev/null; then
  "$SB" logs 2>/dev/null | tail -20
  not_run "the systemd sandbox did not boot on this machine"
fi
ROOT=$("$SB" root)
install -m 0755 "$build/rollbridge-demo-app" "$build/systemd.test" "$build/supervisor.test" "$build/wsstream" "$build/kaload" "$ROOT/usr/local/bin/"
install -d "$ROOT/usr/local/lib/rollbridge-bench"
install -m 0755 "$build"/bench/* "$ROOT/usr/local/lib/rollbridge-bench/"
if [ -z "$DEB" ]; then
  install -m 0755 "$build/rollbridged" "$build/rollbridgectl" "$ROOT/usr/local/bin/"
else
  echo "== dpkg -i $(basename "$DEB") inside the sandbox"
  # Only the package's binaries: none in /usr/local/bin (the sandbox's
  # overlay copy; the host is not touched).
  rm -f "$ROOT/usr/local/bin/rollbridged" "$ROOT/usr/local/bin/rollbridgectl"
  install -m 0644 "$DEB" "$ROOT/tmp/"
  out=$(sb dpkg -i "/tmp/$(basename "$DEB")" 2>&1); rc=$?
  echo "$out" | sed 's/^/  /'
  check "dpkg -i $(basename "$DEB") (exit $rc)" test "$rc" = 0
  [ "$rc" = 0 ] || exit 1
  # The suite drives the packaged daemon and client.
  ln -sf /usr/bin/rollbridged /usr/bin/rollbridgectl "$ROOT/usr/local/lib/rollbridge-bench/"
fi
install -d "$ROOT/etc/rollbridge" "$ROOT/srv/demo/releases/v1" "$ROOT/srv/demo/releases/v2" "$ROOT/var/lib/rollbridge"
cat >"$ROOT/etc/rollbridge/demo.jsonnet" <<'JSONNET'
{
  application: 'demo',
  control: { path: '/run/rollbridge-demo.sock', mode: '660' },
  proxy: { host: '127.0.0.1', port: 18080, drainTimeoutMs: 5000 },
  statePath: '/var/lib/rollbridge/demo.state.json',
  user: 'nobody',  // the daemon is root; the app and its hooks are not
  systemd: { NoNewPrivileges: true },  // lane-sandbox: every process's unit, merged with a process's own
  processes: [
    { id: 'web', policy: 'proxied', command: 'exec /usr/local/bin/rollbridge-demo-app --port {{port}}',
      port: { from: 18100, to: 18199 }, health: { path: '/ping', intervalMs: 25 },
      memory: { limitBytes: 1073741824, checkIntervalMs: 200, maxBytes: 2147483648 },
      lifecycle: { quietCommand: 'echo "quiet web $ROLLBRIDGE_RELEASE_ID" >> /var/lib/rollbridge/hooks.log',
                   stopCommand: 'echo "stop web $ROLLBRIDGE_RELEASE_ID" >> /var/lib/rollbridge/hooks.log; kill -TERM $ROLLBRIDGE_PID' } },
    { id: 'worker', command: 'while :; do echo "worker of {{releaseId}}"; sleep 1; done',
      lifecycle: { quietCommand: 'echo "quiet worker $ROLLBRIDGE_RELEASE_ID" >> /var/lib/rollbridge/hooks.log' } },
    { id: 'jail', user: 'root', command: 'grep NoNewPrivs /proc/self/status; for d in /usr /var/lib/rollbridge/jail; do if touch $d/rb-jail-probe 2>/dev/null; then echo "write $d: ok"; else echo "write $d: refused"; fi; done; if [ -e /tmp/rb-lane-marker ]; then echo "tmp: shared"; else echo "tmp: private"; fi; while :; do echo "jail of {{releaseId}}"; sleep 1; done', systemd: { ProtectSystem: 'strict', ReadWritePaths: ['/var/lib/rollbridge/jail'], PrivateTmp: true, ProtectHome: true, CapabilityBoundingSet: ['CAP_DAC_OVERRIDE'] } },  // lane-sandbox: root, held by its unit settings
  ],
}
JSONNET
# The hooks run as the app's user (nobody) and append here.
install -m 0666 /dev/null "$ROOT/var/lib/rollbridge/hooks.log"
# The jail process may write here (ReadWritePaths) and nowhere else; it
# must not see this /tmp (PrivateTmp).
install -d "$ROOT/var/lib/rollbridge/jail"
: >"$ROOT/tmp/rb-lane-marker"
C=/etc/rollbridge/demo.jsonnet
ctl() { sb "$RBCTL" "$@" -c "$C"; }
body() { sb curl -s --max-time 10 http://127.0.0.1:18080/; }
journal_json() { sb journalctl -u rollbridge@demo.service -o json --no-pager; }

echo "== installing units and drop-ins generated from the config"
out=$(ctl systemd units --install 2>&1); echo "$out" | sed 's/^/  /'
check "systemd units --install wrote the drop-ins and reloaded systemd over D-Bus" grep -q "systemd reloaded" <<<"$out"
# A short watchdog for this lane, so the SIGSTOP check is quick.
install -d "$ROOT/etc/systemd/system/rollbridge@demo.service.d"
# RestartSec=2 leaves time to kill a process unit while no daemon runs.
printf '[Unit]\nStartLimitIntervalSec=0\n[Service]\nWatchdogSec=3\nRestartSec=2\n' >"$ROOT/etc/systemd/system/rollbridge@demo.service.d/60-lane.conf"
sb systemctl daemon-reload
check "drop-in carries the proxy address" bash -c "grep -q 'ListenStream=127.0.0.1:18080' '$ROOT/etc/systemd/system/rollbridge-proxy@demo.socket.d/50-rollbridge.conf'"

echo "== where the units and binaries come from (${DEB:+the package: }$BIN, $UNITDIR)"
# exec_path UNIT PROP: the binary of an Exec*= line (systemctl prints
# "{ path=/usr/bin/rollbridged ; argv[]=... }").
exec_path() { prop "$1" "$2" | sed -n 's/^{ path=\([^ ;]*\) .*/\1/p' | tail -1; }
# in_unitdir PATH: PATH is a file directly in one of $UNITDIR.
in_unitdir() { local d; for d in $UNITDIR; do [ "$(dirname "$1")" = "$d" ] && return 0; done; return 1; }
if [ -n "$DEB" ]; then
  check "systemd units --install wrote drop-ins only: the package has the templates" bash -c "! grep -q '^installed' <<<\"\$1\"" _ "$out"
  check "no rollbridged or rollbridgectl in /usr/local/bin: only the package's" \
    bash -c "! '$SB' exec -- test -e /usr/local/bin/rollbridged && ! '$SB' exec -- test -e /usr/local/bin/rollbridgectl"
  check "dpkg -S: /usr/bin/rollbridged, /usr/bin/rollbridgectl and rollbridge@.service belong to rollbridge" \
    bash -c "[ \"\$('$SB' exec -- dpkg -S /usr/bin/rollbridged /usr/bin/rollbridgectl /lib/systemd/system/rollbridge@.service | cut -d: -f1 | sort -u)\" = rollbridge ]"
fi
for u in rollbridge@demo.service rollbridge-proxy@demo.socket rollbridge-control@demo.socket rollbridge-units@demo.service; do
  fp=$(prop "$u" FragmentPath)
  check "$u: FragmentPath $fp is in $UNITDIR" in_unitdir "$fp"
done
dropins=$(prop rollbridge@demo.service DropInPaths)
check "rollbridge@demo.service: the lane's settings are drop-ins in /etc/systemd/system ($dropins)" \
  bash -c "for p in \$1; do case \$p in /etc/systemd/system/rollbridge@demo.service.d/*) ;; *) exit 1 ;; esac; done; grep -q 60-lane.conf <<<\"\$1\"" _ "$dropins"
es=$(exec_path rollbridge@demo.service ExecStart)
check "rollbridge@demo.service: ExecStart runs $BIN/rollbridged ($es)" test "$es" = "$BIN/rollbridged"
es=$(exec_path rollbridge-units@demo.service ExecStop)
check "rollbridge-units@demo.service: ExecStop runs $BIN/rollbridged ($es)" test "$es" = "$BIN/rollbridged"

sb systemctl start rollbridge-proxy@demo.socket rollbridge-control@demo.socket
check "sockets listening, service not started yet" bash -c "[ \"\$('$SB' exec -- systemctl is-active rollbridge@demo.service)\" = inactive ]"
first=$(sb curl -s -o /dev/null -w '%{http_code}' --max-time 15 http://127.0.0.1:18080/)
check "the first connection activates rollbridge@demo and gets an answer (HTTP $first: no release yet)" test "$first" = 503
check "service active after activation" bash -c "[ \"\$('$SB' exec -- systemctl is-active rollbridge@demo.service)\" = active ]"
check "the running daemon is $BIN/rollbridged (/proc/MAINPID/exe)" \
  bash -c "[ \"\$('$SB' exec -- readlink /proc/\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value)/exe)\" = '$BIN/rollbridged' ]"

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

echo "== processes as systemd units"
WEB=rollbridge-demo-v2-web.service WORKER=rollbridge-demo-v2-worker.service JAIL=rollbridge-demo-v2-jail.service
app_units() { sb systemctl list-units --plain --no-legend --state=active 'rollbridge-demo-*' | awk '{print $1}' | sort | tr '\n' ' '; }
check "systemctl list-units: one unit per process instance once v1 drained ($(app_units))" \
  wait_for 15 bash -c "[ \"\$('$SB' exec -- systemctl list-units --plain --no-legend --state=active 'rollbridge-demo-*' | awk '{print \$1}' | sort | tr '\n' ' ')\" = '$JAIL $WEB $WORKER ' ]"
check "the units run in rollbridge-demo.slice" test "$(prop $WEB Slice)" = rollbridge-demo.slice
NOBODY=$(sb id -u nobody)
check "the app runs as the configured user: the web unit's User= and its main process's uid are nobody's ($NOBODY)" \
  bash -c "[ \"\$('$SB' exec -- systemctl show $WEB -p User --value)\" = $NOBODY ] && [ \"\$('$SB' exec -- stat -c %u /proc/\$('$SB' exec -- systemctl show $WEB -p MainPID --value))\" = $NOBODY ]"
check "no Environment= on the unit (the environment came through a 0600 file, gone after the start)" \
  bash -c "[ -z \"\$('$SB' exec -- systemctl show $WEB -p Environment --value)\" ] && [ -z \"\$(ls -A '$ROOT/run/rollbridge/demo' 2>/dev/null)\" ]"
UJ="$build/unit-journal.json"
sb journalctl -u "$WEB" -o json --no-pager >"$UJ"
check "journalctl -u $WEB: the app's output with SYSLOG_IDENTIFIER=web and the ROLLBRIDGE_* fields" \
  bash -c "jq -c 'select(.SYSLOG_IDENTIFIER==\"web\" and .ROLLBRIDGE_APPLICATION==\"demo\" and .ROLLBRIDGE_RELEASE_ID==\"v2\" and .ROLLBRIDGE_PROCESS_ID==\"web\" and .ROLLBRIDGE_INSTANCE_ID==\"web\" and (.MESSAGE|tostring|test(\"listening on\")))' '$UJ' | grep -q ."
check "journalctl ROLLBRIDGE_PROCESS_ID=worker filters a worker's lines (no -u needed)" \
  bash -c "'$SB' exec -- journalctl ROLLBRIDGE_APPLICATION=demo ROLLBRIDGE_PROCESS_ID=worker -o cat --no-pager | grep -q 'worker of v2'"
check "rollbridgectl logs reads the worker's output back from the journal" \
  wait_for 10 bash -c "'$SB' exec -- $RBCTL logs --process worker -c $C | grep -q 'worker of v2'"
st=$(ctl status 2>/dev/null)
check "status: web's pid is its unit's MainPID, with its unit name, rssBytes and the cgroup's own memory figure" \
  wait_for 10 bash -c "jq -e --argjson p \"\$('$SB' exec -- systemctl show $WEB -p MainPID --value)\" '[.releases[] | select(.state==\"active\") | .processes[] | select(.id==\"web\") | select(.pid==\$p and .unit==\"$WEB\" and .rssBytes>0 and .cgroupMemoryBytes>0)] | length == 1' >/dev/null <<<\"\$('$SB' exec -- $RBCTL status -c $C)\""
check "memory.maxBytes became the unit's MemoryMax" test "$(prop $WEB MemoryMax)" = 2147483648

echo "== unit settings (systemd: {...}): the sandbox is the unit's, and it holds"
check "systemctl show $JAIL: ProtectSystem=strict, PrivateTmp=yes, ProtectHome=yes, ReadWritePaths, NoNewPrivileges=yes (from the top level)" \
  bash -c "[ \"\$('$SB' exec -- systemctl show $JAIL -p ProtectSystem -p PrivateTmp -p ProtectHome -p ReadWritePaths -p NoNewPrivileges | sort | tr '\n' ' ')\" = 'NoNewPrivileges=yes PrivateTmp=yes ProtectHome=yes ProtectSystem=strict ReadWritePaths=/var/lib/rollbridge/jail ' ]"
check "the jail's capability bounding set is CAP_DAC_OVERRIDE alone ($(prop $JAIL CapabilityBoundingSet))" test "$(prop $JAIL CapabilityBoundingSet)" = cap_dac_override
jail_says() { sb journalctl -u "$JAIL" -o cat --no-pager | grep -qx "$1"; }
check "the jail (root) could not write /usr: ProtectSystem=strict" wait_for 10 jail_says "write /usr: refused"
check "the jail could write its ReadWritePaths" jail_says "write /var/lib/rollbridge/jail: ok"
check "the jail has a /tmp of its own: PrivateTmp (the host's marker is not there)" jail_says "tmp: private"
check "NoNewPrivs: 1 in the jail's /proc/PID/status" \
  bash -c "'$SB' exec -- grep -q '^NoNewPrivs:[[:space:]]*1\$' /proc/\$('$SB' exec -- systemctl show $JAIL -p MainPID --value)/status"
check "the top-level NoNewPrivileges reached the web unit too (NoNewPrivs: 1 in /proc/PID/status)" \
  bash -c "'$SB' exec -- grep -q '^NoNewPrivs:[[:space:]]*1\$' /proc/\$('$SB' exec -- systemctl show $WEB -p MainPID --value)/status"
check "the web unit has no ProtectSystem (the jail's settings are the jail's)" test "$(prop $WEB ProtectSystem)" = no

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

# procs_json: id, pid and restarts of every process of the active release.
procs_json() { ctl status 2>/dev/null | jq -c '{active: .activeReleaseId, procs: ([.releases[] | select(.state=="active") | .processes[] | {id, pid, restarts}] | sort_by(.id))}'; }
unit_pids() { echo "$(prop $WEB MainPID) $(prop $WORKER MainPID)"; }
# load N: N sequential requests, one connection each; prints the count of
# answers that were not 200 (000 = no answer at all).
load() { # prints the failed count; each failure's number, time and HTTP code (000: no answer) go to stderr
  sb bash -c "n=0; for i in \$(seq $1); do c=\$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 http://127.0.0.1:18080/); [ \"\$c\" = 200 ] || { n=\$((n+1)); echo \"request \$i at \$(date +%T.%N): HTTP \$c\" >&2; }; done; echo \$n"
}
survive() { # survive WHAT MAXFAILED CMD...: run CMD under a 1000-request client loop; the app must not notice
  local what=$1 maxfailed=$2; shift 2
  local before pids0 after pids1 failed
  before=$(procs_json); pids0=$(unit_pids)
  load 1000 >"$build/failed" 2>"$build/failures" &
  local lp=$!
  sleep 1 # let the loop get going (it runs for several seconds)
  "$@"
  wait "$lp"; failed=$(cat "$build/failed")
  check "$what: the daemon is back and serves v2" wait_for 30 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"
  wait_for 20 bash -c "[ \"\$('$SB' exec -- $RBCTL status -c $C | jq -r .activeReleaseId)\" = v2 ]"
  after=$(procs_json); pids1=$(unit_pids)
  check "$what: app pids unchanged ($pids0 -> $pids1)" test "$pids0" = "$pids1"
  check "$what: status shows the same release, processes and restart counters ($after)" test "$before" = "$after"
  # The loop is sequential: at most one request is in flight when CMD
  # acts, so MAXFAILED 1 allows only that one (inside a killed daemon).
  check "$what: $failed of 1000 requests failed (at most $maxfailed)" test "$failed" -le "$maxfailed"
  if [ "$failed" != 0 ]; then # what failed, and what the daemon said around it
    sed 's/^/   /' "$build/failures"
    sb journalctl -u rollbridge@demo.service --since "-30s" -o short-precise --no-pager 2>/dev/null | tail -40 | sed 's/^/   /'
  fi
  echo "$what: $failed/1000 failed" >>"$build/numbers"
}

echo "== systemctl restart rollbridge@demo under load: the app keeps running"
survive "systemctl restart" 0 sb systemctl restart rollbridge@demo.service
check "journal: the new daemon adopted release v2 (release adopted)" \
  bash -c "'$SB' exec -- journalctl -u rollbridge@demo.service ROLLBRIDGE_EVENT='release adopted' -o cat --no-pager | grep -q adopted"

echo "== SIGKILL the daemon under load: the app keeps running"
survive "systemctl kill -s SIGKILL" 1 sb systemctl kill -s SIGKILL rollbridge@demo.service

echo "== a web unit killed while no daemon runs is restarted by the next daemon"
r0=$(ctl status 2>/dev/null | jq '[.releases[] | select(.state=="active") | .processes[] | select(.id=="web") | .restarts][0]')
wp0=$(prop $WEB MainPID)
sb systemctl kill -s SIGKILL rollbridge@demo.service
sb systemctl kill -s SIGKILL "$WEB"
check "the web unit died while the daemon was down" wait_for 5 bash -c "[ \"\$('$SB' exec -- systemctl show $WEB -p MainPID --value)\" = 0 ]"
check "the next daemon restarted it (new MainPID) and serves v2" \
  wait_for 30 bash -c "p=\$('$SB' exec -- systemctl show $WEB -p MainPID --value); [ \"\$p\" != 0 ] && [ \"\$p\" != $wp0 ] && [[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"
r1=$(ctl status 2>/dev/null | jq '[.releases[] | select(.state=="active") | .processes[] | select(.id=="web") | .restarts][0]')
check "status counts it as a restart ($r0 -> $r1)" test "$r1" = "$((r0 + 1))"

echo "== two live copies of the web at adoption: the next daemon serves from one and stops the other"
# What a daemon that died in the middle of a memory replacement leaves: a
# second live unit of v2's web (the name a replacement takes, on a port of
# its own), staged by hand exactly as the runner starts one.
WEB2='rollbridge-demo-v2-web:2.service'
sb systemd-run --quiet --unit="$WEB2" --slice=rollbridge-demo.slice -p RemainAfterExit=yes -p User=nobody \
  -p WorkingDirectory=/srv/demo/releases/v2 --setenv=ROLLBRIDGE_RELEASE_ID=v2 \
  -p LogExtraFields=ROLLBRIDGE_APPLICATION=demo -p LogExtraFields=ROLLBRIDGE_RELEASE_ID=v2 -p LogExtraFields=ROLLBRIDGE_POLICY=proxied \
  -p LogExtraFields=ROLLBRIDGE_PROCESS_ID=web -p LogExtraFields=ROLLBRIDGE_INSTANCE_ID=web \
  /usr/local/bin/rollbridge-demo-app --port 18199
check "a second live copy of web runs beside the first ($WEB2)" \
  wait_for 10 bash -c "'$SB' exec -- curl -sf http://127.0.0.1:18199/ping"
since=$(sb date '+%Y-%m-%d %H:%M:%S')
survive "restart with two live web copies" 0 sb systemctl restart rollbridge@demo.service
check "the copy the state file says serves was kept (same web pid, checked above); the other is stopped" \
  wait_for 20 bash -c "[ \"\$('$SB' exec -- systemctl is-active '$WEB2')\" != active ] && ! '$SB' exec -- curl -sf http://127.0.0.1:18199/ping"
check "journal: leftover unit stopped names $WEB2, and no orphan was reported" \
  wait_for 10 bash -c "'$SB' exec -- journalctl -u rollbridge@demo.service --since '$since' ROLLBRIDGE_EVENT='leftover unit stopped' -o json --no-pager | jq -c 'select(.ROLLBRIDGE_UNIT==\"'$WEB2'\")' | grep -q . && ! '$SB' exec -- journalctl -u rollbridge@demo.service --since '$since' ROLLBRIDGE_EVENT='orphaned units found' -o cat --no-pager | grep -q ."

echo "== a service removed from the config: the next daemon stops its unit with its stop sequence"
# The service stops on SIGINT (its stopSignal) and writes down that it did.
JOBS_LINE="    { id: 'jobs', policy: 'service', stopSignal: 'SIGINT', gracefulStopMs: 5000, command: 'trap \"echo stop jobs SIGINT >> /var/lib/rollbridge/hooks.log; exit 0\" INT; while :; do sleep 0.2; done' },"
sed -i "s|^  processes: \\[\$|&\n$JOBS_LINE|" "$ROOT/etc/rollbridge/demo.jsonnet"
JOBS=rollbridge-demo-jobs.service
sb systemctl restart rollbridge@demo.service
check "the service added to the config runs as its own unit after a restart ($JOBS)" \
  wait_for 30 bash -c "[ \"\$('$SB' exec -- systemctl is-active $JOBS)\" = active ]"
sed -i "/id: 'jobs'/d" "$ROOT/etc/rollbridge/demo.jsonnet"
since=$(sb date '+%Y-%m-%d %H:%M:%S')
sb systemctl restart rollbridge@demo.service
check "after it left the config, systemctl restart stopped its unit" \
  wait_for 30 bash -c "[ \"\$('$SB' exec -- systemctl is-active $JOBS)\" != active ]"
check "with the stop signal it was started with (SIGINT recorded in hooks.log)" grep -q "stop jobs SIGINT" "$ROOT/var/lib/rollbridge/hooks.log"
check "journal: leftover unit stopped names $JOBS; no orphan reported, status lists none" \
  wait_for 10 bash -c "'$SB' exec -- journalctl -u rollbridge@demo.service --since '$since' ROLLBRIDGE_EVENT='leftover unit stopped' -o json --no-pager | jq -c 'select(.ROLLBRIDGE_UNIT==\"'$JOBS'\")' | grep -q . && ! '$SB' exec -- journalctl -u rollbridge@demo.service --since '$since' ROLLBRIDGE_EVENT='orphaned units found' -o cat --no-pager | grep -q . && [ \"\$('$SB' exec -- $RBCTL status -c $C | jq '.orphans | length')\" = 0 ]"
check "still serving v2 ($(body))" wait_for 20 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"

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

# Keep-alive HTTP beside the WebSockets (#13 item 2): kaload keeps NKA
# keep-alive connections sending GET / and POST /upload back to back, by
# hand (nothing retries). A graceful restart parks each idle one in the fd
# store and the next daemon serves its next request: 0 failed, and no
# connection dialled again. A killed daemon (SIGKILL, watchdog) cannot
# finish the request it had in flight, nor hand over its idle
# connections: at most one lost request per connection, counted.
NKA=${LANE_KEEPALIVES:-8}
KAS="$ROOT/tmp/kaload.json"
kaj() { jq -r "$1" "$KAS" 2>/dev/null; }
ka_start() {
  rm -f "$KAS" "$ROOT/tmp/kaload.pause"
  sb /usr/local/bin/kaload -n "$NKA" >"$build/kaload.out" 2>&1 &
  kap=$!
  check "kaload: $NKA keep-alive connections sending GET and POST through the proxy" \
    wait_for 30 bash -c "[ \"\$(jq -r .open '$KAS' 2>/dev/null)\" = $NKA ] && [ \"\$(jq -r .ok '$KAS')\" -gt 100 ]"
}
ka_mark() { ka_f0=$(kaj .failed); ka_r0=$(kaj .redials); ka_ok0=$(kaj .ok); ka_since=$(sb date '+%Y-%m-%d %H:%M:%S'); }
ka_after() { # ka_after WHAT MAXFAILED: since ka_mark, at most MAXFAILED requests failed; the load goes on
  local what=$1 max=$2 f r
  wait_for 30 bash -c "[ \"\$(jq -r .ok '$KAS')\" -gt $((ka_ok0 + 500)) ]"
  f=$(($(kaj .failed) - ka_f0)) r=$(($(kaj .redials) - ka_r0))
  check "$what: keep-alive GET/POST went on ($(($(kaj .ok) - ka_ok0)) answered), $f failed (at most $max)" test "$f" -le "$max"
  if [ "$max" = 0 ]; then
    check "$what: no keep-alive connection was closed under its client ($r dialled again)" test "$r" = 0
  fi
  if [ "$f" != 0 ]; then kaj '.failures[]' | tail -n "$f" | sed 's/^/   /'; fi
  echo "keep-alive $what: $f failed, $r dialled again, $(($(kaj .ok) - ka_ok0)) answered" >>"$build/numbers"
}
ka_parked() { # the old daemon parked the idle connections; the new one served them
  local ev
  ev=$(sb journalctl -u rollbridge@demo.service --since "$ka_since" ROLLBRIDGE_EVENT='client connections parked' -o json --no-pager | tail -1 | jq -r .ROLLBRIDGE_DATA)
  check "journal: the old daemon parked its $NKA keep-alive connections in the fd store ($ev)" test "$(jq -r .parked <<<"$ev" 2>/dev/null)" -ge "$NKA"
  ev=$(sb journalctl -u rollbridge@demo.service --since "$ka_since" ROLLBRIDGE_EVENT='connections resumed' -o json --no-pager | tail -1 | jq -r .ROLLBRIDGE_DATA)
  check "journal: the new daemon took them back (connections resumed: $ev)" test "$(jq -r .idle <<<"$ev" 2>/dev/null)" -ge "$NKA"
}
ka_stop() { sb kill -TERM "$(kaj .pid)" 2>/dev/null; wait "$kap" 2>/dev/null; }

echo "== WebSockets survive systemctl restart, SIGKILL and a watchdog kill (the fd store)"
NWS=${LANE_WEBSOCKETS:-200}
WSS="$ROOT/tmp/wsstream.json"
rm -f "$WSS" "$ROOT/tmp/wsstream.pause"
sb /usr/local/bin/wsstream -n "$NWS" -every 100ms >"$build/wsstream.out" 2>&1 &
wsp=$!
wsj() { jq -r "$1" "$WSS" 2>/dev/null; }
ws_count() { ctl status 2>/dev/null | jq '[.releases[] | select(.releaseId=="v2") | .connections.websocket][0]'; }
nstore() { prop rollbridge@demo.service NFileDescriptorStore; }
check "$NWS WebSockets open through the proxy, streaming" wait_for 60 bash -c "[ \"\$(jq -r .open '$WSS' 2>/dev/null)\" = $NWS ] && [ \"\$(jq -r .received '$WSS')\" -gt $((NWS * 2)) ]"
check "status counts them on v2 ($(ws_count))" wait_for 10 bash -c "[ \"\$('$SB' exec -- $RBCTL status -c $C | jq '[.releases[] | select(.releaseId==\"v2\") | .connections.websocket][0]')\" = $NWS ]"
ns=$(nstore)
if [ -n "$ns" ]; then
  check "the fd store holds 6 descriptors per WebSocket (NFileDescriptorStore=$ns)" test "$ns" = $((NWS * 6))
fi
ws_alive() { # ws_alive WHAT: every socket still open, no violation, and echoes still arriving
  local r0
  r0=$(wsj .received)
  check "$1: all $NWS WebSockets still open, every echo once and in order ($(jq -c . "$WSS"))" \
    wait_for 30 bash -c "[ \"\$(jq -r .open '$WSS')\" = $NWS ] && [ \"\$(jq -r .closed '$WSS')\" = 0 ] && [ \"\$(jq -r .violations '$WSS')\" = 0 ] && [ \"\$(jq -r .received '$WSS')\" -gt $((r0 + NWS * 3)) ]"
  check "$1: status counts the $NWS on v2 again ($(ws_count))" wait_for 20 bash -c "[ \"\$('$SB' exec -- $RBCTL status -c $C | jq '[.releases[] | select(.releaseId==\"v2\") | .connections.websocket][0]')\" = $NWS ]"
}
wait_served() { wait_for 30 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"; }
ka_start
ka_mark
sb systemctl restart rollbridge@demo.service
wait_served
ws_alive "systemctl restart"
ka_after "systemctl restart" 0
ka_parked
resumed() { sb journalctl -u rollbridge@demo.service ROLLBRIDGE_EVENT='connections resumed' -o json --no-pager | tail -1 | jq -r .ROLLBRIDGE_DATA | jq -c .; }
check "journal: the new daemon resumed all $NWS on v2 ($(resumed))" test "$(resumed | jq .resumed.v2)" = "$NWS"
# The event loop (ROLLBRIDGE_EVENT_LOOP, issue #17) is on by default, so
# everything above ran on it. The same restart twice more, both ways,
# under the same load: a drop-in turns it off for one restart (the loop
# hands every connection over at its boundary, they are parked, and the
# new daemon serves them all on net/http) and the next restart, with the
# drop-in gone, turns it on again (the new daemon's loop takes the parked
# connections back and serves their GETs): 0 failed, none dialled again,
# the WebSockets untouched.
loop_served() { sb $RBCTL status -c $C 2>/dev/null | jq -r '.proxy.eventLoop.served // 0'; }
loop_threads() { sb $RBCTL status -c $C 2>/dev/null | jq -r '.proxy.eventLoop.threads // 0'; }
check "status: the event loop runs by default ($(loop_threads) threads on $(nproc) CPUs)" test "$(loop_threads)" -ge 1
LOOPCONF="$ROOT/etc/systemd/system/rollbridge@demo.service.d/70-event-loop.conf"
printf '[Service]\nEnvironment=ROLLBRIDGE_EVENT_LOOP=off\n' >"$LOOPCONF"
sb systemctl daemon-reload
ka_mark
sb systemctl restart rollbridge@demo.service
wait_served
ws_alive "systemctl restart out of the event loop"
ka_after "systemctl restart out of the event loop" 0
ka_parked
check "status: no event loop with ROLLBRIDGE_EVENT_LOOP=off" test "$(loop_threads)" = 0
rm -f "$LOOPCONF"
sb systemctl daemon-reload
ka_mark
sb systemctl restart rollbridge@demo.service
wait_served
ws_alive "systemctl restart into the event loop"
ka_after "systemctl restart into the event loop" 0
ka_parked
check "status: the event loop serves the keep-alive GETs again (proxy.eventLoop.served $(loop_served))" \
  wait_for 20 bash -c "[ \"\$('$SB' exec -- $RBCTL status -c $C | jq -r '.proxy.eventLoop.served // 0')\" -gt 200 ]"
pid=$(prop rollbridge@demo.service MainPID)
ka_mark
sb systemctl kill -s SIGKILL rollbridge@demo.service
wait_for 30 bash -c "p=\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value); [ \"\$p\" != 0 ] && [ \"\$p\" != $pid ]"
wait_served
ws_alive "systemctl kill -s SIGKILL"
ka_after "systemctl kill -s SIGKILL" "$NKA"
pid=$(prop rollbridge@demo.service MainPID)
n1=$(prop rollbridge@demo.service NRestarts)
ka_mark
sb kill -STOP "$pid"
check "the watchdog killed the frozen daemon and systemd restarted it" \
  wait_for 40 bash -c "[ \"\$('$SB' exec -- systemctl show rollbridge@demo.service -p NRestarts --value)\" -gt $n1 ] && [ \"\$('$SB' exec -- systemctl is-active rollbridge@demo.service)\" = active ]"
wait_served
ws_alive "watchdog kill (SIGSTOP)"
ka_after "watchdog kill (SIGSTOP)" "$NKA"
touch "$ROOT/tmp/wsstream.pause" "$ROOT/tmp/kaload.pause"
check "every message sent came back: nothing lost, nothing twice ($(jq -c . "$WSS"))" \
  wait_for 30 bash -c "[ \"\$(jq -r .outstanding '$WSS')\" = 0 ] && [ \"\$(jq -r .violations '$WSS')\" = 0 ]"
echo "websockets: $(jq -c . "$WSS")" >>"$build/numbers"
sb systemctl stop rollbridge@demo.service
check "systemctl stop closed all $NWS WebSockets" wait_for 30 bash -c "[ \"\$(jq -r .open '$WSS')\" = 0 ] && [ \"\$(jq -r .closed '$WSS')\" = $NWS ]"
ns=$(nstore)
if [ -n "$ns" ]; then
  check "the fd store is empty after the stop (NFileDescriptorStore=$ns)" test "$ns" = 0
fi
sb systemctl start rollbridge@demo.service
wait_served
check "the next start got no connection back (no connections resumed)" \
  bash -c "! '$SB' exec -- journalctl -u rollbridge@demo.service _PID=\$('$SB' exec -- systemctl show rollbridge@demo.service -p MainPID --value) ROLLBRIDGE_EVENT='connections resumed' -o cat --no-pager | grep -q ."
sb kill -TERM "$(wsj .pid)"; wait "$wsp" 2>/dev/null
ka_stop

echo "== ensure-daemon over D-Bus: stop everything, then let ensure-daemon start the unit"
sb systemctl stop rollbridge@demo.service rollbridge-control@demo.socket rollbridge-proxy@demo.socket
out=$(ctl ensure-daemon 2>&1)
check "ensure-daemon started rollbridge@demo.service through systemd" grep -q "started rollbridge@demo.service through systemd" <<<"$out"
check "ensure-daemon printed the status JSON" grep -q '"application": "demo"' <<<"$out"
out=$(ctl ensure-daemon 2>&1)
check "ensure-daemon again: reuses the running daemon" grep -q "daemon already running" <<<"$out"

echo "== systemctl stop runs the stop sequence and leaves nothing behind"
: >"$ROOT/var/lib/rollbridge/hooks.log"
sb systemctl stop rollbridge@demo.service rollbridge-control@demo.socket rollbridge-proxy@demo.socket
sleep 0.5
left=$(sb pgrep -f 'rollbridge-demo-app|worker of|jail of|rollbridged' || true)
check "no managed or daemon process left after systemctl stop (${left:-none})" test -z "$left"
check "no process unit left after systemctl stop ($(app_units))" test -z "$(app_units)"
hooks=$(grep v2 "$ROOT/var/lib/rollbridge/hooks.log" | tr '\n' ';')
check "the stop sequence ran: hooks recorded in order ($hooks)" \
  bash -c "grep -n 'web v2' '$ROOT/var/lib/rollbridge/hooks.log' | cut -d: -f2 | tr '\n' ';' | grep -qx 'quiet web v2;stop web v2;' && grep -q 'quiet worker v2' '$ROOT/var/lib/rollbridge/hooks.log'"

echo "== systemctl stop with no daemon alive still stops the app (rollbridge-units@demo)"
sb systemctl start rollbridge-proxy@demo.socket rollbridge-control@demo.socket rollbridge@demo.service
wait_for 30 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:18080/)\" == 'hello from release v2' ]]"
# Make the daemon unable to come back, then kill it: only the anchor unit can stop the app now.
printf '[Service]\nRestart=no\n' >"$ROOT/etc/systemd/system/rollbridge@demo.service.d/70-norestart.conf"
sb systemctl daemon-reload
sb systemctl kill -s SIGKILL rollbridge@demo.service
wait_for 10 bash -c "[ \"\$('$SB' exec -- systemctl is-active rollbridge@demo.service)\" != active ]"
check "the app runs on with its daemon dead ($(app_units))" test -n "$(app_units)"
# Without its sockets nothing can activate the daemon again meanwhile.
sb systemctl stop rollbridge-control@demo.socket rollbridge-proxy@demo.socket
dj=$(ctl doctor --json 2>/dev/null)
check "doctor reports live process units with no daemon" \
  bash -c "jq -e '.checks[] | select(.name==\"process units\") | (.ok|not)' >/dev/null <<<\"\$1\"" _ "$dj"
sb systemctl stop rollbridge@demo.service
check "systemctl stop of the dead daemon stopped every process unit" wait_for 15 bash -c "[ -z \"\$('$SB' exec -- systemctl list-units --plain --no-legend --state=active 'rollbridge-demo-*')\" ]"
rm -f "$ROOT/etc/systemd/system/rollbridge@demo.service.d/70-norestart.conf"
sb systemctl daemon-reload

echo "== the runner's supervision and the supervisor's adoption tests against real systemd (RB_SYSTEMD_TESTS=1)"
out=$(sb env RB_SYSTEMD_TESTS=1 /usr/local/bin/systemd.test -test.run 'Runner|Systemd' -test.count=1 2>&1)
echo "$out" | tail -3 | sed 's/^/  /'
check "pkg/systemd supervision tests pass with the systemd runner" grep -qx PASS <<<"$out"
out=$(sb env RB_SYSTEMD_TESTS=1 /usr/local/bin/supervisor.test -test.run 'Adopt' -test.count=1 2>&1)
echo "$out" | tail -3 | sed 's/^/  /'
check "pkg/supervisor adoption tests pass with the systemd runner" grep -qx PASS <<<"$out"

echo "== deploy timing: the benchmark suite's runtime section (docs/performance.md), systemd vs exec runtime"
# The suite runs here, inside the sandbox, where systemd is PID 1: each
# runtime's daemon deploys the demo app, alternating, and the table gives
# start -> web spawned -> healthy -> switched with the difference.
out=$(sb /usr/local/lib/rollbridge-bench/suite -bin /usr/local/lib/rollbridge-bench -only runtime -no-nginx \
  -runtime-deploys "${LANE_RUNTIME_DEPLOYS:-15}" -out /tmp/runtime.json 2>&1)
sed -n '/^## Deploys per process runtime/,$p' <<<"$out" | sed 's/^/  /'
cp "$ROOT/tmp/runtime.json" "$build/runtime.json" 2>/dev/null
check "the suite's runtime section measured both runtimes inside the sandbox" \
  jq -e '[.runtime.runtimes[] | select((.phasesMs | length) > 0) | .runtime] == ["exec", "systemd"]' "$build/runtime.json" >/dev/null
jq -r '.runtime.runtimes[] | "deploy runtime=\(.runtime) switched_ms=\([.phasesMs[].switched | floor] | join(","))"' "$build/runtime.json" >>"$build/numbers" 2>/dev/null
echo "--- numbers"; cat "$build/numbers"
check "journal: daemon stopping recorded" bash -c "'$SB' exec -- journalctl -u rollbridge@demo.service ROLLBRIDGE_EVENT='daemon stopping' -o cat --no-pager | grep -q stopping"

if [ -n "$DEB" ]; then
  v=$(sb dpkg --verify rollbridge 2>&1)
  check "dpkg --verify rollbridge: every packaged file as shipped (${v:-no difference})" test -z "$v"
fi

echo
echo "systemd lane${DEB:+ (from $(basename "$DEB"))}: $PASS passed, $FAIL failed"
if [ "$FAIL" -ne 0 ]; then
  echo "--- journal (last 60 lines)"
  sb journalctl -u rollbridge@demo.service -o short-precise --no-pager | tail -60
  exit 1
fi
