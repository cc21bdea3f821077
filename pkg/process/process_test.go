package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
	"go.uber.org/goleak"
)

// TestMain doubles as the managed child when RB_PROC_MODE is set.
func TestMain(m *testing.M) {
	switch os.Getenv("RB_PROC_MODE") {
	case "":
		goleak.VerifyTestMain(m)
	case "hog":
		mib, _ := strconv.Atoi(os.Getenv("RB_HOG_MIB"))
		buf := make([]byte, mib<<20)
		for i := range buf {
			if i%4096 == 0 {
				buf[i] = 1
			}
		}
		fmt.Println("allocated", len(buf))
		runtime.KeepAlive(buf)
		time.Sleep(time.Hour)
		runtime.KeepAlive(buf)
	}
}

func selfCommand(t *testing.T, mode string, env ...string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(append(env, "RB_PROC_MODE="+mode, "exec", exe), " ")
}

func baseSpec(t *testing.T, id, command string) Spec {
	return Spec{
		ID: id, Command: command, Dir: t.TempDir(), Env: os.Environ(),
		GracefulStop: 2 * time.Second, RestartDelay: 20 * time.Millisecond,
		Restart: RestartPolicy{MaxRestarts: -1}, OutputLines: 50,
	}
}

func newProc(t *testing.T, spec Spec) (*Process, *events.Log) {
	t.Helper()
	log := events.New(1000)
	p := New(spec, ExecRunner{}, log)
	t.Cleanup(func() {
		_ = p.Stop(context.Background())
		// Nothing of the group may survive the test.
		st := p.Status()
		if st.Pid != nil {
			t.Errorf("pid %d still reported after Stop", *st.Pid)
		}
	})
	return p, log
}

func start(t *testing.T, p *Process) int {
	t.Helper()
	if err := p.Start(context.Background(), ReasonDeploy); err != nil {
		t.Fatal(err)
	}
	st := p.Status()
	if st.Pid == nil {
		t.Fatalf("no pid after start: %+v", st)
	}
	return *st.Pid
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// groupGone: no live member is left. Zombies do not count — the machine's
// init may reap orphans lazily — so this reads /proc like the package does.
func groupGone(pgid int) bool { return !groupAlive(pgid) }

// startReady starts p and waits for the child to print "ready" (its traps
// are installed by then).
func startReady(t *testing.T, p *Process) int {
	t.Helper()
	pid := start(t, p)
	eventually(t, "ready line", func() bool {
		for _, l := range p.Logs() {
			if l.Line == "ready" {
				return true
			}
		}
		return false
	})
	return pid
}

func eventsNamed(log *events.Log, name string) []events.Event {
	var out []events.Event
	for _, e := range log.Recent(0) {
		if e.Message == name {
			out = append(out, e)
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func TestStartStatusAndEvents(t *testing.T) {
	spec := baseSpec(t, "web", `echo "hello $GREETING"; exec sleep 1000`)
	spec.Env = append(spec.Env, "GREETING=world")
	spec.Fields = map[string]any{"releaseId": "v1"}
	p, log := newProc(t, spec)
	pid := start(t, p)
	eventually(t, "output", func() bool { return len(p.Logs()) == 1 })
	if l := p.Logs()[0]; l.Line != "hello world" || l.Stream != "stdout" {
		t.Errorf("line %+v", l)
	}
	st := p.Status()
	if st.State != Running || *st.LastStartReason != ReasonDeploy || st.UptimeMs == nil || st.StartedAt == nil || st.Cwd != spec.Dir {
		t.Errorf("status %+v", st)
	}
	started := eventsNamed(log, "process started")
	if len(started) != 1 || started[0].Data["pid"] != pid || started[0].Data["reason"] != "deploy" || started[0].Data["releaseId"] != "v1" || started[0].Data["id"] != "web" {
		t.Errorf("started events %+v", started)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !groupGone(pid) {
		t.Error("group alive after Stop")
	}
	st = p.Status()
	if st.State != Stopped || st.Pid != nil || st.UptimeMs != nil || st.ExitSignal == nil || *st.ExitSignal != "SIGTERM" {
		t.Errorf("after stop: state %s pid %v signal %v", st.State, st.Pid, st.ExitSignal)
	}
	if ex := eventsNamed(log, "process exited"); len(ex) != 1 || ex[0].Data["exitSignal"] != "SIGTERM" {
		t.Errorf("exited events %+v", ex)
	}
}

func TestMissingCwd(t *testing.T) {
	spec := baseSpec(t, "web", "true")
	spec.Dir = "/nonexistent/release/42"
	p, _ := newProc(t, spec)
	err := p.Start(context.Background(), ReasonDeploy)
	if err == nil || !strings.Contains(err.Error(), "process web: working directory /nonexistent/release/42 does not exist") {
		t.Fatalf("got %v", err)
	}
	if st := p.Status(); st.State != Failed || st.Pid != nil {
		t.Errorf("status %+v", st)
	}
}

func TestShellErrorIsACrash(t *testing.T) {
	spec := baseSpec(t, "web", "no-such-command-xyz")
	spec.Restart.MaxRestarts = 0
	p, log := newProc(t, spec)
	start(t, p)
	<-p.Exited()
	eventually(t, "failed state", func() bool { return p.Status().State == Failed })
	st := p.Status()
	if st.ExitCode == nil || *st.ExitCode != 127 {
		t.Errorf("exit code %v, want 127", st.ExitCode)
	}
	if !strings.Contains(fmt.Sprint(p.Logs()), "not found") {
		t.Errorf("shell's error not captured: %v", p.Logs())
	}
	eventually(t, "restart limit event", func() bool { return len(eventsNamed(log, "restart limit reached")) == 1 })
}

func TestStopSequenceOrderWithHooks(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "order")
	// The child records TERM itself; each hook records its name and the pid it was given.
	cmd := fmt.Sprintf(`trap 'echo term >> %[1]s; exit 0' TERM; echo ready; while :; do sleep 0.02; done`, rec)
	spec := baseSpec(t, "worker", cmd)
	spec.Lifecycle = Lifecycle{
		QuietCommand: fmt.Sprintf(`echo "quiet $ROLLBRIDGE_PID" >> %s`, rec),
		DrainCommand: fmt.Sprintf(`echo drain >> %s`, rec),
		DrainTimeout: 2 * time.Second,
	}
	p, _ := newProc(t, spec)
	pid := startReady(t, p)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("quiet %d\ndrain\nterm\n", pid)
	if got := readFile(t, rec); got != want {
		t.Errorf("order:\n%s\nwant:\n%s", got, want)
	}
	if !groupGone(pid) {
		t.Error("group alive")
	}
}

func TestDrainWaitsForExitWithoutCommand(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "rec")
	// Quiet tells the worker to finish; it exits by itself within the drain window.
	spec := baseSpec(t, "worker", fmt.Sprintf(`trap 'echo usr1 >> %[1]s; exit 0' USR1; trap 'echo term >> %[1]s' TERM; echo ready; while :; do sleep 0.02; done`, rec))
	spec.Lifecycle = Lifecycle{QuietCommand: `kill -USR1 -$ROLLBRIDGE_PID`, DrainTimeout: 5 * time.Second}
	p, _ := newProc(t, spec)
	startReady(t, p)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, rec); got != "usr1\n" {
		t.Errorf("got %q: the worker should drain and exit without a TERM", got)
	}
}

func TestStopCommandInsteadOfSignal(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "rec")
	spec := baseSpec(t, "worker", fmt.Sprintf(`trap 'echo term >> %[1]s; exit 0' TERM; trap 'echo usr2 >> %[1]s; exit 0' USR2; echo ready; while :; do sleep 0.02; done`, rec))
	spec.Lifecycle = Lifecycle{StopCommand: `kill -USR2 $ROLLBRIDGE_PID`}
	p, _ := newProc(t, spec)
	startReady(t, p)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, rec); got != "usr2\n" {
		t.Errorf("got %q, want only the stop command's signal", got)
	}
}

func TestFailingAndHangingHooksStillStop(t *testing.T) {
	spec := baseSpec(t, "worker", `trap '' TERM; echo ready; while :; do sleep 0.02; done`)
	spec.GracefulStop = 300 * time.Millisecond
	spec.Lifecycle = Lifecycle{QuietCommand: "exit 3", DrainCommand: "sleep 1000", DrainTimeout: 300 * time.Millisecond}
	p, log := newProc(t, spec)
	pid := startReady(t, p)
	began := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// quiet (fails fast) + drain (300ms, killed) + grace (300ms) + SIGKILL; 10s is a generous bound.
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("stop took %v", d)
	}
	if !groupGone(pid) {
		t.Error("group alive")
	}
	failed := eventsNamed(log, "lifecycle hook failed")
	if len(failed) != 2 || failed[0].Data["hook"] != "quietCommand" || failed[1].Data["hook"] != "drainCommand" ||
		!strings.Contains(fmt.Sprint(failed[1].Data["error"]), "timed out") {
		t.Errorf("hook failure events %+v", failed)
	}
	if st := p.Status(); st.State != Stopped || st.ExitSignal == nil || *st.ExitSignal != "SIGKILL" {
		t.Errorf("status %s %v", st.State, st.ExitSignal)
	}
}

func TestCustomStopSignalReceived(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "rec")
	spec := baseSpec(t, "worker", fmt.Sprintf(`trap 'echo int >> %[1]s; exit 0' INT; trap 'echo term >> %[1]s; exit 0' TERM; echo ready; while :; do sleep 0.02; done`, rec))
	spec.StopSignal = syscall.SIGINT
	p, _ := newProc(t, spec)
	startReady(t, p)
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, rec); got != "int\n" {
		t.Errorf("got %q, want int", got)
	}
}

func TestGrandchildIgnoringTermIsKilledWithGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "gc")
	spec := baseSpec(t, "worker", fmt.Sprintf(`sh -c 'trap "" TERM; echo $$ > %s; while :; do sleep 0.05; done' & wait`, pidFile))
	spec.GracefulStop = 200 * time.Millisecond
	p, _ := newProc(t, spec)
	pid := start(t, p)
	eventually(t, "grandchild pid", func() bool { return strings.TrimSpace(readFile(t, pidFile)) != "" })
	gc, _ := strconv.Atoi(strings.TrimSpace(readFile(t, pidFile)))
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !groupGone(pid) {
		t.Error("group alive")
	}
	if st, err := statFields(gc); err == nil && st[0] != "Z" {
		t.Errorf("grandchild %d survived (state %s)", gc, st[0])
	}
}

func TestOutputRing(t *testing.T) {
	spec := baseSpec(t, "chatty", `i=0; while [ $i -lt 30 ]; do echo "line $i"; i=$((i+1)); done; sleep 0.2; echo err >&2; sleep 0.2; printf partial`)
	spec.OutputLines = 5
	spec.Restart.MaxRestarts = 0
	p, _ := newProc(t, spec)
	start(t, p)
	eventually(t, "partial last line", func() bool {
		l := p.Logs()
		return len(l) > 0 && l[len(l)-1].Line == "partial"
	})
	_ = p.Stop(context.Background())
	logs := p.Logs()
	if len(logs) != 5 {
		t.Fatalf("kept %d lines, want 5: %+v", len(logs), logs)
	}
	var got []string
	for _, l := range logs {
		got = append(got, l.Stream+":"+l.Line)
	}
	// stdout and stderr are read independently, so only per-stream order is fixed.
	joined := strings.Join(got, ",")
	for _, want := range []string{"stdout:line 28", "stdout:line 29", "stderr:err", "stdout:partial"} {
		if !strings.Contains(joined, want) {
			t.Errorf("ring %v lacks %s", got, want)
		}
	}
}

func TestLongLineBounded(t *testing.T) {
	spec := baseSpec(t, "long", `head -c 200000 /dev/zero | tr '\0' 'x'; echo; echo after; exec sleep 1000`)
	p, _ := newProc(t, spec)
	start(t, p)
	eventually(t, "line after the long one", func() bool {
		l := p.Logs()
		return len(l) > 0 && l[len(l)-1].Line == "after"
	})
	logs := p.Logs()
	if len(logs) != 2 || len(logs[0].Line) != maxLine {
		t.Errorf("got %d lines, first %d bytes; want 2 lines, first cut at %d", len(logs), len(logs[0].Line), maxLine)
	}
}

func TestCrashRestartedWithReason(t *testing.T) {
	counter := filepath.Join(t.TempDir(), "n")
	spec := baseSpec(t, "worker", fmt.Sprintf(`echo x >> %s; n=$(wc -l < %s); if [ $n -lt 3 ]; then exit 1; fi; exec sleep 1000`, counter, counter))
	p, log := newProc(t, spec)
	start(t, p)
	eventually(t, "third run", func() bool { return p.Status().Restarts == 2 && p.Status().State == Running })
	started := eventsNamed(log, "process started")
	if len(started) != 3 || started[1].Data["reason"] != "crash" || started[2].Data["reason"] != "crash" {
		t.Errorf("started %+v", started)
	}
	if st := p.Status(); *st.LastStartReason != ReasonCrash {
		t.Errorf("reason %v", *st.LastStartReason)
	}
}

func TestBackoffDelays(t *testing.T) {
	for _, tc := range []struct {
		base   time.Duration
		factor float64
		n      int
		max    time.Duration
		want   time.Duration
	}{
		{time.Second, 1, 5, 0, time.Second},
		{time.Second, 2, 0, 0, time.Second},
		{time.Second, 2, 3, 0, 8 * time.Second},
		{time.Second, 2, 10, 30 * time.Second, 30 * time.Second},
		{100 * time.Millisecond, 1.5, 2, 0, 225 * time.Millisecond},
		{time.Second, 0.5, 3, 0, time.Second},
		{time.Second, 10, 400, 0, time.Duration(1<<62 - 1)},
	} {
		got := restartDelay(tc.base, tc.factor, tc.n, tc.max)
		if tc.n == 400 {
			if got <= 0 {
				t.Errorf("overflow: %v", got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("restartDelay(%v, %v, %d, %v) = %v, want %v", tc.base, tc.factor, tc.n, tc.max, got, tc.want)
		}
	}
	now := time.Now()
	times := []time.Time{now.Add(-3 * time.Second), now.Add(-time.Second), now}
	if got := inWindow(append([]time.Time(nil), times...), now, 2*time.Second); len(got) != 2 {
		t.Errorf("window kept %d, want 2", len(got))
	}
	if got := inWindow(append([]time.Time(nil), times...), now, 0); len(got) != 3 {
		t.Errorf("lifetime window kept %d", len(got))
	}
}

// TestBackoffObserved: delays double between restarts (100ms, 200ms, 400ms).
func TestBackoffObserved(t *testing.T) {
	spec := baseSpec(t, "crasher", "exit 1")
	spec.RestartDelay = 100 * time.Millisecond
	spec.Restart = RestartPolicy{MaxRestarts: 3, BackoffFactor: 2}
	p, log := newProc(t, spec)
	start(t, p)
	eventually(t, "restart limit", func() bool { return len(eventsNamed(log, "restart limit reached")) == 1 })
	started := eventsNamed(log, "process started")
	exited := eventsNamed(log, "process exited")
	if len(started) != 4 || len(exited) != 4 {
		t.Fatalf("%d starts, %d exits; want 4 each", len(started), len(exited))
	}
	for i, want := range []time.Duration{100, 200, 400} {
		gap := started[i+1].At.Sub(exited[i].At)
		// Lower bound only: the machine may be slow, never early.
		if gap < want*time.Millisecond {
			t.Errorf("restart %d after %v, want at least %vms", i+1, gap, want)
		}
	}
	if st := p.Status(); st.State != Failed || st.Restarts != 3 {
		t.Errorf("state %s restarts %d", st.State, st.Restarts)
	}
}

func TestMaxRestartsZero(t *testing.T) {
	spec := baseSpec(t, "once", "exit 2")
	spec.Restart.MaxRestarts = 0
	p, log := newProc(t, spec)
	start(t, p)
	eventually(t, "restart limit", func() bool { return len(eventsNamed(log, "restart limit reached")) == 1 })
	if n := len(eventsNamed(log, "process started")); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	if st := p.Status(); st.State != Failed || *st.ExitCode != 2 || st.Restarts != 0 {
		t.Errorf("status %s %v %d", st.State, *st.ExitCode, st.Restarts)
	}
	// A manual restart revives it.
	if err := p.Restart(context.Background(), ReasonManual); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); *st.LastStartReason != ReasonManual {
		t.Errorf("reason %v", *st.LastStartReason)
	}
}

func TestStopCancelsPendingRestart(t *testing.T) {
	spec := baseSpec(t, "crasher", "exit 1")
	spec.RestartDelay = 300 * time.Millisecond
	p, log := newProc(t, spec)
	start(t, p)
	<-p.Exited()
	eventually(t, "failed", func() bool { return p.Status().State == Failed })
	_ = p.Stop(context.Background())
	time.Sleep(500 * time.Millisecond) // longer than the restart delay: nothing may start
	if n := len(eventsNamed(log, "process started")); n != 1 {
		t.Errorf("%d starts after Stop, want 1", n)
	}
}

func TestSetSpecUsedOnNextRestart(t *testing.T) {
	spec := baseSpec(t, "svc", `echo v1; exec sleep 1000`)
	p, _ := newProc(t, spec)
	start(t, p)
	spec2 := spec
	spec2.Command = `echo v2; exec sleep 1000`
	p.SetSpec(spec2)
	if err := p.Restart(context.Background(), ReasonManual); err != nil {
		t.Fatal(err)
	}
	eventually(t, "v2 output", func() bool {
		l := p.Logs()
		return len(l) > 0 && l[len(l)-1].Line == "v2"
	})
}

func TestExitedChannel(t *testing.T) {
	spec := baseSpec(t, "short", "sleep 0.1; exit 4")
	spec.Restart.MaxRestarts = 0
	p, _ := newProc(t, spec)
	start(t, p)
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("Exited not closed")
	}
}

func TestMemoryHogRestarted(t *testing.T) {
	spec := baseSpec(t, "hog", selfCommand(t, "hog", "RB_HOG_MIB=64"))
	spec.Memory = &MemoryPolicy{LimitBytes: 48 << 20, WarnBytes: 16 << 20, CheckInterval: 50 * time.Millisecond}
	p, log := newProc(t, spec)
	start(t, p)
	eventually(t, "memory restart", func() bool { return p.Status().MemoryRestarts >= 1 })
	eventually(t, "restarted run", func() bool { return p.Status().State == Running })
	st := p.Status()
	if *st.LastStartReason != ReasonMemory || st.LastMemoryRestartAt == nil {
		t.Errorf("status %+v", st)
	}
	if len(eventsNamed(log, "memory warning")) < 1 || len(eventsNamed(log, "memory limit exceeded")) < 1 {
		t.Errorf("events: %v", log.Recent(0))
	}
	var memStart bool
	for _, e := range eventsNamed(log, "process started") {
		memStart = memStart || e.Data["reason"] == "memory"
	}
	if !memStart {
		t.Error("no process started event with reason memory")
	}
}

func TestRSSOfTwoMembers(t *testing.T) {
	exe, _ := os.Executable()
	cmd := fmt.Sprintf("RB_PROC_MODE=hog RB_HOG_MIB=20 %[1]s & RB_PROC_MODE=hog RB_HOG_MIB=20 %[1]s & wait", exe)
	spec := baseSpec(t, "pair", cmd)
	spec.Memory = &MemoryPolicy{LimitBytes: 1 << 40, CheckInterval: 30 * time.Millisecond}
	p, _ := newProc(t, spec)
	start(t, p)
	eventually(t, "both hogs counted", func() bool {
		st := p.Status()
		hogs := 0
		for _, c := range st.Children {
			if strings.Contains(c.Command, filepath.Base(exe)) && c.RSSBytes >= 20<<20 {
				hogs++
			}
		}
		return hogs == 2 && st.RSSBytes >= 40<<20
	})
	st := p.Status()
	var sum uint64
	for _, c := range st.Children {
		sum += c.RSSBytes
		if c.Pid == 0 || c.Command == "" {
			t.Errorf("member %+v", c)
		}
	}
	if sum != st.RSSBytes || len(st.Children) < 3 { // sh + two hogs
		t.Errorf("rss %d, children %+v", st.RSSBytes, st.Children)
	}
}

func TestStartTime(t *testing.T) {
	a, err := StartTime(os.Getpid())
	if err != nil || a == 0 {
		t.Fatalf("StartTime = %d, %v", a, err)
	}
	b, _ := StartTime(os.Getpid())
	if a != b {
		t.Errorf("unstable: %d vs %d", a, b)
	}
	if _, err := StartTime(1 << 30); err == nil {
		t.Error("no error for a missing pid")
	}
}

func TestConcurrentStatusDuringStop(t *testing.T) {
	spec := baseSpec(t, "slow", `trap 'sleep 0.3; exit 0' TERM; echo ready; while :; do sleep 0.02; done`)
	p, _ := newProc(t, spec)
	startReady(t, p)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = p.Stop(context.Background())
	}()
	eventually(t, "stopping state", func() bool { return p.Status().State == Stopping })
	wg.Wait()
	if p.Status().State != Stopped {
		t.Errorf("state %s", p.Status().State)
	}
}
