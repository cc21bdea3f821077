package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testapp"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/daemon"
)

func TestMain(m *testing.M) {
	if config.EvaluatorRequested() { // rollbridgectl evaluates configs in this binary re-executed
		os.Exit(config.ServeEvaluation(os.Stdin, os.Stdout))
	}
	if testapp.Active() {
		testapp.Main()
	}
	if os.Getenv("RB_TEST_IDLE") == "1" {
		// A stand-in for a legacy process under a command line of the
		// test's choosing: it only has to exist until it is signalled.
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	code := m.Run()
	removeCtlBinary()
	os.Exit(code)
}

type env struct {
	t      *testing.T
	cfg    string // config path
	sock   string
	url    string // proxy base URL
	done   chan error
	cancel context.CancelFunc
}

// startDaemon writes a config (Jsonnet object body after the standard
// fields), runs daemon.Run in-process, and waits until it answers.
func startDaemon(t *testing.T, processes string) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe, _ := os.Executable()
	from := 26000 + rand.IntN(20)*200 // this package's band: 26000-29999 (see pkg/supervisor portRange)
	web := fmt.Sprintf(`{id: 'web', policy: 'proxied', command: 'PORT={{port}} RB_TESTAPP=1 RB_APP_HEALTH="$(cat health 2>/dev/null)" exec %s', port: {from: %d, to: %d}, health: {intervalMs: 20, timeoutMs: 3000}}`, exe, from, from+199)
	src := fmt.Sprintf(`{application: 'e2e', control: {path: %q, mode: '600'}, proxy: {port: 0, drainTimeoutMs: 5000, forceStopTimeoutMs: 3000},
		processes: [%s] + %s}`, filepath.Join(dir, "ctl.sock"), web, processes)
	cfgPath := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, config.EnvMap(os.Environ()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, cfg: cfgPath, sock: cfg.Control.Path, done: make(chan error, 1), cancel: cancel}
	// The daemon's log is not under test here; the commands' answers are.
	go func() { e.done <- daemon.Run(ctx, daemon.Options{Config: cfg, Stdout: io.Discard, Version: "test"}) }()
	testutil.Eventually(t, "the daemon to answer status", func() bool {
		out, _, code := runCtl(t, "status", "-c", cfgPath)
		if code != 0 {
			return false
		}
		var st control.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		e.url = fmt.Sprintf("http://127.0.0.1:%d", st.Proxy.Port)
		return true
	})
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-e.done:
			if err != nil {
				t.Errorf("daemon.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return e
}

func (e *env) ctl(args ...string) (string, string, int) {
	e.t.Helper()
	return runCtl(e.t, append(args, "-c", e.cfg)...)
}

// ok runs a command that must succeed and decodes its JSON output.
func (e *env) ok(out any, args ...string) string {
	e.t.Helper()
	stdout, stderr, code := e.ctl(args...)
	if code != 0 {
		e.t.Fatalf("%v: exit %d\n%s", args, code, stderr)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			e.t.Fatalf("%v: %v\n%s", args, err, stdout)
		}
	}
	return stderr
}

func (e *env) deploy(id string, files map[string]string) (string, string, int) {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	for f, c := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(c), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.ctl("deploy", "--release-path", dir, "--release-id", id)
}

func (e *env) mustDeploy(id string) {
	e.t.Helper()
	if _, stderr, code := e.deploy(id, nil); code != 0 {
		e.t.Fatalf("deploy %s: %s", id, stderr)
	}
}

func (e *env) get(path string) string {
	e.t.Helper()
	resp, err := http.Get(e.url + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// status decodes the status command's output: the daemon's answer, whose
// shape is control.Status.
func (e *env) status() control.Status {
	var st control.Status
	e.ok(&st, "status")
	return st
}

func (e *env) releaseState(id string) string {
	for _, r := range e.status().Releases {
		if r.ReleaseID == id {
			return r.State
		}
	}
	return "absent"
}

func TestE2EDeployStatusAndShape(t *testing.T) {
	e := startDaemon(t, `[{id: 'svc', policy: 'service', command: 'exec sleep 1000'}, {id: 'cron', policy: 'singleton', command: 'exec sleep 1000'}]`)
	stdout, stderr, code := e.deploy("v1", nil)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if res["status"] != "success" || res["activeReleaseId"] != "v1" || res["previousReleaseId"] != nil || len(res) != 3 {
		t.Errorf("deploy result %v", res)
	}
	for _, want := range []string{"rollbridgectl: deploy starting", "rollbridgectl: traffic switched"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, stderr)
		}
	}
	if body := e.get("/"); body != "v1" {
		t.Errorf("got %q", body)
	}
	out, _, _ := e.ctl("status")
	var raw map[string]json.RawMessage
	_ = json.Unmarshal([]byte(out), &raw)
	for _, k := range []string{"activeReleaseId", "application", "control", "orphans", "proxy", "releases", "services", "singletons"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status lacks %q", k)
		}
	}
	st := e.status()
	if *st.ActiveReleaseID != "v1" || st.Application != "e2e" || len(st.Services) != 1 || len(st.Singletons) != 1 || st.Orphans == nil {
		t.Errorf("status %+v", st)
	}
	info, err := os.Stat(e.sock)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v %v, want 0600", info.Mode().Perm(), err)
	}
}

// TestE2EOutputIsTheDaemonsAnswer: the JSON commands print the daemon's
// final line as it crossed the socket, indented; the typed client loses
// nothing on the way.
func TestE2EOutputIsTheDaemonsAnswer(t *testing.T) {
	e := startDaemon(t, `[{id: 'svc', policy: 'service', command: 'echo up; exec sleep 1000'}]`)
	e.mustDeploy("v1")
	raw, err := (&control.Client{Path: e.sock}).Do(context.Background(), &control.Request{Command: control.CmdStatus}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _, code := e.ctl("status")
	var want bytes.Buffer
	if err := json.Indent(&want, bytes.TrimSpace(raw), "", "  "); err != nil {
		t.Fatal(err)
	}
	// uptimeMs moves between the two calls; compare everything else.
	uptime := regexp.MustCompile(`"uptimeMs": [0-9]+`)
	if code != 0 || uptime.ReplaceAllString(out, "") != uptime.ReplaceAllString(want.String()+"\n", "") {
		t.Errorf("exit %d; printed\n%s\ndaemon sent\n%s", code, out, want.String())
	}
}

func TestE2EFailedDeployExit1(t *testing.T) {
	e := startDaemon(t, `[]`)
	e.mustDeploy("v1")
	_, stderr, code := e.deploy("v2", map[string]string{"health": "503"})
	if code != exitFailed || !strings.Contains(stderr, "health check failed for http://127.0.0.1:") || !strings.Contains(stderr, "HTTP 503") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if e.get("/") != "v1" {
		t.Error("previous release not serving")
	}
	// A relative --release-path is relative to where rollbridgectl runs,
	// not to the daemon's working directory.
	rel := filepath.Join(e.t.TempDir(), "rel-v3")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Dir(rel))
	if _, stderr, code := e.ctl("deploy", "--release-path", "rel-v3", "--release-id", "v3"); code != 0 {
		t.Errorf("relative release path: %d %s", code, stderr)
	}
	_, stderr, code = e.ctl("deploy", "--release-path", "/nonexistent/rel")
	if code != exitFailed || !strings.Contains(stderr, "release path /nonexistent/rel does not exist") {
		t.Errorf("missing path: exit %d: %s", code, stderr)
	}
}

func TestE2ERollbackVariants(t *testing.T) {
	e := startDaemon(t, `[]`)
	if _, stderr, code := e.ctl("rollback"); code != exitFailed || !strings.Contains(stderr, "no previous release") {
		t.Errorf("rollback with none: %d %s", code, stderr)
	}
	e.mustDeploy("v1")
	e.mustDeploy("v2")
	var res map[string]any
	e.ok(&res, "rollback")
	if res["activeReleaseId"] != "v1" || res["previousReleaseId"] != "v2" {
		t.Errorf("rollback result %v", res)
	}
	if e.get("/") != "v1" {
		t.Error("not serving v1 after rollback")
	}
	if _, stderr, code := e.ctl("rollback", "--release-id", "v1"); code != exitFailed || !strings.Contains(stderr, "already active") {
		t.Errorf("already active: %d %s", code, stderr)
	}
	if _, stderr, code := e.ctl("rollback", "--release-id", "nope"); code != exitFailed || !strings.Contains(stderr, "release nope is not retained") {
		t.Errorf("unknown: %d %s", code, stderr)
	}
	// v2 may still be draining or already stopped; either way it comes back.
	e.ok(&res, "rollback", "--release-id", "v2")
	if e.get("/") != "v2" || res["activeReleaseId"] != "v2" {
		t.Errorf("explicit rollback: %v", res)
	}
}

func TestE2ERollbackToDrainingRelease(t *testing.T) {
	e := startDaemon(t, `[]`)
	e.mustDeploy("v1")
	// Hold v1 in draining with an in-flight slow request.
	done := make(chan string, 1)
	go func() { done <- e.get("/slow?ms=6000") }() // long enough for a deploy on a loaded machine
	testutil.Eventually(t, "request in flight", func() bool { return strings.Contains(e.statusRaw(), `"http": 1`) })
	e.mustDeploy("v2")
	if st := e.releaseState("v1"); st != "draining" {
		t.Fatalf("v1 is %s", st)
	}
	var res map[string]any
	e.ok(&res, "rollback")
	if res["activeReleaseId"] != "v1" || e.get("/") != "v1" {
		t.Errorf("rollback to draining: %v", res)
	}
	<-done
}

func (e *env) statusRaw() string {
	out, _, _ := e.ctl("status")
	return out
}

func TestE2EStopVariants(t *testing.T) {
	e := startDaemon(t, `[{id: 'cron', policy: 'singleton', command: 'exec sleep 1000'}, {id: 'svc', policy: 'service', command: 'exec sleep 1000'}]`)
	if _, stderr, code := e.ctl("stop"); code != exitFailed || !strings.Contains(stderr, "no release is active") {
		t.Errorf("stop with none: %d %s", code, stderr)
	}
	e.mustDeploy("v1")
	e.mustDeploy("v2")
	var st control.Status
	e.ok(&st, "stop", "--release-id", "v1") // still draining, or already stopped: both succeed
	testutil.Eventually(t, "v1 stopped", func() bool { return e.releaseState("v1") == "stopped" })
	e.ok(&st, "stop")
	// As in the Node original, stop leaves singletons (and services) running.
	if st.ActiveReleaseID != nil || len(st.Singletons) != 1 || st.Singletons[0].Process.Pid == 0 || len(st.Services) != 1 {
		t.Errorf("after stop: %+v", st)
	}
	resp, err := http.Get(e.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || strings.TrimSpace(string(b)) != "No active release" {
		t.Errorf("after stop: %d %q", resp.StatusCode, b)
	}
	// Stopping a stopped release succeeds and records the stop again, as
	// in the Node original.
	before := e.status().Releases
	e.ok(&st, "stop", "--release-id", "v2")
	var stops int
	var ev []struct {
		Message string
		Data    map[string]any
	}
	e.ok(&ev, "events", "--json")
	for _, x := range ev {
		if x.Message == "release stopped" && x.Data["releaseId"] == "v2" {
			stops++
		}
	}
	if stops != 2 || st.ActiveReleaseID != nil || len(st.Releases) != len(before) {
		t.Errorf("stop twice: %d release stopped events for v2, want 2; status %+v", stops, st)
	}
}

func TestE2ERestartVariants(t *testing.T) {
	e := startDaemon(t, `[{id: 'worker', command: 'exec sleep 1000', replicas: 2}, {id: 'cron', policy: 'singleton', command: 'exec sleep 1000'},
		{id: 'svc', policy: 'service', command: 'exec sleep 1000'}, {id: 'oneshot', policy: 'service', command: 'exit 1', restart: {maxRestarts: 0}}]`)
	e.mustDeploy("v1")
	var res struct{ Restarted []string }
	e.ok(&res, "restart", "--process", "worker")
	if strings.Join(res.Restarted, ",") != "worker#0,worker#1" {
		t.Errorf("base id: %v", res.Restarted)
	}
	e.ok(&res, "restart", "--process", "worker#1")
	if strings.Join(res.Restarted, ",") != "worker#1" {
		t.Errorf("instance id: %v", res.Restarted)
	}
	e.ok(&res, "restart", "--policy", "singleton")
	if strings.Join(res.Restarted, ",") != "cron" {
		t.Errorf("policy: %v", res.Restarted)
	}
	e.ok(&res, "restart")
	if strings.Join(res.Restarted, ",") != "worker#0,worker#1,cron,svc,oneshot" { // config order
		t.Errorf("all: %v", res.Restarted)
	}
	if _, stderr, code := e.ctl("restart", "--process", "web"); code != exitFailed || !strings.Contains(stderr, "rollbridgectl deploy") {
		t.Errorf("restart --process web: %d %s", code, stderr)
	}
	if _, stderr, code := e.ctl("restart", "--process", "ghost"); code != exitFailed || !strings.Contains(stderr, `no managed process "ghost"`) {
		t.Errorf("unknown: %d %s", code, stderr)
	}
	// Both selectors filter together, as in the spec.
	e.ok(&res, "restart", "--process", "worker", "--policy", "companion")
	if strings.Join(res.Restarted, ",") != "worker#0,worker#1" {
		t.Errorf("process and policy: %v", res.Restarted)
	}
	if _, stderr, code := e.ctl("restart", "--process", "cron", "--policy", "companion"); code != exitFailed || !strings.Contains(stderr, `"cron"`) {
		t.Errorf("process and a policy it lacks: %d %s", code, stderr)
	}
	for _, p := range []string{"proxied", "nope"} {
		if _, stderr, code := e.ctl("restart", "--policy", p); code != exitUsage || !strings.Contains(stderr, "--policy must be one of: companion, singleton, service.") {
			t.Errorf("--policy %s: %d %s", p, code, stderr)
		}
	}
	// The failed oneshot service was revived with reason manual.
	var ev []struct {
		Message string
		Data    map[string]any
	}
	e.ok(&ev, "events", "--json")
	revived := false
	for _, x := range ev {
		revived = revived || x.Message == "process started" && x.Data["id"] == "oneshot" && x.Data["reason"] == "manual"
	}
	if !revived {
		t.Error("failed service not revived by restart")
	}
}

// TestE2ELogsAndEvents: logs and events print what the original's CLI
// prints, in text and with --json.
func TestE2ELogsAndEvents(t *testing.T) {
	e := startDaemon(t, `[{id: 'worker', command: 'echo hello from {{processId}}; exec sleep 1000'},
		{id: 'beacon', policy: 'service', command: 'exec sleep 1000'}]`)
	if out, _, code := e.ctl("logs"); code != 0 || out != "No managed processes.\n" {
		t.Errorf("logs before a deploy: %d %q", code, out)
	}
	e.mustDeploy("v1")
	at := `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
	workerBlock := regexp.MustCompile(`^== worker \[release v1 \(active\)\] ==\n  ` + at + ` \[stdout\] hello from worker\n$`)
	testutil.Eventually(t, "worker output", func() bool {
		out, _, _ := e.ctl("logs", "--process", "worker")
		return workerBlock.MatchString(out)
	})
	// Every process: the release's (companions, then the proxied one), then
	// the services; one blank line between blocks.
	out, _, _ := e.ctl("logs")
	blocks := strings.Split(out, "\n\n")
	heads := []string{"== worker [release v1 (active)] ==", "== web [release v1 (active)] ==", "== beacon [service] ==\n  (no recent output)\n"}
	if len(blocks) != len(heads) {
		t.Fatalf("logs text has %d blocks, want %d:\n%s", len(blocks), len(heads), out)
	}
	for i, h := range heads {
		if !strings.HasPrefix(blocks[i], h) {
			t.Errorf("block %d = %q, want it to start with %q", i, blocks[i], h)
		}
	}
	// Only an exact instance id matches; no match is not an error.
	for _, id := range []string{"ghost", "worker#0"} {
		if out, stderr, code := e.ctl("logs", "--process", id); code != 0 || out != fmt.Sprintf("No process found with id %q.\n", id) || stderr != "" {
			t.Errorf("logs --process %s: %d %q %q", id, code, out, stderr)
		}
	}
	var raw []map[string]json.RawMessage
	e.ok(&raw, "logs", "--json")
	if len(raw) != 3 || string(raw[0]["id"]) != `"worker"` || string(raw[0]["source"]) != `"release v1 (active)"` ||
		string(raw[2]["logs"]) != "[]" || len(raw[0]) != 3 {
		t.Errorf("logs --json: %s", mustJSON(t, raw))
	}
	e.ok(&raw, "logs", "--json", "--process", "ghost")
	if raw == nil || len(raw) != 0 {
		t.Errorf("logs --json for no match: %v, want []", raw)
	}

	e.ok(&raw, "events", "--json", "--limit", "2")
	if len(raw) != 2 || len(raw[0]) != 3 || raw[0]["at"] == nil || raw[0]["data"] == nil || raw[0]["message"] == nil {
		t.Errorf("events --json --limit 2: %s", mustJSON(t, raw))
	}
	out, _, _ = e.ctl("events")
	for _, want := range []string{
		`(?m)^` + at + `  daemon started \{.*"application":"e2e".*\}$`,
		`(?m)^` + at + `  deploy starting \{"previousReleaseId":null,"releaseId":"v1","releasePath":".*"\}$`,
		`(?m)^` + at + `  traffic switched \{"previousReleaseId":null,"releaseId":"v1"\}$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("events text lacks a line matching %s:\n%s", want, out)
		}
	}
	for _, bad := range []string{"0", "-3"} {
		if out, stderr, code := e.ctl("events", "--limit", bad); code != exitUsage || out != "" ||
			stderr != "rollbridgectl: --limit must be a positive integer.\n" {
			t.Errorf("--limit %s: %d %q %q", bad, code, out, stderr)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestE2EBadControlInputThenStatusWorks(t *testing.T) {
	e := startDaemon(t, `[]`)
	conn, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, line := range []string{`{"command":`, `[]`, `{"command":"nope"}`, `{"command":"deploy"}`, `{"command":"deploy","releasePath":1}`} {
		fmt.Fprintln(conn, line)
		resp, err := r.ReadString('\n')
		if err != nil || !strings.Contains(resp, `"status":"error"`) {
			t.Errorf("%s -> %q %v", line, resp, err)
		}
	}
	if st := e.status(); st.Application != "e2e" {
		t.Errorf("status after bad input: %+v", st)
	}
	var evs []struct{ Message string }
	e.ok(&evs, "events", "--json")
	n := 0
	for _, x := range evs {
		if x.Message == "command failed" {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d command failed events, want 5", n)
	}
}

func TestE2EShutdown(t *testing.T) {
	e := startDaemon(t, `[{id: 'svc', policy: 'service', command: 'exec sleep 1000'}]`)
	e.mustDeploy("v1")
	st := e.status()
	var pids []int
	for _, r := range st.Releases {
		for _, p := range r.Processes {
			pids = append(pids, p.Pid)
		}
	}
	var res map[string]any
	e.ok(&res, "shutdown")
	if res["message"] != "shutdown" {
		t.Errorf("got %v", res)
	}
	// By the time the answer arrived, everything is gone.
	if _, err := os.Stat(e.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there: %v", err)
	}
	for _, pid := range pids {
		if err := syscallKill0(pid); err == nil {
			t.Errorf("process %d alive after shutdown", pid)
		}
	}
	select {
	case err := <-e.done:
		if err != nil {
			t.Error(err)
		}
		e.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Error("daemon.Run did not return after shutdown")
	}
	if _, _, code := e.ctl("status"); code != exitUnreachable {
		t.Errorf("status after shutdown: exit %d", code)
	}
}
