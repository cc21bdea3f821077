package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

// TestOrphanOfASingletonHasNoRelease: a singleton (or service) outlives the
// release that started it, so its orphan lists no release, "releaseId":
// null as in the Node original; a release's process names its release.
func TestOrphanOfASingletonHasNoRelease(t *testing.T) {
	f := newFixture(t, 0, `{processes+: [{id: 'cron', policy: 'singleton', command: 'exec sleep 1000'}]}`)
	src, _ := os.ReadFile(f.cfg)
	if err := os.WriteFile(f.cfg, []byte(string(src)+fmt.Sprintf(" + {statePath: %q}", f.statePath())), 0o644); err != nil {
		t.Fatal(err)
	}
	first := f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	testutil.Eventually(t, "state file naming both processes", func() bool {
		s, err := state.Load(f.statePath())
		return err == nil && len(s.Processes) == 2
	})
	s, _ := state.Load(f.statePath())
	for _, p := range s.Processes {
		if start, err := procfs.StartTime(p.Pid); err == nil {
			defer func() {
				if procfs.Alive(p.Pid, start) {
					_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
				}
			}()
		}
	}
	_ = first.Process.Kill()
	_ = first.Wait()
	_ = os.Remove(f.sock)
	f.start(nil, "")
	f.waitReady()
	raw, err := f.client().Do(context.Background(), &control.Request{Command: control.CmdStatus}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"id":"web","pid":`, `"releaseId":"v1"}`, `{"id":"cron","pid":`, `"releaseId":null}`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("status lacks %s:\n%s", want, raw)
		}
	}
}
