package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

func TestStatusAndDetail(t *testing.T) {
	if OK.String() != "ok" || Warn.String() != "warn" || Fail.String() != "fail" || Status(9).String() != "Status(9)" {
		t.Error("Status.String")
	}
	c := Check{Message: "out of date", Fix: "run x"}
	if c.Detail() != "out of date; run x" {
		t.Errorf("detail %q", c.Detail())
	}
	c.Fix = ""
	if c.Detail() != "out of date" {
		t.Errorf("detail without fix %q", c.Detail())
	}
}

func TestConfigThatDidNotLoadIsTheOnlyCheck(t *testing.T) {
	got := Run(context.Background(), Options{ConfigErr: errors.New("no config file")})
	if len(got) != 1 || got[0].Name != "config" || got[0].Status != Fail || got[0].Message != "no config file" {
		t.Errorf("got %+v", got)
	}
}

func fixture(t *testing.T, extra string) *config.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbdr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	src := fmt.Sprintf(`{application: 'dr', statePath: %q, control: {path: %q}, proxy: {port: %d},
	  processes: [{id: 'web', policy: 'proxied', command: 'serve {{port}}', cwd: '{{releasePath}}/app', port: 18000}]} + %s`,
		filepath.Join(dir, "state.json"), filepath.Join(dir, "c.sock"), port, extra)
	p := filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func byName(checks []Check) map[string]Check {
	m := map[string]Check{}
	for _, c := range checks {
		m[c.Name] = c
	}
	return m
}

func TestRunFindsOrphansAndMissingDirectories(t *testing.T) {
	cfg := fixture(t, "{}")
	// A recorded process that still runs: this test itself.
	start, err := state.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := state.Save(cfg.StatePath, &state.Snapshot{Processes: []state.ProcessRecord{{ID: "web", Pid: os.Getpid(), StartTime: start, ReleaseID: "v1"}}}); err != nil {
		t.Fatal(err)
	}
	rel := t.TempDir() // without app/
	checks := byName(Run(context.Background(), Options{Config: cfg, Release: &Release{Path: rel}}))
	for name, want := range map[string]Status{"config": OK, "control socket": OK, "control socket directory": OK, "proxy port": OK,
		"state path directory": OK, "orphaned processes": Fail, "release path": OK, "process templates": OK, "process working directories": Fail} {
		if got := checks[name]; got.Status != want {
			t.Errorf("%s: %+v, want %v", name, got, want)
		}
	}
	o := checks["orphaned processes"]
	if !strings.Contains(o.Message, fmt.Sprintf("web (pid %d, release v1)", os.Getpid())) || !strings.Contains(o.Fix, "rollbridgectl recover --force") {
		t.Errorf("orphaned processes: %+v", o)
	}
	if m := checks["process working directories"].Message; m != "missing: web: "+filepath.Join(rel, "app") {
		t.Errorf("working directories: %q", m)
	}
}

func TestUnitSettings(t *testing.T) {
	sandboxed := config.UnitSettings{"PrivateTmp": true}
	none := &config.Config{Runtime: config.RuntimeAuto, Processes: []config.Process{{ID: "web"}}}
	if c, ok := unitSettings(none, false); ok {
		t.Errorf("no unit settings: %+v, want no check", c)
	}
	auto := &config.Config{Application: "shop", Runtime: config.RuntimeAuto, Processes: []config.Process{{ID: "web", Systemd: sandboxed}, {ID: "worker"}}}
	if c, ok := unitSettings(auto, false); !ok || c.Status != Warn || !strings.Contains(c.Message, "settings of web apply only") || !strings.Contains(c.Fix, "rollbridge@shop") {
		t.Errorf("runtime auto outside systemd: %+v, want a warning naming web", c)
	}
	if c, ok := unitSettings(auto, true); !ok || c.Status != OK {
		t.Errorf("runtime auto under the packaged unit: %+v, want OK", c)
	}
	top := &config.Config{Runtime: config.RuntimeSystemd, Systemd: sandboxed, Processes: []config.Process{{ID: "web"}, {ID: "worker"}}}
	if c, ok := unitSettings(top, false); !ok || c.Status != OK || !strings.Contains(c.Message, "web, worker") {
		t.Errorf("runtime systemd, settings at the top level: %+v, want OK naming both", c)
	}
}

func TestProcessUsers(t *testing.T) {
	root := &config.Config{User: "0", Processes: []config.Process{{ID: "web"}, {ID: "worker", User: "nobody"}}}
	if c := processUsers(root, false); c.Status != Warn || c.Message != "web would run as root" || !strings.Contains(c.Fix, "user") {
		t.Errorf("web as root: %+v, want a warning naming web", c)
	}
	unknown := &config.Config{Processes: []config.Process{{ID: "web", User: "no-such-user-rb"}, {ID: "jobs", User: "nobody", Group: "no-such-group-rb"}}}
	if c := processUsers(unknown, false); c.Status != Fail || !strings.Contains(c.Message, `web: user "no-such-user-rb"`) || !strings.Contains(c.Message, `jobs: group "no-such-group-rb"`) {
		t.Errorf("unknown user and group: %+v, want a failure naming both", c)
	}
	nobody := &config.Config{User: "nobody", Processes: []config.Process{{ID: "web"}}}
	if c := processUsers(nobody, true); c.Status != OK {
		t.Errorf("web as nobody: %+v, want OK", c)
	}
	// Unset under the packaged unit: the daemon's user, root.
	unset := &config.Config{Processes: []config.Process{{ID: "web"}}}
	if c := processUsers(unset, true); c.Status != Warn {
		t.Errorf("unset under systemd: %+v, want a warning", c)
	}
}
