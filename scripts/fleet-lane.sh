#!/usr/bin/env bash
# The fleet lane (issue #16, docs/fleet.md): a rolling deploy across two
# rollbridge "hosts" behind a real load balancer, driven by Ansible over
# real ssh, under a client loop that must see no failed request.
#
#   - two daemons, each run as its own user (rbfleet1, rbfleet2) with its
#     own config, proxy port and proxy.hostHealthPath: two hosts on one machine;
#   - Debian's openssh-server on 127.0.0.1, run directly with a throwaway
#     host key and client key;
#   - Debian's HAProxy in front, with an active health check on the host
#     health path;
#   - a client loop (curl, one request after another) through HAProxy;
#   - rollbridgectl --host ssh://... deploys the first release to both;
#   - Debian's ansible-core runs examples/ansible/rolling-deploy.yml:
#     a good release rolls across both hosts (each drained before its
#     deploy and undrained after, by the daemons' events), then a broken
#     release stops at the first host, the second untouched;
#   - 0 failed requests through HAProxy over the whole run.
#
# Needs root (users, sshd) and the packages .ci/run installs. Locally,
# where something is missing, it says so and exits 0; under CI it fails.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
LANE="fleet lane"
REPO=$PWD

not_run() {
  echo "## $LANE NOT RUN: $*"
  [ -n "${CI:-}" ] && exit 1
  exit 0
}
[ "$(id -u)" = 0 ] || not_run "needs root (two users, sshd)"
for tool in sshd ssh ssh-keygen haproxy ansible-playbook curl jq useradd runuser; do
  command -v "$tool" >/dev/null || not_run "$tool is not installed (apt-get install openssh-server haproxy ansible-core curl jq)"
done

PASS=0 FAIL=0
ok() { echo "PASS: $*"; PASS=$((PASS + 1)); }
bad() { echo "FAIL: $*"; FAIL=$((FAIL + 1)); }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
wait_for() { # wait_for SECONDS CMD...: poll until CMD succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
T0=$SECONDS
step() { echo "== [$((SECONDS - T0))s] $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

W=$(mktemp -d /tmp/rbfleet.XXXXXX)
chmod 755 "$W"
USERS=(rbfleet1 rbfleet2)
PIDS=()
cleanup() {
  touch "$W/stop-loop"
  for u in "${USERS[@]}"; do
    [ -S "/home/$u/run/ctl.sock" ] && runuser -u "$u" -- "$W/bin/rollbridgectl" shutdown -c "/home/$u/app.jsonnet" >/dev/null 2>&1
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for u in "${USERS[@]}"; do
    id "$u" >/dev/null 2>&1 || continue
    # ssh sessions Ansible keeps open (ControlPersist) would make userdel refuse
    for p in $(ps -u "$u" -o pid=); do kill "$p" 2>/dev/null; done
    wait_for 10 bash -c "[ -z \"\$(ps -u $u -o pid=)\" ]"
    userdel -r "$u" >/dev/null 2>&1 || echo "$LANE: could not remove the user $u"
  done
  rm -rf "$W"
}
trap cleanup EXIT

step "build"
mkdir -p "$W/bin"
CGO_ENABLED=0 go build -o "$W/bin/" ./cmd/rollbridged ./cmd/rollbridgectl || exit 1
CGO_ENABLED=0 go build -o "$W/bin/rollbridge-demo-app" ./examples/app || exit 1
chmod -R a+rX "$W/bin"
CTL=$W/bin/rollbridgectl

step "ssh: a throwaway host key and client key, sshd on 127.0.0.1"
SSH_PORT=$(free_port)
ssh-keygen -q -t ed25519 -N '' -f "$W/hostkey" -C fleet-host
ssh-keygen -q -t ed25519 -N '' -f "$W/userkey" -C fleet-client
mkdir -p /run/sshd # privilege separation directory (tmpfiles creates it at boot)
cat >"$W/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $W/hostkey
PidFile none
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers ${USERS[*]}
CFG
echo "[127.0.0.1]:$SSH_PORT $(cat "$W/hostkey.pub")" >"$W/known_hosts"
cat >"$W/ssh_config" <<CFG
Host *
  IdentityFile $W/userkey
  IdentitiesOnly yes
  UserKnownHostsFile $W/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
CFG
/usr/sbin/sshd -D -e -f "$W/sshd_config" >"$W/sshd.log" 2>&1 &
PIDS+=($!)
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SSH_PORT" || { cat "$W/sshd.log"; exit 1; }

step "two hosts: a user, a config and a daemon each"
PROXY_PORTS=()
i=0
for u in "${USERS[@]}"; do
  i=$((i + 1))
  id "$u" >/dev/null 2>&1 && userdel -r "$u" >/dev/null 2>&1
  useradd -m -s /bin/bash "$u" || exit 1
  usermod -p '*' "$u" # no password, but not locked: sshd without PAM refuses locked accounts
  install -d -o "$u" -m 700 "/home/$u/.ssh" "/home/$u/run" "/home/$u/releases"
  install -o "$u" -m 600 "$W/userkey.pub" "/home/$u/.ssh/authorized_keys"
  port=$(free_port)
  PROXY_PORTS+=("$port")
  cat >"/home/$u/app.jsonnet" <<CFG
{
  application: 'shop',
  control: { path: '/home/$u/run/ctl.sock' },
  statePath: '/home/$u/state.json',
  proxy: { host: '127.0.0.1', port: $port, healthPath: '/ping', healthTimeoutMs: 5000, drainTimeoutMs: 5000,
           hostHealthPath: '/_rollbridge/host' },
  processes: [{ id: 'web', policy: 'proxied', command: 'exec ./run', port: { from: $((20000 + i * 500)), to: $((20000 + i * 500 + 99)) } }],
}
CFG
  chown "$u" "/home/$u/app.jsonnet"
  runuser -u "$u" -- "$W/bin/rollbridged" -c "/home/$u/app.jsonnet" >"$W/daemon-$u.log" 2>&1 &
  PIDS+=($!)
done
for u in "${USERS[@]}"; do
  wait_for 15 test -S "/home/$u/run/ctl.sock" || { cat "$W/daemon-$u.log"; exit 1; }
done

# The release artifacts, as a build step would make them.
mkrelease() { # mkrelease ID [broken]
  mkdir -p "$W/src/$1"
  if [ "${2:-}" = broken ]; then
    printf '#!/bin/sh\nAPP_HEALTH_STATUS=503 exec %s\n' "$W/bin/rollbridge-demo-app" >"$W/src/$1/run"
  else
    printf '#!/bin/sh\nexec %s\n' "$W/bin/rollbridge-demo-app" >"$W/src/$1/run"
  fi
  chmod 755 "$W/src/$1/run"
}
mkrelease v1; mkrelease v2; mkrelease v3 broken

remote() { # remote USER CTL-ARGS...: rollbridgectl --host over ssh
  local u=$1; shift
  "$CTL" --host "ssh://$u@127.0.0.1:$SSH_PORT" --ssh-config "$W/ssh_config" --remote-ctl "$CTL" "$@"
}
step "v1 on both hosts through rollbridgectl --host ssh://"
for u in "${USERS[@]}"; do
  cp -a "$W/src/v1" "/home/$u/releases/v1" && chown -R "$u" "/home/$u/releases/v1"
  check "$u: deploy v1 with --host ssh:// (progress streamed)" \
    bash -c "remote() { $(declare -f remote | tail -n +2); }; CTL=$CTL W=$W SSH_PORT=$SSH_PORT; \
      remote $u deploy -c /home/$u/app.jsonnet --release-path /home/$u/releases/v1 --release-id v1 2>$W/deploy-$u.err >/dev/null && grep -q 'traffic switched' $W/deploy-$u.err"
done
active() { remote "$1" status -c "/home/$1/app.jsonnet" | jq -r .activeReleaseId; }
for u in "${USERS[@]}"; do check "$u: v1 active (status over ssh)" test "$(active "$u")" = v1; done
refuses_host() { # exit 2, and says why
  local out rc=0
  out=$("$CTL" --host "ssh://rbfleet1@127.0.0.1:$SSH_PORT" doctor 2>&1) || rc=$?
  [ "$rc" = 2 ] && [[ $out == *"works on this host only"* ]]
}
check "a host-local command refuses --host" refuses_host

step "HAProxy in front, checking the host health path"
LB_PORT=$(free_port)
cat >"$W/haproxy.cfg" <<CFG
global
  log stderr format short local0 notice
defaults
  mode http
  log global
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch
frontend fleet
  bind 127.0.0.1:$LB_PORT
  default_backend shop
backend shop
  balance roundrobin
  option httpchk GET /_rollbridge/host
  http-check expect status 200
  default-server inter 300ms fall 2 rise 2
  server host1 127.0.0.1:${PROXY_PORTS[0]} check
  server host2 127.0.0.1:${PROXY_PORTS[1]} check
CFG
haproxy -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 &
PIDS+=($!)
wait_for 10 bash -c "curl -sf http://127.0.0.1:$LB_PORT/ping" || { cat "$W/haproxy.log"; exit 1; }

step "client loop through HAProxy"
rm -f "$W/stop-loop"
( while [ ! -e "$W/stop-loop" ]; do
    code=$(curl -s -o "$W/body" --max-time 10 -w '%{http_code}' "http://127.0.0.1:$LB_PORT/") || code="$code curl-exit-$?"
    echo "$(tr -d '\n' <"$W/body" 2>/dev/null) $code" >>"$W/loop.log"
  done ) &
LOOP=$!
wait_for 10 test -s "$W/loop.log"

cat >"$W/inventory.ini" <<INV
[web]
host1 ansible_user=rbfleet1 rollbridge_config=/home/rbfleet1/app.jsonnet releases_dir=/home/rbfleet1/releases proxy_port=${PROXY_PORTS[0]}
host2 ansible_user=rbfleet2 rollbridge_config=/home/rbfleet2/app.jsonnet releases_dir=/home/rbfleet2/releases proxy_port=${PROXY_PORTS[1]}

[web:vars]
ansible_host=127.0.0.1
ansible_port=$SSH_PORT
ansible_ssh_common_args=-F $W/ssh_config
ansible_python_interpreter=/usr/bin/python3
rollbridgectl=$CTL
drain_quiet=1s
lb_rejoin_seconds=2
INV
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_PIPELINING=True ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_LOCAL_TEMP=$W/ansible-tmp
playbook() { ansible-playbook -i "$W/inventory.ini" examples/ansible/rolling-deploy.yml "$@"; }

# host_events USER: the daemon's host/deploy events, one message per line.
host_events() {
  remote "$1" events -c "/home/$1/app.jsonnet" --json |
    jq -r '.[] | select(.message == "host drained" or .message == "host undrained" or .message == "deploy starting" or .message == "traffic switched" or .message == "deploy failed") | .message + " " + (.data.releaseId // "")'
}

step "ansible: roll v2 across both hosts"
play_v2() { playbook -e release_id=v2 -e "release_src=$W/src/v2/" >"$W/play-v2.log" 2>&1; }
check "the playbook rolls v2" play_v2
[ "$FAIL" = 0 ] || tail -40 "$W/play-v2.log"
for u in "${USERS[@]}"; do
  check "$u: v2 active" test "$(active "$u")" = v2
  seq=$(host_events "$u" | tr '\n' ',')
  check "$u: drained before its deploy, undrained after ($seq)" \
    bash -c "[[ '$seq' == *'host drained ,deploy starting v2,traffic switched v2,host undrained ,'* ]]"
done
# serial: host1's whole turn comes before host2's drain
t1=$(remote rbfleet1 events -c /home/rbfleet1/app.jsonnet --json | jq -r '[.[] | select(.message == "host undrained")][-1].at')
t2=$(remote rbfleet2 events -c /home/rbfleet2/app.jsonnet --json | jq -r '[.[] | select(.message == "host drained")][-1].at')
check "one host at a time: host1 undrained ($t1) before host2 drained ($t2)" test "$t1" \< "$t2"

step "ansible: a broken v3 stops at the first host"
playbook -e release_id=v3 -e "release_src=$W/src/v3/" >"$W/play-v3.log" 2>&1
rc=$?
check "the playbook fails (exit $rc)" test "$rc" != 0
check "the play names host1's failure" grep -q "release v3 failed on host1" "$W/play-v3.log"
check "host1: v2 still active" test "$(active rbfleet1)" = v2
check "host1: undrained again (health 200)" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PROXY_PORTS[0]}/_rollbridge/host")" = 200
check "host1: the failed deploy is recorded" bash -c "$(declare -f host_events remote | sed 's/^/ /'); CTL=$CTL W=$W SSH_PORT=$SSH_PORT; host_events rbfleet1 | grep -q 'deploy failed v3'"
check "host2: v2 still active" test "$(active rbfleet2)" = v2
check "host2: untouched (no v3 uploaded)" test ! -e /home/rbfleet2/releases/v3
check "host2: no v3 deploy or drain since" bash -c "$(declare -f host_events remote | sed 's/^/ /'); CTL=$CTL W=$W SSH_PORT=$SSH_PORT; ! host_events rbfleet2 | grep -q v3"

step "results"
touch "$W/stop-loop"
wait "$LOOP"
n=$(wc -l <"$W/loop.log")
f=$(grep -vc ' 200$' "$W/loop.log")
v1=$(grep -c 'release v1 200$' "$W/loop.log")
v2=$(grep -c 'release v2 200$' "$W/loop.log")
check "client loop through HAProxy: $n requests ($v1 by v1, $v2 by v2), $f failed" test "$f" = 0 -a "$n" -gt 100
[ "$f" = 0 ] || grep -v ' 200$' "$W/loop.log" | sort | uniq -c | head
if [ "$FAIL" != 0 ]; then
  echo "---- play v3 (tail)"; tail -30 "$W/play-v3.log"
  echo "---- haproxy"; tail -30 "$W/haproxy.log"
fi
echo "== $LANE: $PASS passed, $FAIL failed, $((SECONDS - T0))s"
[ "$FAIL" = 0 ]
