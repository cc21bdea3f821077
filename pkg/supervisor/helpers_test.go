package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testapp"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if testapp.Active() {
		testapp.Main()
	}
	goleak.VerifyTestMain(m)
}

// appCmd is a command running this test binary as the web app on {{port}}.
func appCmd(t testing.TB, env ...string) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A release directory can shape its app: files "health" (status for
	// /ping) and "exit" (exit code at start).
	base := []string{"PORT={{port}}", "RB_TESTAPP=1", `RB_APP_HEALTH="$(cat health 2>/dev/null)"`, `RB_APP_EXIT="$(cat exit 2>/dev/null)"`}
	return strings.Join(append(base, env...), " ") + " exec " + exe
}

type harness struct {
	t     testing.TB
	sup   *Supervisor
	proxy *proxy.Proxy
	log   *events.Log
	url   string
	cfg   *config.Config // the config last handed to sup; never written in place
	src   string         // its Jsonnet source, which reconfigure extends
	path  string
	env   map[string]string
}

// newHarness loads a config (Jsonnet source), starts a proxy on
// 127.0.0.1:0 and a Supervisor, and shuts everything down at cleanup.
func newHarness(t testing.TB, src string) *harness {
	t.Helper()
	return newHarnessOpts(t, src, nil)
}

// newHarnessOpts is newHarness with a hook that adjusts the Supervisor's
// Options (LoadConfig, say) before it is created.
func newHarnessOpts(t testing.TB, src string, adjust func(*Options)) *harness {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	env := config.EnvMap(os.Environ())
	cfg, err := config.Load(path, env)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	px := proxy.New(proxy.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: px}
	go srv.Serve(ln)
	log := events.New(events.DefaultCapacity)
	o := Options{Config: cfg, Proxy: px, Events: log, Runner: process.ExecRunner{}, Env: env}
	if adjust != nil {
		adjust(&o)
	}
	sup := New(o)
	h := &harness{t: t, sup: sup, proxy: px, log: log, url: "http://" + ln.Addr().String(), cfg: cfg, src: src, path: path, env: env}
	t.Cleanup(func() {
		sup.Shutdown(context.Background())
		srv.Close()
		px.Close()
	})
	return h
}

// reconfigure loads the harness's source extended by patch (a Jsonnet
// object, as in `src + patch`) as a new config and hands it over with
// SetConfig, as the daemon's reload does. Writing fields of the config in
// use instead would race with the supervisor, which reads it from its own
// goroutines; a fresh value shares nothing with it.
func (h *harness) reconfigure(patch string) {
	h.t.Helper()
	h.src = "(" + h.src + ") + " + patch
	if err := os.WriteFile(h.path, []byte(h.src), 0o644); err != nil {
		h.t.Fatal(err)
	}
	cfg, err := config.Load(h.path, h.env)
	if err != nil {
		h.t.Fatalf("config: %v", err)
	}
	h.cfg = cfg
	h.sup.SetConfig(cfg)
}

// release makes a release directory holding files (name -> content).
func (h *harness) release(name string, files map[string]string) string {
	h.t.Helper()
	dir := filepath.Join(h.t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
			h.t.Fatal(err)
		}
	}
	return dir
}

func (h *harness) tryDeploy(id string, files map[string]string) (*DeployResult, error) {
	return h.sup.Deploy(context.Background(), DeployRequest{ReleasePath: h.release(id, files), ReleaseID: id}, nil)
}

func (h *harness) deploy(id string) *DeployResult {
	h.t.Helper()
	res, err := h.tryDeploy(id, nil)
	if err != nil {
		h.t.Fatalf("deploy %s: %v", id, err)
	}
	return res
}

func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get(h.url + path)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (h *harness) status() Status {
	return h.sup.Snapshot(os.Getpid(), "test", ProxyStatus{})
}

func (h *harness) releaseStatus(id string) ReleaseStatus {
	h.t.Helper()
	for _, r := range h.status().Releases {
		if r.ReleaseID == id {
			return r
		}
	}
	h.t.Fatalf("release %s not in status", id)
	return ReleaseStatus{}
}

func (h *harness) events(name string) []events.Event {
	var out []events.Event
	for _, e := range h.log.Recent(0) {
		if string(e.Message) == name {
			out = append(out, e)
		}
	}
	return out
}

// awaitEvent waits for the first event name about release id and
// returns its data.
func (h *harness) awaitEvent(name, id string) map[string]any {
	h.t.Helper()
	var data map[string]any
	testutil.Eventually(h.t, name+" of "+id, func() bool {
		for _, e := range h.events(name) {
			if e.Data["releaseId"] == id {
				data = e.Data
				return true
			}
		}
		return false
	})
	return data
}

func dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// portRange picks a random 200-port range in 20000-25999. Each test package
// has its own band below the kernel's ephemeral ports (32768+), so packages
// testing in parallel never probe the same ports.
func portRange() string {
	from := 20000 + rand.IntN(30)*200
	return fmt.Sprintf("{from: %d, to: %d}", from, from+199)
}

func webConfig(t testing.TB, extra string) string {
	return fmt.Sprintf(`{application: 'test', proxy: {port: 0, drainTimeoutMs: 10000, forceStopTimeoutMs: 3000},
	  processes: [{id: 'web', policy: 'proxied', command: %q, port: %s, health: {intervalMs: 20}}] + %s}`,
		appCmd(t), portRange(), extra)
}

// healthTimeout is a reconfigure patch that sets the proxied process's
// health.timeoutMs.
func healthTimeout(ms int64) string {
	return fmt.Sprintf(`{processes: [p + (if p.policy == 'proxied' then {health+: {timeoutMs: %d}} else {}) for p in super.processes]}`, ms)
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
