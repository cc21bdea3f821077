package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// TestDaemonizedProcessesDoNotOutliveTheirRelease runs a worker that
// double-forks a process into a session of its own (as `daemon`-style
// tools do) and checks that retiring the release, and shutting the daemon
// down, stop that process too: before, one leaked per deploy.
func TestDaemonizedProcessesDoNotOutliveTheirRelease(t *testing.T) {
	f0 := newFixture(t, 0, "{}")
	pids := filepath.Join(f0.dir, "escaped")
	f := newFixture(t, 0, fmt.Sprintf(`{processes+: [{id: 'daemonizer', policy: 'companion',
	  command: "(setsid sh -c 'echo $$ >> %s; exec sleep 1000' &); exec sleep 1001"}]}`, pids))
	escaped := func(n int) []int { t.Helper(); return pidsIn(t, pids, n) }
	gone := func(pid int, when string) {
		t.Helper()
		testutil.Eventually(t, fmt.Sprintf("daemonized pid %d gone %s", pid, when), func() bool { return !procfs.Alive(pid, 0) })
	}
	f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	v1 := escaped(1)[0]
	if st, err := procfs.ReadStat(v1); err != nil || st.Session != v1 {
		t.Fatalf("pid %d did not leave the worker's session: %+v %v", v1, st, err)
	}
	f.deploy("v2") // v1 retires: its worker, and what it daemonized, stop
	gone(v1, "after v1 was retired")
	v2 := escaped(2)[1]
	if _, err := f.client().Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	gone(v2, "after shutdown")
}
