package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

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
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// health: false waits for the listener, so web must listen.
	cfg := testConfig(t, dir, fmt.Sprintf(`{statePath: %q, processes: [{id: 'web', policy: 'proxied', command: '%s=1 PORT={{port}} exec %s', port: 18000, health: false}]}`,
		statePath, testAppEnv, exe))
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

// testAppEnv makes this test binary a managed process that answers HTTP
// on $PORT (see TestMain).
const testAppEnv = "RB_DAEMON_TESTAPP"

func serveTestApp() {
	srv := &http.Server{Addr: net.JoinHostPort("127.0.0.1", os.Getenv("PORT")), ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}
