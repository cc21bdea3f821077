package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// TestHandoffService: a service with deployStrategy: "handoff" runs once per
// release, started before the release's companions on a fresh port that
// the release's processes see, and stopped after the retiring release's
// other processes.
func TestHandoffService(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "record")
	worker := fmt.Sprintf(`trap 'echo "stop worker $ROLLBRIDGE_RELEASE_ID" >> %[1]s; exit 0' TERM; while :; do sleep 0.02; done`, rec)
	// The service listens on its port (the test app), so a second release
	// cannot get the same one while the first runs.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	jobs := fmt.Sprintf(`PORT=$ROLLBRIDGE_PORT RB_TESTAPP=1 %[2]q & app=$!; trap 'wait $app; echo "stop jobs $ROLLBRIDGE_RELEASE_ID" >> %[1]s; exit 0' TERM; wait $app`, rec, exe)
	src := fmt.Sprintf(`{application: 'test', proxy: {port: 0, drainTimeoutMs: 10000, forceStopTimeoutMs: 3000},
	  processes: [
	    {id: 'web', policy: 'proxied', command: %q, port: %s, health: {intervalMs: 20}, env: {ROLLBRIDGE_X_JOBS: '{{ports.jobs}}'}},
	    {id: 'worker', command: %q},
	    {id: 'jobs', policy: 'service', deployStrategy: 'handoff', command: %q, port: %s},
	  ]}`, appCmd(t), portRange(), worker, jobs, portRange())
	h := newHarness(t, src)
	ports := map[string]int{}
	for _, id := range []string{"v1", "v2"} {
		h.deploy(id)
		st := h.status()
		if len(st.Services) != 0 {
			t.Errorf("%s: a handoff service is listed among the daemon-wide services: %s", id, dump(st.Services))
		}
		r := h.releaseStatus(id)
		port := r.Ports["jobs"]
		if port == 0 || r.Processes[0].ID != "jobs" || r.Processes[0].Policy != "service" {
			t.Fatalf("%s: release %s; want jobs first, with a port", id, dump(r))
		}
		ports[id] = port
		// Nothing checks a service's health: wait until it listens, so the
		// next release's allocation finds its port taken.
		testutil.Eventually(t, id+"'s jobs listening", func() bool {
			for _, l := range h.releaseStatus(id).Processes[0].Logs {
				if strings.HasPrefix(l.Line, "listening on") {
					return true
				}
			}
			return false
		})
		_, env := h.get("/env")
		for _, want := range []string{"ROLLBRIDGE_JOBS_PORT=" + strconv.Itoa(port), "ROLLBRIDGE_X_JOBS=" + strconv.Itoa(port)} {
			if !strings.Contains(env, want) {
				t.Errorf("%s: web env lacks %s:\n%s", id, want, env)
			}
		}
	}
	if ports["v1"] == ports["v2"] {
		t.Errorf("both releases' handoff services on port %d; want a fresh port per release", ports["v1"])
	}
	// Starts: each release's handoff service before its worker.
	var started []string
	for _, e := range h.events("process started") {
		started = append(started, fmt.Sprint(e.Data["id"], " ", e.Data["releaseId"]))
	}
	if got := strings.Join(started, ","); got != "jobs v1,worker v1,web v1,jobs v2,worker v2,web v2" {
		t.Errorf("start order %s", got)
	}
	// Stops: v1's worker has stopped (its trap ran) before v1's jobs is asked to.
	testutil.Eventually(t, "v1 retired", func() bool { return strings.Contains(readFile(t, rec), "stop jobs v1") })
	if got := readFile(t, rec); got != "stop worker v1\nstop jobs v1\n" {
		t.Errorf("stop order:\n%s", got)
	}

	if _, err := h.sup.Restart(context.Background(), "jobs", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("restart jobs: %v, want a conflict (replaced by deploys)", err)
	}
	if res, err := h.sup.Restart(context.Background(), "", "service"); err != nil || len(res.Restarted) != 0 {
		t.Errorf("restart --policy service: %v %v, want nothing (no persistent service)", res, err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}
