package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/systemd"
)

// Adoption needs a runner whose runs outlive the daemon: these tests run
// against the real systemd runner, where RB_SYSTEMD_TESTS=1 says a real
// systemd answers on D-Bus (the real-systemd lane runs this test binary
// inside its sandbox so). What the previous daemon left is staged
// directly: its units, started through a runner that is then closed (the
// daemon died), and its state file as that daemon would have written it.

func adoptRunner(t *testing.T, app string) *systemd.Runner {
	t.Helper()
	if os.Getenv("RB_SYSTEMD_TESTS") != "1" {
		t.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1 (the systemd lane runs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	r, err := systemd.NewRunner(ctx, systemd.RunnerOptions{Application: app, EnvDir: filepath.Join(t.TempDir(), "env")})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// adoptApp names a test's application (its slice and units); short,
// since the default control socket path carries it.
func adoptApp(tag string) string { return "adopt-" + tag }

// oldDaemon starts units the way a previous daemon did, then goes away
// (close), leaving them running.
type oldDaemon struct {
	t *testing.T
	r *systemd.Runner
}

func (o *oldDaemon) start(spec process.Spec) process.Handle {
	o.t.Helper()
	h, err := o.r.Start(context.Background(), spec, nil)
	if err != nil {
		o.t.Fatalf("stage %s: %v", spec.ID, err)
	}
	return h
}

// unitsLeft is the live units of app, by name.
func unitsLeft(t *testing.T, r *systemd.Runner) map[string]int {
	t.Helper()
	runs, err := r.Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, run := range runs {
		if run.Pid != 0 {
			out[run.Name] = run.Pid
		}
	}
	return out
}

// adoptHarness is a harness whose supervisor runs processes as units of
// app (a new daemon's), set up before the old daemon's units are staged.
func adoptHarness(t *testing.T, app, extra string) (*harness, *systemd.Runner, *oldDaemon) {
	t.Helper()
	next := adoptRunner(t, app)
	// Last of all: whatever a failed test left in the app's slice.
	t.Cleanup(func() {
		if err := systemd.StopSlice(context.Background(), app); err != nil {
			t.Errorf("stop the test's slice: %v", err)
		}
	})
	t.Cleanup(next.Close) // after the harness's Shutdown (cleanups run last-in first-out)
	h := newHarnessOpts(t, strings.Replace(webConfig(t, extra), "application: 'test'", "application: '"+app+"'", 1),
		func(o *Options) { o.Runner = next })
	old := &oldDaemon{t: t, r: adoptRunner(t, app)}
	return h, next, old
}

// webSpec renders the proxied instance of release v1 (in dir) on port, as
// the old daemon did.
func (h *harness) webSpec(dir string, port int) process.Spec {
	h.t.Helper()
	spec, err := h.sup.instanceSpec(h.cfg, h.cfg.Proxied(), releaseVars{ID: "v1", Path: dir, Ports: map[string]int{"web": port}}, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return spec
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var reqs []release.PortRequest
	for i := 0; i < n; i++ {
		reqs = append(reqs, release.PortRequest{ProcessID: string(rune('a' + i)), Range: config.PortRange{From: 20000, To: 25999}})
	}
	got, err := release.Allocate("127.0.0.1", reqs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for i := 0; i < n; i++ {
		out = append(out, got[string(rune('a'+i))])
	}
	return out
}

// A daemon that died in the middle of a memory replacement of the proxied
// process left two live copies of it. The next daemon serves from one —
// the one the state file says serves, unless it fails its health check
// and the other passes — and stops the other with its stop sequence.
// Nothing that runs is restarted.
func TestAdoptTwoLiveCopiesOfTheProxiedProcess(t *testing.T) {
	for _, tc := range []struct {
		name          string
		app           string
		servingHealth string // the recorded copy's /ping status
		keepServing   bool
	}{
		{"the serving copy is healthy and stays", "kept", "200", true},
		{"the serving copy is unhealthy and the replacement takes over", "taken", "503", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := adoptApp(tc.app)
			h, next, old := adoptHarness(t, app, "[]")
			dir := h.release("v1", map[string]string{"health": tc.servingHealth})
			ports := freePorts(t, 2)
			serving := old.start(h.webSpec(dir, ports[0]))
			// It reads its health file as it starts: wait for its answer
			// before the file changes for the replacement.
			testutil.Eventually(t, "the serving copy answers", func() bool { return pingStatus(ports[0]) == tc.servingHealth })
			if err := os.WriteFile(filepath.Join(dir, "health"), []byte("200"), 0o644); err != nil {
				t.Fatal(err)
			}
			replacement := old.start(h.webSpec(dir, ports[1])) // named ...-web:2, beside the first
			old.r.Close()                                      // the old daemon is gone; its units run on
			// Its state file: the serving copy first, with the release's
			// port; the replacement after it, an extra on its own port.
			snap := &state.Snapshot{ActiveReleaseID: "v1",
				Releases: []state.ReleaseRecord{{ID: "v1", Path: dir, State: "active", Ports: map[string]int{"web": ports[0]}}},
				Processes: []state.ProcessRecord{
					{ID: "web", ProcessID: "web", ReleaseID: "v1", Policy: "proxied", Pid: serving.Pid(), Port: ports[0]},
					{ID: "web", ProcessID: "web", ReleaseID: "v1", Policy: "proxied", Pid: replacement.Pid(), Port: ports[1]},
				}}
			if n := len(unitsLeft(t, next)); n != 2 {
				t.Fatalf("staged %d live units, want 2", n)
			}

			res, err := h.sup.Adopt(context.Background(), snap)
			if err != nil {
				t.Fatal(err)
			}
			keep, drop, keepPort := serving.Pid(), replacement.Pid(), ports[0]
			if !tc.keepServing {
				keep, drop, keepPort = replacement.Pid(), serving.Pid(), ports[1]
			}
			if res.ActiveReleaseID != "v1" || len(res.Stopping) != 1 || len(res.Orphans) != 0 || len(res.Restarted) != 0 {
				t.Fatalf("adopt result %s", dump(res))
			}
			if code, body := h.get("/"); code != 200 || body != "v1" {
				t.Errorf("GET / through the proxy: %d %q", code, body)
			}
			if v := h.sup.tab.view(); v.activeRelease().ports["web"] != keepPort {
				got := v.activeRelease().ports["web"]
				t.Errorf("the release's web port %d, want %d", got, keepPort)
			}
			testutil.Eventually(t, "the other copy stopped", func() bool {
				return len(h.events(string(events.LeftoverStopped))) == 1 && !procfs.Alive(drop, 0)
			})
			st := h.releaseStatus("v1")
			if len(st.Processes) != 1 || st.Processes[0].Pid == nil || *st.Processes[0].Pid != keep {
				t.Errorf("the release's processes %s; want web with pid %d", dump(st.Processes), keep)
			}
			left := unitsLeft(t, next)
			if len(left) != 1 || !slices.Contains(mapValues(left), keep) {
				t.Errorf("live units %v; want only the kept copy (pid %d)", left, keep)
			}
			ev := h.events(string(events.LeftoverStopped))[0]
			if ev.Data[events.KeyPid] != float64(drop) && ev.Data[events.KeyPid] != drop {
				t.Errorf("leftover stopped event %s, want pid %d", dump(ev), drop)
			}
			if !procfs.Alive(keep, 0) {
				t.Errorf("the kept copy (pid %d) was restarted or stopped", keep)
			}
		})
	}
}

// pingStatus is the status of GET /ping on 127.0.0.1:port ("" when no answer).
func pingStatus(port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ping", port))
	if err != nil {
		return ""
	}
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}

func mapValues(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// A service and a companion the state file records but the config no
// longer has are stopped with the stop signal they were started with (the
// config does not say it any more); a unit nobody records stays an orphan,
// untouched.
func TestAdoptStopsRecordedProcessesGoneFromTheConfig(t *testing.T) {
	app := adoptApp("gone")
	h, next, old := adoptHarness(t, app, "[]")
	dir := h.release("v1", nil)
	ports := freePorts(t, 1)
	web := old.start(h.webSpec(dir, ports[0]))
	marks := t.TempDir()
	// Each records the signal that ends it, then exits.
	trapping := func(id, policy, rel string, sig syscall.Signal) process.Spec {
		return process.Spec{ID: id, Dir: dir, Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}, StopSignal: sig, GracefulStop: 20 * time.Second,
			Command: "trap 'echo INT > " + filepath.Join(marks, id) + "; exit 0' INT; trap 'echo TERM > " + filepath.Join(marks, id) + "; exit 0' TERM; while :; do sleep 0.05; done",
			Fields:  map[string]any{events.KeyReleaseID: rel, events.KeyPolicy: policy, events.KeyBaseID: id}}
	}
	svc := old.start(trapping("svc", "service", "v1", syscall.SIGINT))
	gone := old.start(trapping("gone", "companion", "v1", syscall.SIGINT))
	stray := old.start(trapping("stray", "companion", "v1", syscall.SIGTERM))
	old.r.Close()
	t.Cleanup(func() {
		name := systemd.UnitName(app, "v1", "stray")
		if out, err := exec.Command("systemctl", "stop", name).CombinedOutput(); err != nil {
			t.Errorf("stop %s: %v %s", name, err, out)
		}
	})
	snap := &state.Snapshot{ActiveReleaseID: "v1",
		Releases: []state.ReleaseRecord{{ID: "v1", Path: dir, State: "active", Ports: map[string]int{"web": ports[0]}}},
		Processes: []state.ProcessRecord{
			{ID: "web", ProcessID: "web", ReleaseID: "v1", Policy: "proxied", Pid: web.Pid(), Port: ports[0]},
			{ID: "gone", ProcessID: "gone", ReleaseID: "v1", Policy: "companion", Pid: gone.Pid()},
			{ID: "svc", ProcessID: "svc", Policy: "service", Pid: svc.Pid()},
		}}

	res, err := h.sup.Adopt(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if res.ActiveReleaseID != "v1" || len(res.Stopping) != 2 || len(res.Orphans) != 1 || res.Orphans[0].InstanceID != "stray" {
		t.Fatalf("adopt result %s", dump(res))
	}
	testutil.Eventually(t, "the recorded leftovers stopped", func() bool {
		return len(h.events(string(events.LeftoverStopped))) == 2 && !procfs.Alive(svc.Pid(), 0) && !procfs.Alive(gone.Pid(), 0)
	})
	for _, id := range []string{"svc", "gone"} {
		if b, err := os.ReadFile(filepath.Join(marks, id)); err != nil || strings.TrimSpace(string(b)) != "INT" {
			t.Errorf("%s ended by %q (%v), want INT: the signal it was started with", id, b, err)
		}
	}
	if !procfs.Alive(stray.Pid(), 0) || !procfs.Alive(web.Pid(), 0) {
		t.Errorf("the orphan (alive %v) or the web (alive %v) was stopped", procfs.Alive(stray.Pid(), 0), procfs.Alive(web.Pid(), 0))
	}
	if _, err := os.Stat(filepath.Join(marks, "stray")); err == nil {
		t.Errorf("the orphan got a signal")
	}
	left := unitsLeft(t, next)
	if len(left) != 2 {
		t.Errorf("live units %v, want the web and the orphan", left)
	}
}
