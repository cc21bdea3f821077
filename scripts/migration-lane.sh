#!/usr/bin/env bash
# The migration lane: executes docs/migrating.md's runbook "Switching a host
# over from the Node daemon" in a real systemd (../shared/tools/
# systemd-sandbox), under a client loop through nginx that must see no
# failed request: a host where the Node original runs under its own unit
# behind nginx is switched to rollbridge@shop with socket units, then the
# migration is rolled back the same way, then a Node daemon that died
# leaving its processes behind is cleaned up with recover --state-path.
#
# The Node original itself is not installed (no node runtime in CI): a
# stand-in (scripts/node-standin) holds its proxy port, runs its processes
# in process groups of their own, answers status/shutdown on its control
# socket, and writes and deletes its state file in the original's format.
#
# Needs root and nginx. If the sandbox cannot boot, or nginx is missing, it
# says so loudly and exits 0 (1 under CI, see lane-common.sh); any failed
# check exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
LANE="MIGRATION LANE"
export SANDBOX_NAME=${SANDBOX_NAME:-rollbridge-migration-lane}
. scripts/lane-common.sh
command -v nginx >/dev/null || not_run "nginx is not installed (apt-get install nginx-light)"

build=$(mktemp -d)
trap '[ "${KEEP:-0}" = 1 ] || "$SB" down >/dev/null 2>&1; rm -rf "$build"' EXIT
echo "== building static binaries"
CGO_ENABLED=0 go build -o "$build/" ./cmd/rollbridged ./cmd/rollbridgectl ./scripts/node-standin || exit 1
CGO_ENABLED=0 go build -o "$build/rollbridge-demo-app" ./examples/app || exit 1

echo "== booting systemd in the sandbox ($SB)"
if ! "$SB" up >/dev/null; then
  "$SB" logs 2>/dev/null | tail -20
  not_run "the systemd sandbox did not boot on this machine"
fi
ROOT=$("$SB" root)
install -m 0755 "$build/rollbridged" "$build/rollbridgectl" "$build/node-standin" "$build/rollbridge-demo-app" "$ROOT/usr/local/bin/"
install -d "$ROOT/etc/rollbridge" "$ROOT/srv/shop/releases/1" "$ROOT/var/lib/rollbridge" "$ROOT/var/lib/rollbridge-node"

echo "== the host before: the Node daemon (stand-in) under its own unit, nginx in front"
# The Node original's config, as it ran on this host.
cat >"$ROOT/etc/rollbridge/shop.js" <<'JS'
// Shop: nginx proxies to 127.0.0.1:4500.
export default {
  application: "shop",
  control: { path: "/run/rollbridge-node-shop.sock" },
  proxy: { host: "127.0.0.1", port: 4500, drainTimeoutMs: 5000 },
  statePath: "/var/lib/rollbridge-node/shop.json",
  processes: [
    // a fixed-port service: two cannot listen on 7330 at once
    { id: "beacon", policy: "service", command: "exec /usr/local/bin/rollbridge-demo-app --port {{port}}", port: 7330 },
    // a service that must never run twice
    { id: "jobs", policy: "service", command: "exec sleep 100000" },
    {
      id: "web",
      policy: "proxied",
      command: "exec /usr/local/bin/rollbridge-demo-app --port {{port}}",
      port: { from: 14500, to: 14599 },
      health: { path: "/ping", intervalMs: 25 },
    },
  ],
}
JS
cat >"$ROOT/etc/systemd/system/rollbridge.service" <<'UNIT'
[Unit]
Description=Rollbridge (the Node original; stand-in for the migration lane)
[Service]
Type=simple
# The original's unit left the stop to the daemon (it stops its processes
# itself); KillMode=process also lets the lane kill it alone, as a crash.
KillMode=process
ExecStart=/usr/local/bin/node-standin -app shop -port 4500 -control /run/rollbridge-node-shop.sock \
  -state /var/lib/rollbridge-node/shop.json -release-path /srv/shop/releases/1 -release-id node-1 \
  -web "4600=exec /usr/local/bin/rollbridge-demo-app --port 4600" \
  -service "beacon=7330=exec /usr/local/bin/rollbridge-demo-app --port 7330" \
  -service "jobs=0=exec sleep 100000"
[Install]
WantedBy=multi-user.target
UNIT
cat >"$ROOT/etc/nginx/rollbridge-lane.conf" <<'NGINX'
worker_processes 1;
pid /run/nginx-lane.pid;
error_log /var/log/nginx-lane-error.log;
events { worker_connections 512; }
http {
  access_log off;
  upstream shop { include /etc/nginx/shop-upstream.conf; keepalive 16; }
  server {
    listen 127.0.0.1:8088;
    location / { proxy_pass http://shop; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
echo 'server 127.0.0.1:4500;' >"$ROOT/etc/nginx/shop-upstream.conf"
sb systemctl daemon-reload
sb systemctl enable --now rollbridge
sb nginx -c /etc/nginx/rollbridge-lane.conf
front() { sb curl -s --max-time 5 http://127.0.0.1:8088/; }
check "the Node daemon serves through nginx ($(front))" wait_for 20 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:8088/)\" == 'hello from release node-1' ]]"
check "the Node daemon wrote its state file" test -s "$ROOT/var/lib/rollbridge-node/shop.json"

# The client loop: one request after another through nginx, each result on
# a line ("200 hello from release node-1"), until /tmp/stop-loop appears.
start_loop() {
  rm -f "$ROOT/tmp/stop-loop" "$ROOT/tmp/$1.log"
  sb bash -c "while [ ! -e /tmp/stop-loop ]; do
      code=\$(curl -s -o /tmp/$1.body --max-time 10 -w '%{http_code}' http://127.0.0.1:8088/) || code=\"\$code curl-exit-\$?\"
      echo \"\$(tr -d '\\n' </tmp/$1.body) \$code\" >>/tmp/$1.log
    done" &
  LOOP=$!
  wait_for 10 test -s "$ROOT/tmp/$1.log"
}
stop_loop() { touch "$ROOT/tmp/stop-loop"; wait "$LOOP"; }
failed_requests() { grep -vc ' 200$' "$ROOT/tmp/$1.log"; }

C=/etc/rollbridge/shop.jsonnet
ctl() { sb /usr/local/bin/rollbridgectl "$@"; }

echo "== runbook step 1: translate the config"
start_loop switch
out=$(ctl config migrate /etc/rollbridge/shop.js -o /etc/rollbridge/shop.migrated.jsonnet 2>&1); rc=$?
echo "$out" | sed 's/^/  /'
check "config migrate wrote an equivalent Jsonnet file (exit $rc)" bash -c "[ $rc = 0 ] && grep -q '^equivalent: ' <<<\"\$1\"" _ "$out"

echo "== runbook step 2: what must differ while both daemons run"
cat >"$ROOT$C" <<'JSONNET'
// rollbridge@shop: the migrated config, with what cannot be shared with the
// Node daemon while both run.
local migrated = import 'shop.migrated.jsonnet';
migrated + {
  control+: { path: '/run/rollbridge-shop.sock' },
  proxy+: { port: 4501 },
  statePath: '/var/lib/rollbridge/shop.json',
  processes: [
    if p.id == 'beacon' then p + { port: { from: 7331, to: 7339 } } else p
    for p in migrated.processes
    if p.id != 'jobs'  // must never run twice: added back after the Node daemon stopped
  ],
}
JSONNET
out=$(ctl validate -c $C 2>&1); echo "  $out"
check "validate: the switch-over config is valid" grep -q 'is valid' <<<"$out"
out=$(ctl doctor -c $C 2>&1); rc=$?; echo "$out" | sed 's/^/  /'
check "doctor: port 4501, the control socket and the state directory are free (exit $rc)" test "$rc" = 0
out=$(ctl doctor -c $C --state-path /var/lib/rollbridge-node/shop.json 2>&1)
check "doctor --state-path recognises the Node daemon's state file and that it still runs" \
  grep -q "is the Node rollbridge daemon's state file, and that daemon still runs on /run/rollbridge-node-shop.sock" <<<"$out"

echo "== runbook step 3: rollbridge@shop with socket units, on the new port"
out=$(ctl systemd units -c $C --install 2>&1); echo "$out" | sed 's/^/  /'
check "systemd units --install" grep -q "systemd reloaded" <<<"$out"
sb systemctl enable --now rollbridge-proxy@shop.socket rollbridge-control@shop.socket
ctl deploy -c $C --release-path /srv/shop/releases/1 --release-id 1 >/dev/null 2>&1
check "rollbridge@shop serves release 1 on 127.0.0.1:4501" \
  bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:4501/)\" == 'hello from release 1' ]]"
check "the Node daemon still serves the front end meanwhile ($(front))" bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:8088/)\" == 'hello from release node-1' ]]"

echo "== runbook step 4: the one moment traffic moves: nginx reload"
echo 'server 127.0.0.1:4501;' >"$ROOT/etc/nginx/shop-upstream.conf"
sb nginx -c /etc/nginx/rollbridge-lane.conf -t >/dev/null 2>&1 && sb nginx -c /etc/nginx/rollbridge-lane.conf -s reload
check "the front end serves rollbridge@shop" wait_for 20 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:8088/)\" == 'hello from release 1' ]]"
check "no connection from nginx to the Node daemon remains (old workers finished)" \
  wait_for 30 bash -c "! '$SB' exec -- ss -Htn state established '( dport = :4500 )' | grep -q ."

echo "== runbook step 5: stop the Node daemon"
sb systemctl disable --now rollbridge
check "the Node daemon stopped its processes (nothing on 4500, 4600, 7330)" \
  wait_for 20 bash -c "! '$SB' exec -- ss -Htln '( sport = :4500 or sport = :4600 or sport = :7330 )' | grep -q ."
check "its clean shutdown removed its state file" test ! -e "$ROOT/var/lib/rollbridge-node/shop.json"
out=$(ctl recover -c $C --state-path /var/lib/rollbridge-node/shop.json 2>&1)
check "recover --state-path: nothing left behind ($out)" grep -q "No orphaned processes found." <<<"$out"
echo "== runbook step 6, continued: the service that must not run twice, added back"
sed -i "/if p.id != 'jobs'/d" "$ROOT$C"
check "jobs is not running yet" bash -c "! '$SB' exec -- pgrep -f 'sleep 100000'"
sb systemctl restart rollbridge@shop.service
check "after the restart jobs runs once, under rollbridge@shop" \
  wait_for 30 bash -c "[ \"\$('$SB' exec -- pgrep -fc 'sleep 100000')\" = 1 ] && '$SB' exec -- systemctl status rollbridge@shop.service | grep -q 'sleep 100000'"
check "and the release was brought back from the state file ($(front))" \
  wait_for 30 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:8088/)\" == 'hello from release 1' ]]"
sleep 1 # a last second of traffic on the new daemon alone
stop_loop
n=$(wc -l <"$ROOT/tmp/switch.log"); f=$(failed_requests switch)
check "switch-over under a client loop: $n requests, $f failed" test "$f" = 0
check "the loop saw both daemons" bash -c "grep -q 'node-1 200' '$ROOT/tmp/switch.log' && grep -q 'release 1 200' '$ROOT/tmp/switch.log'"

echo "== rolling the migration back: the Node daemon again, nginx back, rollbridge@shop stopped"
start_loop rollback
# The service that must never run twice leaves rollbridge@shop first.
sed -i "s|^    for p in migrated.processes$|&\n    if p.id != 'jobs'|" "$ROOT$C"
sb systemctl restart rollbridge@shop.service
# With runtime systemd the restart keeps the units, but the new daemon stops
# the one whose service left the config: no manual stop in the runbook.
check "jobs stopped under rollbridge@shop by the restarted daemon, before the Node daemon starts" \
  wait_for 30 bash -c "[ \"\$('$SB' exec -- systemctl is-active rollbridge-shop-jobs.service)\" != active ] && ! '$SB' exec -- pgrep -f 'sleep 100000' && [[ \"\$('$SB' exec -- curl -s http://127.0.0.1:8088/)\" == 'hello from release 1' ]]"
check "journal: leftover unit stopped names rollbridge-shop-jobs.service" \
  wait_for 10 bash -c "'$SB' exec -- journalctl -u rollbridge@shop.service ROLLBRIDGE_EVENT='leftover unit stopped' -o json --no-pager | jq -c 'select(.ROLLBRIDGE_UNIT==\"rollbridge-shop-jobs.service\")' | grep -q ."
sb systemctl enable --now rollbridge
check "the Node daemon is back on 4500" wait_for 20 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:4500/)\" == 'hello from release node-1' ]]"
echo 'server 127.0.0.1:4500;' >"$ROOT/etc/nginx/shop-upstream.conf"
sb nginx -c /etc/nginx/rollbridge-lane.conf -t >/dev/null 2>&1 && sb nginx -c /etc/nginx/rollbridge-lane.conf -s reload
check "the front end serves the Node daemon again" wait_for 20 bash -c "[[ \"\$('$SB' exec -- curl -s http://127.0.0.1:8088/)\" == 'hello from release node-1' ]]"
check "no connection from nginx to rollbridge@shop remains" \
  wait_for 30 bash -c "! '$SB' exec -- ss -Htn state established '( dport = :4501 )' | grep -q ."
sb systemctl disable --now rollbridge-proxy@shop.socket rollbridge-control@shop.socket rollbridge@shop.service
check "rollbridge@shop stopped its processes" \
  wait_for 20 bash -c "! '$SB' exec -- pgrep -f 'rollbridged|app --port 1450|app --port 733[1-9]'"
sleep 1
stop_loop
n=$(wc -l <"$ROOT/tmp/rollback.log"); f=$(failed_requests rollback)
check "rollback under a client loop: $n requests, $f failed" test "$f" = 0

echo "== a Node daemon that died: its processes and state file stay; recover stops them"
sb systemctl kill -s SIGKILL --kill-who=main rollbridge.service
check "the Node daemon is gone, its processes still run" \
  wait_for 20 bash -c "! '$SB' exec -- pgrep -x node-standin && '$SB' exec -- ss -Htln '( sport = :4600 )' | grep -q ."
sb systemctl reset-failed rollbridge.service >/dev/null 2>&1
out=$(ctl doctor -c $C --state-path /var/lib/rollbridge-node/shop.json 2>&1)
check "doctor names the Node daemon's leftovers" grep -q "still running from the Node rollbridge daemon (state file /var/lib/rollbridge-node/shop.json): web (pid [0-9]*, release node-1), beacon (pid [0-9]*), jobs (pid [0-9]*)" <<<"$out"
sed 's|/var/lib/rollbridge/shop.json|/var/lib/rollbridge-node/shop.json|' "$ROOT$C" >"$ROOT/etc/rollbridge/shop-on-node-state.jsonnet"
out=$(sb timeout 20 /usr/local/bin/rollbridged -c /etc/rollbridge/shop-on-node-state.jsonnet 2>&1); rc=$?
check "rollbridged pointed at the Node state file refuses to start (exit $rc) and names what to do" \
  bash -c "[ $rc = 1 ] && grep -q 'is the Node rollbridge daemon.s state file, and 3 of its processes still run' <<<\"\$1\"" _ "$out"
check "the Node state file is still there" test -s "$ROOT/var/lib/rollbridge-node/shop.json"
out=$(ctl recover -c $C --state-path /var/lib/rollbridge-node/shop.json --force 2>&1); echo "$out" | sed 's/^/  /'
check "recover --state-path --force stopped all three" grep -q "Stopped 3 orphaned processes:" <<<"$out"
check "nothing of the Node daemon is left (ports free, state file gone)" \
  bash -c "! '$SB' exec -- ss -Htln '( sport = :4600 or sport = :7330 )' | grep -q . && ! '$SB' exec -- pgrep -f 'sleep 100000' && [ ! -e '$ROOT/var/lib/rollbridge-node/shop.json' ]"

echo
echo "migration lane: $PASS passed, $FAIL failed"
if [ "$FAIL" -ne 0 ]; then
  for l in switch rollback; do echo "--- $l loop, not 200:"; grep -v ' 200$' "$ROOT/tmp/$l.log" | head -20; done
  echo "--- rollbridge@shop journal (last 40 lines)"
  sb journalctl -u rollbridge@shop.service -o short-precise --no-pager | tail -40
  echo "--- rollbridge (the Node stand-in) journal (last 20 lines)"
  sb journalctl -u rollbridge.service -o short-precise --no-pager | tail -20
  exit 1
fi
