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
	testutil.StartGroup(t, cmd)
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
	if res.Action != takeover.NoDaemon || len(res.RecoveredOrphans) != 1 || res.RecoveredOrphans[0].Pid != orphan {
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
	// Text output, nothing left to do: the Node original's three lines.
	out, _, code = runCtl(t, "predeploy-cleanup", "-c", cfg)
	if want := "No active Rollbridge daemon found.\nRecovered 0 Rollbridge orphaned processes.\nStopped 0 legacy processes.\n"; code != 0 || out != want {
		t.Errorf("second run: %d %q, want %q", code, out, want)
	}
}

func TestPredeployCleanupReusesADaemonWithAnActiveRelease(t *testing.T) {
	e := startDaemon(t, `[]`)
	e.mustDeploy("v1")
	out, _, code := runCtl(t, "predeploy-cleanup", "-c", e.cfg, "--json")
	if code != 0 || !strings.Contains(out, `"action": "daemon-active"`) || !strings.Contains(out, "release v1 is active") {
		t.Errorf("%d %s", code, out)
	}
	out, _, code = runCtl(t, "predeploy-cleanup", "-c", e.cfg)
	if want := "Rollbridge daemon already has an active release; no legacy cleanup needed.\n"; code != 0 || out != want {
		t.Errorf("text: %d %q, want %q", code, out, want)
	}
	if st := e.status(); st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Errorf("the daemon must be left alone: %+v", st.ActiveReleaseID)
	}
}

// TestPredeployCleanupStopsAMismatchedDaemon: a daemon whose proxy differs
// from the config being deployed is shut down even with an active release,
// so the next deploy --ensure-daemon starts one that matches.
func TestPredeployCleanupStopsAMismatchedDaemon(t *testing.T) {
	e := startDaemon(t, `[]`)
	e.mustDeploy("v1")
	next := filepath.Join(filepath.Dir(e.cfg), "next.jsonnet")
	if err := os.WriteFile(next, []byte(`(import 'rollbridge.jsonnet') + {proxy+: {upstreamHost: 'localhost'}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCtl(t, "predeploy-cleanup", "-c", next)
	want := "Stopped existing Rollbridge daemon before deploy.\nRecovered 0 Rollbridge orphaned processes.\nStopped 0 legacy processes.\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d, stdout %q, want %q; stderr %s", code, out, want, errOut)
	}
	if !strings.Contains(errOut, "stopped the daemon: proxy 127.0.0.1:") || !strings.Contains(errOut, "(upstream host localhost)") {
		t.Errorf("stderr should say why: %s", errOut)
	}
	e.waitStopped()
}

// TestPredeployCleanupStopsAnIdleDaemon: a daemon without an active release
// is shut down too, and the orphans of an earlier daemon are then stopped.
func TestPredeployCleanupStopsAnIdleDaemon(t *testing.T) {
	e := startDaemon(t, `[]`)
	out, errOut, code := runCtl(t, "predeploy-cleanup", "-c", e.cfg, "--json")
	var res takeover.CleanupResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	if res.Action != takeover.DaemonStopped || res.Reason != "it has no active release" {
		t.Errorf("got %+v", res)
	}
	e.waitStopped()
}

func TestPredeployCleanupRefusals(t *testing.T) {
	cfg, _, sock := recoverFixture(t, "{}")
	ln := hangUpOn(t, sock)
	_, errOut, code := runCtl(t, "predeploy-cleanup", "-c", cfg)
	if code != exitFailed || !strings.HasPrefix(errOut, "rollbridgectl: a non-rollbridge process is using "+sock) || !strings.Contains(errOut, "refusing predeploy cleanup") {
		t.Errorf("foreign program: %d %q", code, errOut)
	}
	ln.Close()

	// A daemon of another application on the configured socket.
	e := startDaemon(t, `[]`)
	other := writeTemp(t, "other.jsonnet", fmt.Sprintf(`{application: 'other', control: {path: %q}, proxy: {port: 0},
	  processes: [{id: 'web', policy: 'proxied', command: 'x', port: 18000}]}`, e.sock))
	_, errOut, code = runCtl(t, "predeploy-cleanup", "-c", other)
	if want := fmt.Sprintf("rollbridgectl: a rollbridge daemon for \"e2e\" is using %s; expected \"other\"\n", e.sock); code != exitFailed || errOut != want {
		t.Errorf("other application: %d %q, want %q", code, errOut, want)
	}
	e.status() // still running
}

// TestPredeployCleanupRefusesAForeignSocket: a control socket owned by
// another (non-root) user is not talked to: whatever answers there would
// decide what gets stopped.
func TestPredeployCleanupRefusesAForeignSocket(t *testing.T) {
	testutil.NeedRoot(t)
	cfg, _, sock := recoverFixture(t, "{}")
	defer hangUpOn(t, sock).Close()
	if err := os.Lchown(sock, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCtl(t, "predeploy-cleanup", "-c", cfg)
	if code != exitFailed || !strings.Contains(errOut, "the control socket "+sock+" belongs to nobody (uid 65534), which is neither root nor you") {
		t.Errorf("%d %q", code, errOut)
	}
	// The configured control.owner is expected there.
	owned, _, _ := recoverFixture(t, fmt.Sprintf(`{control+: {path: %q, owner: 'nobody'}}`, sock))
	_, errOut, _ = runCtl(t, "predeploy-cleanup", "-c", owned)
	if strings.Contains(errOut, "neither root nor you") {
		t.Errorf("control.owner's socket refused: %q", errOut)
	}
}

// waitStopped waits until the in-process daemon has returned after a
// shutdown, leaving its result for startDaemon's cleanup, and checks that
// its control socket is gone.
func (e *env) waitStopped() {
	e.t.Helper()
	select {
	case err := <-e.done:
		e.done <- err
	case <-time.After(testutil.Timeout):
		e.t.Fatal("the daemon did not stop")
	}
	if _, err := os.Stat(e.sock); !os.IsNotExist(err) {
		e.t.Errorf("control socket after the shutdown: %v", err)
	}
}

// spawnArgv starts the test binary idling under the command line argv (as
// a GNU Screen server shows itself, say) and returns its pid.
func spawnArgv(t *testing.T, argv ...string) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Args = argv
	cmd.Env = append(os.Environ(), "RB_TEST_IDLE=1")
	testutil.StartGroup(t, cmd)
	testutil.Eventually(t, "the command line of "+argv[0], func() bool {
		return procfs.Cmdline(cmd.Process.Pid, "") == strings.Join(argv, " ")
	})
	return cmd.Process.Pid
}

// TestPredeployCleanupStopsScreenSessions: a screen session's server is
// recognised by its command line, SCREEN -dmS NAME, even where screen
// itself cannot end it (its socket directory was wiped, or screen is not
// installed); a session whose name only starts with NAME is left alone.
func TestPredeployCleanupStopsScreenSessions(t *testing.T) {
	marker := fmt.Sprintf("legacy-%d", time.Now().UnixNano())
	cfg, _, _ := recoverFixture(t, fmt.Sprintf(`{legacyTakeover: {forceStopTimeoutMs: 300, screens: [%q], processes: []}}`, marker))
	session := spawnArgv(t, "SCREEN", "-dmS", marker, "bin/legacy-server")
	other := spawnArgv(t, "SCREEN", "-dmS", marker+"2", "bin/legacy-server")
	out, errOut, code := runCtl(t, "predeploy-cleanup", "-c", cfg)
	if want := "No active Rollbridge daemon found.\nRecovered 0 Rollbridge orphaned processes.\nStopped 1 legacy process.\n"; code != 0 || out != want {
		t.Fatalf("exit %d, stdout %q, want %q; stderr %s", code, out, want, errOut)
	}
	if !strings.Contains(errOut, fmt.Sprintf("stopped screen %s: pid %d (SCREEN -dmS %s bin/legacy-server) with SIGTERM", marker, session, marker)) {
		t.Errorf("stderr: %s", errOut)
	}
	testutil.Eventually(t, "the session's server gone", func() bool { return !state.Alive(session, 0) })
	if !state.Alive(other, 0) {
		t.Error("the session named " + marker + "2 was stopped too")
	}
}

// TestPredeployCleanupRefusesWhenLegacySurvives: a legacy supervisor that
// answers SIGTERM by starting a new worker leaves a matching process behind;
// the cleanup looks again, lists it and exits 1 rather than let a deploy
// start next to it.
func TestPredeployCleanupRefusesWhenLegacySurvives(t *testing.T) {
	marker := fmt.Sprintf("legacy-%d", time.Now().UnixNano())
	cfg, _, _ := recoverFixture(t, fmt.Sprintf(`{legacyTakeover: {forceStopTimeoutMs: 30000,
	  processes: [{name: 'legacy web', includes: [%q, 'serve']}]}}`, marker))
	script := writeTemp(t, "legacy.sh", `trap 'sh -c "sleep 300; : $1 serve" & exit 0' TERM
touch "$0.ready"
while :; do sleep 0.05; done
`)
	spawnGroup(t, fmt.Sprintf("exec sh %s %s serve", script, marker))
	// Until the trap is set, SIGTERM would simply end it.
	testutil.Eventually(t, "the legacy supervisor's trap", func() bool {
		_, err := os.Stat(script + ".ready")
		return err == nil
	})
	out, errOut, code := runCtl(t, "predeploy-cleanup", "-c", cfg)
	if code != exitFailed || out != "" {
		t.Fatalf("exit %d, stdout %q; want exit 1 and nothing on stdout", code, out)
	}
	want := "rollbridgectl: refusing rollbridge deploy while legacy processes are still running:\n  "
	if !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "sh -c sleep 300; : "+marker+" serve\n") {
		t.Errorf("stderr %q, want it to start with %q and list the respawned worker", errOut, want)
	}
}

// TestPredeployCleanupRefusesWhenLegacySurvivesSIGKILL: a legacy process
// the caller may not signal (root's, cleaned up by nobody) survives SIGKILL;
// the cleanup exits 1 naming it.
func TestPredeployCleanupRefusesWhenLegacySurvivesSIGKILL(t *testing.T) {
	testutil.NeedRoot(t)
	ctl := buildCtl(t)
	marker := fmt.Sprintf("legacy-%d", time.Now().UnixNano())
	cfg, _, _ := recoverFixture(t, fmt.Sprintf(`{legacyTakeover: {forceStopTimeoutMs: 300,
	  processes: [{name: 'legacy web', includes: [%q]}]}}`, marker))
	if err := os.Chmod(filepath.Dir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	pid, _ := spawnGroup(t, fmt.Sprintf("exec sh -c 'sleep 300; :' %s", marker))
	testutil.Eventually(t, "the legacy process's command line", func() bool {
		return procfs.Cmdline(pid, "") == "sh -c sleep 300; : "+marker
	})
	out, errOut, code := runAsNobody(t, ctl, "predeploy-cleanup", "-c", cfg)
	want := fmt.Sprintf("rollbridgectl: refusing rollbridge deploy while legacy processes are still running:\n  %d sh -c sleep 300; : %s\n", pid, marker)
	if code != exitFailed || !strings.HasPrefix(errOut, want) || out != "" {
		t.Errorf("exit %d, stdout %q, stderr %q, want it to start with %q", code, out, errOut, want)
	}
	if !state.Alive(pid, 0) {
		t.Error("the legacy process was stopped after all")
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
