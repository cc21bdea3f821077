#!/usr/bin/env bash
# The metrics lane (issue #15): Debian's prometheus scrapes a rollbridged
# (examples/metrics.jsonnet, no systemd needed) every second while the load
# generator sends a known number of requests through the proxy; the lane
# then asks Prometheus' HTTP API whether what it stored is what was sent:
#   - the per-release request counter and the latency histogram's count
#     equal the load generator's request count (read after a scrape that
#     followed the load; during the load the value lies between 0 and it),
#     and the request rate was above 0 while the load ran;
#   - a deploy appears as a new release series, the old one keeps its count;
#   - a crash of the proxied process is counted as a restart;
#   - deploys, a rollback and the health-check wait are counted.
# Needs prometheus (apt-get install prometheus), curl and jq. Without
# prometheus it says so loudly and exits 0 (1 under CI, where .ci/run
# installs it); any failed check exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
LANE="METRICS LANE"

not_run() {
  echo "################################################################################"
  echo "## $LANE NOT RUN: $*"
  echo "################################################################################"
  [ -n "${CI:-}" ] && exit 1
  exit 0
}
for tool in prometheus curl jq; do
  command -v "$tool" >/dev/null || not_run "$tool is not installed (apt-get install prometheus curl jq)"
done

PASS=0 FAIL=0
ok() { echo "PASS: $*"; PASS=$((PASS + 1)); }
bad() { echo "FAIL: $*"; FAIL=$((FAIL + 1)); }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
wait_for() { # wait_for SECONDS CMD... : poll until CMD succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
T=$SECONDS
step() { echo "== [$((SECONDS - T))s] $*"; }
free_port() { # free_port FROM: the first port from FROM nobody listens on
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

work=$(mktemp -d /tmp/rollbridge-metrics-lane.XXXXXX)
daemon_pid="" prom_pid=""
cleanup() {
  [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    ctl shutdown >/dev/null 2>&1 || kill "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

step "building rollbridged, rollbridgectl, the example app and the load generator"
go build -o "$work/bin/" ./cmd/rollbridged ./cmd/rollbridgectl ./bench/cmd/loadgen || exit 1
go build -o "$work/bin/demo-app" ./examples/app || exit 1

export RB_METRICS_SOCKET="$work/control.sock" RB_METRICS_APP="$work/bin/demo-app"
export RB_METRICS_PROXY_PORT=$(free_port 28182)
export RB_METRICS_PORT=$(free_port $((RB_METRICS_PROXY_PORT + 1)))
PROM_PORT=$(free_port $((RB_METRICS_PORT + 1)))
ctl() { "$work/bin/rollbridgectl" "$@" -c examples/metrics.jsonnet; }

step "starting rollbridged (proxy :$RB_METRICS_PROXY_PORT, metrics :$RB_METRICS_PORT)"
"$work/bin/rollbridged" -c examples/metrics.jsonnet >"$work/daemon.log" 2>&1 &
daemon_pid=$!
wait_for 20 ctl status || { tail -20 "$work/daemon.log"; bad "the daemon answers status"; exit 1; }
mkdir -p "$work/releases/r1" "$work/releases/r2"
ctl deploy --release-path "$work/releases/r1" --release-id r1 >/dev/null 2>&1 || { tail -20 "$work/daemon.log"; exit 1; }

step "starting prometheus (:$PROM_PORT, scraping every 1s)"
cat >"$work/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: rollbridge
    static_configs: [{targets: ['127.0.0.1:$RB_METRICS_PORT']}]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
PROM="http://127.0.0.1:$PROM_PORT"
# q EXPR: the value of an instant query's only sample, "" when there is none.
q() { curl -fsS --get "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'; }
# q_eq EXPR WANT: the query's value is WANT.
q_eq() { [ "$(q "$1")" = "$2" ]; }
# settled EXPR WANT: within 15 s (scrapes every second), the stored value is WANT.
settled() { wait_for 15 q_eq "$1" "$2"; }
check "prometheus scrapes the daemon (up == 1)" wait_for 30 q_eq 'up{job="rollbridge"}' 1

# load N RELEASE: N keep-alive requests from 8 workers; sets SENT and checks no failure.
load() {
  "$work/bin/loadgen" -url "http://127.0.0.1:$RB_METRICS_PROXY_PORT/" -c 8 -n "$1" -json >"$work/load-$2.json" || return 1
  SENT=$(jq -r .requests "$work/load-$2.json")
  check "load on $2: $SENT requests, no failure" test "$(jq -r .failures "$work/load-$2.json")" = 0
}

step "load on r1 while prometheus scrapes"
N1=30000
load "$N1" r1 &
load_pid=$!
# While the load runs: a stored value between 0 and N1, and a rate above 0.
mid=""
wait_for 30 bash -c "v=\$(curl -fsS --get '$PROM/api/v1/query' --data-urlencode 'query=rollbridge_http_requests_total{release=\"r1\",code_class=\"2xx\"}' | jq -r '.data.result[0].value[1] // 0'); [ \"\$v\" -gt 0 ]" && mid=$(q 'rollbridge_http_requests_total{release="r1",code_class="2xx"}')
rate=$(q 'sum(rate(rollbridge_http_requests_total{release="r1"}[3s]))')
wait "$load_pid"
SENT1=$(jq -r .requests "$work/load-r1.json")
check "a scrape during the load stored a count between 0 and $SENT1 (got ${mid:-none})" test -n "$mid" -a "${mid:-0}" -gt 0 -a "${mid:-0}" -le "$SENT1"
check "the request rate during the load was above 0 (got ${rate:-none}/s)" awk -v r="${rate:-0}" 'BEGIN { exit !(r > 0) }'
check "requests_total{release=r1,2xx} settles at the $SENT1 requests sent" settled 'rollbridge_http_requests_total{release="r1",code_class="2xx"}' "$SENT1"
check "the latency histogram counted them all" settled 'sum(rollbridge_http_request_duration_seconds_count{release="r1"})' "$SENT1"
check "no other status class for r1" q_eq 'sum(rollbridge_http_requests_total{release="r1",code_class!="2xx"})' 0
check "the histogram's +Inf bucket equals its count" q_eq 'sum(rollbridge_http_request_duration_seconds_bucket{release="r1",le="+Inf"}) - sum(rollbridge_http_request_duration_seconds_count{release="r1"})' 0
p99=$(q 'histogram_quantile(0.99, sum by (le) (rate(rollbridge_http_request_duration_seconds_bucket{release="r1"}[30s])))')
echo "   p99 latency over the load, from the histogram: ${p99:-none} s"

step "deploy r2: a new release series"
ctl deploy --release-path "$work/releases/r2" --release-id r2 >/dev/null 2>&1 || bad "deploy r2"
check "release_info shows r2 active" settled 'rollbridge_release_info{release="r2",state="active"}' 1
N2=10000
load "$N2" r2
check "requests_total{release=r2} settles at the $SENT requests sent" settled 'sum(rollbridge_http_requests_total{release="r2"})' "$SENT"
check "r1 keeps its $SENT1" q_eq 'sum(rollbridge_http_requests_total{release="r1"})' "$SENT1"
check "two release series of requests" q_eq 'count(count by (release) (rollbridge_http_requests_total))' 2
check "deploys_total{deploy,success} = 2" settled 'rollbridge_deploys_total{command="deploy",result="success"}' 2
check "the health-check wait was observed twice" settled 'rollbridge_health_check_wait_seconds_count' 2

step "crash r2's web process: a restart"
pid=$(ctl status | jq -r '.releases[] | select(.releaseId == "r2") | .processes[] | select(.id == "web") | .pid')
check "r2 runs web (pid ${pid:-none})" test -n "$pid"
check "restarts_total{release=r2,process=web} is 0 before" settled 'rollbridge_process_restarts_total{release="r2",process="web"}' 0
[ -n "$pid" ] && kill -9 "$pid"
check "restarts_total{release=r2,process=web} = 1" settled 'rollbridge_process_restarts_total{release="r2",process="web"}' 1
check "web is running again" settled 'rollbridge_process_state{release="r2",process="web",state="running"}' 1

step "roll back to r1: counted as a rollback, r1's series go on from its count"
ctl rollback >/dev/null 2>&1 || bad "rollback"
check "deploys_total{rollback,success} = 1" settled 'rollbridge_deploys_total{command="rollback",result="success"}' 1
load 1000 r1-again
check "requests_total{release=r1} settles at $SENT1 + $SENT" settled 'sum(rollbridge_http_requests_total{release="r1"})' $((SENT1 + SENT))

step "the access log (sample 0.01) and the documented queries"
access=$(grep -c '"type":"access"' "$work/daemon.log")
check "access log lines written ($access), none dropped" q_eq 'rollbridge_access_log_dropped_total' 0
check "the access log sampled every 100th request ($access of $((SENT1 + SENT + 10000)))" test "$access" -ge $(((SENT1 + SENT + 10000) / 100 - 1))
check "docs/metrics.md: p99 of the active release" test -n "$(q 'histogram_quantile(0.99, sum by (le) (rate(rollbridge_http_request_duration_seconds_bucket[5m]) * on (release) group_left rollbridge_release_info{state="active"}))')"
# Every query of the Grafana dashboard parses and runs against what was stored.
bad_queries=0
while IFS= read -r expr; do
  expr=${expr//\$job/.*}; expr=${expr//\$__rate_interval/10s}; expr=${expr//\$__range/5m}
  st=$(curl -sS --get "$PROM/api/v1/query" --data-urlencode "query=$expr" | jq -r .status)
  [ "$st" = success ] || { echo "   dashboard query failed: $expr"; bad_queries=$((bad_queries + 1)); }
done < <(jq -r '.panels[].targets[]?.expr, .annotations.list[].expr' examples/grafana-dashboard.json)
check "every Grafana dashboard query runs" test "$bad_queries" = 0
# ... and every metric it names is one the daemon exports.
exported=$(curl -fsS "http://127.0.0.1:$RB_METRICS_PORT/metrics" | grep -o '^[a-z_]*' | sort -u)
missing=$(jq -r '.panels[].targets[]?.expr' examples/grafana-dashboard.json | grep -o 'rollbridge_[a-z_]*' | sed -E 's/_(bucket|count|sum)$//' | sort -u |
  while read -r name; do grep -qx "$name\(_bucket\)\?" <<<"$exported" || echo "$name"; done)
check "every metric the dashboard uses is exported${missing:+ (missing: $missing)}" test -z "$missing"

step "done: $PASS passed, $FAIL failed"
if [ "$FAIL" -gt 0 ]; then
  echo "--- daemon log (tail)"; tail -30 "$work/daemon.log"
  echo "--- prometheus log (tail)"; tail -10 "$work/prometheus.log"
  exit 1
fi
