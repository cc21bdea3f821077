package main

// rollbridgectl evaluates configs through the bounded loader: Ctrl-C
// interrupts an evaluation, and a runaway config stops at the time or
// memory limit with a message saying how to raise it. Each test runs the
// real binary; on a build that evaluates in its own process, validate
// neither reacts to SIGINT nor stops.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rollbridge/rollbridge-go/internal/procfs"
	"github.com/rollbridge/rollbridge-go/internal/testutil"
)

const (
	// 2^80 calls, 80 deep: computes for ages in constant memory.
	runawayTime = "local f(n) = if n == 0 then 0 else f(n - 1) + f(n - 1);\n{ application: 'x' + f(80) }\n"
	// Doubles an array until memory runs out.
	runawayMemory = "local grow(a, n) = if n == 0 then a else grow(a + a, n - 1) tailstrict;\n{ application: 'x' + std.length(grow(std.range(1, 1000), 40)) }\n"
)

func runawayConfig(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rollbridge.jsonnet")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ctlRun runs the rollbridgectl binary under /bin/sh with the given shell
// prefix (ulimit ...; VAR=...), bounded by testutil.Timeout, and returns
// its output and exit code.
func ctlRun(t *testing.T, prefix, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", prefix + ` exec "$0" "$@"`, bin}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("rollbridgectl %v still ran after %v:\n%s", args, testutil.Timeout, out.String())
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), 0
}

func TestValidateStopsAtTheEvaluationLimits(t *testing.T) {
	bin := buildCtl(t)
	for _, tc := range []struct {
		name, prefix, src, want string
	}{
		{"time", "export ROLLBRIDGE_EVAL_TIMEOUT_MS=300", runawayTime, "ran longer than 300ms (ROLLBRIDGE_EVAL_TIMEOUT_MS raises the limit)"},
		// ulimit keeps a build without limits from taking the host's memory.
		{"memory", "ulimit -v 4194304; export ROLLBRIDGE_EVAL_MEMORY_MB=64", runawayMemory, "needed more than 64 MiB of memory (ROLLBRIDGE_EVAL_MEMORY_MB raises the limit)"},
		{"bad limit", "export ROLLBRIDGE_EVAL_MEMORY_MB=lots", runawayMemory, `ROLLBRIDGE_EVAL_MEMORY_MB="lots": must be a positive whole number of MiB`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := ctlRun(t, tc.prefix+";", bin, "validate", "-c", runawayConfig(t, tc.src))
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want 1 and %q:\n%s", code, tc.want, out)
			}
		})
	}
}

// TestValidateIsInterruptedBySIGINT: Ctrl-C ends validate at once, and its
// evaluator with it.
func TestValidateIsInterruptedBySIGINT(t *testing.T) {
	bin := buildCtl(t)
	cmd := exec.Command(bin, "validate", "-c", runawayConfig(t, runawayTime))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a build that ignores SIGINT must not outlive the test
		<-done
	})
	ev := 0
	testutil.Eventually(t, "validate's config evaluator", func() bool {
		kids, _ := procfs.Children(cmd.Process.Pid)
		for _, k := range kids {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k)); err == nil && strings.HasPrefix(string(b), "/proc/self/exe\x00") {
				ev = k
				return true
			}
		}
		return false
	})
	_ = cmd.Process.Signal(syscall.SIGINT)
	var err error
	testutil.Eventually(t, "validate to exit after SIGINT", func() bool {
		select {
		case err = <-done:
			done <- err // for the cleanup
			return true
		default:
			return false
		}
	})
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out.String(), "rollbridgectl: interrupted while evaluating the config: context canceled") {
		t.Errorf("validate ended with %v:\n%s", err, out.String())
	}
	testutil.Eventually(t, "the evaluator gone", func() bool { return !procfs.Alive(ev, 0) })
}
