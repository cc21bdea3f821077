package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/state"
	"github.com/rollbridge/rollbridge-go/pkg/takeover"
)

// spawnGroup starts a long-running shell in its own process group (as
// rollbridge starts managed processes) and returns its pid and start time.
func spawnGroup(t *testing.T, script string) (int, uint64) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }() // reap it whenever it ends
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	var start uint64
	testutil.Eventually(t, "process start time", func() bool {
		s, err := state.StartTime(cmd.Process.Pid)
		start = s
		return err == nil
	})
	return cmd.Process.Pid, start
}

func recoverFixture(t *testing.T, extra string) (cfgPath, statePath, sock string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "rbrec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	statePath = filepath.Join(dir, "state.json")
	sock = filepath.Join(dir, "c.sock")
	src := fmt.Sprintf(`{application: 'rec', statePath: %q, control: {path: %q}, proxy: {port: 0, forceStopTimeoutMs: 300},
	  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]} + %s`, statePath, sock, extra)
	cfgPath = filepath.Join(dir, "rollbridge.jsonnet")
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, statePath, sock
}

type recoverOut struct {
	Orphans          []state.Orphan
	Stopped          []state.Orphan
	StillRunning     []state.Orphan
	StateFileRemoved bool
	DryRun           bool
}

func TestRecoverDryRunAndForce(t *testing.T) {
	cfg, statePath, _ := recoverFixture(t, "{}")
	web, webStart := spawnGroup(t, "exec sleep 300")
	// A worker that ignores SIGTERM: only SIGKILL ends it.
	stubborn, stubStart := spawnGroup(t, "trap '' TERM; while :; do sleep 0.05; done")
	snap := &state.Snapshot{Application: "rec", ActiveReleaseID: "v1", Processes: []state.ProcessRecord{
		{ID: "web", Pid: web, StartTime: webStart, ReleaseID: "v1"},
		{ID: "worker#0", Pid: stubborn, StartTime: stubStart, ReleaseID: "v1"},
		{ID: "gone", Pid: 1 << 30, StartTime: 1, ReleaseID: "v1"},
		{ID: "beacon", Pid: web, StartTime: webStart}, // no release: left out of its line
	}}
	if err := state.Save(statePath, snap); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCtl(t, "recover", "-c", cfg)
	want := fmt.Sprintf("Found 3 orphaned processes (run with --force to stop):\n  web (pid %d, release v1)\n  worker#0 (pid %d, release v1)\n  beacon (pid %d)\n"+
		"Review the list first; each one still has the pid and start time the state file recorded.\n", web, stubborn, web)
	if code != 0 || out != want || errOut != "" {
		t.Errorf("dry run: exit %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}
	out, errOut, code = runCtl(t, "recover", "-c", cfg, "--json")
	var res recoverOut
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("dry run --json: %d %s %s", code, out, errOut)
	}
	if len(res.Orphans) != 3 || !res.DryRun || len(res.Stopped) != 0 || syscall.Kill(web, 0) != nil {
		t.Errorf("dry run touched something or missed orphans: %+v", res)
	}
	// The duplicate entry keeps the list honest: drop it before stopping.
	snap.Processes = snap.Processes[:3]
	if err := state.Save(statePath, snap); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCtl(t, "recover", "-c", cfg, "--force")
	want = fmt.Sprintf("Stopped 2 orphaned processes:\n  web (pid %d, release v1)\n  worker#0 (pid %d, release v1)\n", web, stubborn)
	if code != 0 || out != want || errOut != "" {
		t.Errorf("force: exit %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}
	if state.Alive(web, webStart) || state.Alive(stubborn, stubStart) {
		t.Error("orphans still alive")
	}
	if _, err := os.Stat(statePath); !os.IsNotExist(err) {
		t.Errorf("state file kept: %v", err)
	}
	out, _, code = runCtl(t, "recover", "-c", cfg, "--force")
	if code != 0 || out != "No orphaned processes found; cleared the state file.\n" {
		t.Errorf("force with nothing left: %d %q", code, out)
	}
}

func TestRecoverRefusals(t *testing.T) {
	cfg, _, sock := recoverFixture(t, "{}")
	// Nothing recorded: nothing to do.
	out, _, code := runCtl(t, "recover", "-c", cfg)
	if code != 0 || out != "No orphaned processes found.\n" {
		t.Errorf("no state file: %d %q", code, out)
	}
	out, _, code = runCtl(t, "recover", "-c", cfg, "--json")
	if code != 0 || !strings.Contains(out, `"orphans": []`) {
		t.Errorf("no state file, --json: %d %s", code, out)
	}
	// A daemon (here: anything) on the control socket.
	ln := listenUnix(t, sock)
	defer ln.Close()
	_, errOut, code := runCtl(t, "recover", "-c", cfg, "--force")
	want := "rollbridgectl: a daemon (or another process) is using " + sock + "; stop it before recovering — recover is for cleaning up after a crash\n"
	if code != exitFailed || errOut != want {
		t.Errorf("held socket: %d %q, want %q", code, errOut, want)
	}
	noState := writeTemp(t, "ns.jsonnet", `{application: 'x', proxy: {}, processes: [{id: 'web', policy: 'proxied', command: 'x', port: 1}]}`)
	_, errOut, code = runCtl(t, "recover", "-c", noState)
	if want := "rollbridgectl: no statePath is configured; set statePath in the config to enable recovery\n"; code != exitFailed || errOut != want {
		t.Errorf("no statePath: %d %q, want %q", code, errOut, want)
	}
}

// TestRecoverReportsSurvivors: recover run by a user who may not signal an
// orphan (here nobody, the orphan root's) reports it on stderr, keeps the
// state file and exits 1.
func TestRecoverReportsSurvivors(t *testing.T) {
	testutil.NeedRoot(t)
	ctl := buildCtl(t)
	cfg, statePath, _ := recoverFixture(t, "{}")
	pid, start := spawnGroup(t, "exec sleep 300")
	if err := state.Save(statePath, &state.Snapshot{Processes: []state.ProcessRecord{{ID: "web", Pid: pid, StartTime: start, ReleaseID: "v1"}}}); err != nil {
		t.Fatal(err)
	}
	giveToNobody(t, statePath)
	out, errOut, code := runAsNobody(t, ctl, "recover", "-c", cfg, "--force")
	want := fmt.Sprintf("Could not stop 1 orphaned process — still running (check permissions/ownership):\n  web (pid %d, release v1)\n"+
		"Left the state file in place so you can investigate and re-run recover.\n", pid)
	if code != exitFailed || errOut != want || out != "" {
		t.Errorf("exit %d, stdout %q, stderr\n%s\nwant\n%s", code, out, errOut, want)
	}
	if !state.Alive(pid, start) {
		t.Error("the orphan was stopped after all")
	}
	if _, err := os.Stat(statePath); err != nil {
		t.Errorf("the state file must stay: %v", err)
	}
}

func TestPredeployCleanupLegacyProcessesAndScreen(t *testing.T) {
	testutil.NeedTool(t, "screen")
	marker := fmt.Sprintf("legacy-%d", time.Now().UnixNano())
	cfg, statePath, _ := recoverFixture(t, fmt.Sprintf(`{legacyTakeover: {forceStopTimeoutMs: 300, screens: [%q],
	  processes: [{name: 'legacy web', includes: [%q, 'serve']}]}}`, marker, marker))
	// A legacy web server with a child that ignores SIGTERM, and an unrelated process.
	seed, _ := spawnGroup(t, fmt.Sprintf(`exec sh -c 'sh -c "trap \"\" TERM; while :; do sleep 0.05; done" & wait' %s serve`, marker))
	other, otherStart := spawnGroup(t, "exec sleep 300")
	// An orphan from a crashed daemon.
	orphan, orphanStart := spawnGroup(t, "exec sleep 301")
	if err := state.Save(statePath, &state.Snapshot{Processes: []state.ProcessRecord{{ID: "w", Pid: orphan, StartTime: orphanStart, ReleaseID: "v0"}}}); err != nil {
		t.Fatal(err)
	}
	// A real GNU Screen session.
	if out, err := exec.Command("screen", "-dmS", marker, "sleep", "300").CombinedOutput(); err != nil {
		t.Fatalf("screen: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("screen", "-S", marker, "-X", "quit").Run() })
	testutil.Eventually(t, "screen session", func() bool {
		out, _ := exec.Command("screen", "-ls").CombinedOutput()
		return strings.Contains(string(out), marker)
	})
	var child int
	testutil.Eventually(t, "legacy child", func() bool {
		kids, err := procfs.Children(seed)
		if err != nil || len(kids) == 0 {
			return false
		}
		child = kids[0]
		return true
	})

	out, errOut, code := runCtl(t, "predeploy-cleanup", "-c", cfg, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res takeover.CleanupResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.RecoveredOrphans) != 1 || res.RecoveredOrphans[0].Pid != orphan {
		t.Errorf("orphans: %+v", res.RecoveredOrphans)
	}
	if len(res.Screens) != 1 || res.Screens[0] != marker {
		t.Errorf("screens: %+v", res.Screens)
	}
	stopped := map[int]takeover.LegacyStop{}
	for _, p := range res.Processes {
		stopped[p.Pid] = p
	}
	if _, ok := stopped[seed]; !ok || !stopped[child].Killed {
		t.Errorf("legacy processes: %+v (seed %d, child %d needs SIGKILL)", res.Processes, seed, child)
	}
	for _, pid := range []int{seed, child, orphan} {
		testutil.Eventually(t, fmt.Sprintf("pid %d gone", pid), func() bool { return !state.Alive(pid, 0) })
	}
	if !state.Alive(other, otherStart) {
		t.Error("an unrelated process was stopped")
	}
	sout, _ := exec.Command("screen", "-ls").CombinedOutput()
	if strings.Contains(string(sout), marker) {
		t.Errorf("screen session still there:\n%s", sout)
	}
	// Text output, nothing left to do.
	out, _, code = runCtl(t, "predeploy-cleanup", "-c", cfg)
	if code != 0 || !strings.Contains(out, "nothing to stop") {
		t.Errorf("second run: %d %s", code, out)
	}
}

func TestPredeployCleanupSkipsWithActiveRelease(t *testing.T) {
	e := startDaemon(t, `[]`)
	e.mustDeploy("v1")
	out, _, code := runCtl(t, "predeploy-cleanup", "-c", e.cfg, "--json")
	if code != 0 || !strings.Contains(out, `"skipped": true`) || !strings.Contains(out, "active release (v1)") {
		t.Errorf("%d %s", code, out)
	}
}

func TestCompletionAndMan(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, _, code := runCtl(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "deploy") || !strings.Contains(out, "release-path") {
			t.Errorf("%s: %d", sh, code)
		}
	}
	// Every command and flag of the app is in the bash script: it cannot drift.
	out, _, _ := runCtl(t, "completion", "bash")
	for _, c := range newApp().Commands {
		if !strings.Contains(out, " "+c.Name+")") {
			t.Errorf("bash completion lacks command %s", c.Name)
		}
		for _, f := range c.Flags {
			if !strings.Contains(out, "--"+f.Names()[0]) {
				t.Errorf("bash completion lacks %s --%s", c.Name, f.Names()[0])
			}
		}
	}
	script := writeTemp(t, "c.bash", out)
	got, err := exec.Command("bash", "-c", "source "+script+"; COMP_WORDS=(rollbridgectl deploy --release-); COMP_CWORD=2; _rollbridgectl; echo ${COMPREPLY[@]}").CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != "--release-path --release-id" {
		t.Errorf("bash completion run: %q %v", got, err)
	}
	_, errOut, code := runCtl(t, "completion", "tcsh")
	if code != exitFailed || !strings.Contains(errOut, "supported: bash, zsh, fish") {
		t.Errorf("unsupported shell: %d %s", code, errOut)
	}
	out, _, code = runCtl(t, "man")
	if code != 0 || !strings.Contains(out, ".TH rollbridgectl 1") || !strings.Contains(out, "predeploy-cleanup") {
		t.Errorf("man: %d", code)
	}
}
