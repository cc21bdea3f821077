package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/release"
)

func TestDeploySwitchesAndDrainsWebSocket(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "worker-stops")
	h := newHarness(t, webConfig(t, fmt.Sprintf(`[{id: 'worker', command: "trap 'echo $ROLLBRIDGE_RELEASE_ID >> %s; exit 0' TERM; while :; do sleep 0.02; done", nonBlockingDrain: true}]`, rec)))
	if code, body := h.get("/"); code != 503 || body != "No active release" {
		t.Fatalf("before any deploy: %d %q", code, body)
	}
	res := h.deploy("v1")
	if res.ActiveReleaseID != "v1" || res.PreviousReleaseID != nil {
		t.Errorf("result %+v", res)
	}
	if _, body := h.get("/"); body != "v1" {
		t.Fatalf("got %q", body)
	}
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(h.url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	res = h.deploy("v2")
	if res.ActiveReleaseID != "v2" || *res.PreviousReleaseID != "v1" {
		t.Errorf("result %+v", res)
	}
	if _, body := h.get("/"); body != "v2" {
		t.Errorf("new request went to %q, want v2", body)
	}
	v1 := h.releaseStatus("v1")
	if v1.State != release.Draining || v1.Connections.WebSocket != 1 || v1.DrainStartedAt == nil {
		t.Errorf("v1: %+v", v1)
	}
	// The socket still talks to v1.
	if err := ws.Write(context.Background(), websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(context.Background()); err != nil || string(msg) != "v1:hi" {
		t.Errorf("echo %q %v", msg, err)
	}
	// The nonBlockingDrain worker of v1 stops while v1 still drains.
	testutil.Eventually(t, "v1 worker stopped", func() bool {
		b, _ := os.ReadFile(rec)
		return strings.TrimSpace(string(b)) == "v1"
	})
	if st := h.releaseStatus("v1").State; st != release.Draining {
		t.Errorf("v1 is %s while its socket is open", st)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	testutil.Eventually(t, "v1 stopped", func() bool { return h.releaseStatus("v1").State == release.Stopped })
	for _, p := range h.releaseStatus("v1").Processes {
		if p.State != process.Stopped || p.Pid != nil {
			t.Errorf("v1 process %s: %s %v", p.ID, p.State, p.Pid)
		}
	}
	if len(h.events("release drained")) != 1 || len(h.events("release stopped")) != 1 || len(h.events("traffic switched")) != 2 {
		t.Errorf("events: %s", dump(h.log.Recent(0)))
	}
}

func TestFailedHealthCheckKeepsPreviousRelease(t *testing.T) {
	h := newHarness(t, webConfig(t, `[{id: 'svc', policy: 'service', command: 'exec sleep 1000'}]`))
	h.deploy("v1")
	// The window only has to outlast the app's start on a loaded host: the
	// app answers 503 for all of it.
	h.reconfigure(healthTimeout(3000))
	svcPid := *h.status().Services[0].Process.Pid
	_, err := h.tryDeploy("v2", map[string]string{"health": "503"})
	if err == nil || !strings.Contains(err.Error(), "health check failed for http://127.0.0.1:") || !strings.Contains(err.Error(), "/ping: HTTP 503") ||
		!strings.Contains(err.Error(), "release v1 stays active") {
		t.Fatalf("got %v", err)
	}
	if _, body := h.get("/"); body != "v1" {
		t.Errorf("serving %q after a failed deploy, want v1", body)
	}
	// A failed release is not retained (as in the Node original); the
	// "deploy failed" event below is its record.
	st := h.status()
	if *st.ActiveReleaseID != "v1" || len(st.Releases) != 1 || h.releaseStatus("v1").State != release.Active {
		t.Errorf("status: %s", dump(st))
	}
	for _, e := range h.events("process started") {
		if pid, _ := e.Data["pid"].(int); e.Data["releaseId"] == "v2" && syscall.Kill(pid, 0) == nil {
			t.Errorf("failed release still runs %v (pid %d)", e.Data["id"], pid)
		}
	}
	// The service was started by v1's deploy: a failed deploy leaves it alone.
	if *h.status().Services[0].Process.Pid != svcPid {
		t.Error("service restarted by a failed deploy")
	}
	failed := h.events("deploy failed")
	if len(failed) != 1 || failed[0].Data["releaseId"] != "v2" || failed[0].Data["output"] == nil {
		t.Errorf("deploy failed events: %s", dump(failed))
	}
}

func TestFailedFirstDeployStopsServicesItStarted(t *testing.T) {
	h := newHarness(t, webConfig(t, `[{id: 'svc', policy: 'service', command: 'exec sleep 1000', port: 7000}]`))
	window := h.cfg.Processes[0].Health.TimeoutMs
	h.reconfigure(healthTimeout(3000)) // see TestFailedHealthCheckKeepsPreviousRelease
	_, err := h.tryDeploy("v1", map[string]string{"health": "500"})
	if err == nil || !strings.Contains(err.Error(), "HTTP 500") || !strings.Contains(err.Error(), "no release is active") {
		t.Fatalf("got %v", err)
	}
	if n := len(h.status().Services); n != 0 {
		t.Errorf("%d services left after a failed first deploy: %s", n, dump(h.status().Services))
	}
	if code, _ := h.get("/"); code != 503 {
		t.Errorf("got %d, want 503", code)
	}
	// The port of the service is free again: a good deploy can take it.
	h.reconfigure(healthTimeout(window))
	h.deploy("v2")
	if p := h.status().Services[0].Process.Port; p == nil || *p != 7000 {
		t.Errorf("service port %v", p)
	}
}

// TestProxiedThatGivesUpFailsFast: a proxied process that keeps exiting is
// restarted by its restart policy during the health check, as in the Node
// original; once the policy gives up, the deploy fails at once instead of
// waiting out the health window.
func TestProxiedThatGivesUpFailsFast(t *testing.T) {
	h := newHarness(t, webConfig(t, `[]`))
	h.deploy("v1")
	// With an hour's health window, only noticing that no restart is coming
	// ends this deploy in the test's lifetime; waiting for the window would
	// end it with ctx's deadline, a different error.
	h.reconfigure(healthTimeout(3_600_000))
	h.reconfigure(`{processes: [p + (if p.policy == 'proxied' then {restartDelayMs: 10, restart: {maxRestarts: 2, windowMs: 3600000}} else {}) for p in super.processes]}`)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	_, err := h.sup.Deploy(ctx, DeployRequest{ReleasePath: h.release("v2", map[string]string{"exit": "3"}), ReleaseID: "v2"}, nil)
	if err == nil || !strings.Contains(err.Error(), "process web exited (exit code 3) before its health check") ||
		!strings.Contains(err.Error(), "restarts it no more") {
		t.Fatalf("got %v; want the give-up noticed before the health window ends", err)
	}
	starts := 0
	for _, e := range h.events("process started") {
		if e.Data["releaseId"] == "v2" && e.Data["id"] == "web" {
			starts++
		}
	}
	if starts != 3 {
		t.Errorf("web of v2 started %d times, want 3: the first start and two restarts", starts)
	}
	if _, body := h.get("/"); body != "v1" {
		t.Errorf("serving %q", body)
	}
	if !strings.Contains(dump(h.events("deploy failed")), "exiting on purpose with 3") {
		t.Errorf("last output not recorded: %s", dump(h.events("deploy failed")))
	}
}

func TestMissingReleasePath(t *testing.T) {
	h := newHarness(t, webConfig(t, `[]`))
	_, err := h.sup.Deploy(context.Background(), DeployRequest{ReleasePath: "/nonexistent/releases/9"}, nil)
	if err == nil || !strings.Contains(err.Error(), "release path /nonexistent/releases/9 does not exist") {
		t.Errorf("got %v", err)
	}
}

func TestWildcardHostProxiesThroughLoopback(t *testing.T) {
	src := strings.Replace(webConfig(t, `[]`), "proxy: {port: 0,", "proxy: {host: '0.0.0.0', port: 0,", 1)
	h := newHarness(t, src)
	if h.cfg.Proxy.UpstreamHost != "127.0.0.1" {
		t.Fatalf("upstreamHost %q", h.cfg.Proxy.UpstreamHost)
	}
	h.deploy("v1")
	if _, body := h.get("/"); body != "v1" {
		t.Errorf("got %q", body)
	}
}

func TestSingletonNeverOverlaps(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "singleton")
	// Each copy appends "start <release>" and, when stopped, "stop <release>";
	// a second "start" before a "stop" would be an overlap.
	cmd := fmt.Sprintf(`echo "start $ROLLBRIDGE_RELEASE_ID" >> %[1]s; trap 'sleep 0.2; echo "stop $ROLLBRIDGE_RELEASE_ID" >> %[1]s; exit 0' TERM; while :; do sleep 0.02; done`, rec)
	h := newHarness(t, webConfig(t, fmt.Sprintf(`[{id: 'scheduler', policy: 'singleton', command: %q}]`, cmd)))
	for _, id := range []string{"v1", "v2", "v3"} {
		h.deploy(id)
	}
	testutil.Eventually(t, "v3 singleton running", func() bool {
		b, _ := os.ReadFile(rec)
		return strings.HasSuffix(string(b), "start v3\n")
	})
	b, _ := os.ReadFile(rec)
	want := "start v1\nstop v1\nstart v2\nstop v2\nstart v3\n"
	if string(b) != want {
		t.Errorf("singleton log:\n%s\nwant:\n%s", b, want)
	}
	if s := h.status().Singletons; len(s) != 1 || s[0].ReleaseID != "v3" || s[0].Process.State != process.Running {
		t.Errorf("singletons: %s", dump(s))
	}
}

func TestServiceStablePortAndTemplateRefresh(t *testing.T) {
	cmd := `echo "release $ROLLBRIDGE_RELEASE_ID port $ROLLBRIDGE_PORT"; exec sleep 1000`
	h := newHarness(t, webConfig(t, fmt.Sprintf(`[{id: 'beacon', policy: 'service', command: %q, port: {from: 7100, to: 7199}, restartDelayMs: 10}]`, cmd)))
	h.deploy("v1")
	svc := h.status().Services[0]
	pid, port := *svc.Process.Pid, *svc.Process.Port
	h.deploy("v2")
	svc = h.status().Services[0]
	if *svc.Process.Pid != pid || *svc.Process.Port != port {
		t.Errorf("service changed across deploys: pid %d->%d port %d->%d", pid, *svc.Process.Pid, port, *svc.Process.Port)
	}
	if svc.ReleaseID != "v2" {
		t.Errorf("template release %s, want v2", svc.ReleaseID)
	}
	// A crash restarts it from the newest release, on the same port.
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "service restarted", func() bool {
		s := h.status().Services[0].Process
		return s.Pid != nil && *s.Pid != pid && s.State == process.Running && len(s.Logs) >= 2
	})
	logs := h.status().Services[0].Process.Logs
	if last := logs[len(logs)-1].Line; last != fmt.Sprintf("release v2 port %d", port) {
		t.Errorf("restarted service printed %q", last)
	}
	if r := h.status().Services[0].Process.LastStartReason; r == nil || *r != process.ReasonCrash {
		t.Errorf("reason %v", r)
	}
}

func TestReplicasAndInjectedEnv(t *testing.T) {
	// systemd's sockets belong to the daemon, never to its children.
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "10000000")
	h := newHarness(t, webConfig(t, `[{id: 'worker', command: 'echo "$ROLLBRIDGE_PROCESS_ID {{replicaIndex}}/{{replicaCount}} $ROLLBRIDGE_REPLICA_INDEX/$ROLLBRIDGE_REPLICA_COUNT"; exec sleep 1000', replicas: 3}]`))
	h.deploy("v1")
	seen := map[string]bool{}
	testutil.Eventually(t, "replica output", func() bool {
		for _, p := range h.releaseStatus("v1").Processes {
			if p.Policy == "companion" && len(p.Logs) > 0 {
				seen[p.ID+" "+p.Logs[0].Line] = true
			}
		}
		return len(seen) == 3
	})
	for i := 0; i < 3; i++ {
		want := fmt.Sprintf("worker#%d worker %d/3 %d/3", i, i, i)
		if !seen[want] {
			t.Errorf("missing %q in %v", want, seen)
		}
	}
	_, env := h.get("/env")
	port := h.releaseStatus("v1").Ports["web"]
	for _, want := range []string{"ROLLBRIDGE_APPLICATION=test", "ROLLBRIDGE_PROCESS_ID=web", "ROLLBRIDGE_RELEASE_ID=v1",
		"ROLLBRIDGE_REVISION=v1", "ROLLBRIDGE_REPLICA_INDEX=0", "ROLLBRIDGE_REPLICA_COUNT=1",
		fmt.Sprintf("ROLLBRIDGE_PORT=%d", port), fmt.Sprintf("ROLLBRIDGE_WEB_PORT=%d", port), "ROLLBRIDGE_RELEASE_PATH="} {
		if !strings.Contains(env, want) {
			t.Errorf("web env lacks %s:\n%s", want, env)
		}
	}
	if strings.Contains(env, "NOTIFY_SOCKET") || strings.Contains(env, "WATCHDOG_") {
		t.Errorf("the daemon's systemd variables leaked to a managed process:\n%s", env)
	}
}

// With the hold off (proxy.holdTimeoutMs: 0), a crashed web process means
// failed requests until it is back: 502 until the daemon sees the exit,
// then 503.
func TestProxy502WhileWebDownThenRecovers(t *testing.T) {
	src := strings.Replace(webConfig(t, `[]`), "health: {intervalMs: 20}", "health: {intervalMs: 20}, restartDelayMs: 1500", 1)
	h := newHarness(t, strings.Replace(src, "drainTimeoutMs: 10000", "drainTimeoutMs: 10000, holdTimeoutMs: 0", 1))
	h.deploy("v1")
	pid := *h.releaseStatus("v1").Processes[0].Pid
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "502 while down", func() bool { code, _ := h.get("/"); return code == http.StatusBadGateway })
	testutil.Eventually(t, "recovery", func() bool { code, body := h.get("/"); return code == 200 && body == "v1" })
	if r := h.releaseStatus("v1").Processes[0]; r.Restarts != 1 || *r.LastStartReason != process.ReasonCrash {
		t.Errorf("web restarts %d reason %v", r.Restarts, r.LastStartReason)
	}
}

// TestWebCrashHoldsRequests: requests that arrive while the active
// release's web process restarts after a crash wait for it (the hold,
// proxy.holdTimeoutMs) and are answered by it; none fails. Once its
// restart policy gives up, the hold ends: 503 at once.
func TestWebCrashHoldsRequests(t *testing.T) {
	src := strings.Replace(webConfig(t, `[]`), "health: {intervalMs: 20}", "health: {intervalMs: 20}, restartDelayMs: 700, restart: {maxRestarts: 1}", 1)
	h := newHarness(t, src)
	h.deploy("v1")
	kill := func() {
		t.Helper()
		pid := *h.releaseStatus("v1").Processes[0].Pid
		if err := syscallKill(pid); err != nil {
			t.Fatal(err)
		}
	}
	kill()
	h.awaitEvent("traffic paused", "v1")
	type answer struct {
		code int
		body string
	}
	answers := make(chan answer, 10)
	for range cap(answers) {
		go func() { code, body := h.get("/"); answers <- answer{code, body} }()
	}
	for range cap(answers) {
		if a := <-answers; a.code != http.StatusOK || a.body != "v1" {
			t.Errorf("a request sent while the web process restarted: %d %q, want 200 v1", a.code, a.body)
		}
	}
	if r := h.releaseStatus("v1").Processes[0]; r.Restarts != 1 {
		t.Errorf("web restarts %d, want 1", r.Restarts)
	}

	// The second crash is past maxRestarts: nothing will serve, so no wait.
	// (A held request that times out gets 503 with Retry-After; one that
	// is not held gets the plain 503 of the spec.)
	kill()
	testutil.Eventually(t, "the restart limit", func() bool { return len(h.events("restart limit reached")) == 1 })
	resp, err := http.Get(h.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "" {
		t.Errorf("after the restart limit: %d (Retry-After %q), want a 503 at once", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestConcurrentDeploysOneFailsFast(t *testing.T) {
	h := newHarness(t, strings.Replace(webConfig(t, `[]`), "health: {intervalMs: 20}", "health: {intervalMs: 20, startDelayMs: 1000}", 1))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.tryDeploy(fmt.Sprintf("c%d", i), nil)
		}()
	}
	wg.Wait()
	var ok, busy int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrBusy) && strings.Contains(err.Error(), "deploy of release c"):
			busy++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 || busy != 1 {
		t.Errorf("%d succeeded, %d refused; want 1 and 1", ok, busy)
	}
}

func TestStatusAnswersDuringHealthCheck(t *testing.T) {
	h := newHarness(t, strings.Replace(webConfig(t, `[]`), "health: {intervalMs: 20}", "health: {intervalMs: 20, startDelayMs: 2000}", 1))
	done := make(chan error, 1)
	go func() { _, err := h.tryDeploy("v1", nil); done <- err }()
	testutil.Eventually(t, "deploy in progress", func() bool { return h.status().Daemon.CommandInProgress != nil })
	st := h.status()
	_ = h.sup.Events(10)
	if _, err := h.sup.Logs(""); err != nil {
		t.Error(err)
	}
	// Readers that waited behind the deploy would answer only after it:
	// they must have answered while it still runs (order, not speed).
	select {
	case err := <-done:
		t.Fatalf("the deploy ended (%v) before status, events and logs answered", err)
	default:
	}
	if len(st.Releases) != 1 || st.Releases[0].State != release.Starting {
		t.Errorf("status: %s", dump(st.Releases))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFiveDeploysUnderLoadZeroFailures(t *testing.T) {
	h := newHarness(t, webConfig(t, `[]`))
	h.deploy("v0")
	var failures atomic.Int64
	var total atomic.Int64
	var mu sync.Mutex
	var samples []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(h.url + "/slow?ms=5")
				total.Add(1)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
					mu.Lock()
					if len(samples) < 5 {
						samples = append(samples, fmt.Sprintf("%s: %v %v", time.Now().Format(time.RFC3339Nano), err, statusOf(resp)))
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 1; i <= 5; i++ {
		h.deploy(fmt.Sprintf("v%d", i))
	}
	testutil.Eventually(t, "old releases stopped", func() bool {
		for _, r := range h.status().Releases {
			if r.State == release.Draining {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed during 5 deploys: %v", failures.Load(), total.Load(), samples)
	}
	if total.Load() < 50 {
		t.Errorf("only %d requests: the load did not run", total.Load())
	}
}

func statusOf(r *http.Response) string {
	if r == nil {
		return ""
	}
	return r.Status
}

func TestReleaseRetention(t *testing.T) {
	src := strings.Replace(webConfig(t, `[]`), "{application: 'test',", "{application: 'test', releaseRetention: {keep: 1},", 1)
	src = strings.Replace(src, "drainTimeoutMs: 10000", "drainTimeoutMs: 0", 1)
	h := newHarness(t, src)
	for _, id := range []string{"v1", "v2", "v3", "v4"} {
		h.deploy(id)
	}
	testutil.Eventually(t, "pruning", func() bool {
		var ids []string
		for _, r := range h.status().Releases {
			ids = append(ids, r.ReleaseID+":"+string(r.State))
		}
		return strings.Join(ids, ",") == "v3:stopped,v4:active" // oldest first, as the spec lists them
	})
	// maxAgeMs prunes stopped releases older than that, whatever keep says.
	h.reconfigure(`{releaseRetention: {keep: 10, maxAgeMs: 1}}`)
	h.deploy("v5")
	testutil.Eventually(t, "age pruning", func() bool {
		st := h.status()
		return len(st.Releases) == 1 && st.Releases[0].ReleaseID == "v5"
	})
	if _, err := h.sup.Rollback(context.Background(), "v2", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback to a pruned release: %v", err)
	}
}

// TestRecordedFailuresAreMarked checks the contract the daemon relies on to
// record each failure once: a failed deploy is recorded here and says so
// with ErrRecorded; a refusal is not recorded and does not.
func TestRecordedFailuresAreMarked(t *testing.T) {
	h := newHarness(t, webConfig(t, `[]`))
	_, err := h.sup.Deploy(context.Background(), DeployRequest{ReleasePath: "/nonexistent/release", ReleaseID: "x"}, nil)
	if !errors.Is(err, ErrRecorded) || len(h.events("deploy failed")) != 1 {
		t.Errorf("missing release path: err %v, %d deploy failed events; want ErrRecorded and one event", err, len(h.events("deploy failed")))
	}
	if _, err := h.sup.Rollback(context.Background(), "", nil); err == nil || errors.Is(err, ErrRecorded) || !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback with nothing to roll back to: %v; want ErrNotFound, not recorded", err)
	}
}
