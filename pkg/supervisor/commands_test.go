package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// TestStopLeavesSingletonsRunning: stop touches only the release's own
// processes; singletons (and services) keep running.
func TestStopLeavesSingletonsRunning(t *testing.T) {
	h := newHarness(t, webConfig(t, `[{id: 'cron', policy: 'singleton', command: 'exec sleep 1000'}, {id: 'svc', policy: 'service', command: 'exec sleep 1000'}]`))
	h.deploy("v1")
	st := h.status()
	cron, svc := *st.Singletons[0].Process.Pid, *st.Services[0].Process.Pid
	if err := h.sup.Stop(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	st = h.status()
	if st.ActiveReleaseID != nil || h.releaseStatus("v1").State != release.Stopped {
		t.Errorf("after stop: %s", dump(st))
	}
	if len(st.Singletons) != 1 || st.Singletons[0].Process.Pid == nil || *st.Singletons[0].Process.Pid != cron || st.Singletons[0].Process.State != process.Running {
		t.Errorf("singletons after stop: %s; want cron still running as pid %d", dump(st.Singletons), cron)
	}
	if len(st.Services) != 1 || st.Services[0].Process.Pid == nil || *st.Services[0].Process.Pid != svc {
		t.Errorf("services after stop: %s", dump(st.Services))
	}
}

// TestRestartAppliesBothFilters: --process and --policy together restart
// what matches both, as in the Node original.
func TestRestartAppliesBothFilters(t *testing.T) {
	h := newHarness(t, webConfig(t, `[{id: 'worker', command: 'exec sleep 1000', replicas: 2},
		{id: 'cron', policy: 'singleton', command: 'exec sleep 1000'}, {id: 'svc', policy: 'service', command: 'exec sleep 1000'}]`))
	h.deploy("v1")
	for _, tc := range []struct {
		process, policy, want string
	}{
		{"worker", "companion", "worker#0,worker#1"},
		{"worker#1", "companion", "worker#1"},
		{"cron", "singleton", "cron"},
		{"", "service", "svc"},
	} {
		res, err := h.sup.Restart(context.Background(), tc.process, tc.policy)
		if err != nil || strings.Join(res.Restarted, ",") != tc.want {
			t.Errorf("restart %q %q: %v %v, want %s", tc.process, tc.policy, res, err, tc.want)
		}
	}
	if _, err := h.sup.Restart(context.Background(), "worker", "singleton"); !errors.Is(err, ErrNotFound) {
		t.Errorf("restart worker with policy singleton: %v, want not found", err)
	}
}
