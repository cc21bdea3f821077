package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

func TestStartStopStatusAndEvents(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "web", "signals", "RB_QUIT=SIGTERM")
	spec.Fields = map[string]any{"releaseId": "v1", "policy": "proxied"}
	h := newHarness(t, spec)
	pid := h.startReady()

	st := h.p.Status()
	if st.State != Running || st.LastStartReason == nil || *st.LastStartReason != ReasonDeploy ||
		st.UptimeMs == nil || st.StartedAt == nil || st.ExitCode != nil || st.ExitSignal != nil {
		t.Errorf("running status: %+v", st)
	}
	if st.ID != "web" || st.Command != spec.Command || st.Cwd != spec.Dir {
		t.Errorf("status id/command/cwd: got %q %q %q", st.ID, st.Command, st.Cwd)
	}
	started := h.events("process started")
	if len(started) != 1 {
		t.Fatalf("got %d process started events, want 1", len(started))
	}
	for k, want := range map[string]any{"id": "web", "processId": "web", "command": spec.Command, "pid": pid, "reason": "deploy",
		"releaseId": "v1", "policy": "proxied"} {
		if got := started[0].Data[k]; got != want {
			t.Errorf("process started %s: got %v, want %v", k, got, want)
		}
	}

	h.stop()
	assertGroupGone(t, pid)
	st = h.p.Status()
	if st.State != Stopped || st.Pid != nil || st.UptimeMs != nil || st.StartedAt == nil {
		t.Errorf("stopped status: state %s pid %v uptime %v startedAt %v", st.State, st.Pid, st.UptimeMs, st.StartedAt)
	}
	if st.ExitCode == nil || *st.ExitCode != 0 || st.ExitSignal != nil {
		t.Errorf("exit: code %v signal %v, want 0 and none", st.ExitCode, st.ExitSignal)
	}
	exited := h.events("process exited")
	if len(exited) != 1 {
		t.Fatalf("got %d process exited events, want 1", len(exited))
	}
	// The spec's keys: code and signal, each null when it does not apply.
	for k, want := range map[string]any{"id": "web", "processId": "web", "pid": pid, "code": 0, "signal": nil, "releaseId": "v1"} {
		if got, ok := exited[0].Data[k]; got != want || !ok {
			t.Errorf("process exited %s: got %v (present %v), want %v", k, got, ok, want)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t, childSpec(t, "web", "signals", "RB_QUIT=SIGTERM"))
	decode := func() map[string]any {
		b, err := json.Marshal(h.p.Status())
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	wantKeys := []string{"id", "command", "cwd", "state", "pid", "restarts", "startedAt", "uptimeMs", "exitCode",
		"exitSignal", "lastStartReason", "logs", "rssBytes", "memoryRestarts", "lastMemoryRestartAt", "children"}
	sort.Strings(wantKeys)

	m := decode()
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("keys:\n got %v\nwant %v", keys, wantKeys)
	}
	for _, k := range []string{"pid", "startedAt", "uptimeMs", "exitCode", "exitSignal", "lastStartReason", "lastMemoryRestartAt"} {
		if m[k] != nil {
			t.Errorf("never started: %s = %v, want null", k, m[k])
		}
	}
	if logs, ok := m["logs"].([]any); !ok || len(logs) != 0 {
		t.Errorf("logs = %#v, want []", m["logs"])
	}
	if ch, ok := m["children"].([]any); !ok || len(ch) != 0 {
		t.Errorf("children = %#v, want []", m["children"])
	}
	if m["state"] != "stopped" {
		t.Errorf("state = %v, want stopped", m["state"])
	}

	pid := h.startReady()
	m = decode()
	if m["pid"] != float64(pid) || m["state"] != "running" || m["lastStartReason"] != "deploy" {
		t.Errorf("running: pid %v state %v reason %v", m["pid"], m["state"], m["lastStartReason"])
	}
	if _, ok := m["uptimeMs"].(float64); !ok {
		t.Errorf("uptimeMs = %#v, want a number", m["uptimeMs"])
	}
	if s, _ := m["startedAt"].(string); s == "" {
		t.Errorf("startedAt = %#v", m["startedAt"])
	} else if _, err := time.Parse(time.RFC3339, s); err != nil {
		t.Errorf("startedAt %q is not RFC 3339: %v", s, err)
	}
	line := m["logs"].([]any)[0].(map[string]any)
	if line["line"] != "ready" || line["stream"] != "stdout" || line["at"] == nil {
		t.Errorf("log line = %v", line)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, want string
		notExist        bool
	}{
		{"missing", "/nonexistent/releases/42", "process web: working directory /nonexistent/releases/42 does not exist", true},
		{"not a directory", file, "process web: working directory " + file + " is not a directory", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := childSpec(t, "web", "signals")
			spec.Dir = tc.dir
			h := newHarness(t, spec)
			err := h.p.Start(context.Background(), ReasonDeploy)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tc.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", got, tc.notExist)
			}
			if st := h.p.Status(); st.State != Failed || st.Pid != nil {
				t.Errorf("status after failed start: %s %v", st.State, st.Pid)
			}
			if n := len(h.events("process started")); n != 0 {
				t.Errorf("%d process started events after a failed start", n)
			}
		})
	}
}

func TestShellErrorExit127(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "web", "")
	spec.Command = "no-such-command-rb42"
	spec.Restart.MaxRestarts = 0
	h := newHarness(t, spec)
	h.start()
	h.waitExited()
	st := h.p.Status()
	if st.ExitCode == nil || *st.ExitCode != 127 || st.State != Failed {
		t.Errorf("got exit %v state %s, want 127 failed", st.ExitCode, st.State)
	}
	var shellSaid bool
	for _, l := range h.p.Logs() {
		shellSaid = shellSaid || (l.Stream == "stderr" && strings.Contains(l.Line, "not found"))
	}
	if !shellSaid {
		t.Errorf("the shell's complaint is not in the logs: %v", h.p.Logs())
	}
	h.waitEvents("restart limit reached", 1)
}

func TestStopSequence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		quit string // signals the child exits on
		lc   Lifecycle
		sig  syscall.Signal
		want string // recorded lines; PID stands for the leader's pid
	}{
		{
			name: "quiet, drain command, then stop signal",
			quit: "SIGTERM",
			lc:   Lifecycle{QuietCommand: "echo quiet $ROLLBRIDGE_PID >> REC", DrainCommand: "echo drain >> REC", DrainTimeout: 10 * time.Second},
			want: "quiet PID\ndrain\nSIGTERM\n",
		},
		{
			name: "drainTimeout 0 skips the drain step",
			quit: "SIGTERM",
			lc:   Lifecycle{QuietCommand: "echo quiet >> REC", DrainCommand: "echo drain >> REC"},
			want: "quiet\nSIGTERM\n",
		},
		{
			name: "drain without a command waits for the exit",
			quit: "SIGUSR1",
			lc:   Lifecycle{QuietCommand: "echo quiet >> REC; kill -USR1 $ROLLBRIDGE_PID", DrainTimeout: testutil.Timeout},
			want: "quiet\nSIGUSR1\n",
		},
		{
			name: "stopCommand instead of the signal",
			quit: "SIGUSR2",
			lc:   Lifecycle{StopCommand: "echo stop >> REC; kill -USR2 $ROLLBRIDGE_PID"},
			want: "stop\nSIGUSR2\n",
		},
		{
			name: "custom stopSignal",
			quit: "SIGINT",
			sig:  syscall.SIGINT,
			want: "SIGINT\n",
		},
		{
			name: "hooks stop at a process that already left during the drain",
			quit: "SIGUSR1",
			lc: Lifecycle{QuietCommand: "kill -USR1 $ROLLBRIDGE_PID", DrainTimeout: testutil.Timeout,
				StopCommand: "echo stop >> REC"},
			want: "SIGUSR1\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := filepath.Join(t.TempDir(), "record")
			spec := childSpec(t, "worker", "signals", "RB_RECORD="+rec, "RB_QUIT="+tc.quit)
			spec.StopSignal = tc.sig
			spec.Lifecycle = tc.lc
			for _, c := range []*string{&spec.Lifecycle.QuietCommand, &spec.Lifecycle.DrainCommand, &spec.Lifecycle.StopCommand} {
				*c = strings.ReplaceAll(*c, "REC", shellQuote(rec))
			}
			h := newHarness(t, spec)
			pid := h.startReady()
			h.stop()
			want := strings.ReplaceAll(tc.want, "PID", fmt.Sprint(pid))
			if got := readFile(t, rec); got != want {
				t.Errorf("recorded:\n%s\nwant:\n%s", got, want)
			}
			assertGroupGone(t, pid)
			if st := h.p.Status(); st.State != Stopped || st.ExitCode == nil || *st.ExitCode != 0 {
				t.Errorf("state %s exit %v, want stopped with code 0", st.State, st.ExitCode)
			}
			if f := h.hookFailures(); len(f) != 0 {
				t.Errorf("unexpected hook failures: %v", f)
			}
		})
	}
}

func TestBrokenHooksStillStop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		lc     Lifecycle
		record string                    // signals the child saw (it ignores them all)
		failed map[string]map[string]any // the spec's event name -> data it must carry
	}{
		{
			name: "failing quiet hook and hanging drain hook",
			lc: Lifecycle{QuietCommand: "echo going to fail; exit 3", DrainCommand: "echo $$ > HOOKPID; exec sleep 1000",
				DrainTimeout: 300 * time.Millisecond},
			record: "SIGTERM\n",
			failed: map[string]map[string]any{
				"quiet command exited non-zero": {"hook": "quietCommand", "code": 3},
				"drain command timed out":       {"hook": "drainCommand", "timeoutMs": int64(300)},
			},
		},
		{
			name:   "hanging stop hook",
			lc:     Lifecycle{StopCommand: "echo $$ > HOOKPID; exec sleep 1000"},
			failed: map[string]map[string]any{"stop command timed out": {"hook": "stopCommand", "timeoutMs": int64(300)}},
		},
		{
			name:   "stop hook killed by a signal",
			lc:     Lifecycle{StopCommand: "echo $$ > HOOKPID; kill -TERM $$"},
			record: "",
			failed: map[string]map[string]any{"stop command exited on signal": {"hook": "stopCommand", "signal": "SIGTERM"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			rec, hookPid := filepath.Join(dir, "record"), filepath.Join(dir, "hookpid")
			spec := childSpec(t, "worker", "signals", "RB_RECORD="+rec, "RB_QUIT=")
			spec.GracefulStop = 300 * time.Millisecond
			spec.Lifecycle = tc.lc
			spec.Lifecycle.DrainCommand = strings.ReplaceAll(spec.Lifecycle.DrainCommand, "HOOKPID", shellQuote(hookPid))
			spec.Lifecycle.StopCommand = strings.ReplaceAll(spec.Lifecycle.StopCommand, "HOOKPID", shellQuote(hookPid))
			h := newHarness(t, spec)
			pid := h.startReady()
			h.stop() // fails the test if it does not return
			assertGroupGone(t, pid)
			assertDead(t, readPid(t, hookPid))
			if got := readFile(t, rec); got != tc.record {
				t.Errorf("child saw %q, want %q", got, tc.record)
			}
			st := h.p.Status()
			if st.State != Stopped || st.ExitSignal == nil || *st.ExitSignal != "SIGKILL" {
				t.Errorf("state %s signal %v, want stopped by SIGKILL", st.State, st.ExitSignal)
			}
			failed := h.hookFailures()
			if len(failed) != len(tc.failed) {
				t.Fatalf("got %d hook failures, want %d: %v", len(failed), len(tc.failed), failed)
			}
			for _, e := range failed {
				want, ok := tc.failed[string(e.Message)]
				if !ok || e.Data["id"] != "worker" || e.Data["processId"] != "worker" {
					t.Errorf("hook failure %s %v, want one of %v", e.Message, e.Data, tc.failed)
					continue
				}
				for k, v := range want {
					if e.Data[k] != v {
						t.Errorf("%s: %s = %v (%T), want %v", e.Message, k, e.Data[k], e.Data[k], v)
					}
				}
			}
			// The child ignores SIGTERM, so the grace period runs out.
			if k := h.events("process stop timed out; sending SIGKILL"); len(k) != 1 || k[0].Data["pid"] != pid {
				t.Errorf("stop timed out events %v, want one for pid %d", k, pid)
			}
			if tc.lc.QuietCommand != "" && !hasLine(h.p.Logs(), "[quietCommand] going to fail") {
				t.Errorf("hook output missing from the logs: %v", h.p.Logs())
			}
		})
	}
}

func TestStopContextEndsSequence(t *testing.T) {
	t.Parallel()
	t.Run("already cancelled", func(t *testing.T) {
		t.Parallel()
		rec := filepath.Join(t.TempDir(), "record")
		spec := childSpec(t, "worker", "signals", "RB_RECORD="+rec, "RB_QUIT=")
		spec.GracefulStop = time.Hour
		spec.Lifecycle = Lifecycle{QuietCommand: "echo quiet >> " + shellQuote(rec), DrainTimeout: time.Hour}
		h := newHarness(t, spec)
		pid := h.startReady()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		h.stopCtx(ctx)
		assertGroupGone(t, pid)
		if got := readFile(t, rec); got != "" {
			t.Errorf("recorded %q: nothing but SIGKILL should have happened", got)
		}
		if st := h.p.Status(); st.ExitSignal == nil || *st.ExitSignal != "SIGKILL" || st.State != Stopped {
			t.Errorf("state %s signal %v", st.State, st.ExitSignal)
		}
	})
	t.Run("cancelled during the drain hook", func(t *testing.T) {
		t.Parallel()
		hookPid := filepath.Join(t.TempDir(), "hookpid")
		spec := childSpec(t, "worker", "signals", "RB_QUIT=")
		spec.GracefulStop = time.Hour
		spec.Lifecycle = Lifecycle{DrainCommand: "echo $$ > " + shellQuote(hookPid) + "; exec sleep 1000", DrainTimeout: time.Hour}
		h := newHarness(t, spec)
		pid := h.startReady()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.stopCtx(ctx)
		}()
		hp := readPid(t, hookPid)
		testutil.Eventually(t, "stopping state", func() bool { return h.p.Status().State == Stopping })
		cancel()
		waitClosed(t, "Stop", done)
		assertGroupGone(t, pid)
		assertDead(t, hp)
		if st := h.p.Status(); st.ExitSignal == nil || *st.ExitSignal != "SIGKILL" {
			t.Errorf("signal %v, want SIGKILL", st.ExitSignal)
		}
		if f := h.hookFailures(); len(f) != 1 || f[0].Message != "drain command failed" || !strings.Contains(fmt.Sprint(f[0].Data["error"]), "interrupted") {
			t.Errorf("hook failures %v, want one interrupted drainCommand", f)
		}
		// The stop was cut short: that is no timeout.
		if k := h.events("process stop timed out; sending SIGKILL"); len(k) != 0 {
			t.Errorf("stop timed out events %v after a cancelled stop", k)
		}
	})
}

func TestGrandchildIgnoringTermIsKilledWithItsGroup(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	spec := childSpec(t, "worker", "grandchild", "RB_PIDFILE="+pidFile)
	spec.GracefulStop = 300 * time.Millisecond
	h := newHarness(t, spec)
	pid := h.start()
	h.waitLine("leader ready")
	gc := readPid(t, pidFile)
	if members := liveMembers(t, pid); len(members) != 2 {
		t.Fatalf("group members before stop: %v, want leader and grandchild", members)
	}
	h.stop()
	assertDead(t, gc)
	assertGroupGone(t, pid)
	if st := h.p.Status(); st.ExitSignal == nil || *st.ExitSignal != "SIGTERM" || st.State != Stopped {
		t.Errorf("leader: state %s signal %v, want stopped by SIGTERM", st.State, st.ExitSignal)
	}
}

func TestCrashLeftoversAreKilled(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	spec := childSpec(t, "worker", "grandchild", "RB_PIDFILE="+pidFile, "RB_EXIT=3")
	spec.GracefulStop = 300 * time.Millisecond
	spec.Restart.MaxRestarts = 0
	h := newHarness(t, spec)
	pid := h.start()
	h.waitExited() // the grandchild still holds the output: Done must not wait for it
	gc := readPid(t, pidFile)
	if st := h.p.Status(); st.ExitCode == nil || *st.ExitCode != 3 || st.Pid != nil {
		t.Errorf("exit %v pid %v, want 3 and no pid", st.ExitCode, st.Pid)
	}
	h.waitEvents("restart limit reached", 1) // emitted once the leftovers are gone
	assertDead(t, gc)
	assertGroupGone(t, pid)
	if st := h.p.Status(); st.State != Failed {
		t.Errorf("state %s, want failed", st.State)
	}
}

func TestOutputRingKeepsExactlyOutputLines(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "chatty", "lines", "RB_LINES=30", "RB_PARTIAL=partial")
	spec.OutputLines = 5
	spec.Restart.MaxRestarts = 0
	h := newHarness(t, spec)
	h.start()
	h.waitExited() // Done includes reading the output to its end: no polling needed
	var got []string
	for _, l := range h.p.Logs() {
		got = append(got, l.Stream+":"+l.Line)
	}
	want := []string{"stdout:line 26", "stdout:line 27", "stdout:line 28", "stdout:line 29", "stdout:partial"}
	if !slices.Equal(got, want) {
		t.Errorf("logs:\n got %v\nwant %v", got, want)
	}
	if st := h.p.Status(); len(st.Logs) != 5 {
		t.Errorf("status has %d log lines, want 5", len(st.Logs))
	}
}

func TestLongLineIsCut(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "long", "long", "RB_LONG=200000")
	spec.Restart.MaxRestarts = 0
	h := newHarness(t, spec)
	h.start()
	h.waitExited()
	logs := h.p.Logs()
	if len(logs) != 2 {
		t.Fatalf("got %d lines, want the cut long line and the next one", len(logs))
	}
	if l := logs[0].Line; len(l) != maxLineBytes || strings.Trim(l, "x") != "" {
		t.Errorf("first line has %d bytes, want %d x's", len(l), maxLineBytes)
	}
	if logs[1].Line != "after" {
		t.Errorf("second line %.40q, want after", logs[1].Line)
	}
}

func TestOutputStreamsAreForwarded(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	spec := childSpec(t, "web", "streams")
	spec.Restart.MaxRestarts = 0
	h := newHarness(t, spec, WithOutput(func(id string, l Line) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, id+" "+l.Stream+" "+l.Line)
	}))
	h.start()
	h.waitExited()
	mu.Lock()
	defer mu.Unlock()
	sort.Strings(got)
	if want := []string{"web stderr to stderr", "web stdout to stdout"}; !slices.Equal(got, want) {
		t.Errorf("forwarded %v, want %v", got, want)
	}
}

func TestCrashIsRestartedWithReasonCrash(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "worker", "crash-until", "RB_COUNTER="+filepath.Join(t.TempDir(), "n"), "RB_UNTIL=3")
	h := newHarness(t, spec)
	h.start()
	h.waitLine("up")
	st := h.p.Status()
	if st.State != Running || st.Restarts != 2 || st.LastStartReason == nil || *st.LastStartReason != ReasonCrash {
		t.Errorf("state %s restarts %d reason %v, want running, 2, crash", st.State, st.Restarts, st.LastStartReason)
	}
	var reasons []string
	for _, e := range h.events("process started") {
		reasons = append(reasons, e.Data["reason"].(string))
	}
	if want := []string{"deploy", "crash", "crash"}; !slices.Equal(reasons, want) {
		t.Errorf("start reasons %v, want %v", reasons, want)
	}
	for _, e := range h.events("process exited") {
		if e.Data["code"] != 1 {
			t.Errorf("exit event %v, want code 1", e.Data)
		}
	}
}

// TestCleanExitIsACrash: an exit nobody asked for is a crash even with
// code 0, as in the spec: the process reads failed (code 0, no signal, no
// pid) until it is restarted with reason crash.
func TestCleanExitIsACrash(t *testing.T) {
	t.Parallel()
	t.Run("failed until restarted", func(t *testing.T) {
		t.Parallel()
		spec := childSpec(t, "worker", "crash", "RB_EXIT=0")
		spec.RestartDelay = time.Hour // the restart stays pending while the test looks
		h := newHarness(t, spec)
		h.start()
		h.waitExited()
		st := h.p.Status()
		if st.State != Failed || st.ExitCode == nil || *st.ExitCode != 0 || st.ExitSignal != nil || st.Pid != nil {
			t.Errorf("after a clean exit: state %s code %v signal %v pid %v, want failed, 0, none, none",
				st.State, st.ExitCode, st.ExitSignal, st.Pid)
		}
		if ex := h.events("process exited"); len(ex) != 1 || ex[0].Data["code"] != 0 || ex[0].Data["signal"] != nil {
			t.Errorf("exit events %v", ex)
		}
	})
	t.Run("restarted like a crash", func(t *testing.T) {
		t.Parallel()
		spec := childSpec(t, "worker", "crash", "RB_EXIT=0")
		h := newHarness(t, spec)
		h.start()
		started := h.waitEvents("process started", 2)
		if started[1].Data["reason"] != "crash" {
			t.Errorf("second start %v, want reason crash", started[1].Data)
		}
	})
}

func TestBackoffIsObserved(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "crasher", "crash", "RB_EXIT=1")
	spec.RestartDelay = 100 * time.Millisecond
	spec.Restart = RestartPolicy{MaxRestarts: 3, BackoffFactor: 2}
	h := newHarness(t, spec)
	h.start()
	h.waitEvents("restart limit reached", 1)
	started, exited := h.events("process started"), h.events("process exited")
	if len(started) != 4 || len(exited) != 4 {
		t.Fatalf("%d starts and %d exits, want 4 each", len(started), len(exited))
	}
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		// Only a lower bound: a busy machine makes restarts late, never early.
		if gap := started[i+1].At.Sub(exited[i].At); gap < want {
			t.Errorf("restart %d came %v after the exit, want at least %v", i+1, gap, want)
		}
	}
	if st := h.p.Status(); st.State != Failed || st.Restarts != 3 {
		t.Errorf("state %s restarts %d, want failed after 3", st.State, st.Restarts)
	}
}

func TestRestartLimitAndManualRevival(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "crasher", "crash", "RB_EXIT=1")
	spec.Restart = RestartPolicy{MaxRestarts: 2, Window: time.Hour}
	h := newHarness(t, spec)
	h.start()
	limit := h.waitEvents("restart limit reached", 1)
	if limit[0].Data["restarts"] != 2 || limit[0].Data["id"] != "crasher" {
		t.Errorf("limit event %v", limit[0].Data)
	}
	if st := h.p.Status(); st.State != Failed || st.Restarts != 2 || st.ExitCode == nil || *st.ExitCode != 1 {
		t.Errorf("state %s restarts %d exit %v", st.State, st.Restarts, st.ExitCode)
	}
	// A manual restart revives it with a fresh budget: two more automatic restarts.
	if err := h.p.Restart(context.Background(), ReasonManual); err != nil {
		t.Fatal(err)
	}
	h.waitEvents("restart limit reached", 2)
	var reasons []string
	for _, e := range h.events("process started") {
		reasons = append(reasons, e.Data["reason"].(string))
	}
	if want := []string{"deploy", "crash", "crash", "manual", "crash", "crash"}; !slices.Equal(reasons, want) {
		t.Errorf("start reasons %v, want %v", reasons, want)
	}
	if st := h.p.Status(); st.Restarts != 4 || st.State != Failed {
		t.Errorf("restarts %d state %s, want 4 failed", st.Restarts, st.State)
	}
}

func TestMaxRestartsZero(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "once", "crash", "RB_EXIT=2")
	spec.Restart.MaxRestarts = 0
	h := newHarness(t, spec)
	h.start()
	limit := h.waitEvents("restart limit reached", 1)
	if limit[0].Data["restarts"] != 0 {
		t.Errorf("limit event %v, want restarts 0", limit[0].Data)
	}
	if n := len(h.events("process started")); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	if st := h.p.Status(); st.State != Failed || st.ExitCode == nil || *st.ExitCode != 2 || st.Restarts != 0 {
		t.Errorf("state %s exit %v restarts %d", st.State, st.ExitCode, st.Restarts)
	}
}

func TestStopCancelsPendingRestart(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "crasher", "crash", "RB_EXIT=1")
	spec.RestartDelay = time.Hour // the restart would only come long after the test
	h := newHarness(t, spec)
	h.start()
	h.waitExited()
	h.stop() // must not wait out the delay; goleak checks the waiting goroutine ended
	if st := h.p.Status(); st.State != Stopped {
		t.Errorf("state %s, want stopped", st.State)
	}
	if n := len(h.events("process started")); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	// Start works again afterwards, and a new start cancels nothing it should not.
	h.p.SetSpec(childSpec(t, "crasher", "signals", "RB_QUIT=SIGTERM"))
	h.startReady()
}

func TestMemoryHogIsRestarted(t *testing.T) {
	t.Parallel()
	const MiB = 1 << 20
	spec := childSpec(t, "hog", "hog", "RB_MIB=160", "RB_COUNTER="+filepath.Join(t.TempDir(), "n"))
	spec.Memory = &MemoryPolicy{LimitBytes: 120 * MiB, WarnBytes: 80 * MiB, CheckInterval: 50 * time.Millisecond}
	h := newHarness(t, spec)
	h.start()
	testutil.Eventually(t, "a memory restart", func() bool {
		st := h.p.Status()
		// The start event follows the state change: wait for both.
		return st.MemoryRestarts == 1 && st.State == Running && len(h.events("process started")) == 2
	})
	st := h.p.Status()
	if st.LastStartReason == nil || *st.LastStartReason != ReasonMemory || st.LastMemoryRestartAt == nil || st.Restarts != 0 {
		t.Errorf("status after memory restart: reason %v at %v restarts %d", st.LastStartReason, st.LastMemoryRestartAt, st.Restarts)
	}
	var order []string
	for _, e := range h.log.Recent(0) {
		switch e.Message {
		case "memory warning", "memory limit exceeded", "process started":
			order = append(order, fmt.Sprint(e.Message, " ", e.Data["reason"]))
		}
		if e.Message == "memory limit exceeded" {
			if rss, _ := e.Data["rssBytes"].(uint64); rss <= 120*MiB || e.Data["limitBytes"] != uint64(120*MiB) {
				t.Errorf("limit event %v", e.Data)
			}
		}
	}
	want := []string{"process started deploy", "memory warning <nil>", "memory limit exceeded <nil>", "process started memory"}
	if len(order) < len(want) || !slices.Equal(order[:len(want)], want) {
		t.Errorf("events %v, want %v first", order, want)
	}
}

// TestMemoryLimitWithoutAutoRestart: a process whose owner no longer wants
// it back (a retired release's companion, a stopped release's singleton)
// is stopped at its memory limit and stays stopped, as in the Node
// original, and no memory restart is counted.
func TestMemoryLimitWithoutAutoRestart(t *testing.T) {
	t.Parallel()
	const MiB = 1 << 20
	spec := childSpec(t, "hog", "hog", "RB_MIB=160")
	spec.Memory = &MemoryPolicy{LimitBytes: 120 * MiB, CheckInterval: 50 * time.Millisecond}
	h := newHarness(t, spec)
	h.p.SetAutoRestart(false) // Start leaves the setting alone
	h.start()
	testutil.Eventually(t, "the hog stopped at its limit", func() bool {
		st := h.p.Status()
		return st.State == Stopped && len(h.events("process exited")) == 1
	})
	st := h.p.Status()
	if len(h.events("memory limit exceeded")) != 1 || st.MemoryRestarts != 0 || st.Pid != nil || st.LastMemoryRestartAt != nil {
		t.Errorf("after the limit: memoryRestarts %d pid %v last %v, %d limit events", st.MemoryRestarts, st.Pid, st.LastMemoryRestartAt, len(h.events("memory limit exceeded")))
	}
	if n := len(h.events("process started")); n != 1 {
		t.Errorf("%d starts, want 1: nothing brings it back", n)
	}
	h.p.SetSpec(childSpec(t, "hog", "signals", "RB_QUIT=SIGTERM"))
	h.startReady() // a start still works
}

func TestRSSIsSummedOverTheGroup(t *testing.T) {
	t.Parallel()
	const MiB = 1 << 20
	exe := testExe(t)
	spec := childSpec(t, "pair", "hog", "RB_MIB=32")
	spec.Command = fmt.Sprintf("%s & %s & wait", shellQuote(exe), shellQuote(exe))
	spec.Memory = &MemoryPolicy{LimitBytes: 1 << 40, WarnBytes: 1 * MiB, CheckInterval: 20 * time.Millisecond}
	h := newHarness(t, spec)
	h.start()
	testutil.Eventually(t, "both hogs sampled", func() bool {
		hogs := 0
		for _, c := range h.p.Status().Children {
			if strings.Contains(c.Command, filepath.Base(exe)) && c.RSSBytes >= 32*MiB {
				hogs++
			}
		}
		return hogs == 2
	})
	st := h.p.Status()
	var sum uint64
	for _, c := range st.Children {
		sum += c.RSSBytes
		if c.Pid <= 0 || c.Command == "" || c.RSSBytes == 0 {
			t.Errorf("member %+v", c)
		}
	}
	if len(st.Children) != 3 || sum != st.RSSBytes {
		t.Errorf("children %+v (want the shell and two hogs), rssBytes %d, sum %d", st.Children, st.RSSBytes, sum)
	}
	if w := h.events("memory warning"); len(w) != 1 {
		t.Errorf("got %d memory warnings, want exactly one", len(w))
	}
}

func TestExitedChannel(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "short", "crash", "RB_EXIT=4")
	spec.Restart.MaxRestarts = 0
	h := newHarness(t, spec)
	h.start()
	h.waitExited()
	if st := h.p.Status(); st.ExitCode == nil || *st.ExitCode != 4 {
		t.Errorf("exit %v, want 4", st.ExitCode)
	}
	h.p.SetSpec(childSpec(t, "short", "signals", "RB_QUIT=SIGTERM"))
	if err := h.p.Restart(context.Background(), ReasonManual); err != nil {
		t.Fatal(err)
	}
	ex := h.p.Exited()
	select {
	case <-ex:
		t.Fatal("Exited of the new run is already closed")
	default:
	}
	h.stop()
	waitClosed(t, "Exited after Stop", ex)
}

func TestSetSpecIsUsedByTheNextStart(t *testing.T) {
	t.Parallel()
	spec1 := childSpec(t, "svc", "signals", "RB_QUIT=SIGTERM", "RB_TAG=v1")
	h := newHarness(t, spec1)
	pid := h.startReady()
	h.waitLine("tag v1")

	spec2 := childSpec(t, "svc", "signals", "RB_QUIT=SIGTERM", "RB_TAG=v2")
	h.p.SetSpec(spec2)
	if st := h.p.Status(); st.Cwd != spec1.Dir {
		t.Errorf("status shows cwd %s, want the running spec's %s", st.Cwd, spec1.Dir)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil { // a crash
		t.Fatal(err)
	}
	h.waitLine("tag v2")
	if st := h.p.Status(); st.Cwd != spec2.Dir || *st.LastStartReason != ReasonCrash {
		t.Errorf("after the crash restart: cwd %s reason %v", st.Cwd, *st.LastStartReason)
	}

	h.p.SetSpec(childSpec(t, "svc", "signals", "RB_QUIT=SIGTERM", "RB_TAG=v3"))
	if err := h.p.Restart(context.Background(), ReasonManual); err != nil {
		t.Fatal(err)
	}
	h.waitLine("tag v3")
}

func TestStopIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, childSpec(t, "web", "signals", "RB_QUIT=SIGTERM"))
	h.stop() // never started
	if st := h.p.Status(); st.State != Stopped {
		t.Errorf("state %s", st.State)
	}
	pid := h.startReady()
	if err := h.p.Start(context.Background(), ReasonDeploy); err != nil { // already running: nothing happens
		t.Fatal(err)
	}
	if n := len(h.events("process started")); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	h.stop()
	h.stop()
	assertGroupGone(t, pid)
	if n := len(h.events("process exited")); n != 1 {
		t.Errorf("%d exits, want 1", n)
	}
}

func TestStatusDoesNotWaitForStop(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "slow", "signals", "RB_QUIT=")
	spec.GracefulStop = 2 * time.Second
	h := newHarness(t, spec)
	h.startReady()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.stop()
	}()
	// Each Status call below returns while Stop is still waiting out the
	// grace period: if Status blocked behind it, Stopping would never be seen.
	testutil.Eventually(t, "stopping state", func() bool { return h.p.Status().State == Stopping })
	select {
	case <-done:
		t.Fatal("Stop already returned; the grace period should still run")
	default:
	}
	if h.p.ID() != "slow" || len(h.p.Logs()) == 0 {
		t.Errorf("ID %q logs %v", h.p.ID(), h.p.Logs())
	}
	waitClosed(t, "Stop", done)
	if st := h.p.Status(); st.State != Stopped || st.ExitSignal == nil || *st.ExitSignal != "SIGKILL" {
		t.Errorf("state %s signal %v", st.State, st.ExitSignal)
	}
}

// TestConcurrentCalls mixes every entry point, for the race detector and to
// show that nothing deadlocks and nothing is left running.
func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "busy", "signals", "RB_QUIT=SIGTERM")
	h := newHarness(t, spec)
	h.startReady()
	var wg sync.WaitGroup
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		wg.Add(4)
		go func() { defer wg.Done(); _ = h.p.Restart(ctx, ReasonManual) }()
		go func() { defer wg.Done(); _ = h.p.Start(ctx, ReasonManual) }()
		go func() { defer wg.Done(); _ = h.p.Stop(ctx) }()
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				_ = h.p.Status()
				_ = h.p.Logs()
				<-time.After(time.Millisecond) // spreads the reads over the mutators' run; pacing, nothing waits on it
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitClosed(t, "concurrent calls", done)
	h.stop()
	if st := h.p.Status(); st.State != Stopped || st.Pid != nil {
		t.Errorf("state %s pid %v", st.State, st.Pid)
	}
}

func TestStartTime(t *testing.T) {
	t.Parallel()
	a, err := StartTime(os.Getpid())
	if err != nil || a == 0 {
		t.Fatalf("StartTime(self) = %d, %v", a, err)
	}
	if b, _ := StartTime(os.Getpid()); a != b {
		t.Errorf("unstable start time: %d then %d", a, b)
	}
	if parent, err := StartTime(os.Getppid()); err != nil || parent > a {
		t.Errorf("parent start time %d (%v) is after ours %d", parent, err, a)
	}
	if _, err := StartTime(1 << 30); err == nil {
		t.Error("no error for a pid that cannot exist")
	}
}

func TestStartCancelsPendingRestart(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "crasher", "crash", "RB_EXIT=1")
	spec.RestartDelay = time.Hour
	h := newHarness(t, spec)
	h.start()
	h.waitExited()
	h.p.SetSpec(childSpec(t, "crasher", "signals", "RB_QUIT=SIGTERM"))
	if err := h.p.Start(context.Background(), ReasonManual); err != nil {
		t.Fatal(err)
	}
	h.waitLine("ready")
	if st := h.p.Status(); st.State != Running || *st.LastStartReason != ReasonManual || st.Restarts != 0 {
		t.Errorf("state %s reason %v restarts %d", st.State, *st.LastStartReason, st.Restarts)
	}
	if n := len(h.events("process started")); n != 2 {
		t.Errorf("%d starts, want 2", n)
	}
}

func TestStopWinsOverMemoryRestart(t *testing.T) {
	t.Parallel()
	hookPid := filepath.Join(t.TempDir(), "hookpid")
	spec := childSpec(t, "hog", "hog", "RB_MIB=64")
	spec.Memory = &MemoryPolicy{LimitBytes: 48 << 20, CheckInterval: 20 * time.Millisecond}
	spec.GracefulStop = time.Hour
	// The memory restart's stop sequence hangs in this hook until Stop cuts it short.
	spec.Lifecycle = Lifecycle{DrainCommand: "echo $$ > " + shellQuote(hookPid) + "; exec sleep 1000", DrainTimeout: time.Hour}
	h := newHarness(t, spec)
	pid := h.start()
	hp := readPid(t, hookPid)
	// A memory restart is counted once the new run starts, as in the
	// Node original; this one never does.
	if st := h.p.Status(); st.State != Stopping || st.MemoryRestarts != 0 {
		t.Errorf("during the memory restart: state %s memoryRestarts %d", st.State, st.MemoryRestarts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no patience: the hook is killed and the group with it
	h.stopCtx(ctx)
	assertGroupGone(t, pid)
	assertDead(t, hp)
	if n := len(h.events("process started")); n != 1 {
		t.Errorf("%d starts: the memory restart must not start a new run after Stop", n)
	}
	if st := h.p.Status(); st.State != Stopped || st.Pid != nil {
		t.Errorf("state %s pid %v", st.State, st.Pid)
	}
}

// TestIndefiniteStopNeverKills: with GracefulStop Indefinite the stop
// signal is sent and the stop then waits for the exit however long it
// takes, without SIGKILL, even when the caller's ctx ends (the Node
// original's gracefulStopMs: "indefinite").
func TestIndefiniteStopNeverKills(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		hurry  bool
		before string // lifecycle.stopCommand; "" sends the signal
	}{
		{name: "signal"},
		{name: "ctx ended", hurry: true},
		{name: "stop command", before: "kill -TERM -$ROLLBRIDGE_PID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := filepath.Join(t.TempDir(), "record")
			// The child ignores SIGTERM and leaves only on SIGINT, which the
			// test sends once the stop is seen waiting.
			spec := childSpec(t, "job", "signals", "RB_RECORD="+rec, "RB_QUIT=SIGINT")
			spec.GracefulStop = Indefinite
			spec.Lifecycle.StopCommand = tc.before
			h := newHarness(t, spec)
			pid := h.startReady()
			start, err := procfs.StartTime(pid)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// The harness's cleanup stops the process, and an indefinite
				// stop of a child that did not exit would never end. The
				// start time keeps a recycled pid from being killed.
				if t.Failed() && procfs.Alive(pid, start) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			if tc.hurry {
				cancel()
			} else {
				defer cancel()
			}
			done := make(chan error, 1)
			go func() { done <- h.p.Stop(ctx) }()
			testutil.Eventually(t, "SIGTERM recorded", func() bool { return strings.Contains(readFile(t, rec), "TERM") })
			w := h.waitEvents("process stop waiting", 1)
			if w[0].Data["pid"] != pid || !strings.Contains(fmt.Sprint(w[0].Data["hint"]), "no SIGKILL") {
				t.Errorf("process stop waiting: %v", w[0].Data)
			}
			select {
			case err := <-done:
				t.Fatalf("Stop returned (%v) while the process still ran", err)
			default:
			}
			if st := h.p.Status(); st.State != Stopping || st.Pid == nil {
				t.Errorf("while waiting: state %s pid %v, want stopping with a pid", st.State, st.Pid)
			}
			if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Stop: %v", err)
				}
			case <-time.After(testutil.Timeout):
				t.Fatalf("Stop did not return within %v of the exit; recorded %q", testutil.Timeout, readFile(t, rec))
			}
			if st := h.p.Status(); st.ExitSignal != nil || st.ExitCode == nil || *st.ExitCode != 0 || st.State != Stopped {
				t.Errorf("exit: state %s code %v signal %v, want a clean exit 0 (no SIGKILL)", st.State, st.ExitCode, st.ExitSignal)
			}
		})
	}
}

func TestIndefiniteBoundsHooks(t *testing.T) {
	if got := hookLimit(Spec{GracefulStop: Indefinite}); got != IndefiniteHookLimit {
		t.Errorf("hook limit %v, want %v", got, IndefiniteHookLimit)
	}
	if got := hookLimit(Spec{GracefulStop: 3 * time.Second}); got != 3*time.Second {
		t.Errorf("hook limit %v, want the grace period", got)
	}
}

// TestStopSettingsReachTheRunningChild: SetStopSettings (and SetSpec)
// change how the running child is stopped, so a reloaded config's stop
// settings govern a release that was started under the old one.
func TestStopSettingsReachTheRunningChild(t *testing.T) {
	t.Parallel()
	rec := filepath.Join(t.TempDir(), "record")
	// Started to be stopped with SIGTERM, which it ignores, an hour before SIGKILL.
	spec := childSpec(t, "worker", "signals", "RB_RECORD="+rec, "RB_QUIT=SIGINT")
	spec.GracefulStop = time.Hour
	h := newHarness(t, spec)
	h.startReady()
	h.p.SetStopSettings(StopSettings{StopSignal: syscall.SIGINT, GracefulStop: testutil.Timeout})
	h.stop()
	if got := readFile(t, rec); got != "SIGINT\n" {
		t.Errorf("recorded %q, want only the new stop signal", got)
	}
	if st := h.p.Status(); st.ExitCode == nil || *st.ExitCode != 0 || st.Command != spec.Command {
		t.Errorf("exit %v; command %q", st.ExitCode, st.Command)
	}
}

// TestGaveUp: the channel stays open through automatic restarts and closes
// once the restart policy gives up; a new start opens a new one.
func TestGaveUp(t *testing.T) {
	t.Parallel()
	spec := childSpec(t, "crasher", "crash", "RB_EXIT=5")
	spec.Restart.MaxRestarts = 2
	h := newHarness(t, spec)
	gaveUp := h.p.GaveUp()
	h.start()
	if got := h.p.GaveUp(); got == gaveUp {
		t.Error("a start kept the previous channel")
	}
	gaveUp = h.p.GaveUp()
	select {
	case <-gaveUp:
	case <-time.After(testutil.Timeout):
		t.Fatal("GaveUp not closed after the restart limit")
	}
	if n := len(h.events("process started")); n != 3 {
		t.Errorf("%d starts before giving up, want 3 (the start and two restarts)", n)
	}
	if len(h.events("restart limit reached")) != 1 {
		t.Error("no restart limit reached event")
	}
	// Automatic restarts off: the first exit is the end.
	h.p.SetAutoRestart(false)
	h.start()
	gaveUp = h.p.GaveUp()
	select {
	case <-gaveUp:
	case <-time.After(testutil.Timeout):
		t.Fatal("GaveUp not closed after an exit with automatic restarts off")
	}
	if n := len(h.events("process started")); n != 4 {
		t.Errorf("%d starts, want 4", n)
	}
}
