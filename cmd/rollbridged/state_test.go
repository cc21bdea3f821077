package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

func (f *fixture) status() control.Status {
	f.t.Helper()
	st, err := f.client().Status(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func (f *fixture) events() string {
	f.t.Helper()
	ev, err := f.client().Events(context.Background(), control.EventsRequest{})
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := json.Marshal(ev.Events)
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func (f *fixture) statePath() string { return filepath.Join(f.dir, "state.json") }

func stateFixture(t *testing.T) *fixture {
	f := newFixture(t, 0, "{}")
	// statePath is set after the fixture knows its directory.
	src, _ := os.ReadFile(f.cfg)
	if err := os.WriteFile(f.cfg, []byte(string(src)+fmt.Sprintf(" + {statePath: %q}", f.statePath())), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestOrphansAfterDaemonSIGKILL(t *testing.T) {
	f := stateFixture(t)
	first := f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	webPid := f.status().Releases[0].Processes[0].Pid
	testutil.Eventually(t, "state file naming the web process", func() bool {
		s, err := state.Load(f.statePath())
		return err == nil && s.ActiveReleaseID == "v1" && len(s.Processes) == 1 && s.Processes[0].Pid == webPid
	})
	_ = first.Process.Kill() // the daemon dies; its children (own process groups) live on
	_ = first.Wait()
	if start, err := procfs.StartTime(webPid); err == nil {
		defer func() {
			if procfs.Alive(webPid, start) { // a live leader still owns its group id
				_ = syscall.Kill(-webPid, syscall.SIGKILL)
			}
		}()
	}
	if syscall.Kill(webPid, 0) != nil {
		t.Fatal("the web process died with the daemon; nothing to test")
	}
	_ = os.Remove(f.sock) // the old daemon could not clean up
	f.start(nil, "")
	f.waitReady()
	st := f.status()
	if len(st.Orphans) != 1 || st.Orphans[0].Pid != webPid || st.Orphans[0].ID != "web" || st.Orphans[0].ReleaseID == nil || *st.Orphans[0].ReleaseID != "v1" {
		t.Fatalf("orphans %+v", st.Orphans)
	}
	// With an orphan alive, nothing is restored: two copies would fight.
	if st.ActiveReleaseID != nil || st.Daemon.RestoreProblem == nil || !strings.Contains(*st.Daemon.RestoreProblem, "rollbridgectl recover") {
		t.Errorf("restore with orphans alive: active %v problem %v", st.ActiveReleaseID, st.Daemon.RestoreProblem)
	}
	if ev := f.events(); !strings.Contains(ev, "orphaned processes found") || !strings.Contains(ev, "restore skipped") {
		t.Errorf("events lack the orphan report: %s", ev)
	}
	// The new daemon's own saves keep the leftover on record, and so does a
	// shutdown: that file is what rollbridgectl recover reads afterwards.
	testutil.Eventually(t, "the leftover kept in the new daemon's state file", func() bool {
		s, err := state.Load(f.statePath())
		return err == nil && len(s.Orphans()) == 1 && s.Orphans()[0].Pid == webPid
	})
	if _, err := f.client().Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := state.Load(f.statePath())
	if err != nil || len(s.Orphans()) != 1 || s.Orphans()[0].Pid != webPid {
		t.Fatalf("after shutdown the state file must still name the orphan for recover: %v %+v", err, s)
	}
	// Once the leftover is stopped, a new daemon lists nothing.
	_ = syscall.Kill(-webPid, syscall.SIGKILL)
	testutil.Eventually(t, "orphan gone", func() bool { return len(s.Orphans()) == 0 })
	f.start(nil, "")
	f.waitReady()
	if o := f.status().Orphans; len(o) != 0 {
		t.Errorf("orphans after they were stopped: %+v", o)
	}
}

func TestRestoreWithUnrecordedActiveRelease(t *testing.T) {
	f := stateFixture(t)
	good := filepath.Join(f.dir, "v1")
	if err := os.MkdirAll(good, 0o755); err != nil {
		t.Fatal(err)
	}
	// The active release is not among the recorded ones (a hand-edited or
	// older file): the daemon must not crash, and restores what it can.
	f.reboot("ghost", map[string]string{"v1": good})
	f.start(nil, "")
	f.waitReady()
	st := f.status()
	if st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" || st.Daemon.RestoreProblem == nil ||
		!strings.Contains(*st.Daemon.RestoreProblem, "release ghost could not be restored (it was not recorded)") {
		t.Errorf("active %v problem %v", st.ActiveReleaseID, st.Daemon.RestoreProblem)
	}
}

// reboot writes the state a daemon leaves when the machine goes down: an
// active release and processes whose pids are long gone.
func (f *fixture) reboot(active string, releases map[string]string) {
	f.t.Helper()
	snap := &state.Snapshot{Application: "sd", ActiveReleaseID: active,
		Processes: []state.ProcessRecord{{ID: "web", ProcessID: "web", ReleaseID: active, Pid: 1 << 30, StartTime: 1}}}
	at := time.Now().Add(-time.Hour)
	for id, path := range releases {
		at = at.Add(time.Minute)
		snap.Releases = append(snap.Releases, state.ReleaseRecord{ID: id, Path: path, State: "stopped", ActivatedAt: at, RetiredAt: at.Add(time.Second)})
	}
	if err := state.Save(f.statePath(), snap); err != nil {
		f.t.Fatal(err)
	}
}

func TestRestoreAfterReboot(t *testing.T) {
	f := stateFixture(t)
	rel := filepath.Join(f.dir, "v7")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	f.reboot("v7", map[string]string{"v7": rel})
	nsock, msgs := notifySocket(t, f.dir)
	f.start([]string{"NOTIFY_SOCKET=" + nsock}, "")
	// The very first status answer already shows the restored release:
	// restore runs before the control socket is served.
	var st control.Status
	testutil.Eventually(t, "the first status answer", func() bool {
		var err error
		st, err = f.client().Status(context.Background())
		return err == nil
	})
	if st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v7" || st.Daemon.RestoreProblem != nil {
		t.Fatalf("first status after start: active %v problem %v", st.ActiveReleaseID, st.Daemon.RestoreProblem)
	}
	waitMsg(t, msgs, "READY=1")
	if code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", st.Proxy.Port)); code != 200 || body != "v7" {
		t.Errorf("served %d %q", code, body)
	}
	if ev := f.events(); !strings.Contains(ev, `"release restored"`) {
		t.Errorf("events: %s", ev)
	}
}

func TestRestoreFallsBackToPreviousRelease(t *testing.T) {
	f := stateFixture(t)
	good := filepath.Join(f.dir, "v1")
	if err := os.MkdirAll(good, 0o755); err != nil {
		t.Fatal(err)
	}
	// v2 was active, but its directory was pruned by the deploy tool.
	f.reboot("v2", map[string]string{"v1": good, "v2": filepath.Join(f.dir, "gone")})
	f.start(nil, "")
	f.waitReady()
	st := f.status()
	if st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Fatalf("active %v", st.ActiveReleaseID)
	}
	if st.Daemon.RestoreProblem == nil || !strings.Contains(*st.Daemon.RestoreProblem, "release v2 could not be restored") {
		t.Errorf("problem %v", st.Daemon.RestoreProblem)
	}
}

func TestRestoreNothingServes503(t *testing.T) {
	f := stateFixture(t)
	f.reboot("v2", map[string]string{"v2": filepath.Join(f.dir, "gone")})
	f.start(nil, "")
	f.waitReady()
	st := f.status()
	if st.ActiveReleaseID != nil || st.Daemon.RestoreProblem == nil || !strings.Contains(*st.Daemon.RestoreProblem, "nothing could be restored") {
		t.Errorf("active %v problem %v", st.ActiveReleaseID, st.Daemon.RestoreProblem)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", st.Proxy.Port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestStateFileOnStopAndShutdown(t *testing.T) {
	f := stateFixture(t)
	cmd := f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	s, err := state.Load(f.statePath())
	if err != nil {
		t.Fatalf("SIGTERM must keep the state file: %v", err)
	}
	if !s.Stopped || s.ActiveReleaseID != "v1" || len(s.Processes) != 0 {
		t.Errorf("final snapshot: stopped %v active %q processes %d", s.Stopped, s.ActiveReleaseID, len(s.Processes))
	}
	// Started again (systemctl start after a stop or reboot): v1 comes back.
	f.start(nil, "")
	f.waitReady()
	if st := f.status(); st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Fatalf("not restored after a clean stop: %v", st.ActiveReleaseID)
	}
	// The shutdown command is the clean end: the file goes.
	if _, err := f.client().Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.statePath()); !os.IsNotExist(err) {
		t.Errorf("state file after shutdown: %v", err)
	}
}

func TestCorruptStateFileIgnored(t *testing.T) {
	f := stateFixture(t)
	if err := os.WriteFile(f.statePath(), []byte(`{"version":1,"releases":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	f.start(nil, "")
	f.waitReady()
	if ev := f.events(); !strings.Contains(ev, "state file unreadable") {
		t.Errorf("events: %s", ev)
	}
	f.deploy("v1")
	testutil.Eventually(t, "the file to be rewritten", func() bool {
		s, err := state.Load(f.statePath())
		return err == nil && s.ActiveReleaseID == "v1"
	})
}

func TestStateSaveFailureIsNotFatal(t *testing.T) {
	f := newFixture(t, 0, "{}")
	src, _ := os.ReadFile(f.cfg)
	// A directory that does not exist: every save fails.
	if err := os.WriteFile(f.cfg, []byte(string(src)+fmt.Sprintf(" + {statePath: %q}", filepath.Join(f.dir, "nope", "state.json"))), 0o644); err != nil {
		t.Fatal(err)
	}
	f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	testutil.Eventually(t, "a state save failed event", func() bool { return strings.Contains(f.events(), "state save failed") })
	if n := strings.Count(f.events(), "state save failed"); n != 1 {
		t.Errorf("%d failure events; the same error should be reported once", n)
	}
	f.deploy("v2") // still working
}

// TestIdleDaemonLeavesStateFileAlone checks that a daemon with nothing to
// record does not rewrite (and fsync) its state file on a timer: every save
// replaces the file, so its inode would change.
func TestIdleDaemonLeavesStateFileAlone(t *testing.T) {
	f := stateFixture(t)
	f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	inode := func() uint64 {
		st, err := os.Stat(f.statePath())
		if err != nil {
			return 0
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	// The deploy's last event is the switch; once the file holds it, nothing is left to save.
	testutil.Eventually(t, "the switch saved", func() bool {
		s, err := state.Load(f.statePath())
		return err == nil && len(s.Events) > 0 && s.Events[len(s.Events)-1].Message == "traffic switched"
	})
	before := inode()
	// The window is what is tested, not a wait for something: it outlasts
	// the 5 s save timer the daemon once had, and nothing may happen in it.
	time.Sleep(6 * time.Second)
	if after := inode(); after != before {
		t.Errorf("the state file was rewritten while the daemon was idle (inode %d -> %d)", before, after)
	}
}

// TestStateFileHoldsNoSecrets: a release whose command line and environment
// carry secrets, and whose process prints them, fails to deploy. The live
// events keep its output for the operator; the state file on disk holds
// none of it.
func TestStateFileHoldsNoSecrets(t *testing.T) {
	const envSecret, argSecret = "hunter2-from-env", "s3cr3t-on-the-command-line"
	statePath := filepath.Join(t.TempDir(), "state.json")
	f := newFixture(t, 0, fmt.Sprintf(`{statePath: %q, processes: [{id: 'web', policy: 'proxied', port: {from: 30000, to: 32499},
	  env: {API_TOKEN: %q}, command: 'echo "token=$API_TOKEN"; echo "arg=%s" >&2; exit 3'}]}`, statePath, envSecret, argSecret))
	f.start(nil, "")
	f.waitReady()
	rel := filepath.Join(f.dir, "v1")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client().Deploy(context.Background(), control.DeployRequest{ReleasePath: rel, ReleaseID: "v1"}, nil); err == nil {
		t.Fatal("the deploy of a release that exits at once succeeded")
	}
	// The operator still sees the output where it belongs: the live history.
	if ev := f.events(); !strings.Contains(ev, envSecret) {
		t.Fatalf("the deploy failed event lost the process output: %s", ev)
	}
	testutil.Eventually(t, "the failed deploy recorded in the state file", func() bool {
		s, err := state.Load(statePath)
		if err != nil {
			return false
		}
		for _, e := range s.Events {
			if e.Message == "deploy failed" {
				return true
			}
		}
		return false
	})
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{envSecret, argSecret} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the state file holds %q:\n%s", secret, b)
		}
	}
}
