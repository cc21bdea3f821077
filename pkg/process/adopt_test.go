package process

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// keepRunner is an Adopter over the exec runner: the runs it started stay
// in its registry when the Process that started them is dropped, the way a
// systemd unit outlives its daemon. (The systemd runner itself is tested in
// pkg/systemd, against a real systemd.)
type keepRunner struct {
	ExecRunner
	mu   sync.Mutex
	runs map[string]Handle
}

func (k *keepRunner) Start(ctx context.Context, spec Spec, out func(Line)) (Handle, error) {
	h, err := k.ExecRunner.Start(ctx, spec, out)
	if err == nil {
		k.mu.Lock()
		k.runs[spec.ID] = h
		k.mu.Unlock()
	}
	return h, err
}

func (k *keepRunner) Adopt(_ context.Context, spec Spec, _ string, _ func(Line)) (Handle, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h := k.runs[spec.ID]
	if h == nil || gone(h) {
		return nil, ErrNotRunning
	}
	return h, nil
}

func (k *keepRunner) Runs(context.Context) ([]RunRef, error) { return nil, nil }

// handOver starts spec under a first Process (the old daemon), then drops
// it: its automatic restarts are off, as a dead daemon restarts nothing.
func handOver(t *testing.T, spec Spec) (*keepRunner, int) {
	t.Helper()
	k := &keepRunner{runs: map[string]Handle{}}
	old := New(spec, k, nil)
	if err := old.Start(context.Background(), ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	old.SetAutoRestart(false)
	return k, *old.Status().Pid
}

func TestAdoptAttachesWithoutRestart(t *testing.T) {
	spec := childSpec(t, "web", "signals", "RB_QUIT=SIGTERM")
	k, pid := handOver(t, spec)
	log := events.New(0)
	p := New(spec, k, log)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	restarted, err := p.Adopt(context.Background(), Adopted{Restarts: 3, MemoryRestarts: 1, Reason: ReasonCrash})
	if err != nil || restarted {
		t.Fatalf("Adopt: restarted %v, %v", restarted, err)
	}
	st := p.Status()
	if st.Pid == nil || *st.Pid != pid || st.State != Running || st.Restarts != 3 || st.MemoryRestarts != 1 || *st.LastStartReason != ReasonCrash {
		t.Fatalf("got pid %v state %s restarts %d/%d reason %v; want %d running 3/1 crash", st.Pid, st.State, st.Restarts, st.MemoryRestarts, st.LastStartReason, pid)
	}
	if n := len(log.Recent(0)); n != 1 || log.Recent(0)[0].Message != events.ProcessAdopted {
		t.Errorf("events: %v, want one process adopted", log.Recent(0))
	}
	// The adopted run is supervised: a crash is noticed and restarted.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "restart after the crash", func() bool {
		st := p.Status()
		return st.Restarts == 4 && st.Pid != nil && *st.Pid != pid
	})
}

func TestAdoptGoneRunFollowsRestartPolicy(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxRestarts int
		restarted   bool
		state       State
		restarts    int
	}{
		{"restarts allowed", -1, true, Running, 3},
		{"no restarts", 0, false, Failed, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := childSpec(t, "worker", "signals", "RB_QUIT=SIGTERM")
			spec.Restart.MaxRestarts = tc.maxRestarts
			k := &keepRunner{runs: map[string]Handle{}} // nothing survived
			p := New(spec, k, nil)
			t.Cleanup(func() { _ = p.Stop(context.Background()) })
			restarted, err := p.Adopt(context.Background(), Adopted{Restarts: 2})
			if restarted != tc.restarted || (tc.restarted && err != nil) || (!tc.restarted && !errors.Is(err, ErrNotRunning)) {
				t.Fatalf("Adopt: restarted %v, %v", restarted, err)
			}
			st := p.Status()
			if st.State != tc.state || st.Restarts != tc.restarts {
				t.Errorf("got state %s restarts %d, want %s %d", st.State, st.Restarts, tc.state, tc.restarts)
			}
			if tc.restarted && (st.LastStartReason == nil || *st.LastStartReason != ReasonCrash) {
				t.Errorf("reason %v, want crash", st.LastStartReason)
			}
		})
	}
}

func TestAdoptNeedsAnAdopter(t *testing.T) {
	p := New(childSpec(t, "web", "lines"), ExecRunner{}, nil)
	if _, err := p.Adopt(context.Background(), Adopted{}); err == nil {
		t.Error("the exec runner adopted a run")
	}
}
