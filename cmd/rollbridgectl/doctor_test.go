package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/pkg/state"
)

type doctorOut struct {
	Checks []checkJSON `json:"checks"`
	OK     bool        `json:"ok"`
}

func runDoctorJSON(t *testing.T, args ...string) (doctorOut, int) {
	t.Helper()
	out, errOut, code := runCtl(t, append([]string{"doctor", "--json"}, args...)...)
	var res doctorOut
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s %s", err, out, errOut)
	}
	return res, code
}

func (d doctorOut) get(name string) checkJSON {
	for _, c := range d.Checks {
		if c.Name == name {
			return c
		}
	}
	return checkJSON{Name: name, Detail: "absent"}
}

func doctorFixture(t *testing.T, port int, extra string) (cfg, dir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbdoc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	src := fmt.Sprintf(`{application: 'doc', control: {path: %q}, proxy: {port: %d},
	  processes: [{id: 'web', policy: 'proxied', command: 'serve {{port}} {{env.HOME}}', cwd: '{{releasePath}}/backend', port: 18000}]} + %s`,
		filepath.Join(dir, "c.sock"), port, extra)
	cfg = filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, dir
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDoctorAllPass(t *testing.T) {
	cfg, dir := doctorFixture(t, freePort(t), "{}")
	rel := filepath.Join(dir, "r1")
	if err := os.MkdirAll(filepath.Join(rel, "backend"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, code := runDoctorJSON(t, "-c", cfg, "--release-path", rel)
	if code != 0 || !res.OK {
		t.Fatalf("exit %d: %+v", code, res)
	}
	for _, name := range []string{"config", "control socket", "control socket directory", "proxy port", "release path", "process templates", "process working directories"} {
		if c := res.get(name); !c.OK {
			t.Errorf("%s: %+v", name, c)
		}
	}
	out, _, code := runCtl(t, "doctor", "-c", cfg)
	if code != 0 || !strings.Contains(out, "✓ config: valid: 1 process, proxy on") || !strings.Contains(out, "All checks passed.") {
		t.Errorf("text: %d %s", code, out)
	}
}

func TestDoctorFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg, dir := doctorFixture(t, busy.Addr().(*net.TCPAddr).Port, "{}")
	// A foreign program on the control socket.
	ln := listenUnix(t, filepath.Join(dir, "c.sock"))
	defer ln.Close()
	rel := filepath.Join(dir, "r1") // exists, but without backend/
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	res, code := runDoctorJSON(t, "-c", cfg, "--release-path", rel)
	if code != exitFailed || res.OK {
		t.Fatalf("exit %d ok %v", code, res.OK)
	}
	for name, want := range map[string]string{
		"control socket":              "held by another program",
		"proxy port":                  "already in use",
		"process working directories": "web: " + filepath.Join(rel, "backend"),
	} {
		if c := res.get(name); c.OK || !strings.Contains(c.Detail, want) {
			t.Errorf("%s: %+v, want failure with %q", name, c, want)
		}
	}
	out, errOut, _ := runCtl(t, "doctor", "-c", cfg)
	if !strings.Contains(out, "✗ proxy port") || strings.Contains(out, "failed.") || !regexp.MustCompile(`^\n\d+ checks failed\.\n$`).MatchString(errOut) {
		t.Errorf("text: stdout %q, stderr %q; want the checks on stdout and the count on stderr", out, errOut)
	}
	// Missing release path and a template that cannot render.
	t.Setenv("HOME", "")
	os.Unsetenv("HOME")
	res, _ = runDoctorJSON(t, "-c", cfg, "--release-path", filepath.Join(dir, "nope"))
	if c := res.get("release path"); c.OK || !strings.Contains(c.Detail, "does not exist") {
		t.Errorf("release path: %+v", c)
	}
	res, _ = runDoctorJSON(t, "-c", cfg, "--release-path", rel)
	if c := res.get("process templates"); c.OK || !strings.Contains(c.Detail, "HOME is not set") {
		t.Errorf("templates: %+v", c)
	}
	// An invalid config is one failing check.
	bad := writeTemp(t, "bad.jsonnet", `{proxy: {}, processes: []}`)
	res, code = runDoctorJSON(t, "-c", bad)
	if code != exitFailed || res.get("config").OK || !strings.Contains(res.get("config").Detail, "exactly one process") {
		t.Errorf("bad config: %+v", res)
	}
}

func TestDoctorRunningDaemonAndOrphans(t *testing.T) {
	e := startDaemon(t, `[]`)
	res, code := runDoctorJSON(t, "-c", e.cfg)
	if code != exitFailed || !strings.Contains(res.get("control socket").Detail, `a rollbridge daemon for "e2e" already runs`) {
		t.Errorf("running daemon: %d %+v", code, res.get("control socket"))
	}
	// Orphans and the state directory.
	cfg, dir := doctorFixture(t, freePort(t), fmt.Sprintf(`{statePath: %q}`, "STATE"))
	statePath := filepath.Join(dir, "state.json")
	src, _ := os.ReadFile(cfg)
	_ = os.WriteFile(cfg, []byte(strings.Replace(string(src), "STATE", statePath, 1)), 0o644)
	pid, start := spawnGroup(t, "exec sleep 300")
	if err := state.Save(statePath, &state.Snapshot{Processes: []state.ProcessRecord{{ID: "web", Pid: pid, StartTime: start, ReleaseID: "v3"}}}); err != nil {
		t.Fatal(err)
	}
	res, code = runDoctorJSON(t, "-c", cfg)
	if c := res.get("orphaned processes"); code != exitFailed || c.OK || !strings.Contains(c.Detail, fmt.Sprintf("web (pid %d, release v3)", pid)) {
		t.Errorf("orphans: %d %+v", code, c)
	}
	if c := res.get("state path directory"); !c.OK {
		t.Errorf("state path directory: %+v", c)
	}
	_ = os.WriteFile(cfg, []byte(strings.Replace(string(src), "STATE", filepath.Join(dir, "missing", "s.json"), 1)), 0o644)
	res, _ = runDoctorJSON(t, "-c", cfg)
	if c := res.get("state path directory"); c.OK || !strings.Contains(c.Detail, "not writable") {
		t.Errorf("missing state dir: %+v", c)
	}
}
