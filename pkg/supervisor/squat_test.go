package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// gatedApp is a web command that waits in its release directory for the
// file "go" before it starts the app: until then the port allocated to it
// is free, the window a squatter uses.
func gatedApp(t testing.TB) string {
	return `while [ ! -e go ]; do sleep 0.01; done; ` + appCmd(t)
}

// TestDeployRefusesAPortSomeoneElseListensOn: a process outside the
// release binds the new release's port before the app does and answers
// the health check. The deploy fails naming that process, traffic stays
// with the previous release, and the squatter never gets a request but
// the health probe.
func TestDeployRefusesAPortSomeoneElseListensOn(t *testing.T) {
	src := fmt.Sprintf(`{application: 'test', proxy: {port: 0, drainTimeoutMs: 10000},
	  processes: [{id: 'web', policy: 'proxied', command: %q, port: %s, health: {intervalMs: 20}}]}`, gatedApp(t), portRange())
	h := newHarness(t, src)
	if _, err := h.tryDeploy("v1", map[string]string{"go": ""}); err != nil {
		t.Fatal(err)
	}
	var stolen atomic.Int32
	done := make(chan error, 1)
	go func() {
		_, err := h.tryDeploy("v2", nil)
		done <- err
	}()
	var port int
	testutil.Eventually(t, "v2's port", func() bool {
		for _, r := range h.status().Releases {
			if r.ReleaseID == "v2" && r.Ports["web"] != 0 {
				port = r.Ports["web"]
				return true
			}
		}
		return false
	})
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/ping" {
			stolen.Add(1)
		}
		fmt.Fprintln(w, "squatter")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	err = <-done
	want := fmt.Sprintf("pid %d", os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not by a process of the release") {
		t.Fatalf("deploy of v2: %v; want a failure naming the squatter (%s)", err, want)
	}
	if _, body := h.get("/"); body != "v1" {
		t.Errorf("serving %q, want v1", body)
	}
	if n := stolen.Load(); n != 0 {
		t.Errorf("the squatter got %d proxied requests", n)
	}
	if ev := h.events("foreign listener"); len(ev) != 1 || ev[0].Data["releaseId"] != "v2" {
		t.Errorf("foreign listener events: %s", dump(ev))
	}
	// With the squatter gone the next deploy goes through.
	srv.Close()
	if _, err := h.tryDeploy("v3", map[string]string{"go": ""}); err != nil {
		t.Fatal(err)
	}
	if _, body := h.get("/"); body != "v3" {
		t.Errorf("serving %q, want v3", body)
	}
}

// TestHealthFalseWaitsForItsOwnListener: without a health check traffic
// switches once the proxied process listens on its port — and only if the
// listener is its own. A process that exits for good (no restart left)
// fails the deploy at once.
func TestHealthFalseWaitsForItsOwnListener(t *testing.T) {
	src := fmt.Sprintf(`{application: 'test', proxy: {port: 0, drainTimeoutMs: 10000},
	  processes: [{id: 'web', policy: 'proxied', command: %q, port: %s, health: false, restart: {maxRestarts: 0}}]}`, appCmd(t, "RB_APP_BOOT_MS=300"), portRange())
	h := newHarness(t, src)
	h.deploy("v1")
	// The app slept before listening: had traffic switched at once, this
	// request would have been refused.
	if code, body := h.get("/"); code != 200 || body != "v1" {
		t.Errorf("right after the deploy: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	if _, err := h.sup.Deploy(ctx, DeployRequest{ReleasePath: h.release("v2", map[string]string{"exit": "4"}), ReleaseID: "v2"}, nil); err == nil ||
		!strings.Contains(err.Error(), "process web exited (exit code 4) before it listened on 127.0.0.1:") {
		t.Errorf("a web process that exits: %v", err)
	}
}

// TestCrashRestartOnATakenPort: the proxied process crashes, and before
// it is back another process binds its port and answers like the app.
// No request may reach that process: traffic pauses at the exit, the
// restarted app fails on the taken port, and the release is moved to a
// new instance on a new port, which then serves.
func TestCrashRestartOnATakenPort(t *testing.T) {
	src := fmt.Sprintf(`{application: 'test', proxy: {port: 0, drainTimeoutMs: 10000},
	  processes: [{id: 'web', policy: 'proxied', command: %q, port: %s, health: {intervalMs: 20}, restartDelayMs: 20}]}`, gatedApp(t), portRange())
	h := newHarness(t, src)
	dir := h.release("v1", map[string]string{"go": ""})
	if _, err := h.sup.Deploy(context.Background(), DeployRequest{ReleasePath: dir, ReleaseID: "v1"}, nil); err != nil {
		t.Fatal(err)
	}
	port := h.releaseStatus("v1").Ports["web"]
	pid := *h.releaseStatus("v1").Processes[0].Pid

	var stolen, served atomic.Int32
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Get(h.url + "/")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch strings.TrimSpace(string(b)) {
			case "squatter":
				stolen.Add(1)
			case "v1":
				served.Add(1)
			}
		}
	}()
	defer func() { close(stop); <-loopDone }()

	// The restarted web waits at its gate: its port is free for the taking.
	if err := os.Remove(filepath.Join(dir, "go")); err != nil {
		t.Fatal(err)
	}
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "web restarted after its crash", func() bool {
		for _, e := range h.events("process started") {
			if e.Data["reason"] == "crash" {
				return true
			}
		}
		return false
	})
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "squatter") })}
	go srv.Serve(ln)
	defer srv.Close()
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "web replaced on a new port (or a request stolen)", func() bool {
		p := h.releaseStatus("v1").Ports["web"]
		return stolen.Load() > 0 || p != 0 && p != port && len(h.events("process replaced")) == 1
	})
	if n := stolen.Load(); n != 0 {
		t.Fatalf("%d requests reached the process that took the port", n)
	}
	before := served.Load()
	testutil.Eventually(t, "v1 serving again", func() bool { return served.Load() > before })
	if n := stolen.Load(); n != 0 {
		t.Errorf("%d requests reached the process that took the port", n)
	}
	if e := h.events("process replaced"); e[0].Data["reason"] != "port taken" {
		t.Errorf("replacement: %v", e[0].Data)
	}
	for _, name := range []string{"traffic paused", "foreign listener"} {
		if len(h.events(name)) == 0 {
			t.Errorf("no %q event", name)
		}
	}
}
