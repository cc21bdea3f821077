package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// startChild starts a real process that lives until the test ends, as the
// leader of its own process group (as the Node daemon spawned them).
func startChild(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// deadPid returns the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// nodeState writes a Node original's state file (the 0.1.7 shape:
// status without orphans, then events and persistedAt).
func nodeState(t *testing.T, v map[string]any) string {
	t.Helper()
	base := map[string]any{
		"activeReleaseId": "v2", "application": "shop", "control": map[string]any{"path": "/nonexistent/rollbridge-shop.sock"},
		"proxy":    map[string]any{"host": "127.0.0.1", "port": 8182, "upstreamHost": "127.0.0.1"},
		"releases": []any{}, "services": []any{}, "singletons": []any{}, "events": []any{},
		"persistedAt": "2026-06-01T11:00:05.000Z",
	}
	for k, x := range v {
		base[k] = x
	}
	b, err := json.MarshalIndent(base, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func proc(id string, pid int, startedAt time.Time) map[string]any {
	p := map[string]any{"id": id, "pid": pid, "state": "running", "restarts": 0, "memoryRestarts": 0, "logs": []any{}, "children": []any{}, "command": "x", "cwd": "/"}
	if !startedAt.IsZero() {
		p["startedAt"] = startedAt.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return p
}

func TestReadNodeStateFile(t *testing.T) {
	web, worker, beacon, recycled := startChild(t), startChild(t), startChild(t), startChild(t)
	now := time.Now()
	dead := deadPid(t)
	p := nodeState(t, map[string]any{
		"releases": []any{map[string]any{
			"releaseId": "v2", "releasePath": "/srv/shop/2", "revision": "abc", "state": "active", "activatedAt": "2026-06-01T11:00:03.001Z",
			"processes": []any{proc("worker#0", worker.Process.Pid, now), proc("web", web.Process.Pid, now), proc("gone", dead, now),
				proc("recycled", recycled.Process.Pid, now.Add(-time.Hour))},
		}},
		"services":   []any{map[string]any{"id": "beacon", "process": proc("beacon", beacon.Process.Pid, time.Time{})}},
		"singletons": []any{map[string]any{"id": "cron", "process": map[string]any{"id": "cron", "state": "failed"}}},
	})
	s, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Node == nil || s.Node.ControlPath != "/nonexistent/rollbridge-shop.sock" || s.Application != "shop" || s.ActiveReleaseID != "v2" {
		t.Fatalf("got %+v, want a Node snapshot of shop with v2 active", s)
	}
	if len(s.Releases) != 1 || s.Releases[0].Path != "/srv/shop/2" || s.Releases[0].Revision != "abc" {
		t.Errorf("releases %+v", s.Releases)
	}
	var got []Orphan
	for _, o := range s.Orphans() {
		got = append(got, Orphan{ID: o.ID, Pid: o.Pid, ReleaseID: o.ReleaseID}) // what the Node file names
	}
	want := fmt.Sprint([]Orphan{{ID: "worker#0", Pid: worker.Process.Pid, ReleaseID: "v2"}, {ID: "web", Pid: web.Process.Pid, ReleaseID: "v2"},
		{ID: "beacon", Pid: beacon.Process.Pid}})
	if fmt.Sprint(got) != want {
		t.Errorf("orphans %v, want %s (a dead pid and a pid that started at another time are not)", got, want)
	}
	for _, pr := range s.Processes {
		st, err := StartTime(pr.Pid)
		if err != nil || pr.StartTime != st {
			t.Errorf("%s: start time %d, want the process's own %d (%v)", pr.ID, pr.StartTime, st, err)
		}
	}
	if pr := s.Processes[0]; pr.ProcessID != "worker" {
		t.Errorf("base id %q, want worker", pr.ProcessID)
	}
}

func TestReadNodeOrphansOfHead(t *testing.T) {
	child := startChild(t)
	p := nodeState(t, map[string]any{"orphans": []any{map[string]any{"id": "worker#0", "pid": child.Process.Pid, "releaseId": "v0"}}})
	s, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Orphans(); len(got) != 1 || got[0].ID != "worker#0" || got[0].ReleaseID != "v0" {
		t.Errorf("orphans %+v, want worker#0 of v0", got)
	}
}

func TestReadOwnFormatAndForeign(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	if err := Save(path, sample()); err != nil {
		t.Fatal(err)
	}
	s, err := Read(path)
	if err != nil || s.Node != nil || s.ActiveReleaseID != "v2" {
		t.Fatalf("Read of our own file: %+v, %v", s, err)
	}
	for name, body := range map[string]string{
		"releases not an array":        `{"releases":{},"services":[],"singletons":[]}`,
		"a process of the wrong shape": `{"releases":[{"releaseId":"v1","processes":"x"}],"services":[],"singletons":[]}`,
		"not JSON":                     `{`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			var ce *CorruptError
			if _, err := Read(path); !errors.As(err, &ce) {
				t.Errorf("Read: %v, want a *CorruptError", err)
			}
		})
	}
}

// FuzzRead: a state file of either format from disk may be torn or
// hostile; Read must never panic and refuses only with a *CorruptError.
func FuzzRead(f *testing.F) {
	for _, seed := range []string{
		`{"releases":[{"releaseId":"v1","processes":[{"id":"web","pid":1,"startedAt":"2026-01-01T00:00:00.000Z"}]}],"services":[{"id":"b","process":{"pid":1.5}}],"singletons":[]}`,
		`{"orphans":[{"id":"w","pid":-1,"releaseId":null}],"releases":[],"services":[],"singletons":[]}`,
		`{"releases":[],"services":[],"singletons":[{"id":"x","process":{"pid":1e300}}]}`,
		`{"version":1,"releases":[],"processes":[]}`, `{"releases":null,"services":[],"singletons":[]}`,
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "state.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(p); err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Read refused with %T %v, want *CorruptError", err, err)
			}
		}
	})
}
