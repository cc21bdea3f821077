package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/config"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
	"github.com/rollbridge/rollbridge-go/pkg/proxy"
	"github.com/rollbridge/rollbridge-go/pkg/release"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/supervisor"
)

func ptr[T any](v T) *T { return &v }

// domainStatus is, in the supervisor's types, the status that
// pkg/control's golden test pins (goldenStatus there).
func domainStatus() supervisor.Status {
	at := time.Date(2026, 11, 26, 14, 30, 0, 120_000_000, time.UTC)
	proc := func(st process.Status, policy string, port *int) supervisor.ProcessStatus {
		return supervisor.ProcessStatus{Status: st, Policy: policy, Port: port}
	}
	web := proc(process.Status{ID: "web", Command: "bin/server --port 18183", Cwd: "/srv/shop/releases/2", State: process.Running,
		Pid: ptr(4242), StartedAt: ptr(at), UptimeMs: ptr(int64(5021)), LastStartReason: ptr(process.ReasonDeploy),
		Logs:     []process.Line{{At: at, Line: "listening on 18183", Stream: "stdout"}},
		RSSBytes: 1 << 20, Children: []process.Member{{Pid: 4243, Command: "worker", RSSBytes: 4096}, {Pid: 4244, Command: "sh"}}},
		"proxied", ptr(18183))
	justStarted := proc(process.Status{ID: "worker#0", Command: "bin/worker", Cwd: "/srv/shop/releases/2", State: process.Running,
		Pid: ptr(4245), StartedAt: ptr(at), UptimeMs: ptr(int64(0)), LastStartReason: ptr(process.ReasonDeploy)}, "companion", nil)
	old := proc(process.Status{ID: "web", Command: "bin/server --port 18182", Cwd: "/srv/shop/releases/1", State: process.Stopped,
		StartedAt: ptr(at), ExitSignal: ptr("SIGTERM"), LastStartReason: ptr(process.ReasonDeploy), Logs: []process.Line{}},
		"proxied", ptr(18182))
	crashed := proc(process.Status{ID: "beacon", Command: "bin/beacon", Cwd: "/srv/shop/releases/2", State: process.Failed,
		Restarts: 3, StartedAt: ptr(at), ExitCode: ptr(0), LastStartReason: ptr(process.ReasonCrash), Logs: []process.Line{},
		MemoryRestarts: 1, LastMemoryRestartAt: ptr(at), Children: []process.Member{}}, "service", ptr(7330))
	never := proc(process.Status{ID: "scheduler", Command: "bin/cron", Cwd: "/srv/shop/releases/2", State: process.Stopped}, "singleton", nil)
	mode := config.FileMode(0o660)
	return supervisor.Status{
		ActiveReleaseID: ptr("v2"), Application: "shop",
		Control: supervisor.ControlStatus{Path: "/run/rollbridge-shop.sock", Mode: &mode,
			Owner: &config.IDOrName{Name: "deploy"}, Group: &config.IDOrName{ID: 1001}},
		Orphans: []state.Orphan{{ID: "worker#0", Pid: 3999, ReleaseID: "v0"}, {ID: "beacon", Pid: 3998}}, // a service's orphan has no release
		Proxy:   supervisor.ProxyStatus{Host: "127.0.0.1", Port: 8182, UpstreamHost: "127.0.0.1", Held: 7, HoldGaveUp: 2},
		Releases: []supervisor.ReleaseStatus{
			{ReleaseID: "v1", ReleasePath: "/srv/shop/releases/1", State: release.Stopped,
				Ports: map[string]int{"web": 18182, "beacon": 7330}, PortOrder: []string{"web", "beacon"},
				CreatedAt: at, ActivatedAt: ptr(at), DrainStartedAt: ptr(at), StoppedAt: ptr(at), Processes: []supervisor.ProcessStatus{old}},
			{ReleaseID: "v2", ReleasePath: "/srv/shop/releases/2", Revision: ptr("abc123"), State: release.Active,
				Ports: map[string]int{"web": 18183, "beacon": 7330}, PortOrder: []string{"web", "beacon"},
				Connections: supervisor.Connections{HTTP: 3, WebSocket: 12}, ConnectionCount: 15,
				CreatedAt: at, ActivatedAt: ptr(at), Processes: []supervisor.ProcessStatus{justStarted, web}},
			{ReleaseID: "v3", ReleasePath: "/srv/shop/releases/3", State: release.Failed, Ports: map[string]int{},
				CreatedAt: at, StoppedAt: ptr(at), Error: ptr("health check failed"), Processes: []supervisor.ProcessStatus{}},
		},
		Services:   []supervisor.UnitStatus{{ID: "beacon", ReleaseID: "v2", Process: crashed}},
		Singletons: []supervisor.UnitStatus{{ID: "scheduler", ReleaseID: "v2", Process: never}},
		Daemon: supervisor.DaemonStatus{Pid: 4100, Version: "0.1.0", StartedAt: at,
			CommandInProgress: ptr("deploy of release v4 (started 2026-11-26T14:30:00Z)"), RestoreProblem: ptr("release v0 could not be restored")},
	}
}

// TestStatusMappingMatchesGolden: every field of the domain status reaches
// the wire, with the bytes docs/protocol.md documents (pkg/control pins
// them in its golden files).
func TestStatusMappingMatchesGolden(t *testing.T) {
	// The traffic state comes from the daemon's traffic owner, not the
	// supervisor: a pause and maintenance as the golden status has them;
	// the host drain from the proxy, through the daemon.
	at := time.Date(2026, 11, 26, 14, 30, 0, 120_000_000, time.UTC)
	px := proxy.New(proxy.Options{})
	px.PauseTraffic(at)
	px.RestoreHostDrained(at)
	tr := &traffic{px: px, maint: &state.Maintenance{Since: at, Message: "Back at 15:00 UTC", Page: "<h1>x</h1>"}}
	st := statusResult(domainStatus())
	tr.fill(&st.Proxy)
	(&daemon{proxy: px}).fillHost(&st.Proxy)
	got, err := control.EncodeResult(st)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "control", "testdata", "golden", "status.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(got, '\n'), want) {
		t.Errorf("mapped status\n%s\nwant\n%s", got, want)
	}
}

// TestMappingKeepsNullAndEmpty: a nil list stays null and an empty one [];
// the domain decides which lists are always present, except the ones the
// spec always sends (a process's logs and children, a release's ports).
// What is not known is left out: the zero values below.
func TestMappingKeepsNullAndEmpty(t *testing.T) {
	st := statusResult(supervisor.Status{Releases: []supervisor.ReleaseStatus{{ReleaseID: "v1"}}, Services: []supervisor.UnitStatus{}})
	if st.Orphans != nil || st.Singletons != nil || st.Services == nil || len(st.Services) != 0 {
		t.Errorf("lists: orphans %#v services %#v singletons %#v", st.Orphans, st.Services, st.Singletons)
	}
	if r := st.Releases[0]; r.Processes != nil || r.Ports == nil || r.Revision != "v1" || r.Error != "" || !r.ActivatedAt.IsZero() {
		t.Errorf("release %+v", r)
	}
	p := processEntry(supervisor.ProcessStatus{Status: process.Status{}})
	if p.Logs == nil || p.Children == nil || p.LastStartReason != "" || p.Pid != 0 || p.ExitCode.Set || p.ExitSignal.Set || p.UptimeMs != nil {
		t.Errorf("process %+v", p)
	}
	logs := []events.Event{{Message: "x"}}
	ev := mapSlice(logs, func(e events.Event) control.Event { return control.Event{Message: string(e.Message), Data: e.Data} })
	if len(ev) != 1 || ev[0].Data != nil {
		t.Errorf("events %+v", ev)
	}
}

// TestExitStatusMapping: exitCode and exitSignal are left out until an
// exit, then both are sent, the one that does not apply as null.
func TestExitStatusMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   process.Status
		want string
	}{
		{"running", process.Status{ID: "w", State: process.Running, Pid: ptr(7)}, `"id":"w"`},
		{"exited 0", process.Status{ID: "w", State: process.Failed, ExitCode: ptr(0)}, `"exitCode":0,"exitSignal":null,"id":"w"`},
		{"killed", process.Status{ID: "w", State: process.Stopped, ExitSignal: ptr("SIGKILL")}, `"exitCode":null,"exitSignal":"SIGKILL","id":"w"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(processEntry(supervisor.ProcessStatus{Status: tc.st}))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b, []byte(`"cwd":"",`+tc.want+`,`)) {
				t.Errorf("got %s, want %s after cwd", b, tc.want)
			}
		})
	}
}

func TestWireErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code string
	}{
		{"not found", fmt.Errorf("stop: %w", supervisor.ErrNotFound), control.CodeNotFound},
		{"conflict", supervisor.ErrConflict, control.CodeConflict},
		{"invalid", supervisor.ErrInvalid, control.CodeBadRequest},
		{"busy", supervisor.ErrBusy, control.CodeDeployInProgress},
		{"shutting down", fmt.Errorf("deploy of release v1 failed: %w", supervisor.ErrShuttingDown), control.CodeShuttingDown},
		{"other", errors.New("disk full"), control.CodeFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if e := wireError(tc.err); e.Code != tc.code || e.Message != tc.err.Error() {
				t.Errorf("got %+v, want code %s and message %q", e, tc.code, tc.err.Error())
			}
		})
	}
}

// countEvents returns how many events of each message the daemon recorded.
func countEvents(t *testing.T, c *control.Client) map[string]int {
	t.Helper()
	res, err := c.Events(context.Background(), control.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range res.Events {
		n[e.Message]++
	}
	return n
}

// TestEachFailureRecordedOnce: a deploy whose flow failed is recorded by
// the supervisor only ("deploy failed"), a refusal and bad input as
// "command failed" only.
func TestEachFailureRecordedOnce(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(t, dir, "{}")
	runDaemon(t, Options{Config: cfg, Stdout: &lockedBuffer{}})
	c := &control.Client{Path: cfg.Control.Path}
	ctx := context.Background()
	want := map[string]int{}
	check := func(step string) {
		t.Helper()
		got := countEvents(t, c)
		if got["deploy failed"] != want["deploy failed"] || got["command failed"] != want["command failed"] {
			t.Errorf("after %s: deploy failed %d, command failed %d; want %d and %d", step,
				got["deploy failed"], got["command failed"], want["deploy failed"], want["command failed"])
		}
	}

	// The release path is missing: the supervisor records it.
	if _, err := c.Deploy(ctx, control.DeployRequest{ReleasePath: filepath.Join(dir, "none")}, nil); err == nil {
		t.Fatal("deploy of a missing path succeeded")
	}
	want["deploy failed"]++
	check("missing release path")

	// The process exits at once ('true'): the flow fails, the supervisor records it.
	rel := filepath.Join(dir, "r1")
	if err := os.Mkdir(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(ctx, control.DeployRequest{ReleasePath: rel, ReleaseID: "v1"}, nil); err == nil {
		t.Fatal("deploy of a release whose process exits succeeded")
	}
	want["deploy failed"]++
	check("failed flow")

	// Refusals: nothing ran, the handler records them.
	if _, err := c.Rollback(ctx, control.RollbackRequest{ReleaseID: "nope"}, nil); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("rollback: %v", err)
	}
	if _, err := c.Stop(ctx, control.StopRequest{}); !errors.Is(err, control.ErrNotFound) {
		t.Errorf("stop: %v", err)
	}
	want["command failed"] += 2
	check("refusals")

	// Input that never reaches the handler: the server's hook records it.
	conn, err := net.Dial("unix", cfg.Control.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("{\"command\":\"nope\"}\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	want["command failed"]++
	check("bad input")
}
