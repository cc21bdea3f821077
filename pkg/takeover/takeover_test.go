package takeover

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/pgroup"
	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// spawnGroup starts a long-running shell in its own process group (as
// rollbridge starts managed processes) and returns its pid and start time.
func spawnGroup(t *testing.T, script string) (int, uint64) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	testutil.StartGroup(t, cmd)
	start, err := state.StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, start
}

func testConfig(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbtk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	src := fmt.Sprintf(`{application: 'tk', statePath: %q, control: {path: %q}, proxy: {port: 0, forceStopTimeoutMs: 300},
	  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]} + %s`, filepath.Join(dir, "state.json"), filepath.Join(dir, "c.sock"), extra)
	p := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRecoverKeepsFileWhenAnOrphanSurvives: when a process cannot be
// stopped (owned by another user, say — as root that cannot be staged with
// a real process, so the stop reports one of them as surviving), the state
// file stays and the survivor is listed.
func TestRecoverKeepsFileWhenAnOrphanSurvives(t *testing.T) {
	cfg := testConfig(t, "{}")
	a, aStart := spawnGroup(t, "exec sleep 300")
	b, bStart := spawnGroup(t, "exec sleep 301")
	if err := state.Save(cfg.StatePath, &state.Snapshot{Processes: []state.ProcessRecord{{ID: "a", Pid: a, StartTime: aStart}, {ID: "b", Pid: b, StartTime: bStart}}}); err != nil {
		t.Fatal(err)
	}
	refuseB := func(ctx context.Context, targets []pgroup.Target, grace time.Duration) []pgroup.Result {
		var others []pgroup.Target
		for _, tg := range targets {
			if tg.Pid != b {
				others = append(others, tg)
			}
		}
		res := pgroup.Stop(ctx, others, grace)
		return append(res, pgroup.Result{Target: pgroup.Target{Pid: b, StartTime: bStart, Group: true}}) // EPERM stand-in
	}
	res, err := recoverWith(context.Background(), cfg, true, refuseB)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stopped) != 1 || res.Stopped[0].Pid != a || len(res.StillRunning) != 1 || res.StillRunning[0].Pid != b || res.StateFileRemoved {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(cfg.StatePath); err != nil {
		t.Errorf("state file must be kept: %v", err)
	}
	if state.Alive(a, aStart) || !state.Alive(b, bStart) {
		t.Error("wrong process stopped")
	}
}

// TestRecoverStopsTheWholeGroup: a member that ignores SIGTERM outlives
// its leader; recover still ends it.
func TestRecoverStopsTheWholeGroup(t *testing.T) {
	cfg := testConfig(t, "{}")
	leader, start := spawnGroup(t, "sh -c 'trap \"\" TERM; while :; do sleep 0.05; done' & exec sleep 300")
	if err := state.Save(cfg.StatePath, &state.Snapshot{Processes: []state.ProcessRecord{{ID: "web", Pid: leader, StartTime: start}}}); err != nil {
		t.Fatal(err)
	}
	res, err := Recover(context.Background(), cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stopped) != 1 || !res.StateFileRemoved {
		t.Errorf("result %+v", res)
	}
	// Zombies may linger until their reaper runs; none may be alive.
	pids, err := procfs.AllPids()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if st, err := procfs.ReadStat(pid); err == nil && st.Pgrp == leader && st.Live() {
			t.Errorf("member %d of the group survived", pid)
		}
	}
}

func TestContainsAll(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parts []string
		want  bool
	}{
		{"all", []string{"puma", "shop"}, true},
		{"one missing", []string{"puma", "blog"}, false},
		{"no parts", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := containsAll("bundle exec puma -C shop.rb", tc.parts); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDecide covers what Cleanup does with a daemon that answered,
// including the socket-activated cases no test without systemd can stage
// (the systemd lane, scripts/systemd-lane.sh, runs the refusal for real).
func TestDecide(t *testing.T) {
	cfg := testConfig(t, "{proxy+: {host: '127.0.0.1', port: 8182}}")
	v1 := "v1"
	match := control.ProxyInfo{Host: "127.0.0.1", Port: 8182, UpstreamHost: "127.0.0.1"}
	moved := control.ProxyInfo{Host: "127.0.0.1", Port: 9000, UpstreamHost: "127.0.0.1"}
	for _, tc := range []struct {
		name      string
		app       string
		active    *string
		proxy     control.ProxyInfo
		activated bool
		want      CleanupAction
		wantErr   string
	}{
		{name: "active and matching", app: "tk", active: &v1, proxy: match, want: DaemonActive},
		{name: "active and matching under systemd", app: "tk", active: &v1, proxy: match, activated: true, want: DaemonActive},
		{name: "active, proxy moved", app: "tk", active: &v1, proxy: moved, want: DaemonStopped},
		{name: "idle", app: "tk", proxy: match, want: DaemonStopped},
		{name: "idle under systemd", app: "tk", proxy: match, activated: true, want: DaemonKept},
		{name: "proxy moved under systemd", app: "tk", active: &v1, proxy: moved, activated: true,
			wantErr: "install the new socket units with `rollbridgectl systemd units --install`, then restart them and the daemon: systemctl restart rollbridge-proxy@tk.socket rollbridge-control@tk.socket rollbridge@tk.service"},
		{name: "another application", app: "shop", active: &v1, proxy: match, wantErr: `a rollbridge daemon for "shop" is using`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := control.Status{Application: tc.app, ActiveReleaseID: tc.active, Proxy: tc.proxy}
			d, err := decide(cfg, st, func() bool { return tc.activated })
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("got %+v, %v; want an error containing %q", d, err, tc.wantErr)
				}
			case err != nil || d.action != tc.want:
				t.Errorf("got %+v, %v; want %s", d, err, tc.want)
			}
		})
	}
}

func TestProxyMismatchAcceptsAnyPortForPortZero(t *testing.T) {
	cfg := testConfig(t, "{}") // proxy.port 0
	if why := proxyMismatch(cfg, control.ProxyInfo{Host: "127.0.0.1", Port: 41234, UpstreamHost: "127.0.0.1"}); why != "" {
		t.Errorf("got %q", why)
	}
	if why := proxyMismatch(cfg, control.ProxyInfo{Host: "0.0.0.0", Port: 41234, UpstreamHost: "127.0.0.1"}); !strings.Contains(why, "differs from the config's 127.0.0.1:0") {
		t.Errorf("another host: %q", why)
	}
}

func TestCheckSocketOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	if err := checkSocketOwner(path, 1234, nil); err != nil {
		t.Errorf("missing path: %v", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	me := os.Getuid()
	if err := checkSocketOwner(path, me, nil); err != nil {
		t.Errorf("the caller's own socket: %v", err)
	}
	other := me + 4242 // a caller who is neither the owner nor root
	err = checkSocketOwner(path, other, nil)
	if me == 0 {
		if err != nil {
			t.Errorf("root's socket: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "neither root nor you") {
		t.Errorf("another user's socket: %v", err)
	}
	if err := checkSocketOwner(path, other, &config.IDOrName{ID: me}); err != nil {
		t.Errorf("control.owner's socket: %v", err)
	}
}

func TestLegacyMatch(t *testing.T) {
	lt := config.LegacyTakeover{Screens: []string{"shop"}, Processes: []config.LegacyProcess{{Name: "puma", Includes: []string{"puma", "shop"}}}}
	for _, tc := range []struct {
		cmdline, want string
	}{
		{"SCREEN -dmS shop bundle exec puma", "screen shop"},
		{"/usr/bin/SCREEN -dmS shop", "screen shop"},
		{"SCREEN -dmS shop2 sleep 1", ""},
		{"screen -dmS shop", ""}, // the client, not the session's server
		{"bundle exec puma -C shop.rb", "puma"},
		{"bundle exec puma -C blog.rb", ""},
		{"", ""},
	} {
		if got := legacyMatch(lt, tc.cmdline); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}
