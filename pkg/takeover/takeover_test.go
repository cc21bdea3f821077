package takeover

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/pgroup"
	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// spawnGroup starts a long-running shell in its own process group (as
// rollbridge starts managed processes) and returns its pid and start time.
func spawnGroup(t *testing.T, script string) (int, uint64) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // reaps it whenever it ends
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
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
