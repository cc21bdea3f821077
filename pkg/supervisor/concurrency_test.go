package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

// TestRollbackToDrainingReleaseSurvivesItsDrain relaunches a release while
// its drain goroutine still waits on a WebSocket. The drain ends (it is
// cancelled) around the relaunch; it must never stop the relaunched run.
// keep: 0 also makes every stopped release prunable at once, so the
// rollback target must be kept while its old run stops.
func TestRollbackToDrainingReleaseSurvivesItsDrain(t *testing.T) {
	src := strings.Replace(webConfig(t, `[]`), "{application: 'test',", "{application: 'test', releaseRetention: {keep: 0},", 1)
	h := newHarness(t, src)
	h.deploy("v1")
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(h.url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	h.deploy("v2")
	if st := h.releaseStatus("v1").State; st != release.Draining {
		t.Fatalf("v1 is %s, want draining while its WebSocket is open", st)
	}

	res, err := h.sup.Rollback(context.Background(), "", nil)
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if res.ActiveReleaseID != "v1" || res.PreviousReleaseID == nil || *res.PreviousReleaseID != "v2" {
		t.Errorf("result %s", dump(res))
	}
	// The old run's drain reports once it noticed the cancel; from then on
	// it can only touch that old run.
	drained := h.awaitEvent("release drained", "v1")
	// The rollback cut the drain short, well inside drainTimeoutMs: that is
	// not a timeout (the chaos run found it reported as one).
	if drained["timedOut"] != false || drained["interrupted"] != true || drained["connectionsClosed"] != int64(1) {
		t.Errorf("release drained after a rollback to the draining release: %v; want timedOut false, interrupted true, connectionsClosed 1", drained)
	}
	v1 := h.releaseStatus("v1")
	if v1.State != release.Active || *h.status().ActiveReleaseID != "v1" {
		t.Fatalf("v1 after the rollback: %s", dump(v1))
	}
	for _, p := range v1.Processes {
		if p.State != process.Running || p.Pid == nil {
			t.Errorf("relaunched v1 process %s is %s", p.ID, p.State)
		}
	}
	if _, body := h.get("/"); body != "v1" {
		t.Errorf("serving %q, want v1", body)
	}

	// The relaunched v1 retires normally: one more stop, not two.
	h.deploy("v3")
	testutil.Eventually(t, "v1 stopped again", func() bool {
		n := 0
		for _, e := range h.events("release stopped") {
			if e.Data["releaseId"] == "v1" {
				n++
			}
		}
		return n == 2
	})
	if len(h.events("internal error")) != 0 {
		t.Errorf("internal errors: %s", dump(h.events("internal error")))
	}
}

// TestConcurrentCommandsKeepTheStateConsistent races deploys, rollbacks
// and stops against each other and against every reader, round after
// round, while WebSockets keep retired releases draining so that rollbacks
// meet drains. Run it with -race.
func TestConcurrentCommandsKeepTheStateConsistent(t *testing.T) {
	src := strings.Replace(webConfig(t, `[{id: 'worker', command: 'exec sleep 1000'}]`), "drainTimeoutMs: 10000", "drainTimeoutMs: 400", 1)
	h := newHarness(t, src)
	wsURL := "ws" + strings.TrimPrefix(h.url, "http") + "/ws"
	var sockets []*websocket.Conn
	defer func() {
		for _, ws := range sockets {
			ws.CloseNow()
		}
	}()

	// allowed fails the test unless err is nil or one of the refusals a
	// command may meet when others race it.
	allowed := func(what string, err error, kinds ...error) {
		if err == nil {
			return
		}
		for _, k := range kinds {
			if errors.Is(err, k) {
				return
			}
		}
		t.Errorf("%s: %v", what, err)
	}
	check := func(st Status) {
		for _, r := range st.Releases {
			switch r.State {
			case release.Starting, release.Active, release.Draining, release.Stopped, release.Failed:
			default:
				t.Errorf("release %s in unknown state %q", r.ReleaseID, r.State)
			}
		}
		if st.ActiveReleaseID == nil {
			return
		}
		for _, r := range st.Releases {
			if r.ReleaseID == *st.ActiveReleaseID {
				if r.State != release.Active {
					t.Errorf("active release %s is %s", r.ReleaseID, r.State)
				}
				return
			}
		}
		t.Errorf("active release %s is not in the list: %s", *st.ActiveReleaseID, dump(st.Releases))
	}

	const rounds = 5
	for round := 0; round < rounds; round++ {
		// Pin a WebSocket to whatever is active, so it drains when retired.
		if ws, _, err := websocket.Dial(context.Background(), wsURL, nil); err == nil {
			sockets = append(sockets, ws)
		}
		// Each command runs once per round; one refused as busy waits until
		// the running one ended and tries again, so the three meet each
		// other in every order.
		var mutators sync.WaitGroup
		mutate := func(what string, cmd func() error, kinds ...error) {
			mutators.Add(1)
			go func() {
				defer mutators.Done()
				err := cmd()
				for errors.Is(err, ErrBusy) {
					if !testutil.Poll(t, "the running command to end before "+what, func() bool { return h.status().Daemon.CommandInProgress == nil }) {
						return
					}
					err = cmd()
				}
				allowed(what, err, kinds...)
			}()
		}
		mutate("deploy", func() error { _, err := h.tryDeploy(fmt.Sprintf("r%d", round), nil); return err })
		rollbackTo := ""
		if round%2 == 1 {
			rollbackTo = fmt.Sprintf("r%d", round-1)
		}
		mutate("rollback "+rollbackTo, func() error {
			_, err := h.sup.Rollback(context.Background(), rollbackTo, nil)
			return err
		}, ErrNotFound, ErrConflict)
		if round%3 == 2 { // stop less often, so that there is something to drain
			mutate("stop", func() error { return h.sup.Stop(context.Background(), "") }, ErrNotFound, ErrConflict)
		}
		done := make(chan struct{})
		var readers sync.WaitGroup
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				check(h.status())
				_ = h.sup.Summary()
				if _, err := h.sup.Logs(""); err != nil {
					t.Errorf("logs: %v", err)
				}
				snap := h.sup.PersistSnapshot()
				if snap.ActiveReleaseID != "" {
					found := false
					for _, r := range snap.Releases {
						found = found || r.ID == snap.ActiveReleaseID
					}
					if !found {
						t.Errorf("state snapshot names active release %s but does not list it", snap.ActiveReleaseID)
					}
				}
				_ = h.sup.Events(5)
				if resp, err := http.Get(h.url + "/"); err == nil {
					resp.Body.Close()
				}
			}
		}()
		mutators.Wait()
		close(done)
		readers.Wait()
	}

	for _, ws := range sockets {
		ws.CloseNow()
	}
	testutil.Eventually(t, "every drain to end", func() bool {
		for _, r := range h.status().Releases {
			if r.State == release.Draining || r.State == release.Starting {
				return false
			}
		}
		return true
	})
	st := h.status()
	check(st)
	active := 0
	for _, r := range st.Releases {
		if r.State == release.Active {
			active++
		}
		if !r.State.Live() {
			for _, p := range r.Processes {
				if p.Pid != nil {
					t.Errorf("release %s is %s but its process %s runs", r.ReleaseID, r.State, p.ID)
				}
			}
		}
	}
	code, body := h.get("/")
	switch {
	case st.ActiveReleaseID == nil && (active != 0 || code != http.StatusServiceUnavailable):
		t.Errorf("no active release, but %d are active and / answers %d %q", active, code, body)
	case st.ActiveReleaseID != nil && (active != 1 || body != *st.ActiveReleaseID):
		t.Errorf("active release %s, but %d are active and / answers %d %q", *st.ActiveReleaseID, active, code, body)
	}
	if len(h.events("internal error")) != 0 {
		t.Errorf("internal errors: %s", dump(h.events("internal error")))
	}
}

// TestDrainTimeoutReportsRequestsLeftRunning pins the drained event's
// counts when the drain times out with a plain request still in flight:
// CloseConnections cuts upgraded connections only, so the request is
// reported as left running (it ends with the process), not as closed.
func TestDrainTimeoutReportsRequestsLeftRunning(t *testing.T) {
	h := newHarness(t, strings.Replace(webConfig(t, `[]`), "drainTimeoutMs: 10000", "drainTimeoutMs: 200", 1))
	h.deploy("v1")
	inFlight := make(chan struct{})
	go func() {
		defer close(inFlight)
		resp, err := http.Get(h.url + "/slow?ms=2000")
		if err == nil {
			resp.Body.Close()
		}
	}()
	testutil.Eventually(t, "the slow request to reach v1", func() bool {
		return h.releaseStatus("v1").Connections.HTTP == 1
	})
	h.deploy("v2")
	drained := h.awaitEvent("release drained", "v1")
	if drained["timedOut"] != true || drained["interrupted"] != false || drained["connectionsClosed"] != int64(0) ||
		drained["requestsLeftRunning"] != int64(1) || drained["connectionsAtStart"] != int64(1) {
		t.Errorf("release drained: %v; want timedOut, not interrupted, 1 at start, 0 closed, 1 left running", drained)
	}
	<-inFlight
}
