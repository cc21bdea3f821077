package main

// Config evaluation is bounded and interruptible (docs/config.md,
// "Evaluation limits"): a runaway config cannot keep the daemon from
// stopping, nor wedge a reload or a deploy. Each test fails on a daemon
// that evaluates in its own process: there is no evaluator child to find,
// and the daemon does not react until the evaluation ends, which for these
// configs is never.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
	"github.com/rollbridge/rollbridge-go/pkg/control"
)

// runaway makes a config compute for ages (2^80 calls) in constant memory.
const runaway = `local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1); {application: 'x' + f(80)}`

// makeRunaway rewrites the fixture's config into one that never finishes
// evaluating: the good config with an application computed for ages.
func (f *fixture) makeRunaway() {
	f.t.Helper()
	good, err := os.ReadFile(f.cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	src := fmt.Sprintf("local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1);\n(%s) + {application: 'sd' + std.toString(f(80))}", good)
	if err := os.WriteFile(f.cfg, []byte(src), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// evaluator waits for the config evaluator child of pid (the binary
// re-executed as /proc/self/exe) and returns its pid.
func evaluator(t *testing.T, pid int) int {
	t.Helper()
	found := 0
	testutil.Eventually(t, fmt.Sprintf("a config evaluator child of pid %d", pid), func() bool {
		kids, _ := procfs.Children(pid)
		for _, k := range kids {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k)); err == nil && strings.HasPrefix(string(b), "/proc/self/exe\x00") {
				found = k
				return true
			}
		}
		return false
	})
	return found
}

// exited waits for cmd to end and returns how.
func exited(t *testing.T, cmd *exec.Cmd, what string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	testutil.Eventually(t, what, func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	})
	return err
}

// TestSIGTERMStopsADaemonWhoseConfigNeverFinishes: a start that evaluates
// a runaway config ends at SIGTERM, cleanly, with its evaluator gone.
func TestSIGTERMStopsADaemonWhoseConfigNeverFinishes(t *testing.T) {
	f := newFixture(t, 0, "{}")
	if err := os.WriteFile(f.cfg, []byte(runaway), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemonBin, "--config", f.cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	ev := evaluator(t, cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := exited(t, cmd, "the daemon to exit after SIGTERM"); err != nil {
		t.Errorf("the daemon stopped with %v, want a clean exit", err)
	}
	testutil.Eventually(t, "the evaluator gone", func() bool { return !procfs.Alive(ev, 0) })
}

// TestSIGTERMDuringARunawayReload: a SIGHUP whose config never finishes
// evaluating runs beside the daemon, which keeps serving and answering,
// and stops promptly at SIGTERM, its processes too.
func TestSIGTERMDuringARunawayReload(t *testing.T) {
	f := newFixture(t, 0, "{}")
	notify, msgs := notifySocket(t, f.dir)
	cmd := f.start([]string{"NOTIFY_SOCKET=" + notify}, "")
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // before start's cleanup, which waits: a daemon that ignores SIGTERM must not hang the test
	f.waitReady()
	waitMsg(t, msgs, "READY=1")
	f.deploy("v1")
	web := f.status().Releases[0].Processes[0].Pid
	f.makeRunaway()
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitMsg(t, msgs, "RELOADING=1")
	ev := evaluator(t, cmd.Process.Pid)
	if st := f.status(); st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" {
		t.Errorf("status during the reload: active %v, want v1", st.ActiveReleaseID)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := exited(t, cmd, "the daemon to exit after SIGTERM during a reload"); err != nil {
		t.Errorf("the daemon stopped with %v, want a clean exit", err)
	}
	if procfs.Alive(web, 0) {
		t.Errorf("the web process %d outlived the daemon", web)
	}
	testutil.Eventually(t, "the evaluator gone", func() bool { return !procfs.Alive(ev, 0) })
	waitMsg(t, msgs, "STOPPING=1")
}

// TestRunawayConfigStopsAtTheTimeLimit: with a short limit, a runaway
// SIGHUP is refused and the daemon reports READY=1 again; a deploy that
// re-reads such a file fails before anything starts, naming the limit and
// how to raise it, and v1 keeps serving.
func TestRunawayConfigStopsAtTheTimeLimit(t *testing.T) {
	f := newFixture(t, 0, "{}")
	notify, msgs := notifySocket(t, f.dir)
	cmd := f.start([]string{"NOTIFY_SOCKET=" + notify, "ROLLBRIDGE_EVAL_TIMEOUT_MS=500"}, "")
	// After the kill below: the daemon killed cannot stop v1's process,
	// which would outlive the test.
	var web int
	t.Cleanup(func() {
		if web > 0 {
			_ = syscall.Kill(web, syscall.SIGKILL)
		}
	})
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // see TestSIGTERMDuringARunawayReload
	f.waitReady()
	waitMsg(t, msgs, "READY=1")
	f.deploy("v1")
	web = f.status().Releases[0].Processes[0].Pid
	f.makeRunaway()
	rel := f.releaseDir("v2")
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	_, err := f.client().Deploy(ctx, control.DeployRequest{ReleasePath: rel, ReleaseID: "v2"}, nil)
	var ce *control.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message, "re-read the config for this deploy") ||
		!strings.Contains(ce.Message, "ran longer than 500ms (ROLLBRIDGE_EVAL_TIMEOUT_MS raises the limit)") {
		t.Errorf("deploy with a runaway config: %v", err)
	}
	if st := f.status(); st.ActiveReleaseID == nil || *st.ActiveReleaseID != "v1" || len(st.Releases) != 1 {
		t.Errorf("after the refused deploy: active %v, %d releases; want v1 alone", st.ActiveReleaseID, len(st.Releases))
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitMsg(t, msgs, "RELOADING=1")
	waitMsg(t, msgs, "READY=1")
	if ev := f.events(); !strings.Contains(ev, `"config reload refused"`) || !strings.Contains(ev, "ran longer than 500ms") {
		t.Errorf("events: %s", ev)
	}
}
