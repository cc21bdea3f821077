package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

const (
	// killWait bounds the wait after SIGKILL. SIGKILL cannot be caught, so
	// only a process stuck in the kernel (uninterruptible I/O) outlasts it;
	// Stop then reports the group instead of hanging.
	killWait = 10 * time.Second
	// killRepeat is how often SIGKILL is repeated meanwhile, for members
	// forked between two signals.
	killRepeat = 100 * time.Millisecond
	// hookWaitDelay bounds how long a finished or killed hook's output may
	// stay open (held by something the hook left in the background).
	hookWaitDelay = time.Second
	// maxPoll caps the pause between two checks of whether a group is gone.
	maxPoll = 50 * time.Millisecond
)

func stopSignal(spec Spec) syscall.Signal {
	if spec.StopSignal == 0 {
		return syscall.SIGTERM
	}
	return spec.StopSignal
}

// stopSequence stops a run whose leader may still be alive:
// quietCommand -> drain (drainCommand, or waiting for the exit; skipped when
// DrainTimeout is 0) -> stopCommand or the stop signal -> SIGKILL after
// GracefulStop -> wait until no member of the group is left.
//
// Hook failures are reported and never end the sequence. When r is hurried
// (the caller's ctx ended) no further hook starts, a running hook is killed,
// and the group gets SIGKILL at once — unless GracefulStop is Indefinite,
// which never sends SIGKILL: a hurried indefinite stop sends the stop
// signal at once instead, then waits. The error is non-nil only when the
// group survives SIGKILL.
func (p *Process) stopSequence(r *run) error {
	spec := p.stopSpec(r)
	ctx, h, lc := r.hurryCtx, r.h, spec.Lifecycle
	if lc.QuietCommand != "" && ctx.Err() == nil && !gone(h) {
		p.hook(ctx, r, "quietCommand", lc.QuietCommand, hookLimit(spec))
	}
	if lc.DrainTimeout > 0 && ctx.Err() == nil && !gone(h) {
		if lc.DrainCommand != "" {
			p.hook(ctx, r, "drainCommand", lc.DrainCommand, lc.DrainTimeout)
		} else {
			waitGone(ctx, h, lc.DrainTimeout)
		}
	}
	if gone(h) {
		return nil
	}
	// The grace period runs from the moment the stop command starts, not
	// from its end, so a slow stop command cannot double the time to SIGKILL.
	var hookDone chan struct{}
	switch {
	case ctx.Err() == nil && lc.StopCommand != "":
		hookDone = make(chan struct{})
		go func() {
			defer close(hookDone)
			p.hook(ctx, r, "stopCommand", lc.StopCommand, hookLimit(spec))
		}()
	case ctx.Err() == nil || spec.GracefulStop < 0:
		_ = h.Signal(stopSignal(spec)) // if it cannot be delivered, SIGKILL follows after the grace period
	}
	if spec.GracefulStop < 0 && !gone(h) {
		p.emit(spec, events.ProcessStopWaiting, map[string]any{events.KeyPid: h.Pid(),
			events.KeyHint: "gracefulStopMs is indefinite: no SIGKILL will be sent; the stop ends when the process exits"})
	}
	err := killAfter(ctx, h, spec.GracefulStop, func() {
		if ctx.Err() == nil { // the grace period ran out, rather than the stop being cut short
			p.emit(spec, events.ProcessStopTimedOut, map[string]any{events.KeyPid: h.Pid(), "gracefulStopMs": spec.GracefulStop.Milliseconds()})
		}
	})
	if hookDone != nil {
		<-hookDone // bounded by hookLimit
	}
	return err
}

// stopSpec is r's spec with the stop settings of the newest definition
// (SetSpec, SetStopSettings): how a child is stopped is policy, not part of
// what runs, so a reloaded config's stop settings reach a child started
// under the old one (the retiring release, a running service).
func (p *Process) stopSpec(r *run) Spec {
	p.mu.Lock()
	defer p.mu.Unlock()
	spec := r.spec
	spec.StopSignal, spec.GracefulStop, spec.Lifecycle = p.spec.StopSignal, p.spec.GracefulStop, p.spec.Lifecycle
	return spec
}

// hookLimit bounds the quiet and stop hooks: the grace period, or
// IndefiniteHookLimit when it is Indefinite.
func hookLimit(spec Spec) time.Duration {
	if spec.GracefulStop < 0 {
		return IndefiniteHookLimit
	}
	return spec.GracefulStop
}

// terminate ends what is left of a group whose leader has exited: the stop
// signal, then SIGKILL after grace (never, when grace is Indefinite).
func terminate(ctx context.Context, h Handle, sig syscall.Signal, grace time.Duration) error {
	if gone(h) {
		return nil
	}
	if ctx.Err() == nil || grace < 0 {
		_ = h.Signal(sig) // as in stopSequence: SIGKILL follows if this fails
	}
	return killAfter(ctx, h, grace, nil)
}

// killAfter waits up to grace (less if ctx ends) for the group to end, then
// SIGKILLs it until nothing is left. killing, if not nil, is called once,
// before the first SIGKILL. A negative grace (Indefinite) waits until the
// group is gone, whatever ctx says, and never kills.
func killAfter(ctx context.Context, h Handle, grace time.Duration, killing func()) error {
	if grace < 0 {
		waitGone(context.Background(), h, math.MaxInt64)
		return nil
	}
	if waitGone(ctx, h, grace) {
		return nil
	}
	if killing != nil {
		killing()
	}
	deadline := time.Now().Add(killWait)
	var sigErr error
	for {
		if err := h.Signal(syscall.SIGKILL); err != nil {
			sigErr = err
		}
		// Not ctx: the caller must be able to rely on the group being gone.
		if waitGone(context.Background(), h, killRepeat) {
			return nil
		}
		if time.Now().After(deadline) {
			if sigErr != nil {
				return fmt.Errorf("process group %d survived SIGKILL: %w", h.Pid(), sigErr)
			}
			return fmt.Errorf("process group %d survived SIGKILL for %v", h.Pid(), killWait)
		}
	}
}

// gone reports that the leader exited and no member of its group is left.
func gone(h Handle) bool {
	select {
	case <-h.Done():
		return !h.GroupAlive()
	default:
		return false
	}
}

// waitGone waits until gone(h), for at most d or until ctx ends, and
// reports whether the group is gone.
func waitGone(ctx context.Context, h Handle, d time.Duration) bool {
	if d <= 0 || ctx.Err() != nil {
		return gone(h)
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	select {
	case <-h.Done():
	case <-deadline.C:
		return gone(h)
	case <-ctx.Done():
		return gone(h)
	}
	// The leader is gone; members are not signalled when they exit, so poll,
	// starting fast because they usually follow the leader at once.
	pause := time.Millisecond
	for h.GroupAlive() {
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-deadline.C:
			t.Stop()
			return gone(h)
		case <-ctx.Done():
			t.Stop()
			return gone(h)
		}
		pause = min(2*pause, maxPoll)
	}
	return true
}

// hook runs one lifecycle command through the shell, bounded by limit and by
// ctx, in its own process group so that a timeout kills everything it
// started. Its output goes to the process's output with a "[name] " prefix.
// A failure is reported with the spec's event for the hook and outcome
// ("stop command timed out", see events.HookEvents); the stop sequence goes
// on regardless, so nothing is returned.
func (p *Process) hook(ctx context.Context, r *run, name, command string, limit time.Duration) {
	names, _ := events.HookEvents(name) // name is one of the three fields
	fail := func(ev events.Name, data map[string]any) {
		data["hook"] = name
		p.emit(r.spec, ev, data)
	}
	if limit <= 0 {
		// gracefulStopMs 0 means "kill at once": there is no time to run it.
		fail(names.Failed, map[string]any{events.KeyError: "not run: its time limit is 0"})
		return
	}
	// A hook runs as the process it stops does, not as the daemon.
	cred, err := sysCredential(r.spec.Credential)
	if err != nil {
		fail(names.Failed, map[string]any{events.KeyError: "not run: " + err.Error()})
		return
	}
	hctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(hctx, "/bin/sh", "-c", command)
	cmd.Dir = r.spec.Dir
	cmd.Env = append(append([]string{}, r.spec.Env...), "ROLLBRIDGE_PID="+strconv.Itoa(r.h.Pid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	stdout := &lineWriter{stream: "stdout", prefix: "[" + name + "] ", out: r.out}
	stderr := &lineWriter{stream: "stderr", prefix: "[" + name + "] ", out: r.out}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = hookWaitDelay
	t := acquireTree()
	defer t.release()
	err = t.start(cmd)
	if err == nil {
		err = cmd.Wait()
		t.waited(cmd.Process.Pid)
		// Whatever the hook left running in its group goes with it.
		if t.groupAlive(&group{leader: cmd.Process.Pid}) {
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL) // best effort; it is not the managed process
		}
	}
	stdout.flush()
	stderr.flush()
	if err == nil || (errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState.Success()) {
		return
	}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		fail(names.Failed, map[string]any{events.KeyError: "interrupted: the stop was cut short"})
	case hctx.Err() != nil:
		fail(names.TimedOut, map[string]any{"timeoutMs": limit.Milliseconds(),
			events.KeyError: fmt.Sprintf("timed out after %v and was killed", limit)})
	case errors.As(err, &exit) && exit.Exited():
		fail(names.ExitedNonZero, map[string]any{"code": exit.ExitCode(), events.KeyError: err.Error()})
	case errors.As(err, &exit):
		sig := "unknown"
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			sig = unix.SignalName(ws.Signal())
		}
		fail(names.ExitedOnSignal, map[string]any{"signal": sig, events.KeyError: err.Error()})
	default:
		fail(names.Failed, map[string]any{events.KeyError: err.Error()})
	}
}

// lineWriter splits a hook's output into lines for the output ring. exec
// calls Write from one goroutine per writer, so it needs no lock.
type lineWriter struct {
	stream, prefix string
	out            func(Line)
	buf            []byte
	dropping       bool // the current line already reached maxLineBytes
}

func (w *lineWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		if !w.dropping {
			room := maxLineBytes - len(w.buf)
			if len(part) > room {
				part, w.dropping = part[:room], true
			}
			w.buf = append(w.buf, part...)
		}
		if i < 0 {
			break
		}
		w.emit()
		b = b[i+1:]
	}
	return n, nil
}

func (w *lineWriter) emit() {
	line := bytes.TrimSuffix(w.buf, []byte{'\r'})
	if len(line) > 0 { // blank lines are dropped, as the process's own are (see readLines)
		w.out(Line{At: time.Now().UTC(), Line: w.prefix + string(line), Stream: w.stream})
	}
	w.buf, w.dropping = w.buf[:0], false
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 || w.dropping {
		w.emit()
	}
}
