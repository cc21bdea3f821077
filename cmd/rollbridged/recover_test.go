package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/runtoken"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/state"
)

var (
	ctlOnce sync.Once
	ctlBin  string
	ctlErr  error
)

// ctlBinary builds rollbridgectl once, next to the daemon built by TestMain
// (whose directory TestMain removes at the end).
func ctlBinary(t *testing.T) string {
	t.Helper()
	ctlOnce.Do(func() {
		ctlBin = filepath.Join(filepath.Dir(daemonBin), "rollbridgectl")
		if out, err := exec.Command("go", "build", "-o", ctlBin, "../rollbridgectl").CombinedOutput(); err != nil {
			ctlErr = fmt.Errorf("build rollbridgectl: %v\n%s", err, out)
		}
	})
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	return ctlBin
}

// recoverForce runs `rollbridgectl recover --force --json` on f's config.
func (f *fixture) recoverForce() map[string]any {
	f.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(ctlBinary(f.t), "recover", "--force", "--json", "-c", f.cfg)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		f.t.Fatalf("rollbridgectl recover --force: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		f.t.Fatalf("recover --json: %v\n%s", err, stdout.String())
	}
	return res
}

// withState adds statePath to f's config.
func (f *fixture) withState() *fixture {
	f.t.Helper()
	src, _ := os.ReadFile(f.cfg)
	if err := os.WriteFile(f.cfg, []byte(string(src)+fmt.Sprintf(" + {statePath: %q}", f.statePath())), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return f
}

// pidsIn waits until file lists at least n pids and returns them; each
// one still alive at the end of the test is killed (by pid and start
// time, so a recycled pid is left alone).
func pidsIn(t *testing.T, file string, n int) []int {
	t.Helper()
	var out []int
	testutil.Eventually(t, fmt.Sprintf("%d pids in %s", n, filepath.Base(file)), func() bool {
		b, _ := os.ReadFile(file)
		out = out[:0]
		for _, l := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(l); err == nil {
				out = append(out, p)
			}
		}
		return len(out) >= n
	})
	for _, p := range out {
		killAtEnd(t, p)
	}
	return out
}

func killAtEnd(t *testing.T, pid int) {
	if start, err := procfs.StartTime(pid); err == nil {
		t.Cleanup(func() {
			if procfs.Alive(pid, start) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}
}

// sigkill kills the daemon, as a crash or the OOM killer would; what it
// started lives on.
func sigkill(t *testing.T, cmd *exec.Cmd, sock string) {
	t.Helper()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	_ = os.Remove(sock) // left behind by the killed daemon
}

// TestRecoverStopsASetsidEscapeeOfAKilledDaemon: a companion double-forks
// a process into a session of its own; the daemon is SIGKILLed; recover
// --force must stop that process too (before, it was left running: the
// state file lists process groups, and the escapee is in none of them).
// A process of another user that carries a forged token of the same
// daemon instance is not signalled: recover acts only on the processes of
// the users the daemon could have started.
func TestRecoverStopsASetsidEscapeeOfAKilledDaemon(t *testing.T) {
	testutil.NeedRoot(t) // the forged process runs as nobody
	testutil.NeedTool(t, "setpriv")
	f0 := newFixture(t, 0, "{}")
	pids := filepath.Join(f0.dir, "escaped")
	f := newFixture(t, 0, fmt.Sprintf(`{processes+: [{id: 'daemonizer', policy: 'companion',
	  command: "(setsid sh -c 'echo $$ >> %s; exec sleep 1000' &); exec sleep 1001"}]}`, pids)).withState()
	d := f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	escaped := pidsIn(t, pids, 1)[0]
	testutil.Eventually(t, "the state file naming both processes", func() bool {
		s, err := state.Load(f.statePath())
		return err == nil && len(s.Processes) == 2 && len(s.Instances) == 1
	})
	snap, _ := state.Load(f.statePath())
	sigkill(t, d, f.sock)

	forged := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sleep", "1002")
	forged.Env = append(os.Environ(), runtoken.Env+"="+runtoken.New(snap.Instances[0]))
	forged.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := forged.Start(); err != nil {
		t.Fatal(err)
	}
	forgedDone := make(chan struct{})
	go func() { _ = forged.Wait(); close(forgedDone) }()
	t.Cleanup(func() { _ = forged.Process.Kill(); <-forgedDone })
	testutil.Eventually(t, "the forged process to run as nobody", func() bool {
		ids, err := procfs.UIDs(forged.Process.Pid)
		st, serr := procfs.ReadStat(forged.Process.Pid)
		return err == nil && serr == nil && ids[0] == 65534 && st.Comm == "sleep"
	})

	res := f.recoverForce()
	if procfs.Alive(escaped, 0) {
		t.Errorf("the setsid'd escapee %d survived recover --force: %v", escaped, res)
	}
	select {
	case <-forgedDone:
		t.Errorf("recover --force signalled a process of another user that only forged the token: %v", res)
	default:
	}
	if res["stateFileRemoved"] != true {
		t.Errorf("state file not removed: %v", res)
	}
	found := false
	for _, o := range res["stopped"].([]any) {
		m := o.(map[string]any)
		if int(m["pid"].(float64)) == escaped {
			found = m["unrecorded"] == true && m["id"] == "daemonizer" && m["releaseId"] == "v1"
		}
	}
	if !found {
		t.Errorf("stopped does not list the escapee %d as the unrecorded daemonizer of v1: %v", escaped, res["stopped"])
	}
}

// TestRecoverFindsAProcessStartedAfterTheLastStateWrite: a daemon booting
// a release writes no state until the boot is over, so a process it
// started meanwhile is in no state file when the daemon is SIGKILLed. The
// daemon records its instance before it starts anything: the next daemon
// reports the process as an orphan, keeps the instance in the file, and
// recover --force stops it (before, recover found nothing and the process
// ran on).
func TestRecoverFindsAProcessStartedAfterTheLastStateWrite(t *testing.T) {
	exe, _ := os.Executable()
	f := newFixture(t, 0, "{}")
	pidFile := filepath.Join(f.dir, "web.pid")
	// The web process never turns healthy, so the boot stays in its
	// health check until the test kills the daemon. Its output goes to
	// /dev/null: a write to the dead daemon's pipe would kill it (SIGPIPE).
	src, _ := os.ReadFile(f.cfg)
	if err := os.WriteFile(f.cfg, []byte(string(src)+fmt.Sprintf(` + {processes: [super.processes[0] + {command: 'echo $$ > %s; exec >/dev/null 2>&1; PORT={{port}} RB_TESTAPP=1 RB_APP_HEALTH=503 exec %s'}]}`,
		pidFile, exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	f.withState()
	var out bytes.Buffer
	d := f.startBoot(nil, &out, "--release-path", f.releaseDir("v1"), "--release-id", "v1", "--revision", "r1")
	web := pidsIn(t, pidFile, 1)[0]
	sigkill(t, d, f.sock)
	if !procfs.Alive(web, 0) {
		t.Fatalf("web %d died with the daemon", web)
	}
	s, err := state.Load(f.statePath())
	if err != nil {
		t.Fatalf("no state file after the kill: %v", err)
	}
	if len(s.Processes) != 0 {
		t.Fatalf("the state file records %+v: the test needs a process it does not record", s.Processes)
	}

	// A new daemon sees the process as an orphan, and keeps the instance
	// in the file when it stops (the process still runs).
	f.start(nil, "")
	f.waitReady()
	st, err := f.client().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Orphans) != 1 || st.Orphans[0].Pid != web {
		t.Fatalf("status orphans %+v, want the web process %d\n%s", st.Orphans, web, f.logs())
	}
	if _, err := f.client().Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !procfs.Alive(web, 0) {
		t.Fatalf("web %d died at the shutdown of a daemon that did not start it\n%s", web, f.logs())
	}
	if s, err := state.Load(f.statePath()); err != nil || len(s.Instances) != 1 || s.Instances[0] != runtoken.Instance(tokenOf(t, web)) {
		t.Fatalf("after a shutdown with the orphan alive, the state file %+v (%v) does not keep its instance\n%s", s, err, f.logs())
	}

	res := f.recoverForce()
	if procfs.Alive(web, 0) {
		t.Errorf("web %d, started after the last state write, survived recover --force: %v", web, res)
	}
	if res["stateFileRemoved"] != true {
		t.Errorf("state file not removed: %v", res)
	}
}

// logs is what every daemon of f wrote, for a failure message.
func (f *fixture) logs() string {
	files, _ := filepath.Glob(filepath.Join(f.dir, "daemon-*.log"))
	var b strings.Builder
	for _, name := range files {
		l, _ := os.ReadFile(name)
		b.Write(l)
	}
	return b.String()
}

func tokenOf(t *testing.T, pid int) string {
	t.Helper()
	tok, ok := procfs.EnvValue(pid, runtoken.Env)
	if !ok {
		t.Fatalf("pid %d has no %s", pid, runtoken.Env)
	}
	return tok
}

// TestFirstStateWriteNamesTheInstance: a starting daemon writes its
// instance into the state file before it starts any process, and keeps
// what the previous daemon recorded (the releases, the active one). The
// first process the second daemon starts copies the state file as it is
// at that moment, and its own token names the same instance.
func TestFirstStateWriteNamesTheInstance(t *testing.T) {
	exe, _ := os.Executable()
	f := newFixture(t, 0, "{}")
	seen := filepath.Join(f.dir, "seen.json")
	tokFile := filepath.Join(f.dir, "seen.tok")
	src, _ := os.ReadFile(f.cfg)
	if err := os.WriteFile(f.cfg, []byte(string(src)+fmt.Sprintf(
		` + {processes: [super.processes[0] + {command: '[ -e %[1]s ] || { cp %[3]s %[1]s; echo "$ROLLBRIDGE_RUN" > %[2]s; }; PORT={{port}} RB_TESTAPP=1 exec %[4]s'}]}`,
		seen, tokFile, f.statePath(), exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	f.withState()
	first := f.start(nil, "")
	f.waitReady()
	f.deploy("v1")
	_ = first.Process.Signal(syscall.SIGTERM) // stops everything, keeps the file to restore from
	_ = first.Wait()
	if err := os.Remove(seen); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(tokFile)

	f.start(nil, "") // restores v1: its web process is the first it starts
	f.waitReady()
	testutil.Eventually(t, "the restored web process's token", func() bool {
		b, _ := os.ReadFile(tokFile)
		return strings.TrimSpace(string(b)) != ""
	})
	b, _ := os.ReadFile(tokFile)
	inst := runtoken.Instance(strings.TrimSpace(string(b)))
	raw, err := os.ReadFile(seen)
	if err != nil {
		t.Fatal(err)
	}
	var s state.Snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if inst == "" || len(s.Instances) == 0 || s.Instances[0] != inst {
		t.Errorf("when the first process started the state file named instances %v, want [%s] first (the token's)\n%s", s.Instances, inst, raw)
	}
	if s.ActiveReleaseID != "v1" || len(s.Releases) != 1 || s.Releases[0].ID != "v1" {
		t.Errorf("the first write lost the previous release: active %q, releases %+v", s.ActiveReleaseID, s.Releases)
	}
}

// TestNodeStateFileWithNothingLeftIsReplaced: a Node original's state file
// whose processes are all gone is replaced by rollbridged's own at the
// start, which names the new daemon's instance.
func TestNodeStateFileWithNothingLeftIsReplaced(t *testing.T) {
	f := newFixture(t, 0, "{}").withState()
	node := `{"application": "sd", "activeReleaseId": null, "releases": [], "services": [], "singletons": [], "persistedAt": "2026-01-01T00:00:00.000Z"}`
	if err := os.WriteFile(f.statePath(), []byte(node), 0o600); err != nil {
		t.Fatal(err)
	}
	f.start(nil, "")
	f.waitReady()
	s, err := state.Load(f.statePath())
	if err != nil || len(s.Instances) != 1 || !runtoken.Valid(s.Instances[0]) {
		t.Fatalf("state file %+v (%v): want rollbridged's own, naming one instance\n%s", s, err, f.logs())
	}
}
