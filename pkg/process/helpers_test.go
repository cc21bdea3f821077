package process

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/events"
)

func testExe(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// childSpec runs the test binary in child mode through `exec`, so the child
// itself is the group leader, in a fresh temp directory.
func childSpec(t testing.TB, id, mode string, env ...string) Spec {
	t.Helper()
	return Spec{
		ID:           id,
		Command:      "exec " + shellQuote(testExe(t)),
		Dir:          t.TempDir(),
		Env:          append(append(os.Environ(), childEnv+"="+mode, childGorace()), env...),
		GracefulStop: 5 * time.Second,
		RestartDelay: 10 * time.Millisecond,
		Restart:      RestartPolicy{MaxRestarts: -1},
	}
}

// childGorace stops a race-enabled child from sleeping a second before a
// clean exit (the race runtime's atexit_sleep_ms), keeping other settings.
func childGorace() string {
	return strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0")
}

type harness struct {
	t   testing.TB
	p   *Process
	log *events.Log
}

// newHarness creates a Process whose events go to a fresh log. At cleanup it
// stops the process and checks that no group it ever started has a live
// member left.
func newHarness(t testing.TB, spec Spec, opts ...Option) *harness {
	t.Helper()
	h := &harness{t: t, log: events.New(0)}
	h.p = New(spec, ExecRunner{}, h.log, opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
		defer cancel()
		if err := h.p.Stop(ctx); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
		for _, e := range h.events("process started") {
			assertGroupGone(t, e.Data["pid"].(int))
		}
	})
	return h
}

func (h *harness) start() int {
	h.t.Helper()
	if err := h.p.Start(context.Background(), ReasonDeploy); err != nil {
		h.t.Fatal(err)
	}
	st := h.p.Status()
	if st.Pid == nil {
		h.t.Fatalf("no pid right after Start: %+v", st)
	}
	return *st.Pid
}

// startReady starts the process and waits until the child said "ready",
// i.e. its signal handlers are installed.
func (h *harness) startReady() int {
	h.t.Helper()
	pid := h.start()
	h.waitLine("ready")
	return pid
}

func (h *harness) stop() {
	h.t.Helper()
	h.stopCtx(context.Background())
}

// stopCtx calls Stop and fails the test if it does not return: the point of
// several tests is that a stop never wedges.
func (h *harness) stopCtx(ctx context.Context) {
	h.t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.p.Stop(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			h.t.Fatalf("Stop: %v", err)
		}
	case <-time.After(testutil.Timeout):
		h.t.Fatalf("Stop did not return within %v", testutil.Timeout)
	}
}

func (h *harness) waitLine(line string) {
	h.t.Helper()
	testutil.Eventually(h.t, "output line "+strconv.Quote(line), func() bool { return hasLine(h.p.Logs(), line) })
}

func (h *harness) waitExited() {
	h.t.Helper()
	waitClosed(h.t, "Exited", h.p.Exited())
}

func (h *harness) events(message string) []events.Event {
	var out []events.Event
	for _, e := range h.log.Recent(0) {
		if string(e.Message) == message {
			out = append(out, e)
		}
	}
	return out
}

// hookFailures returns the events reporting a failed lifecycle hook, under
// any of the spec's names for them.
func (h *harness) hookFailures() []events.Event {
	var out []events.Event
	for _, e := range h.log.Recent(0) {
		for _, field := range []string{"quietCommand", "drainCommand", "stopCommand"} {
			n, _ := events.HookEvents(field)
			if e.Message == n.Failed || e.Message == n.TimedOut || e.Message == n.ExitedNonZero || e.Message == n.ExitedOnSignal {
				out = append(out, e)
			}
		}
	}
	return out
}

func (h *harness) waitEvents(message string, n int) []events.Event {
	h.t.Helper()
	testutil.Eventually(h.t, strconv.Itoa(n)+" "+strconv.Quote(message)+" events", func() bool { return len(h.events(message)) >= n })
	return h.events(message)
}

func hasLine(lines []Line, want string) bool {
	for _, l := range lines {
		if l.Line == want {
			return true
		}
	}
	return false
}

func waitClosed(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testutil.Timeout):
		t.Fatalf("%s not closed within %v", what, testutil.Timeout)
	}
}

// liveMembers lists the processes of group pgid that are still alive,
// independently of the package's own bookkeeping. kill(-pgid, 0) answering
// ESRCH settles it; otherwise zombies are skipped, because an init that does
// not reap orphans (as in some containers) keeps them around forever.
func liveMembers(t testing.TB, pgid int) []string {
	t.Helper()
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return nil
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			live = append(live, d.Name()+" ("+f[0]+")")
		}
	}
	return live
}

func assertGroupGone(t testing.TB, pgid int) {
	t.Helper()
	if live := liveMembers(t, pgid); len(live) > 0 {
		t.Errorf("process group %d still has live members: %v", pgid, live)
	}
}

// assertDead checks that pid no longer runs (gone, or a zombie nobody reaped).
func assertDead(t testing.TB, pid int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return
	}
	s := string(b)
	if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] != "Z" && f[0] != "X" {
		t.Errorf("pid %d is still alive (state %s)", pid, f[0])
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

func readPid(t testing.TB, path string) int {
	t.Helper()
	var pid int
	testutil.Eventually(t, "pid file "+path, func() bool {
		n, err := strconv.Atoi(strings.TrimSpace(readFile(t, path)))
		pid = n
		return err == nil && n > 0
	})
	return pid
}
