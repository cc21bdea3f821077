package state

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

func sample() *Snapshot {
	return &Snapshot{
		Application: "shop", SavedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), DaemonPid: 42,
		ActiveReleaseID: "v2",
		Releases: []ReleaseRecord{
			{ID: "v2", Path: "/srv/r/2", Revision: "abc", State: "active", ActivatedAt: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC), Ports: map[string]int{"web": 18001}},
			{ID: "v1", Path: "/srv/r/1", State: "stopped", ActivatedAt: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC), RetiredAt: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)},
		},
		Processes: []ProcessRecord{{ID: "worker#1", ProcessID: "worker", ReleaseID: "v2", Policy: "companion", Pid: 1234, StartTime: 99, Restarts: 2}},
		Events:    []events.Event{{At: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC), Message: "traffic switched", Data: map[string]any{"releaseId": "v2"}}},
	}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	in := sample()
	if err := Save(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !out.ownerKnown || out.owner != uint32(os.Getuid()) {
		t.Errorf("owner %d (known %v), want %d: the file's", out.owner, out.ownerKnown, os.Getuid())
	}
	out.owner, out.ownerKnown = in.owner, in.ownerKnown
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n%+v\n%+v", in, out)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".s.json.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestConcurrentWritesLeaveACompleteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				s := sample()
				s.DaemonPid = i*100 + j
				if err := Save(path, s); err != nil {
					t.Error(err)
					return
				}
				// A reader at any moment sees one whole snapshot.
				if _, err := Load(path); err != nil {
					t.Errorf("read while writing: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
}

func TestTornAndForeignFiles(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"torn":    `{"version":1,"application":"shop","releases":[{"id":`,
		"garbage": "\x00\x01not json",
		"future":  `{"version":99}`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		var ce *CorruptError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "ignored") {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestSaveFailureIsAnError(t *testing.T) {
	err := Save("/nonexistent-dir/s.json", sample())
	if err == nil || !strings.Contains(err.Error(), "write state file") {
		t.Errorf("got %v", err)
	}
}

func TestNoEnvironmentInFile(t *testing.T) {
	// The snapshot type has no place for environments; make sure no future
	// field smuggles one in under a name like "env".
	path := filepath.Join(t.TempDir(), "s.json")
	if err := Save(path, sample()); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(strings.ToLower(string(b)), `"env`) {
		t.Errorf("state file mentions an environment:\n%s", b)
	}
}

// TestNoSecretsInFile: the keys that can carry a secret are removed from
// event data at any depth before the file is written; the caller's events
// (the live history) keep them.
func TestNoSecretsInFile(t *testing.T) {
	const secret = "hunter2-in-the-file"
	type procStatus struct {
		ID      string   `json:"id"`
		Command string   `json:"command"`
		Logs    []string `json:"logs"`
	}
	snap := sample()
	failed := map[string]any{"releaseId": "v3", "error": "health check failed",
		"output": map[string][]string{"web": {"token=" + secret}}}
	snap.Events = append(snap.Events,
		events.Event{At: time.Now().UTC(), Message: "deploy failed", Data: failed},
		events.Event{At: time.Now().UTC(), Message: "process started", Data: map[string]any{"id": "web", "command": "serve --token " + secret, "cwd": "/srv/" + secret}},
		events.Event{At: time.Now().UTC(), Message: "release startup process status", Data: map[string]any{"processes": []any{
			procStatus{ID: "web", Command: "x " + secret, Logs: []string{secret}},
			map[string]any{"id": "worker", "env": map[string]string{"TOKEN": secret}, "environment": secret, "children": []string{secret}},
		}}},
	)
	path := filepath.Join(t.TempDir(), "s.json")
	if err := Save(path, snap); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) {
		t.Errorf("the state file holds the secret:\n%s", b)
	}
	for _, key := range []string{"output", "command", "cwd", "logs", "env", "environment", "children"} {
		if strings.Contains(string(b), `"`+key+`"`) {
			t.Errorf("the state file has a %q key", key)
		}
	}
	out, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := out.Events[len(out.Events)-3]
	if got.Data["releaseId"] != "v3" || got.Data["error"] != "health check failed" {
		t.Errorf("the other keys must stay: %v", got.Data)
	}
	procs, _ := out.Events[len(out.Events)-1].Data["processes"].([]any)
	if len(procs) != 2 || procs[0].(map[string]any)["id"] != "web" || procs[1].(map[string]any)["id"] != "worker" {
		t.Errorf("nested objects keep their other keys: %v", procs)
	}
	if _, ok := failed["output"]; !ok {
		t.Error("Save changed the caller's event data")
	}
}

func TestOrphansByPidAndStartTime(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	s := &Snapshot{Processes: []ProcessRecord{
		{ID: "alive", Pid: pid, StartTime: start, ReleaseID: "v1"},
		{ID: "recycled", Pid: pid, StartTime: start + 1, ReleaseID: "v1"}, // same pid, another process
		{ID: "gone", Pid: 1 << 30, StartTime: 5},
	}}
	got := s.Orphans()
	if len(got) != 1 || got[0] != (Orphan{ID: "alive", Pid: pid, ReleaseID: "v1", StartTime: start, Group: true}) {
		t.Errorf("orphans %+v", got)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if got := s.Orphans(); len(got) != 0 {
		t.Errorf("after kill: %+v", got)
	}
}

func TestRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	if err := Remove(path); err != nil {
		t.Errorf("missing file: %v", err)
	}
	_ = Save(path, sample())
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("not removed")
	}
}
