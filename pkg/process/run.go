package process

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

func (p *Process) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err // even if op is free: an abandoned call must not act
	}
	select {
	case p.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Process) release() { <-p.op }

// cancelLocked forbids r's monitor to start a successor. Whoever holds op
// and then waits for r.finished must call it first, or the monitor could
// wait for op forever.
func (p *Process) cancelLocked(r *run) {
	if !r.canceled {
		r.canceled = true
		close(r.cancel)
	}
}

// emit sends an event with the spec's Fields, the instance id (as "id" and,
// like the spec's process events, as "processId") and data.
func (p *Process) emit(spec Spec, name events.Name, data map[string]any) {
	d := make(map[string]any, len(spec.Fields)+len(data)+2)
	for k, v := range spec.Fields {
		d[k] = v
	}
	d[events.KeyProcessID] = spec.ID
	d[events.KeyID] = spec.ID
	for k, v := range data {
		d[k] = v
	}
	p.sink.Emit(name, d)
}

// startLocked spawns a new run of the current spec. The caller holds op and
// has settled the previous run.
func (p *Process) startLocked(ctx context.Context, reason StartReason) error {
	p.mu.Lock()
	spec := p.spec
	p.state = Starting
	p.mu.Unlock()
	p.ring.resize(spec.OutputLines)
	r := p.newRun(spec)
	h, err := p.runner.Start(ctx, spec, r.out)
	if err != nil {
		p.mu.Lock()
		p.state = Failed
		p.mu.Unlock()
		return fmt.Errorf("process %s: %w", spec.ID, err)
	}
	p.install(r, h, reason, time.Now())
	// Emitted before the monitor exists, so "process exited" always follows it.
	p.emit(spec, events.ProcessStarted, map[string]any{"command": spec.Command, events.KeyPid: h.Pid(), events.KeyReason: string(reason)})
	p.watch(r)
	return nil
}

// newRun prepares a run of spec whose output goes to the ring and to the
// WithOutput function.
func (p *Process) newRun(spec Spec) *run {
	r := &run{
		spec: spec, exited: make(chan struct{}), finished: make(chan struct{}), cancel: make(chan struct{}),
		memLimit: make(chan struct{}), samplerDone: make(chan struct{}),
	}
	r.hurryCtx, r.hurry = context.WithCancel(context.Background())
	output := p.output
	r.out = func(l Line) {
		p.ring.add(l)
		if output != nil {
			output(spec.ID, l)
		}
	}
	return r
}

// install makes r, running as h since startedAt, the current run.
func (p *Process) install(r *run, h Handle, reason StartReason, startedAt time.Time) {
	r.h = h
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur, p.exited = r, r.exited
	if reason != ReasonCrash {
		p.gaveUp, p.gaveUpClosed = make(chan struct{}), false
	}
	p.state = Running
	p.startedAt, p.lastReason = startedAt.UTC(), reason
	p.exitCode, p.exitSignal = nil, ""
	p.rss, p.cgroupMem, p.children = 0, nil, nil
}

// watch starts r's memory sampler (when supervised) and its monitor.
func (p *Process) watch(r *run) {
	if m := r.spec.Memory; m != nil && m.LimitBytes > 0 {
		go p.sample(r)
	} else {
		close(r.samplerDone)
	}
	go p.monitor(r)
}

// Adopted is what the daemon that started a run recorded about it, handed
// to Adopt so status reads as if the same daemon had watched all along.
type Adopted struct {
	// Run names the run to attach to (a RunRef's Name), for a spec that
	// may run more than once at a time; "" leaves the pick to the runner.
	Run            string
	StartedAt      time.Time // zero: now
	Reason         StartReason
	Restarts       int
	MemoryRestarts int
}

// Adopt attaches to the run of the current spec that an earlier daemon
// left running, instead of starting it: the runner must be an Adopter.
// From then on the process is supervised as if started here (exit,
// restart policy, memory, stop).
//
// When no such run is alive it died while no daemon watched, and the
// restart policy decides, as after a crash: with restarts allowed the
// process is started at once (reason crash, one more restart counted) and
// restarted is true; otherwise it is left Failed and the error wraps
// ErrNotRunning.
func (p *Process) Adopt(ctx context.Context, a Adopted) (restarted bool, err error) {
	err = p.adopt(ctx, a)
	if !errors.Is(err, ErrNotRunning) {
		return false, err
	}
	p.mu.Lock()
	policy := p.spec.Restart
	p.restarts, p.memRestarts = a.Restarts, a.MemoryRestarts
	p.mu.Unlock()
	if policy.MaxRestarts == 0 {
		p.mu.Lock()
		p.state = Failed
		p.mu.Unlock()
		return false, err
	}
	if err := p.acquire(ctx); err != nil {
		return false, fmt.Errorf("process %s: adopt: %w", p.ID(), err)
	}
	defer p.release()
	p.mu.Lock()
	p.restarts++
	p.restartTimes = append(p.restartTimes, time.Now())
	p.mu.Unlock()
	if err := p.startLocked(ctx, ReasonCrash); err != nil {
		return false, err
	}
	return true, nil
}

func (p *Process) adopt(ctx context.Context, a Adopted) error {
	ad, ok := p.runner.(Adopter)
	if !ok {
		return fmt.Errorf("process %s: adopt: the runner cannot adopt runs", p.ID())
	}
	if err := p.acquire(ctx); err != nil {
		return fmt.Errorf("process %s: adopt: %w", p.ID(), err)
	}
	defer p.release()
	p.mu.Lock()
	if p.cur != nil && !p.cur.leaderGone {
		p.mu.Unlock()
		return fmt.Errorf("process %s: adopt: already running", p.ID())
	}
	spec := p.spec
	p.mu.Unlock()
	p.ring.resize(spec.OutputLines)
	r := p.newRun(spec)
	h, err := ad.Adopt(ctx, spec, a.Run, r.out)
	if err != nil {
		return fmt.Errorf("process %s: adopt: %w", spec.ID, err)
	}
	at := a.StartedAt
	if at.IsZero() {
		at = time.Now()
	}
	reason := a.Reason
	if reason == "" {
		reason = ReasonDeploy
	}
	p.install(r, h, reason, at)
	p.mu.Lock()
	p.restarts, p.memRestarts = a.Restarts, a.MemoryRestarts
	p.mu.Unlock()
	p.emit(spec, events.ProcessAdopted, map[string]any{events.KeyPid: h.Pid()})
	p.watch(r)
	return nil
}

// stopRun brings run r to its end and returns once its group is gone and its
// monitor has returned. The caller holds op. ctx ending hurries the sequence.
func (p *Process) stopRun(ctx context.Context, r *run) error {
	p.mu.Lock()
	p.cancelLocked(r)
	leaderRuns := !r.leaderGone
	if leaderRuns {
		r.stopping = true
		if p.cur == r {
			p.state = Stopping
		}
	}
	p.mu.Unlock()
	if ctx.Err() != nil {
		r.hurry() // now, not later from AfterFunc's goroutine: no hook may start
	}
	stopHurry := context.AfterFunc(ctx, r.hurry)
	defer stopHurry()
	var err error
	if leaderRuns {
		err = p.stopSequence(r)
	} else {
		// After a crash the monitor is already removing the leftovers; doing
		// it here too is harmless and lets ctx hurry it.
		spec := p.stopSpec(r)
		err = terminate(r.hurryCtx, r.h, stopSignal(spec), spec.GracefulStop)
	}
	<-r.finished
	return err
}

// monitor owns the end of run r: it records the leader's exit, handles a
// crash (leftovers, restart policy) or performs a memory restart, and
// returns once everything it started has returned.
func (p *Process) monitor(r *run) {
	// r.hurry is deliberately not called here: a stop hook may still be
	// within its bound after the group is gone. A context derived from
	// Background holds no resources, so leaving it uncancelled costs nothing.
	defer close(r.finished)
	var memDone chan struct{}
	select {
	case <-r.h.Done():
	case <-r.memLimit:
		memDone = make(chan struct{})
		go func() {
			defer close(memDone)
			p.memoryRestart(r)
		}()
		<-r.h.Done()
	}
	if crashed := p.recordExit(r); crashed {
		p.afterCrash(r)
	}
	<-r.samplerDone
	if memDone != nil {
		<-memDone
	}
}

// recordExit stores the leader's exit status and reports whether the exit
// was a crash (not asked for by a stop).
func (p *Process) recordExit(r *run) bool {
	code, sig := r.h.ExitStatus()
	p.mu.Lock()
	r.leaderGone = true
	crashed := !r.stopping
	if p.cur == r {
		p.exitCode, p.exitSignal = code, sig
		p.rss, p.cgroupMem, p.children = 0, nil, nil
		if crashed {
			// Even with exit code 0: nobody asked it to end, so it is
			// restarted like a crash, and the spec reports it as failed.
			p.state = Failed
		}
	}
	p.mu.Unlock()
	// The spec's keys: code is null after a signal, signal null after an exit.
	data := map[string]any{events.KeyPid: r.h.Pid(), "code": nil, "signal": nil}
	if code != nil {
		data["code"] = *code
	}
	if sig != "" {
		data["signal"] = sig
	}
	p.emit(r.spec, events.ProcessExited, data)
	close(r.exited)
	return crashed
}

// afterCrash removes what the crashed leader left in its group, then
// restarts the process after the policy's delay, or gives up (see GaveUp).
func (p *Process) afterCrash(r *run) {
	restarted := false
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !restarted && !r.canceled && p.cur == r {
			p.giveUpLocked() // nobody took r over: no new run is coming
		}
	}()
	// Leftovers must not outlive the leader, or every restart would add
	// another copy of them.
	stop := p.stopSpec(r)
	if err := terminate(r.hurryCtx, r.h, stopSignal(stop), stop.GracefulStop); err != nil {
		p.emit(r.spec, events.ProcessStopFailed, map[string]any{events.KeyError: err.Error()})
		return // restarting next to an unkillable copy would only make two
	}
	for {
		p.mu.Lock()
		if r.canceled || p.cur != r || !p.autoRestart {
			p.mu.Unlock()
			return
		}
		spec := p.spec // the next start uses the newest spec, and so does its policy
		kept, delay, ok := nextRestart(spec.RestartDelay, spec.Restart, p.restartTimes, time.Now())
		p.restartTimes = kept
		if !ok {
			p.state = Failed
			n := p.restarts
			p.mu.Unlock()
			p.emit(spec, events.RestartLimitReached, map[string]any{
				"restarts": n, "maxRestarts": spec.Restart.MaxRestarts, "windowMs": spec.Restart.Window.Milliseconds(),
			})
			return
		}
		p.mu.Unlock()
		if !p.waitRestartDelay(r, delay) {
			return
		}
		select {
		case p.op <- struct{}{}:
		case <-r.cancel:
			return
		}
		p.mu.Lock()
		if r.canceled || p.cur != r || !p.autoRestart {
			p.mu.Unlock()
			p.release()
			return
		}
		p.restartTimes = append(p.restartTimes, time.Now())
		p.restarts++
		p.mu.Unlock()
		err := p.startLocked(context.Background(), ReasonCrash)
		p.release()
		if err == nil {
			restarted = true
			return
		}
		// Counted as a restart; the policy decides whether to try again.
		p.emit(spec, events.ProcessRestartFailed, map[string]any{events.KeyReason: string(ReasonCrash), events.KeyError: err.Error()})
	}
}

// waitRestartDelay waits d unless r is cancelled or auto-restart is turned
// off meanwhile; it reports whether to go on with the restart.
func (p *Process) waitRestartDelay(r *run, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		p.mu.Lock()
		changed, on := p.autoChanged, p.autoRestart
		p.mu.Unlock()
		if !on {
			return false
		}
		select {
		case <-t.C:
			return true
		case <-r.cancel:
			return false
		case <-changed:
		}
	}
}
