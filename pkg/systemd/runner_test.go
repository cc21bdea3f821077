package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/events"
	"github.com/rollbridge/rollbridge-go/pkg/process"
)

// The supervision tests below run against both runners: the exec runner
// everywhere, the systemd runner where RB_SYSTEMD_TESTS=1 says a real
// systemd answers on D-Bus (the real-systemd lane runs this test binary
// inside its sandbox so).

func systemdWanted() bool { return os.Getenv("RB_SYSTEMD_TESTS") == "1" }

type runnerCase struct {
	name string
	new  func(t *testing.T) process.Runner
}

func testApp(t *testing.T) string {
	t.Helper()
	// Unit names carry the application: one per test keeps the tests'
	// units and slices apart.
	return strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
}

func newSystemdRunner(t *testing.T, app string) *Runner {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	r, err := NewRunner(ctx, RunnerOptions{Application: app, EnvDir: filepath.Join(t.TempDir(), "env")})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func runners(t *testing.T) []runnerCase {
	cases := []runnerCase{{"exec", func(*testing.T) process.Runner { return process.ExecRunner{} }}}
	if systemdWanted() {
		cases = append(cases, runnerCase{"systemd", func(t *testing.T) process.Runner {
			r := newSystemdRunner(t, testApp(t))
			t.Cleanup(r.Close)
			return r
		}})
	}
	return cases
}

func shellSpec(t *testing.T, id, command string) process.Spec {
	t.Helper()
	return process.Spec{
		ID: id, Command: command, Dir: t.TempDir(), Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		GracefulStop: 5 * time.Second, RestartDelay: 10 * time.Millisecond,
		Restart: process.RestartPolicy{MaxRestarts: 0},
		Fields:  map[string]any{events.KeyReleaseID: "r-1.x", events.KeyBaseID: strings.SplitN(id, "#", 2)[0]},
	}
}

func newProc(t *testing.T, spec process.Spec, r process.Runner) (*process.Process, *events.Log) {
	t.Helper()
	log := events.New(0)
	p := process.New(spec, r, log)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	return p, log
}

func logged(p *process.Process, text string) bool {
	for _, l := range p.Logs() {
		if strings.Contains(l.Line, text) {
			return true
		}
	}
	return false
}

func names(log *events.Log) []string {
	var out []string
	for _, e := range log.Recent(0) {
		out = append(out, string(e.Message))
	}
	return out
}

func TestRunnersOutputExitAndEnvironment(t *testing.T) {
	for _, rc := range runners(t) {
		t.Run(rc.name, func(t *testing.T) {
			spec := shellSpec(t, "web", `printf 'secret=%s|\n' "$SECRET"; echo "dir=$(pwd)"; echo to-stderr >&2; exit 3`)
			spec.Env = append(spec.Env, `SECRET=a "b" $c \d`+"`e`")
			p, _ := newProc(t, spec, rc.new(t))
			if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, "exit", func() bool {
				st := p.Status()
				return st.ExitCode != nil
			})
			if st := p.Status(); *st.ExitCode != 3 || st.State != process.Failed {
				t.Errorf("got exit %d state %s, want 3 failed", *st.ExitCode, st.State)
			}
			testutil.Eventually(t, "output lines", func() bool {
				return logged(p, "secret=a \"b\" $c \\d`e`|") && logged(p, "dir="+spec.Dir) && logged(p, "to-stderr")
			})
		})
	}
}

// A spec's Credential is who the process runs as with either runner, and
// its stop hook too. Not as root, the exec runner refuses to switch.
func TestRunnersRunAsTheSpecsUser(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(nobody.Uid, 10, 32)
	gid, _ := strconv.ParseUint(nobody.Gid, 10, 32)
	for _, rc := range runners(t) {
		t.Run(rc.name, func(t *testing.T) {
			spec := shellSpec(t, "web", `echo "as $(id -u):$(id -g)"; while :; do sleep 0.05; done`)
			spec.Dir = "/" // a test's temp dir is root's alone
			spec.Lifecycle.QuietCommand = `echo "hook as $(id -u):$(id -g)"`
			spec.Credential = &process.Credential{User: "nobody", Group: "(the user's)", UID: uint32(uid), GID: uint32(gid)}
			p, _ := newProc(t, spec, rc.new(t))
			err := p.Start(context.Background(), process.ReasonDeploy)
			if os.Geteuid() != 0 && rc.name == "exec" {
				if err == nil || !strings.Contains(err.Error(), "not root") {
					t.Fatalf("start as nobody, not as root: %v, want a refusal saying so", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ids := nobody.Uid + ":" + nobody.Gid
			testutil.Eventually(t, "output as nobody", func() bool { return logged(p, "as "+ids) })
			if err := p.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !logged(p, "hook as "+ids) {
				t.Errorf("the quiet hook did not run as %s: %v", ids, p.Logs())
			}
		})
	}
}

func TestRunnersStopSequence(t *testing.T) {
	for _, rc := range runners(t) {
		t.Run(rc.name, func(t *testing.T) {
			dir := t.TempDir()
			rec := filepath.Join(dir, "hooks")
			// The app ignores SIGTERM and leaves a member in a session of
			// its own: the stop must still end every process of the run.
			spec := shellSpec(t, "worker#2", `trap '' TERM; setsid sleep 1000 & echo started; while :; do sleep 0.05; done`)
			spec.StopSignal = syscall.SIGTERM
			// The app ignores SIGTERM, so the stop waits all of this; it
			// also bounds each hook, which a loaded machine (CI at load
			// 60) needed more than 300 ms to run.
			spec.GracefulStop = 2 * time.Second
			spec.Lifecycle = process.Lifecycle{
				QuietCommand: "echo quiet $ROLLBRIDGE_PID >> " + rec,
				StopCommand:  "echo stop >> " + rec,
			}
			p, log := newProc(t, spec, rc.new(t))
			if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
				t.Fatal(err)
			}
			pid := *p.Status().Pid
			var members []process.Member
			testutil.Eventually(t, "two members", func() bool {
				members = descendants(pid)
				return len(members) >= 2
			})
			if err := p.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, m := range members {
				if procfs.Alive(m.Pid, 0) {
					t.Errorf("member %d (%s) survived the stop", m.Pid, m.Command)
				}
			}
			b, _ := os.ReadFile(rec)
			if got, want := string(b), fmt.Sprintf("quiet %d\nstop\n", pid); got != want {
				t.Errorf("hooks recorded %q, want %q", got, want)
			}
			st := p.Status()
			if st.State != process.Stopped || st.ExitSignal == nil || *st.ExitSignal != "SIGKILL" {
				t.Errorf("got state %s signal %v, want stopped by SIGKILL", st.State, st.ExitSignal)
			}
			if n := names(log); strings.Join(n, ",") != "process started,"+string(events.ProcessStopTimedOut)+",process exited" {
				t.Errorf("events %v", n)
			}
		})
	}
}

// descendants lists pid and every process below it in /proc: both
// runners leave a run's processes below its leader unless they daemonize.
func descendants(pid int) []process.Member {
	out := []process.Member{{Pid: pid}}
	seen := map[int]bool{pid: true}
	for i := 0; i < len(out); i++ {
		kids, _ := procfs.Children(out[i].Pid)
		for _, k := range kids {
			if !seen[k] {
				seen[k] = true
				st, _ := procfs.ReadStat(k)
				out = append(out, process.Member{Pid: k, Command: st.Comm})
			}
		}
	}
	return out
}

func TestRunnersCrashRestartPolicy(t *testing.T) {
	for _, rc := range runners(t) {
		t.Run(rc.name, func(t *testing.T) {
			spec := shellSpec(t, "worker", `echo run; exit 7`)
			spec.Restart.MaxRestarts = 2
			p, log := newProc(t, spec, rc.new(t))
			if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, "restart limit", func() bool {
				for _, n := range names(log) {
					if n == string(events.RestartLimitReached) {
						return true
					}
				}
				return false
			})
			st := p.Status()
			if st.Restarts != 2 || st.State != process.Failed || *st.ExitCode != 7 {
				t.Errorf("got %d restarts, state %s, exit %v; want 2, failed, 7", st.Restarts, st.State, *st.ExitCode)
			}
		})
	}
}

func TestRunnersMemorySampling(t *testing.T) {
	for _, rc := range runners(t) {
		t.Run(rc.name, func(t *testing.T) {
			spec := shellSpec(t, "web", `sleep 1000 & while :; do sleep 0.05; done`)
			spec.Memory = &process.MemoryPolicy{LimitBytes: 1 << 40, CheckInterval: 20 * time.Millisecond}
			p, _ := newProc(t, spec, rc.new(t))
			if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, "members sampled", func() bool {
				st := p.Status()
				return len(st.Children) >= 2 && st.RSSBytes > 0
			})
			if rc.name == "systemd" {
				testutil.Eventually(t, "cgroup memory", func() bool {
					st := p.Status()
					return st.CgroupMemoryBytes != nil && *st.CgroupMemoryBytes > 0
				})
			}
		})
	}
}

func TestSystemdUnitNames(t *testing.T) {
	for _, tc := range []struct{ name, app, rel, id, want string }{
		{"plain", "demo", "v2", "web", `rollbridge-demo-v2-web.service`},
		{"replica", "demo", "v2", "worker#2", `rollbridge-demo-v2-worker\x232.service`},
		{"dashes", "my-app", "2026-12-02.1", "web", `rollbridge-my\x2dapp-2026\x2d12\x2d02.1-web.service`},
		{"daemon-wide", "demo", "", "v2-web", `rollbridge-demo-v2\x2dweb.service`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := UnitName(tc.app, tc.rel, tc.id); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	if got := Slice("my-app"); got != `rollbridge-my\x2dapp.slice` {
		t.Errorf("slice: got %s", got)
	}
}

func TestWriteEnvFile(t *testing.T) {
	r := &Runner{envDir: t.TempDir()}
	path, err := r.writeEnv("u.service", []string{"A=x y", `B="q" $v \ `, "bad-name=1", "C=l1\nl2"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	want := "A=\"x y\"\nB=\"\\\"q\\\" \\$v \\\\ \"\nC=\"l1\nl2\"\n"
	if string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}

// TestSystemdAdopt is re-adoption at the runner's level: a second runner
// (a new daemon) attaches to the unit the first one started, with the same
// main pid and its output, and its stop ends the unit.
func TestSystemdAdopt(t *testing.T) {
	if !systemdWanted() {
		t.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1 (the systemd lane runs it)")
	}
	app := testApp(t)
	spec := shellSpec(t, "web", `echo "hello from $ROLLBRIDGE_X"; while :; do sleep 0.05; done`)
	spec.Env = append(spec.Env, "ROLLBRIDGE_X=first")
	spec.GracefulStop = time.Second
	first := newSystemdRunner(t, app)
	p1 := process.New(spec, first, nil)
	if err := p1.Start(context.Background(), process.ReasonDeploy); err != nil {
		first.Close()
		t.Fatal(err)
	}
	pid := *p1.Status().Pid
	testutil.Eventually(t, "first output", func() bool { return logged(p1, "hello from first") })
	// A daemon-reload re-reads the transient unit from what systemd wrote
	// of it: the unit must come back whole (command and all).
	if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
		t.Fatalf("daemon-reload: %v %s", err, out)
	}
	first.Close() // the daemon goes away; the unit must not notice

	name := UnitName(app, "r-1.x", "web")
	if !procfs.Alive(pid, 0) {
		t.Fatalf("unit %s's main pid %d died with the runner", name, pid)
	}
	second := newSystemdRunner(t, app)
	defer second.Close()
	units, err := second.Units(context.Background())
	if err != nil || len(units) != 1 || units[0].Name != name || units[0].InstanceID != "web" || units[0].ReleaseID != "r-1.x" || units[0].MainPID != pid {
		t.Fatalf("units: %+v, %v", units, err)
	}
	if out, _ := exec.Command("systemctl", "show", "-p", "ExecStart", "--value", name).Output(); !strings.Contains(string(out), `hello from \$\$ROLLBRIDGE_X`) {
		t.Errorf("ExecStart after daemon-reload: %s", out)
	}
	p2, log := newProc(t, spec, second)
	if restarted, err := p2.Adopt(context.Background(), process.Adopted{Restarts: 4}); err != nil || restarted {
		t.Fatal(err)
	}
	st := p2.Status()
	if st.Pid == nil || *st.Pid != pid || st.Restarts != 4 || st.State != process.Running {
		t.Errorf("adopted status: pid %v restarts %d state %s; want %d, 4, running", st.Pid, st.Restarts, st.State, pid)
	}
	if !logged(p2, "hello from first") {
		t.Errorf("adopted logs miss the unit's earlier output: %v", p2.Logs())
	}
	if n := names(log); len(n) != 1 || n[0] != string(events.ProcessAdopted) {
		t.Errorf("events %v, want just process adopted", n)
	}
	if err := p2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if procfs.Alive(pid, 0) {
		t.Errorf("pid %d alive after the stop", pid)
	}
	testutil.Eventually(t, "unit gone", func() bool {
		u, err := second.Units(context.Background())
		return err == nil && len(u) == 0
	})
	// Gone while no daemon watched, with no restarts allowed: not started.
	if restarted, err := p2.Adopt(context.Background(), process.Adopted{}); !errors.Is(err, process.ErrNotRunning) || restarted {
		t.Errorf("adopting a stopped unit: %v, restarted %v", err, restarted)
	}
}

// A memory replacement of the proxied process runs beside the copy it
// replaces (same release and instance id): it gets the next unit name, and
// a new daemon adopts the newer of the two.
func TestSystemdProxiedReplacementName(t *testing.T) {
	if !systemdWanted() {
		t.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1 (the systemd lane runs it)")
	}
	app := testApp(t)
	spec := shellSpec(t, "web", `while :; do sleep 0.05; done`)
	spec.Fields[events.KeyPolicy] = "proxied"
	spec.GracefulStop = time.Second
	r := newSystemdRunner(t, app)
	// Closed after the processes' cleanup stops, which run first (LIFO).
	t.Cleanup(r.Close)
	old, _ := newProc(t, spec, r)
	if err := old.Start(context.Background(), process.ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	next, _ := newProc(t, spec, r)
	if err := next.Start(context.Background(), process.ReasonMemory); err != nil {
		t.Fatalf("a second proxied copy beside a live one: %v", err)
	}
	base := UnitName(app, "r-1.x", "web")
	second := strings.TrimSuffix(base, ".service") + ":2.service"
	if got := unitOf(t, *old.Status().Pid); got != base {
		t.Errorf("first copy's unit %q, want %q", got, base)
	}
	if got := unitOf(t, *next.Status().Pid); got != second {
		t.Errorf("replacement's unit %q, want %q", got, second)
	}
	third := newSystemdRunner(t, app) // a new daemon's
	t.Cleanup(third.Close)
	adopter, _ := newProc(t, spec, third)
	if _, err := adopter.Adopt(context.Background(), process.Adopted{}); err != nil {
		t.Fatal(err)
	}
	if got, want := *adopter.Status().Pid, *next.Status().Pid; got != want {
		t.Errorf("adopted pid %d, want the replacement's %d", got, want)
	}
	// Only the other (non-proxied) policies keep one name: a live unit
	// there stays an error.
	spec.Fields = map[string]any{events.KeyReleaseID: "r-1.x", events.KeyBaseID: "worker", events.KeyPolicy: "companion"}
	spec.ID = "worker"
	w1, _ := newProc(t, spec, r)
	if err := w1.Start(context.Background(), process.ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	w2, _ := newProc(t, spec, r)
	if err := w2.Start(context.Background(), process.ReasonDeploy); !errors.Is(err, errUnitLive) {
		t.Errorf("a second companion copy: %v, want the unit-still-runs error", err)
	}
}

// unitOf is the unit whose cgroup holds pid (cgroup v2: the last element
// of its one cgroup path).
func unitOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("cgroup of %d: %v", pid, err)
	}
	return filepath.Base(strings.TrimSpace(string(b)))
}

// BenchmarkStart measures Runner.Start until the process runs (the
// "web spawned" step of a deploy), for each runner; the stop is not timed.
func BenchmarkStart(b *testing.B) {
	cases := []struct {
		name string
		new  func(b *testing.B) process.Runner
	}{{"exec", func(*testing.B) process.Runner { return process.ExecRunner{} }}}
	if systemdWanted() {
		cases = append(cases, struct {
			name string
			new  func(b *testing.B) process.Runner
		}{"systemd", func(b *testing.B) process.Runner {
			r, err := NewRunner(context.Background(), RunnerOptions{Application: "bench", EnvDir: filepath.Join(b.TempDir(), "env")})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(r.Close)
			return r
		}})
	}
	for _, rc := range cases {
		b.Run(rc.name, func(b *testing.B) {
			r := rc.new(b)
			spec := process.Spec{ID: "web", Command: "exec sleep 1000", Dir: b.TempDir(), Env: []string{"PATH=/usr/bin:/bin", "A=b"},
				GracefulStop: time.Second, Fields: map[string]any{events.KeyReleaseID: "b1", events.KeyBaseID: "web"}}
			for i := 0; i < b.N; i++ {
				p := process.New(spec, r, nil)
				if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := p.Stop(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// A start that cannot work fails the same way with either runner: a command
// that does not exist is the shell's failure (it starts, then exits 127 and
// says so), and a user that does not exist fails the run before the command
// (the exec runner as root can switch to any uid; systemd refuses a uid
// without a user, 217/USER).
func TestRunnersStartFailures(t *testing.T) {
	for _, rc := range runners(t) {
		t.Run(rc.name+"/no-such-command", func(t *testing.T) {
			p, _ := newProc(t, shellSpec(t, "web", `exec rollbridge-no-such-command`), rc.new(t))
			if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, "exit", func() bool { return p.Status().ExitCode != nil })
			if code := *p.Status().ExitCode; code != 127 {
				t.Errorf("got exit %d, want 127", code)
			}
			testutil.Eventually(t, "the shell's reason", func() bool { return logged(p, "rollbridge-no-such-command") })
		})
		if rc.name != "systemd" {
			continue
		}
		t.Run(rc.name+"/no-such-user", func(t *testing.T) {
			spec := shellSpec(t, "web", `echo started; while :; do sleep 0.05; done`)
			spec.Dir = "/"
			const uid = 4000017 // no user has it
			if _, err := user.LookupId(strconv.Itoa(uid)); err == nil {
				t.Fatalf("uid %d exists here", uid)
			}
			spec.Credential = &process.Credential{User: "ghost", UID: uid, GID: uid}
			p, _ := newProc(t, spec, rc.new(t))
			if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, "exit", func() bool { return p.Status().ExitCode != nil })
			if code := *p.Status().ExitCode; code != 217 {
				t.Errorf("got exit %d, want 217 (systemd's EXIT_USER)", code)
			}
			if logged(p, "started") {
				t.Errorf("the command ran as a uid with no user: %v", p.Logs())
			}
		})
	}
}

// A start job that fails fails the start, with systemd's reason for it
// (the unit's Result), not only the job's "failed". Here systemd cannot
// read the environment file, which it does itself, before it forks. Both
// before the runner watches cgroups (its first start) and after, when a
// start may end as soon as the unit's process appears (startJob): a job
// that fails leaves no process to see.
func TestSystemdFailedJobSaysWhy(t *testing.T) {
	if !systemdWanted() {
		t.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1 (the systemd lane runs it)")
	}
	r := newSystemdRunner(t, testApp(t))
	t.Cleanup(r.Close) // after the process's own cleanup, which stops it
	failing := func(id string) {
		t.Helper()
		spec := shellSpec(t, id, `sleep 1000`)
		name := r.unitName(spec, 0)
		props, err := r.properties(spec, filepath.Join(t.TempDir(), "missing.env"))
		if err != nil {
			t.Fatal(err)
		}
		err = r.startJob(context.Background(), name, props, nil)
		if err == nil {
			t.Fatalf("%s: started with a missing environment file", id)
		}
		if !strings.Contains(err.Error(), "job failed") || !strings.Contains(err.Error(), "resources") {
			t.Errorf("%s: got %q, want the job's failure and systemd's reason (resources)", id, err)
		}
		_ = r.conn.ResetFailedUnitContext(context.Background(), name) // best effort: the test's slice goes with the sandbox
	}
	failing("web")
	// A first start makes the runner trust its cgroup derivation and
	// creates the slice, so the next start watches the unit's cgroup.
	p, _ := newProc(t, shellSpec(t, "worker", `sleep 1000`), r)
	if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	next := r.unitName(shellSpec(t, "web#2", ""), 0)
	w := r.cg.watchPopulated(unitCgroup(r.slice, next))
	if r.derived.Load() != derivedYes || w == nil {
		t.Fatalf("the next start would not watch its cgroup (derived %d, watch %v)", r.derived.Load(), w)
	}
	w.Stop()
	failing("web#2")
}

// The watch that ends a start's wait (startJob) sees the new unit's main
// process in the unit's cgroup with no word from systemd: here nobody
// waits for the job at all. The pid found there is systemd's main pid. A
// cgroup that exists already is not watched: a process there may be an
// earlier run's.
func TestSystemdPopulatedWatch(t *testing.T) {
	if !systemdWanted() {
		t.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1 (the systemd lane runs it)")
	}
	r := newSystemdRunner(t, testApp(t))
	t.Cleanup(r.Close)
	ctx := context.Background()
	if w := r.cg.watchPopulated(unitCgroup(Slice(testApp(t)+"-unused"), "x.service")); w != nil {
		w.Stop()
		t.Fatal("watching a unit's cgroup in a slice that does not exist yet")
	}
	first, _ := newProc(t, shellSpec(t, "worker", `sleep 1000`), r) // creates the slice
	if err := first.Start(ctx, process.ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	spec := shellSpec(t, "web", `sleep 1000`)
	name := r.unitName(spec, 0)
	cg := unitCgroup(r.slice, name)
	w := r.cg.watchPopulated(cg)
	if w == nil {
		t.Fatalf("no watch for %s", cg)
	}
	defer w.Stop()
	props, err := r.properties(spec, "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.conn.StartTransientUnitContext(ctx, name, "fail", props, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch := make(chan string, 1)
		if _, err := r.conn.StopUnitContext(context.Background(), name, "replace", ch); err == nil {
			<-ch
		}
	})
	select {
	case <-w.Ready():
	case <-time.After(testutil.Timeout):
		t.Fatalf("the watch never saw a process in %s: %v", cg, r.cg.procs(cg))
	}
	pid := r.cg.mainFromCgroup(cg)
	p, err := r.conn.GetUnitTypePropertyContext(ctx, name, "Service", "ExecMainPID")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := p.Value.Value().(uint32); pid == 0 || pid != int(want) {
		t.Errorf("main pid from the cgroup %d, systemd's %d", pid, want)
	}
	if again := r.cg.watchPopulated(cg); again != nil {
		again.Stop()
		t.Errorf("watching %s, which exists already", cg)
	}
}

func TestUnitCgroup(t *testing.T) {
	for _, c := range []struct{ slice, name, want string }{
		{"rollbridge-demo.slice", "rollbridge-demo-v1-web.service", "/rollbridge.slice/rollbridge-demo.slice/rollbridge-demo-v1-web.service"},
		{Slice("my-app"), UnitName("my-app", "r-1.x", "worker#2"), `/rollbridge.slice/rollbridge-my\x2dapp.slice/rollbridge-my\x2dapp-r\x2d1.x-worker\x232.service`},
	} {
		if got := unitCgroup(c.slice, c.name); got != c.want {
			t.Errorf("unitCgroup(%q, %q) = %q, want %q", c.slice, c.name, got, c.want)
		}
	}
}

// The unit's cgroup and invocation id that a start derives instead of
// asking systemd (attach) are systemd's own: checked here against its
// ControlGroup and InvocationID for names that need escaping, and the
// runner trusts the derivation after its first start.
func TestSystemdDerivedCgroupAndInvocation(t *testing.T) {
	if !systemdWanted() {
		t.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1 (the systemd lane runs it)")
	}
	r := newSystemdRunner(t, testApp(t)+"-odd_name.x")
	t.Cleanup(r.Close)
	for _, id := range []string{"web", "worker#2", "web#3", "-x"} {
		spec := shellSpec(t, id, `while :; do sleep 0.05; done`)
		p, _ := newProc(t, spec, r)
		if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
			t.Fatal(err)
		}
		name := r.unitName(spec, 0)
		cg, err := r.conn.GetUnitTypePropertyContext(context.Background(), name, "Service", "ControlGroup")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := unitCgroup(r.slice, name), cg.Value.Value().(string); got != want {
			t.Errorf("%s: derived cgroup %q, systemd's %q", id, got, want)
		}
		inv, ok := r.cg.invocationID(unitCgroup(r.slice, name))
		if want := r.readInvocationID(context.Background(), name); !ok || inv != want {
			t.Errorf("%s: invocation id on the cgroup %q (%v), systemd's %q", id, inv, ok, want)
		}
		if got := r.derived.Load(); got != derivedYes {
			t.Errorf("after starting %s the runner derives: %d, want %d (yes)", id, got, derivedYes)
		}
		// The main pid is systemd's, also for the starts after the first,
		// which see it in the unit's cgroup (startJob).
		pid := *p.Status().Pid
		if mp, err := r.conn.GetUnitTypePropertyContext(context.Background(), name, "Service", "ExecMainPID"); err != nil || mp.Value.Value() != uint32(pid) {
			t.Errorf("%s: main pid %d, systemd's %v (%v)", id, pid, mp, err)
		}
		// The handle's cgroup is where its members are found.
		found := false
		for _, m := range p.Members() {
			found = found || m.Pid == pid
		}
		if !found {
			t.Errorf("%s: members %+v lack the main pid %d", id, p.Members(), pid)
		}
	}
}

// BenchmarkStartDerived compares, start by start (alternating, so that the
// load of a shared host hits both alike), a systemd start that reads the
// main pid, cgroup and invocation id of the new unit over D-Bus (derivedNo,
// as every start did before) with one that finds them without asking
// systemd (attach). It reports the median of each, in ms.
func BenchmarkStartDerived(b *testing.B) {
	if !systemdWanted() {
		b.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1")
	}
	r, err := NewRunner(context.Background(), RunnerOptions{Application: "bench", EnvDir: filepath.Join(b.TempDir(), "env")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	spec := process.Spec{ID: "web", Command: "exec sleep 1000", Dir: b.TempDir(), Env: []string{"PATH=/usr/bin:/bin", "A=b"},
		GracefulStop: time.Second, Fields: map[string]any{events.KeyReleaseID: "b1", events.KeyBaseID: "web"}}
	modes := []int32{derivedNo, derivedYes}
	took := map[int32][]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, m := range modes {
			r.derived.Store(m)
			p := process.New(spec, r, nil)
			t0 := time.Now()
			if err := p.Start(context.Background(), process.ReasonDeploy); err != nil {
				b.Fatal(err)
			}
			took[m] = append(took[m], time.Since(t0))
			if err := p.Stop(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	b.ReportMetric(median(took[derivedNo]), "dbus-ms")
	b.ReportMetric(median(took[derivedYes]), "derived-ms")
}

// BenchmarkStartSeenBeforeJobRemoved measures what startJob saves: for
// each start (a unit name of its own, as each deploy's release id gives),
// the time from sending StartTransientUnit until the unit's cgroup holds
// its process (the watch startJob uses) and until the job's JobRemoved
// arrives (what a start used to wait for), both in the same start, so the
// load of a shared host hits both alike. It reports the medians in ms and
// the median of the per-start difference.
func BenchmarkStartSeenBeforeJobRemoved(b *testing.B) {
	if !systemdWanted() {
		b.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1")
	}
	r, err := NewRunner(context.Background(), RunnerOptions{Application: "bench-watch", EnvDir: filepath.Join(b.TempDir(), "env")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	spec := process.Spec{ID: "web", Command: "exec sleep 1000", Dir: b.TempDir(), Env: []string{"PATH=/usr/bin:/bin", "A=b"},
		GracefulStop: time.Second, Fields: map[string]any{events.KeyReleaseID: "b0", events.KeyBaseID: "web"}}
	// A unit that runs all along keeps the slice (and its cgroup, which
	// the watch needs) alive, as the release still running during a
	// deploy does; its start also makes the runner trust the derivation.
	keep := process.New(spec, r, nil)
	if err := keep.Start(context.Background(), process.ReasonDeploy); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = keep.Stop(context.Background()) })
	var seen, removed, saved []time.Duration
	for i := 0; i < b.N; i++ {
		spec.Fields = map[string]any{events.KeyReleaseID: fmt.Sprintf("b%d", i+1), events.KeyBaseID: "web"}
		name := r.unitName(spec, 0)
		props, err := r.properties(spec, "/dev/null")
		if err != nil {
			b.Fatal(err)
		}
		w := r.cg.watchPopulated(unitCgroup(r.slice, name))
		if w == nil {
			b.Fatalf("no watch for %s", name)
		}
		ch := make(chan string, 1)
		t0 := time.Now()
		if _, err := r.conn.StartTransientUnitContext(context.Background(), name, "fail", props, ch); err != nil {
			b.Fatal(err)
		}
		var tSeen, tRemoved time.Time
		populated := w.Ready()
		for tSeen.IsZero() || tRemoved.IsZero() {
			select {
			case <-populated:
				tSeen, populated = time.Now(), nil
			case <-ch:
				tRemoved = time.Now()
			}
		}
		w.Stop()
		seen, removed, saved = append(seen, tSeen.Sub(t0)), append(removed, tRemoved.Sub(t0)), append(saved, tRemoved.Sub(tSeen))
		stop := make(chan string, 1)
		if _, err := r.conn.StopUnitContext(context.Background(), name, "replace", stop); err != nil {
			b.Fatal(err)
		}
		<-stop
	}
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	b.ReportMetric(median(seen), "process-seen-ms")
	b.ReportMetric(median(removed), "jobremoved-ms")
	b.ReportMetric(median(saved), "saved-ms")
}

// A start takes the main pid from the unit's cgroup (attach). When the main
// process has forked and exited before that read (an app that daemonizes
// at once), the one process left there is its child: systemd's ExecMainPID
// then corrects it, and the run reads as exited with the main process's
// status, as the exec runner reports it, though the child lives on in the
// unit. The race is forced here: the start job runs, the main process is
// gone, then the handle is attached as a start's would be.
func TestSystemdMainPidOfADaemonizingApp(t *testing.T) {
	if !systemdWanted() {
		t.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1 (the systemd lane runs it)")
	}
	r := newSystemdRunner(t, testApp(t))
	t.Cleanup(r.Close)
	r.derived.Store(derivedYes)
	// Exit 0: a failed main process would have systemd end the child too.
	spec := shellSpec(t, "web", `sleep 1000 & exit 0`)
	name := r.unitName(spec, 0)
	props, err := r.properties(spec, "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.startJob(context.Background(), name, props, nil); err != nil {
		t.Fatal(err)
	}
	cg := unitCgroup(r.slice, name)
	testutil.Eventually(t, "the main process gone", func() bool {
		p, err := r.conn.GetUnitTypePropertyContext(context.Background(), name, "Service", "MainPID")
		return err == nil && p.Value.Value() == uint32(0)
	})
	orphan := r.cg.mainFromCgroup(cg)
	if orphan == 0 {
		t.Fatalf("the child is not alone in the cgroup with the manager as its parent: %v", r.cg.procs(cg))
	}
	h, err := r.attach(context.Background(), name, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.Signal(syscall.SIGKILL) // the child; the unit goes with the test's slice
		h.release()
	})
	select {
	case <-h.Done():
	case <-time.After(testutil.Timeout):
		t.Fatalf("the run of %s never ended: watching %d, the child (%d) of its exited main process", name, h.Pid(), orphan)
	}
	if code, sig := h.ExitStatus(); code == nil || *code != 0 || sig != "" {
		t.Errorf("exit status %v %q, want the main process's 0", code, sig)
	}
	if !procfs.Alive(orphan, 0) || !h.GroupAlive() {
		t.Errorf("the child %d should live on in the unit", orphan)
	}
}

// Closing the runner stops its journal follower even when the follower
// does not act on SIGINT (a runner closed while its journalctl was still
// starting hung a test of the lane in Runner.Close): here a follower that
// ignores SIGINT stands in for it.
func TestFollowerCloseDoesNotHang(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	f, err := startFollowerCmd(exec.Command("/bin/sh", "-c", `trap '' INT; : > "$0"; while :; do sleep 0.05; done`, ready))
	if err != nil {
		t.Fatal(err)
	}
	// The case to cover is SIGINT ignored: once the trap is set.
	testutil.Eventually(t, "trap set", func() bool { _, err := os.Stat(ready); return err == nil })
	closed := make(chan struct{})
	go func() { f.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(testutil.Timeout):
		t.Fatal("follower.close still waits for a follower that ignores SIGINT")
	}
}

// inotifyFDs counts this process's inotify descriptors.
func inotifyFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// A start that saw its process through the cgroup watch leaves closing the
// watch to the reader of the job's result, off the start path; Close
// waits for that reader, so no watch outlives the runner.
func TestSystemdCloseEndsTheStartWatches(t *testing.T) {
	if !systemdWanted() {
		t.Skip("needs a real systemd: RB_SYSTEMD_TESTS=1 (the systemd lane runs it)")
	}
	before := inotifyFDs(t)
	r := newSystemdRunner(t, testApp(t))
	ctx := context.Background()
	var procs []*process.Process
	// The first start creates the slice; the later ones are watched.
	for _, id := range []string{"worker", "web", "jobs"} {
		p, _ := newProc(t, shellSpec(t, id, `sleep 1000`), r)
		if err := p.Start(ctx, process.ReasonDeploy); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if err := p.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	if after := inotifyFDs(t); after != before {
		t.Errorf("%d inotify descriptors after Close, %d before the runner", after, before)
	}
}
