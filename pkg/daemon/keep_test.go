package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// A daemon told to keep its processes (a `systemctl restart` with the
// systemd runtime) exits without stopping them, and its state file names
// them as running, for the next daemon to adopt.
func TestKeepProcessesLeavesThemRunning(t *testing.T) {
	dir := shortDir(t)
	statePath := filepath.Join(dir, "state.json")
	cfg := testConfig(t, dir, fmt.Sprintf(`{statePath: %q, processes: [{id: 'web', policy: 'proxied', command: 'exec sleep 1000', port: 18000, health: false}]}`, statePath))
	cancel, done := runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}, KeepProcesses: func() bool { return true }})
	c := &control.Client{Path: cfg.Control.Path}
	if _, err := c.Deploy(context.Background(), control.DeployRequest{ReleasePath: dir, ReleaseID: "v1"}, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for runDaemon's cleanup
	snap, err := state.Load(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Stopped || snap.ActiveReleaseID != "v1" || len(snap.Processes) != 1 {
		t.Fatalf("state: stopped %v, active %q, %d processes; want running v1 with its process", snap.Stopped, snap.ActiveReleaseID, len(snap.Processes))
	}
	pid := snap.Processes[0].Pid
	if !state.Alive(pid, snap.Processes[0].StartTime) {
		t.Fatalf("web (pid %d) did not outlive the daemon", pid)
	}
	// It is this test's to end now (its process group: the exec runner's).
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "web gone", func() bool { return !state.Alive(pid, 0) })
}
