package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

// buildDaemon puts a freshly built rollbridged on PATH for this test.
func buildDaemon(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "rollbridged"), "../rollbridged").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestEnsureDaemonDetachedThenReused(t *testing.T) {
	buildDaemon(t)
	dir, err := os.MkdirTemp("", "rbens")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "rollbridge.jsonnet")
	src := fmt.Sprintf(`{application: 'ens', control: {path: %q}, proxy: {port: 0}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, filepath.Join(dir, "c.sock"))
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// Neither directory exists yet: ensure-daemon creates them (mkdir -p).
	logPath, pidPath := filepath.Join(dir, "log", "rollbridge", "d.log"), filepath.Join(dir, "run", "d.pid")
	// Branch 3: nothing answers and (here) no systemd unit: a detached daemon.
	out, errOut, code := runCtl(t, "ensure-daemon", "-c", cfg, "--daemon-log-path", logPath, "--daemon-pid-path", pidPath)
	if code != 0 || !strings.Contains(errOut, "started a detached rollbridged") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var st struct{ Application string }
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Application != "ens" {
		t.Errorf("status output %q: %v", out, err)
	}
	b, _ := os.ReadFile(pidPath)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid == 0 || syscall.Kill(pid, 0) != nil {
		t.Fatalf("pid file %q does not name a live process", b)
	}
	defer func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		// This process is its parent, and ensure-daemon reaps it, so gone means gone.
		testutil.Eventually(t, "the detached daemon to exit on SIGTERM", func() bool { return syscall.Kill(pid, 0) != nil })
	}()
	if sid, _ := syscall.Getpgid(pid); sid != pid {
		t.Errorf("daemon is not its own process group/session leader (pgid %d)", sid)
	}
	if log, _ := os.ReadFile(logPath); !strings.Contains(string(log), `"message":"daemon started"`) {
		t.Errorf("log file lacks the daemon's output: %s", log)
	}
	// Branch 1: it answers now; nothing new is started.
	_, errOut, code = runCtl(t, "ensure-daemon", "-c", cfg, "--daemon-log-path", logPath, "--daemon-pid-path", pidPath)
	if code != 0 || !strings.Contains(errOut, "daemon already running") {
		t.Errorf("second call: exit %d: %s", code, errOut)
	}
	b2, _ := os.ReadFile(pidPath)
	if string(b2) != string(b) {
		t.Errorf("pid file rewritten: %q -> %q", b, b2)
	}
	// deploy --ensure-daemon reuses it too (and then fails on the bogus release path).
	_, errOut, _ = runCtl(t, "deploy", "--ensure-daemon", "-c", cfg, "--release-path", filepath.Join(dir, "none"))
	if !strings.Contains(errOut, "daemon already running") || !strings.Contains(errOut, "does not exist") {
		t.Errorf("deploy --ensure-daemon: %s", errOut)
	}
}

func TestEnsureDaemonReportsStartFailure(t *testing.T) {
	buildDaemon(t)
	dir, err := os.MkdirTemp("", "rbens")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "rollbridge.jsonnet")
	// The control directory does not exist: the daemon exits at once.
	src := fmt.Sprintf(`{application: 'ens2', control: {path: %q}, proxy: {port: 0}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, filepath.Join(dir, "missing", "c.sock"))
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCtl(t, "ensure-daemon", "-c", cfg, "--daemon-log-path", filepath.Join(dir, "d.log"), "--daemon-pid-path", filepath.Join(dir, "d.pid"))
	if code != exitFailed || !strings.Contains(errOut, "rollbridged exited") || !strings.Contains(errOut, "control socket directory") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

func TestSystemdUnits(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shop.jsonnet")
	src := `{application: 'shop', control: {path: '/run/rollbridge-shop.sock', mode: '660', group: 'deploy'},
	  proxy: {host: '0.0.0.0', port: 8182, drainTimeoutMs: 30000},
	  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000},
	    {id: 'w', command: 'y', gracefulStopMs: 60000, lifecycle: {quietCommand: 'q', drainTimeoutMs: 20000}}]}`
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code := runCtl(t, "systemd", "units", "-c", cfg, "--rollbridged", "/opt/rb/rollbridged")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"# /etc/systemd/system/rollbridge-proxy@shop.socket.d/50-rollbridge.conf",
		"ListenStream=\nListenStream=0.0.0.0:8182",
		"ListenStream=\nListenStream=/run/rollbridge-shop.sock\nSocketMode=0660\nSocketGroup=deploy",
		"ExecStart=\nExecStart=/opt/rb/rollbridged --config " + cfg,
		// 30s drain + (60s quiet hook + 20s drain + 60s grace) + 30s margin
		"TimeoutStopSec=200",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "metrics") {
		t.Errorf("a config without metrics got a metrics socket:\n%s", out)
	}
	unitDir := filepath.Join(dir, "units")
	out, _, code = runCtl(t, "systemd", "units", "-c", cfg, "--install", "--unit-dir", unitDir, "--no-reload")
	if code != 0 {
		t.Fatalf("install: exit %d", code)
	}
	for _, f := range []string{"rollbridge@shop.service.d/50-rollbridge.conf", "rollbridge-proxy@shop.socket.d/50-rollbridge.conf", "rollbridge-control@shop.socket.d/50-rollbridge.conf"} {
		if _, err := os.Stat(filepath.Join(unitDir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	if !distroHasUnit("rollbridge@.service") {
		// Template units are installed unless the distribution already has them.
		if _, err := os.Stat(filepath.Join(unitDir, "rollbridge@.service")); err != nil {
			t.Errorf("template unit not installed: %v\n%s", err, out)
		}
	}
	_, errOut, code := runCtl(t, "systemd", "units", "-c", writeTemp(t, "p0.jsonnet", `{proxy: {port: 0}, application: 'x', processes: [{id: 'web', policy: 'proxied', command: 'x', port: 1}]}`))
	if code != exitFailed || !strings.Contains(errOut, "proxy.port is 0") {
		t.Errorf("port 0: %d %s", code, errOut)
	}
}

// With metrics, a third socket unit holds the metrics port, and the
// service takes it from systemd (FileDescriptorName=metrics in the template).
func TestSystemdUnitsMetricsSocket(t *testing.T) {
	cfg := writeTemp(t, "m.jsonnet", `{application: 'shop', proxy: {port: 8182}, metrics: {host: '::', port: 9182},
	  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`)
	out, errOut, code := runCtl(t, "systemd", "units", "-c", cfg, "--rollbridged", "/opt/rb/rollbridged")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"# /etc/systemd/system/rollbridge-metrics@shop.socket.d/50-rollbridge.conf",
		"[Socket]\nListenStream=\nListenStream=[::]:9182\nBindIPv6Only=both\n",
		"[Unit]\nRequires=rollbridge-metrics@shop.socket\nAfter=rollbridge-metrics@shop.socket\n",
		"Sockets=rollbridge-metrics@shop.socket\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, errOut, code = runCtl(t, "systemd", "units", "-c", writeTemp(t, "m0.jsonnet", `{proxy: {port: 8182}, application: 'x', metrics: {port: 0}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 1}]}`))
	if code != exitFailed || !strings.Contains(errOut, "metrics.port is 0") {
		t.Errorf("metrics port 0: %d %s", code, errOut)
	}
}

// distroHasUnit reports whether the distribution already ships a template
// unit, in which case systemd units --install leaves it alone.
func distroHasUnit(name string) bool {
	for _, d := range []string{"/lib/systemd/system", "/usr/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return true
		}
	}
	return false
}

// TestEnsureDaemonRunsInTheCallersDirectory: the detached daemon runs where
// rollbridgectl was run, as the Node original's did, so a relative
// control.path names the same socket for both.
func TestEnsureDaemonRunsInTheCallersDirectory(t *testing.T) {
	buildDaemon(t)
	dir, err := os.MkdirTemp("", "rbcwd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	confDir, work := filepath.Join(dir, "etc"), filepath.Join(dir, "work")
	for _, d := range []string{confDir, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(confDir, "rollbridge.jsonnet")
	src := `{application: 'cwd', control: {path: 'c.sock'}, proxy: {port: 0}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	pidPath := filepath.Join(dir, "d.pid")
	_, errOut, code := runCtl(t, "ensure-daemon", "-c", cfg, "--daemon-log-path", filepath.Join(dir, "d.log"), "--daemon-pid-path", pidPath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b, _ := os.ReadFile(pidPath)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid == 0 {
		t.Fatalf("pid file %q", b)
	}
	defer func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		testutil.Eventually(t, "the detached daemon to exit on SIGTERM", func() bool { return syscall.Kill(pid, 0) != nil })
	}()
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != work {
		t.Errorf("daemon cwd %q (%v), want the caller's %s", cwd, err, work)
	}
	if _, err := os.Stat(filepath.Join(work, "c.sock")); err != nil {
		t.Errorf("the relative control socket is not in the caller's directory: %v", err)
	}
	if _, _, code := runCtl(t, "status", "-c", cfg); code != 0 {
		t.Errorf("status from the same directory: exit %d", code)
	}
}

// A start timeout that is not positive is refused, as the original
// refuses it, before anything is started.
func TestEnsureDaemonStartTimeoutMustBePositive(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "rollbridge.jsonnet")
	src := fmt.Sprintf(`{application: 'tmo', control: {path: %q}, proxy: {port: 0}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, filepath.Join(dir, "c.sock"))
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	pidPath := filepath.Join(dir, "d.pid")
	for _, args := range [][]string{
		{"ensure-daemon", "--daemon-start-timeout-ms", "0"},
		{"ensure-daemon", "--daemon-start-timeout-ms", "-5"},
		{"deploy", "--ensure-daemon", "--release-path", dir, "--daemon-start-timeout-ms", "0"},
	} {
		out, errOut, code := runCtl(t, append(args, "-c", cfg, "--daemon-pid-path", pidPath)...)
		if code != exitUsage || out != "" || errOut != "rollbridgectl: --daemon-start-timeout-ms must be a positive number.\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		t.Errorf("a daemon was started: %v", err)
	}
}
