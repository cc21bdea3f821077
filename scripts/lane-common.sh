# Sourced by the real-systemd lanes (systemd-lane.sh, migration-lane.sh):
# finds the sandbox tool and defines the check helpers. Set LANE (its name
# in messages) and SANDBOX_NAME before sourcing.
#
# A lane that cannot run here (no sandbox tool, not root, a sandbox that
# does not boot, a missing package) says so loudly; locally it then exits
# 0 so the rest still runs, under CI (CI set, as .ci/run sets it) it fails:
# a lane CI was asked to run must not pass by not running.
export PATH="/usr/local/go/bin:$PATH"
REPO=$PWD

SB=${SYSTEMD_SANDBOX:-}
for c in "$SB" "$REPO/../shared/tools/systemd-sandbox" /work/shared/tools/systemd-sandbox; do
  [ -n "$c" ] && [ -x "$c" ] && { SB=$c; break; }
done
not_run() { # not_run REASON: say why the lane cannot run, and end it
  echo "################################################################################"
  echo "## $LANE NOT RUN: $*"
  echo "################################################################################"
  [ -n "${CI:-}" ] && exit 1
  exit 0
}
[ -x "${SB:-}" ] || not_run "systemd-sandbox not found (set SYSTEMD_SANDBOX)"
[ "$(id -u)" = 0 ] || not_run "needs root"

PASS=0 FAIL=0
ok() { echo "PASS: $*"; PASS=$((PASS + 1)); }
bad() { echo "FAIL: $*"; FAIL=$((FAIL + 1)); }
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
sb() { "$SB" exec -- "$@"; }
wait_for() { # wait_for SECONDS CMD... : poll until CMD succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done
}
