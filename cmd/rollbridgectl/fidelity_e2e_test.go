package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/daemon"
)

// The tests in this file pin behaviour that must match the Node original
// (deploy semantics and config), through rollbridgectl and the control
// socket.

// appConfig is a config for the e2e daemon: top holds extra top-level
// fields ("releaseRetention: {keep: 1},"), web is merged into the proxied
// process (the test app), and processes are appended after it.
func appConfig(t *testing.T, dir, top, web, processes string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	from := 26000 + rand.IntN(20)*200 // this package's band (see startDaemon)
	proxied := fmt.Sprintf(`{id: 'web', policy: 'proxied', command: 'PORT={{port}} RB_TESTAPP=1 RB_APP_HEALTH="$(cat health 2>/dev/null)" exec %s', port: {from: %d, to: %d}, health: {intervalMs: 20, timeoutMs: 3000}} + %s`,
		exe, from, from+199, web)
	return fmt.Sprintf(`{application: 'e2e', control: {path: %q}, proxy: {port: 0, drainTimeoutMs: 5000, forceStopTimeoutMs: 3000}, %s
		processes: [%s] + %s}`, filepath.Join(dir, "ctl.sock"), top, proxied, processes)
}

// startReloading runs the daemon in-process as rollbridged does, re-reading
// its config file at every deploy and rollback, and returns it with the
// config file's path.
func startReloading(t *testing.T, top, web, processes string) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfgPath := filepath.Join(dir, "rollbridge.jsonnet")
	writeFile(t, cfgPath, appConfig(t, dir, top, web, processes))
	// The daemon's own loader: bounded, evaluating in this test binary
	// re-executed (TestMain serves the evaluation mode).
	load := func(ctx context.Context) (*config.Config, error) {
		return config.Loader{}.Load(ctx, cfgPath, config.EnvMap(os.Environ()))
	}
	cfg, err := load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, cfg: cfgPath, sock: cfg.Control.Path, done: make(chan error, 1), cancel: cancel}
	go func() {
		e.done <- daemon.Run(ctx, daemon.Options{Config: cfg, Stdout: io.Discard, Version: "test", LoadConfig: load})
	}()
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
		case <-time.After(60 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return e
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

type event struct {
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

func (e *env) events(message string) []event {
	e.t.Helper()
	var all, out []event
	e.ok(&all, "events", "--json")
	for _, x := range all {
		if x.Message == message {
			out = append(out, x)
		}
	}
	return out
}

func (e *env) releaseIDs() string {
	var ids []string
	for _, r := range e.status().Releases {
		ids = append(ids, r.ReleaseID+":"+r.State)
	}
	return strings.Join(ids, ",")
}

// Issue item 3: with keep: 1, deploy A, deploy B, a failed deploy C, then
// rollback returns to A. A failed release is neither shown nor counted.
func TestE2EFailedDeployCostsNoRollbackTarget(t *testing.T) {
	e := startReloading(t, `releaseRetention: {keep: 1},`, `{}`, `[]`)
	e.mustDeploy("A")
	e.mustDeploy("B")
	testutil.Eventually(t, "A stopped", func() bool { return strings.Contains(e.releaseIDs(), "A:stopped") })
	if _, stderr, code := e.deploy("C", map[string]string{"health": "503"}); code != exitFailed {
		t.Fatalf("unhealthy deploy: exit %d %s", code, stderr)
	}
	if ids := e.releaseIDs(); strings.Contains(ids, "C:") || !strings.Contains(ids, "A:stopped") {
		t.Errorf("releases after the failed deploy: %s", ids)
	}
	var res map[string]any
	e.ok(&res, "rollback")
	if res["activeReleaseId"] != "A" || e.get("/") != "A" {
		t.Errorf("rollback: %v, serving %q", res, e.get("/"))
	}
}

// Issue item 4: stop leaves singletons running.
func TestE2EStopLeavesSingletonsRunning(t *testing.T) {
	e := startReloading(t, ``, `{}`, `[{id: 'cron', policy: 'singleton', command: 'exec sleep 1000'}]`)
	e.mustDeploy("v1")
	pid := e.status().Singletons[0].Process.Pid
	var st control.Status
	e.ok(&st, "stop")
	if st.ActiveReleaseID != nil || len(st.Singletons) != 1 || st.Singletons[0].Process.Pid == 0 || st.Singletons[0].Process.Pid != pid ||
		st.Singletons[0].Process.State != "running" {
		t.Errorf("singletons after stop: %+v", st.Singletons)
	}
}

// Issue item 7: the config forms of the Node original.
func TestE2EConfigNodeForms(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "legacy.jsonnet")
	writeFile(t, bad, appConfig(t, dir, `legacyTakeover: {forceStopTimeoutMs: 100},`, `{}`, `[]`))
	out, stderr, code := runCtl(t, "validate", "-c", bad)
	if code != exitFailed || !strings.Contains(out+stderr, "legacyTakeover: must define at least one screen or process matcher") ||
		!strings.Contains(out+stderr, "Fix: Set legacyTakeover.screens or legacyTakeover.processes") {
		t.Errorf("legacyTakeover matching nothing: exit %d\n%s%s", code, out, stderr)
	}

	// health: null turns the check off (the app answers 503 to it);
	// {from: N} is the port N; a singleton's port reaches every process.
	single := 26000 + rand.IntN(20)*200 + 199 // the top of some range; the web's allocation starts at its bottom
	e := startReloading(t, ``, `{health: null, env: {ROLLBRIDGE_X_CRON: '{{ports.cron-job}}'}}`,
		fmt.Sprintf(`[{id: 'cron-job', policy: 'singleton', command: 'exec sleep 1000', port: {from: %d}}]`, single))
	for _, id := range []string{"v1", "v2"} {
		if _, stderr, code := e.deploy(id, map[string]string{"health": "503"}); code != 0 {
			t.Fatalf("deploy %s with health: null: exit %d %s", id, code, stderr)
		}
		// Without a health check traffic switches before the app listens.
		var env string
		testutil.Eventually(t, id+" answering", func() bool {
			env = e.get("/env")
			return strings.Contains(env, "ROLLBRIDGE_RELEASE_ID="+id)
		})
		for _, want := range []string{fmt.Sprintf("ROLLBRIDGE_CRON_JOB_PORT=%d", single), fmt.Sprintf("ROLLBRIDGE_X_CRON=%d", single)} {
			if !strings.Contains(env, want) {
				t.Errorf("%s: web env lacks %s:\n%s", id, want, env)
			}
		}
		if p := e.status().Singletons[0].Process.Port; p != single {
			t.Errorf("%s: singleton port %v, want %d", id, p, single)
		}
	}
}

// Ported from 0.1.12: every deploy and rollback re-reads the config file.
func TestE2EDeployRereadsTheConfig(t *testing.T) {
	e := startReloading(t, ``, `{env: {ROLLBRIDGE_X_MARK: 'one'}}`, `[]`)
	src, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.mustDeploy("v1")
	e.mustDeploy("v2")
	// A compatible change reaches the next release without a SIGHUP.
	writeFile(t, e.cfg, strings.Replace(string(src), "ROLLBRIDGE_X_MARK: 'one'", "ROLLBRIDGE_X_MARK: 'two'", 1))
	e.mustDeploy("v3")
	if env := e.get("/env"); !strings.Contains(env, "ROLLBRIDGE_X_MARK=two") {
		t.Errorf("v3 does not run the edited config:\n%s", env)
	}
	if r := e.events("config reloaded"); len(r) != 1 || r[0].Data["releaseId"] != "v3" {
		t.Errorf("config reloaded events: %+v", r)
	}
	// A listener change fails the deploy and names the field.
	writeFile(t, e.cfg, strings.Replace(string(src), "proxy: {port: 0,", "proxy: {port: 1,", 1))
	if _, stderr, code := e.deploy("v4", nil); code != exitFailed || !strings.Contains(stderr, "config changes to proxy.port cannot be applied live; restart the daemon") {
		t.Errorf("listener change: exit %d %s", code, stderr)
	}
	// A broken file fails a deploy, but never a rollback: that runs with the
	// last good config and says so. (rollbridgectl itself cannot read the
	// file now, so it is pointed at the socket.)
	writeFile(t, e.cfg, "{ broken")
	rel := filepath.Join(t.TempDir(), "v4")
	if err := os.Mkdir(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCtl(t, "deploy", "--socket", e.sock, "--release-path", rel); code != exitFailed ||
		!strings.Contains(stderr, "re-read the config for this deploy") || !strings.Contains(stderr, "rollbridge.jsonnet:1:") {
		t.Errorf("broken file: exit %d %s", code, stderr)
	}
	out, stderr, code := runCtl(t, "rollback", "--socket", e.sock)
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res["activeReleaseId"] != "v2" || e.get("/") != "v2" {
		t.Errorf("rollback with a broken file: exit %d %v %s %s", code, err, out, stderr)
	}
	writeFile(t, e.cfg, string(src)) // rollbridgectl reads it again below
	if env := e.get("/env"); !strings.Contains(env, "ROLLBRIDGE_X_MARK=two") {
		t.Errorf("the rollback did not use the last good config:\n%s", env)
	}
	refused := e.events("config reload refused")
	if len(refused) != 1 || refused[0].Data["command"] != "rollback" || !strings.Contains(fmt.Sprint(refused[0].Data["error"]), "rollbridge.jsonnet:1:") {
		t.Errorf("config reload refused events: %+v", refused)
	}
}

// Ported from 0.1.10: a handoff service runs once per release, on a fresh
// port of its range.
func TestE2EHandoffService(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	from := 26000 + rand.IntN(20)*200 + 100 // the upper half of some range
	e := startReloading(t, ``, `{env: {ROLLBRIDGE_X_JOBS: '{{ports.jobs}}'}}`,
		fmt.Sprintf(`[{id: 'jobs', policy: 'service', deployStrategy: 'handoff', command: 'PORT={{port}} RB_TESTAPP=1 exec %s', port: {from: %d, to: %d}}]`, exe, from, from+99))
	seen := map[int]bool{}
	for _, id := range []string{"v1", "v2"} {
		e.mustDeploy(id)
		var rel control.Release
		for _, r := range e.status().Releases {
			if r.ReleaseID == id {
				rel = r
			}
		}
		port, _ := rel.Ports.Get("jobs")
		if port == 0 || len(rel.Processes) == 0 || rel.Processes[0].ID != "jobs" {
			t.Fatalf("%s: release %+v, want jobs first with a port", id, rel)
		}
		seen[port] = true
		if env := e.get("/env"); !strings.Contains(env, "ROLLBRIDGE_X_JOBS="+strconv.Itoa(port)) {
			t.Errorf("%s: web env lacks jobs' port %d:\n%s", id, port, env)
		}
		// Nothing health-checks a service: wait until it listens, so the
		// next release cannot be given its port.
		testutil.Eventually(t, id+"'s jobs listening", func() bool {
			for _, r := range e.status().Releases {
				for _, l := range r.Processes[0].Logs {
					if r.ReleaseID == id && strings.HasPrefix(l.Line, "listening on") {
						return true
					}
				}
			}
			return false
		})
	}
	if len(seen) != 2 || len(e.status().Services) != 0 {
		t.Errorf("ports %v, services %+v; want one fresh port per release and no daemon-wide service", seen, e.status().Services)
	}
}

// Ported from 0.1.16: gracefulStopMs: "indefinite" never sends SIGKILL.
func TestE2EIndefiniteStop(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "record")
	// Ignores SIGTERM; leaves on SIGINT, which the test sends.
	job := fmt.Sprintf(`trap 'echo TERM >> %[1]s' TERM; trap 'echo INT >> %[1]s; exit 0' INT; echo $$ > %[1]s.pid; while :; do sleep 0.02; done`, rec)
	processes := fmt.Sprintf(`[{id: 'job', command: %q, gracefulStopMs: 'indefinite'}]`, job)

	unitCfg := filepath.Join(dir, "units.jsonnet")
	writeFile(t, unitCfg, strings.Replace(appConfig(t, dir, ``, `{}`, processes), "port: 0,", "port: 8182,", 1))
	out, stderr, code := runCtl(t, "systemd", "units", "-c", unitCfg, "--rollbridged", "/usr/bin/rollbridged")
	if code != 0 || !strings.Contains(out, "TimeoutStopSec=infinity") {
		t.Errorf("systemd units: exit %d %s\n%s", code, stderr, out)
	}

	e := startReloading(t, ``, `{}`, processes)
	// Before the daemon's shutdown (cleanups run last first): every job
	// still running must leave, or that shutdown would wait for it forever.
	t.Cleanup(func() {
		for _, r := range e.status().Releases {
			for _, p := range r.Processes {
				if p.ID == "job" && p.Pid != 0 {
					_ = syscall.Kill(p.Pid, syscall.SIGINT)
				}
			}
		}
	})
	e.mustDeploy("v1")
	var pid int
	testutil.Eventually(t, "the job's pid", func() bool {
		b, _ := os.ReadFile(rec + ".pid")
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pid > 0
	})
	e.mustDeploy("v2") // retires v1's job, which ignores SIGTERM
	testutil.Eventually(t, "v1's job waiting", func() bool {
		for _, ev := range e.events("process stop waiting") {
			if ev.Data["releaseId"] == "v1" {
				return true
			}
		}
		return false
	})
	if st := e.releaseState("v1"); st != "draining" {
		t.Errorf("v1 is %s while its job runs, want draining", st)
	}
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "v1 stopped", func() bool { return e.releaseState("v1") == "stopped" })
	b, _ := os.ReadFile(rec)
	if string(b) != "TERM\nINT\n" {
		t.Errorf("the job got %q, want SIGTERM and then only the test's SIGINT", b)
	}
	for _, p := range e.status().Releases {
		for _, pr := range p.Processes {
			if p.ReleaseID == "v1" && pr.ID == "job" && (pr.ExitSignal.Value != nil || pr.ExitCode.Value == nil || *pr.ExitCode.Value != 0) {
				t.Errorf("v1's job exit: code %v signal %v, want 0 and no SIGKILL", pr.ExitCode.Value, pr.ExitSignal.Value)
			}
		}
	}
}
