package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current encoder")

// fixed is a Handler that answers every command with the values it holds,
// or with err.
type fixed struct {
	progress []Progress
	deploy   DeployResult
	status   Status
	restart  RestartResult
	logs     LogsResult
	events   EventsResult
	canary   CanaryResult
	host     HostResult
	traffic  TrafficResult
	err      error
}

func (f fixed) Deploy(_ context.Context, _ DeployRequest, progress func(Progress)) (DeployResult, error) {
	for _, p := range f.progress {
		progress(p)
	}
	return f.deploy, f.err
}

func (f fixed) Rollback(ctx context.Context, _ RollbackRequest, progress func(Progress)) (DeployResult, error) {
	return f.Deploy(ctx, DeployRequest{}, progress)
}

func (f fixed) Status(context.Context) (Status, error)            { return f.status, f.err }
func (f fixed) Stop(context.Context, StopRequest) (Status, error) { return f.status, f.err }
func (f fixed) Restart(context.Context, RestartRequest) (RestartResult, error) {
	return f.restart, f.err
}
func (f fixed) Logs(context.Context, LogsRequest) (LogsResult, error)       { return f.logs, f.err }
func (f fixed) Events(context.Context, EventsRequest) (EventsResult, error) { return f.events, f.err }
func (f fixed) Shutdown(context.Context) (ShutdownResult, error) {
	return ShutdownResult{Message: "shutdown"}, f.err
}

func (f fixed) DeployCanary(_ context.Context, _ DeployCanaryRequest, progress func(Progress)) (CanaryResult, error) {
	for _, p := range f.progress {
		progress(p)
	}
	return f.canary, f.err
}

func (f fixed) RolloutSet(context.Context, RolloutSetRequest) (CanaryResult, error) {
	return f.canary, f.err
}

func (f fixed) RolloutPromote(ctx context.Context, progress func(Progress)) (CanaryResult, error) {
	return f.DeployCanary(ctx, DeployCanaryRequest{}, progress)
}

func (f fixed) RolloutAbort(context.Context) (CanaryResult, error) { return f.canary, f.err }

func (f fixed) DrainHost(_ context.Context, _ DrainHostRequest, progress func(Progress)) (HostResult, error) {
	for _, p := range f.progress {
		progress(p)
	}
	return f.host, f.err
}

func (f fixed) UndrainHost(context.Context) (HostResult, error) { return f.host, f.err }

func (f fixed) Pause(context.Context, PauseRequest) (TrafficResult, error) { return f.traffic, f.err }
func (f fixed) Resume(context.Context) (TrafficResult, error)              { return f.traffic, f.err }
func (f fixed) Maintenance(context.Context, MaintenanceRequest) (TrafficResult, error) {
	return f.traffic, f.err
}

func ptr[T any](v T) *T { return &v }

// goldenStatus has every field docs/protocol.md shows, set: a live release
// with a running process, a stopped one, a service that crashed, a
// singleton killed by a signal, an orphan, the control section with every
// key, a restore problem and a command in progress.
func goldenStatus() Status {
	at := At(time.Date(2026, 11, 26, 14, 30, 0, 120_000_000, time.UTC))
	web := Process{ID: "web", Command: "bin/server --port 18183", Cwd: "/srv/shop/releases/2", State: "running",
		Pid: 4242, StartedAt: at, UptimeMs: ptr(int64(5021)), LastStartReason: "deploy",
		Logs:     []LogLine{{At: at, Line: "listening on 18183", Stream: "stdout"}},
		RSSBytes: 1 << 20, Children: []Member{{Pid: 4243, Command: "worker", RSSBytes: 4096}, {Pid: 4244, Command: "sh"}},
		Policy: "proxied", Port: 18183}
	justStarted := Process{ID: "worker#0", Command: "bin/worker", Cwd: "/srv/shop/releases/2", State: "running",
		Pid: 4245, StartedAt: at, UptimeMs: ptr(int64(0)), LastStartReason: "deploy", Logs: []LogLine{}, Children: []Member{},
		Policy: "companion"}
	old := Process{ID: "web", Command: "bin/server --port 18182", Cwd: "/srv/shop/releases/1", State: "stopped",
		StartedAt: at, ExitCode: Nullable[int]{Set: true}, ExitSignal: Nullable[string]{Set: true, Value: ptr("SIGTERM")},
		LastStartReason: "deploy", Logs: []LogLine{}, Children: []Member{}, Policy: "proxied", Port: 18182}
	crashed := Process{ID: "beacon", Command: "bin/beacon", Cwd: "/srv/shop/releases/2", State: "failed",
		Restarts: 3, StartedAt: at, ExitCode: Nullable[int]{Set: true, Value: ptr(0)}, ExitSignal: Nullable[string]{Set: true},
		LastStartReason: "crash", Logs: []LogLine{}, MemoryRestarts: 1, LastMemoryRestartAt: at, Children: []Member{},
		Policy: "service", Port: 7330}
	never := Process{ID: "scheduler", Command: "bin/cron", Cwd: "/srv/shop/releases/2", State: "stopped",
		Logs: []LogLine{}, Children: []Member{}, Policy: "singleton"}
	return Status{
		ActiveReleaseID: ptr("v2"), Application: "shop",
		Control: ControlInfo{Path: "/run/rollbridge-shop.sock", Mode: ptr(uint32(0o660)), Owner: &IDOrName{Name: "deploy"}, Group: &IDOrName{ID: 1001}},
		Orphans: []Orphan{{ID: "worker#0", Pid: 3999, ReleaseID: ptr("v0")}, {ID: "beacon", Pid: 3998}},
		Proxy: ProxyInfo{Host: "127.0.0.1", Port: 8182, UpstreamHost: "127.0.0.1", Held: 7, HoldGaveUp: 2,
			Paused: true, PausedUntil: at, Maintenance: &MaintenanceInfo{Since: at, Message: "Back at 15:00 UTC", Page: true},
			HostDrained: true, HostDrainedSince: at},
		Releases: []Release{
			{ReleaseID: "v1", ReleasePath: "/srv/shop/releases/1", Revision: "v1", State: "stopped",
				Ports: Ports{{"web", 18182}, {"beacon", 7330}}, CreatedAt: at, ActivatedAt: at, DrainStartedAt: at, StoppedAt: at,
				Processes: []Process{old}},
			{ReleaseID: "v2", ReleasePath: "/srv/shop/releases/2", Revision: "abc123", State: "active",
				Ports: Ports{{"web", 18183}, {"beacon", 7330}}, Connections: Connections{HTTP: 3, WebSocket: 12}, ConnectionCount: 15,
				CreatedAt: at, ActivatedAt: at, Processes: []Process{justStarted, web}},
			{ReleaseID: "v3", ReleasePath: "/srv/shop/releases/3", Revision: "v3", State: "failed", Ports: Ports{},
				CreatedAt: at, StoppedAt: at, Error: "health check failed", Processes: []Process{}},
		},
		Services:   []Unit{{ID: "beacon", ReleaseID: "v2", Process: crashed}},
		Singletons: []Unit{{ID: "scheduler", ReleaseID: "v2", Process: never}},
		Daemon: &DaemonInfo{Pid: 4100, Version: "0.1.0", StartedAt: at, CommandInProgress: ptr("deploy of release v4 (started 2026-11-26T14:30:00Z)"),
			RestoreProblem: ptr("release v0 could not be restored")},
	}
}

// emptyStatus is a fresh daemon's status: the documented arrays are
// empty, activeReleaseId null, the optional values left out.
// canaryStatus is emptyStatus with a canary beside the active release.
func canaryStatus() Status {
	s := emptyStatus()
	s.ActiveReleaseID = ptr("v1")
	s.Canary = &CanaryInfo{ReleaseID: "v2", Percent: 10, Sticky: "cookie", Cookie: "rollbridge_canary"}
	return s
}

func emptyStatus() Status {
	at := At(time.Date(2026, 11, 26, 14, 30, 0, 0, time.UTC))
	return Status{Application: "shop", Control: ControlInfo{Path: "/run/rollbridge-shop.sock"}, Orphans: []Orphan{},
		Proxy: ProxyInfo{Host: "127.0.0.1", Port: 8182, UpstreamHost: "127.0.0.1"}, Releases: []Release{},
		Services: []Unit{}, Singletons: []Unit{}, Daemon: &DaemonInfo{Pid: 4100, Version: "0.1.0", StartedAt: at}}
}

// TestGoldenWireBytes pins the exact bytes of every answer docs/protocol.md
// documents: each command's success line, progress lines, and each error
// code, including which absent values are null and which are left out.
// Run with -update after an intended protocol change, and update the docs.
func TestGoldenWireBytes(t *testing.T) {
	at := At(time.Date(2026, 11, 26, 14, 30, 0, 0, time.UTC))
	progress := []Progress{
		{Message: "deploy starting", Data: map[string]any{"releaseId": "abc123", "releasePath": "/srv/app/releases/42"}},
		{Message: "process started", Data: map[string]any{"id": "web", "pid": 4242}},
		{Message: "traffic switched", Data: map[string]any{"previousReleaseId": "v41", "releaseId": "abc123"}},
		{Message: "no data"},
	}
	cases := []struct {
		name, request string
		h             fixed
	}{
		{"deploy", `{"command":"deploy","releasePath":"/srv/app/releases/42","revision":"abc123"}`,
			fixed{progress: progress, deploy: DeployResult{ActiveReleaseID: "abc123", PreviousReleaseID: ptr("v41")}}},
		{"deploy-progress", `{"command":"deploy","releasePath":"/srv/app/releases/42","revision":"abc123","progress":true}`,
			fixed{progress: progress, deploy: DeployResult{ActiveReleaseID: "abc123", PreviousReleaseID: ptr("v41")}}},
		{"deploy-first", `{"command":"deploy","releasePath":"/srv/app/releases/1"}`,
			fixed{deploy: DeployResult{ActiveReleaseID: "20261126143000"}}},
		{"rollback", `{"command":"rollback"}`, fixed{deploy: DeployResult{ActiveReleaseID: "v41", PreviousReleaseID: ptr("abc123")}}},
		{"status", `{"command":"status"}`, fixed{status: goldenStatus()}},
		{"status-empty", `{"command":"status"}`, fixed{status: emptyStatus()}},
		{"stop", `{"command":"stop","releaseId":"v2"}`, fixed{status: emptyStatus()}},
		{"restart", `{"command":"restart","processId":"worker"}`, fixed{restart: RestartResult{Restarted: []string{"worker#0", "worker#1"}}}},
		{"restart-both", `{"command":"restart","processId":"worker#1","policy":"companion"}`, fixed{restart: RestartResult{Restarted: []string{"worker#1"}}}},
		{"restart-none", `{"command":"restart","policy":"service"}`, fixed{restart: RestartResult{Restarted: []string{}}}},
		{"logs", `{"command":"logs"}`, fixed{logs: LogsResult{Processes: []ProcessLogs{
			{ID: "web", Source: "release v2 (active)", Logs: []LogLine{{At: at, Line: "GET / 200", Stream: "stdout"}, {At: at, Line: "warn", Stream: "stderr"}}},
			{ID: "beacon", Source: "service", Logs: []LogLine{}}}}}},
		{"logs-none", `{"command":"logs"}`, fixed{logs: LogsResult{Processes: []ProcessLogs{}}}},
		{"events", `{"command":"events","limit":2}`, fixed{events: EventsResult{Events: []Event{
			{At: at, Message: "deploy starting", Data: map[string]any{"releaseId": "v2", "previousReleaseId": nil, "releasePath": "/srv/shop/releases/2"}},
			{At: at, Message: "daemon stopping", Data: map[string]any{}}}}}},
		{"events-none", `{"command":"events"}`, fixed{events: EventsResult{Events: []Event{}}}},
		{"shutdown", `{"command":"shutdown"}`, fixed{}},
		{"drain-host", `{"command":"drainHost"}`, fixed{host: HostResult{Drained: true, Changed: true, HealthPath: "/_rollbridge/host"}}},
		{"drain-host-wait", `{"command":"drainHost","wait":true,"quietMs":2000,"timeoutMs":60000,"progress":true}`,
			fixed{progress: []Progress{{Message: "waiting for traffic to stop", Data: map[string]any{"quietMs": 2000, "sinceLastRequestMs": 0}}},
				host: HostResult{Drained: true, Changed: true, HealthPath: "/_rollbridge/host", QuietMs: 2013}}},
		{"undrain-host", `{"command":"undrainHost"}`, fixed{host: HostResult{Drained: false, Changed: true, Healthy: true, HealthPath: "/_rollbridge/host"}}},
		{"error-bad-quiet", `{"command":"drainHost","wait":true,"quietMs":-1}`, fixed{}},
		{"pause", `{"command":"pause","timeoutMs":120000}`, fixed{traffic: TrafficResult{Paused: true, PausedUntil: at}}},
		{"pause-drain", `{"command":"pause","drain":true}`, fixed{traffic: TrafficResult{Paused: true, PausedUntil: at, Held: 3, Drained: true}}},
		{"resume", `{"command":"resume"}`, fixed{traffic: TrafficResult{}}},
		{"maintenance-on", `{"command":"maintenance","state":"on","message":"Back at 15:00 UTC","page":"<h1>Back soon</h1>"}`,
			fixed{traffic: TrafficResult{Maintenance: &MaintenanceInfo{Since: at, Message: "Back at 15:00 UTC", Page: true}}}},
		{"maintenance-off", `{"command":"maintenance","state":"off"}`, fixed{traffic: TrafficResult{}}},
		{"error-maintenance-state", `{"command":"maintenance","state":"maybe"}`, fixed{}},
		{"error-pause-timeout", `{"command":"pause","timeoutMs":-5}`, fixed{}},
		{"error-not-found", `{"command":"rollback","releaseId":"nope"}`, fixed{err: Errorf(CodeNotFound, "release nope is not retained; retained releases: v1")}},
		{"error-conflict", `{"command":"rollback","releaseId":"v1"}`, fixed{err: Errorf(CodeConflict, "release v1 is already active")}},
		{"error-busy", `{"command":"stop"}`, fixed{err: Errorf(CodeDeployInProgress, "another command is running: deploy of release v3")}},
		{"error-shutting-down", `{"command":"restart"}`, fixed{err: Errorf(CodeShuttingDown, "the daemon is shutting down")}},
		{"error-wrapped-code", `{"command":"restart","policy":"x"}`, fixed{err: fmt.Errorf("restart: %w", Errorf(CodeBadRequest, "unknown policy \"x\""))}},
		{"error-failed", `{"command":"deploy","releasePath":"/r","progress":true}`, fixed{progress: progress[:1], err: errors.New("deploy of release v2 failed: health check failed")}},
		{"error-malformed", `{"command":`, fixed{}},
		{"error-unknown-command", `{"command":"explode"}`, fixed{}},
		{"error-missing-field", `{"command":"deploy"}`, fixed{}},
		{"error-wrong-type", `{"command":"restart","processId":7}`, fixed{}},
		{"deploy-canary", `{"command":"deployCanary","releasePath":"/srv/app/releases/43","revision":"def456","percent":12.5,"progress":true}`,
			fixed{progress: progress[:1], canary: CanaryResult{ActiveReleaseID: "abc123", CanaryReleaseID: ptr("def456"), Percent: 12.5}}},
		{"rollout-set", `{"command":"rolloutSet","percent":50}`,
			fixed{canary: CanaryResult{ActiveReleaseID: "abc123", CanaryReleaseID: ptr("def456"), Percent: 50, PreviousPercent: ptr(12.5)}}},
		{"rollout-promote", `{"command":"rolloutPromote"}`,
			fixed{canary: CanaryResult{ActiveReleaseID: "def456", PreviousReleaseID: ptr("abc123")}}},
		{"rollout-abort", `{"command":"rolloutAbort"}`,
			fixed{canary: CanaryResult{ActiveReleaseID: "abc123", PreviousReleaseID: ptr("def456")}}},
		{"status-canary", `{"command":"status"}`, fixed{status: canaryStatus()}},
		{"error-percent-missing", `{"command":"rolloutSet"}`, fixed{}},
		{"error-percent-range", `{"command":"deployCanary","releasePath":"/r","percent":101}`, fixed{}},
		{"error-no-canary", `{"command":"rolloutAbort"}`, fixed{err: Errorf(CodeNotFound, "no canary runs; nothing to abort")}},
		{"unknown-fields-ignored", `{"command":"status","releaseId":"v1","verbose":true}`, fixed{status: emptyStatus()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, path, _ := startServer(t, tc.h)
			got := exchange(t, path, tc.request)
			file := filepath.Join("testdata", "golden", tc.name+".jsonl")
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGoldenWireBytes -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("wire bytes changed:\ngot  %s\nwant %s", got, want)
			}
		})
	}
}

// exchange sends one request line and returns every line of the answer,
// progress lines included, as the server wrote them.
func exchange(t *testing.T, path, request string) []byte {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(request + "\n")); err != nil {
		t.Fatal(err)
	}
	var out []byte
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("reading the answer to %s: %v (so far: %s)", request, err, out)
		}
		out = append(out, line...)
		if !bytes.HasPrefix(line, []byte(`{"status":"progress"`)) {
			return out
		}
	}
}

// TestEncodeResultMatchesServer: rollbridgectl prints EncodeResult's bytes,
// the server sends them; they must be one and the same.
func TestEncodeResultMatchesServer(t *testing.T) {
	_, path, _ := startServer(t, fixed{status: goldenStatus()})
	got := exchange(t, path, `{"command":"status"}`)
	want, err := EncodeResult(goldenStatus())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append(want, '\n')) {
		t.Errorf("server sent\n%s\nEncodeResult gives\n%s", got, want)
	}
	// And a typed round trip loses nothing.
	st, err := (&Client{Path: path}).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	again, err := EncodeResult(st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, want) {
		t.Errorf("round trip changed the status:\n%s\n%s", again, want)
	}
}
