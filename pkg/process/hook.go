package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// hook runs one lifecycle command through the shell, bounded by limit. It
// runs in its own process group so a timeout kills everything it started.
// Failures are reported as "lifecycle hook failed" events, never returned:
// the stop sequence goes on regardless.
func (p *Process) hook(ctx context.Context, spec Spec, env []string, name, command string, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = spec.Dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	lb := &limitedBuffer{&out, 4 << 10}
	cmd.Stdout, cmd.Stderr = lb, lb // one writer: exec then copies both streams in one goroutine
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Output pipes held by a killed hook's children must not keep Wait waiting.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		err = cmd.Wait()
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %v and was killed", limit)
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftovers of the hook, if any
	}
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		if l != "" {
			p.ring.add(Line{At: time.Now().UTC(), Line: "[" + name + "] " + l, Stream: "stderr"})
		}
	}
	if err != nil {
		var ee *exec.ExitError
		msg := err.Error()
		if errors.As(err, &ee) {
			msg = "exited with " + ee.ProcessState.String()
		}
		p.emit("lifecycle hook failed", map[string]any{"hook": name, "error": msg, "durationMs": time.Since(start).Milliseconds()})
	}
}

// limitedBuffer keeps the first n bytes written to it and drops the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	n   int
}

func (l *limitedBuffer) Write(b []byte) (int, error) {
	if room := l.n - l.buf.Len(); room > 0 {
		l.buf.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}
