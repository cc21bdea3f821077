package process

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// Status is a snapshot of a process, with the spec's field names.
type Status struct {
	ID                  string       `json:"id"`
	Command             string       `json:"command"`
	Cwd                 string       `json:"cwd"`
	State               State        `json:"state"`
	Pid                 *int         `json:"pid"`
	Restarts            int          `json:"restarts"`
	StartedAt           *time.Time   `json:"startedAt"`
	UptimeMs            *int64       `json:"uptimeMs"`
	ExitCode            *int         `json:"exitCode"`
	ExitSignal          *string      `json:"exitSignal"`
	LastStartReason     *StartReason `json:"lastStartReason"`
	Logs                []Line       `json:"logs"`
	RSSBytes            uint64       `json:"rssBytes"`
	MemoryRestarts      int          `json:"memoryRestarts"`
	LastMemoryRestartAt *time.Time   `json:"lastMemoryRestartAt"`
	Children            []Member     `json:"children"`
}

// Option configures a Process.
type Option func(*Process)

// WithOutput forwards every captured line, with the instance id, to f
// (the journal, say). f runs on the reading goroutine and must be quick.
func WithOutput(f func(id string, l Line)) Option { return func(p *Process) { p.output = f } }

// Process is one supervised child. Create it with New.
type Process struct {
	runner Runner
	sink   events.Sink
	output func(string, Line)
	ring   *ring

	// op serializes Start, Stop, Restart and the automatic restarts.
	op sync.Mutex

	mu             sync.Mutex
	spec           Spec
	state          State
	cur            *run
	autoRestart    bool
	restartTimes   []time.Time // automatic restarts in the current window
	restarts       int
	lastReason     StartReason
	startedAt      time.Time
	exitCode       *int
	exitSignal     *string
	memRestarts    int
	lastMemRestart time.Time
	rss            uint64
	children       []Member
	warned         bool
	pending        *time.Timer // a scheduled automatic restart
	pendingGen     int
	exited         chan struct{}
}

// run is one execution of the command.
type run struct {
	h        Handle
	spec     Spec
	exited   chan struct{} // closed once the monitor handled the exit
	sampler  chan struct{} // closed to stop memory sampling
	expected bool          // a stop is in progress: the exit is no crash (guarded by Process.mu)
}

// New returns a Process that has not started. Automatic restarts are on.
func New(spec Spec, runner Runner, sink events.Sink, opts ...Option) *Process {
	if sink == nil {
		sink = events.Discard
	}
	closed := make(chan struct{})
	close(closed)
	p := &Process{runner: runner, sink: sink, spec: spec, state: Stopped, autoRestart: true,
		ring: newRing(spec.OutputLines), exited: closed}
	for _, o := range opts {
		o(p)
	}
	return p
}

// ID is the instance id.
func (p *Process) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec.ID
}

// SetSpec replaces the definition used by the next start or restart.
func (p *Process) SetSpec(spec Spec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spec = spec
}

// SetAutoRestart turns automatic restarts after a crash on or off.
// Turning it off cancels a scheduled restart.
func (p *Process) SetAutoRestart(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.autoRestart = on
	if !on {
		p.cancelPendingLocked()
	}
}

// Exited returns a channel closed when the run begun by the latest start
// has exited (already closed when nothing runs).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Logs returns the retained output lines, oldest first.
func (p *Process) Logs() []Line { return p.ring.snapshot() }

func (p *Process) emit(msg string, data map[string]any) {
	p.mu.Lock()
	id, fields := p.spec.ID, p.spec.Fields
	p.mu.Unlock()
	d := make(map[string]any, len(fields)+len(data)+1)
	for k, v := range fields {
		d[k] = v
	}
	d["id"] = id
	for k, v := range data {
		d[k] = v
	}
	p.sink.Emit(msg, d)
}

// Start starts the process unless it runs. It fails — leaving nothing
// running — when the command cannot be spawned.
func (p *Process) Start(ctx context.Context, reason StartReason) error {
	p.op.Lock()
	defer p.op.Unlock()
	p.mu.Lock()
	if p.cur != nil && !isClosed(p.cur.exited) {
		p.mu.Unlock()
		return nil
	}
	p.cancelPendingLocked()
	p.restartTimes = nil
	p.mu.Unlock()
	return p.startLocked(ctx, reason)
}

// Stop runs the stop sequence and returns once no member of the process
// group is left. It cancels a scheduled restart and turns automatic
// restarts off. Stopping a stopped or failed process only settles its state.
// When ctx ends early, the sequence skips to SIGKILL.
func (p *Process) Stop(ctx context.Context) error {
	p.op.Lock()
	defer p.op.Unlock()
	p.mu.Lock()
	p.autoRestart = false
	p.cancelPendingLocked()
	p.mu.Unlock()
	p.stopLocked(ctx)
	return nil
}

// Restart stops the process (if it runs) and starts it again with the
// current spec; a stopped or failed one is simply started. It resets the
// restart budget and turns automatic restarts on.
func (p *Process) Restart(ctx context.Context, reason StartReason) error {
	p.op.Lock()
	defer p.op.Unlock()
	return p.restartLocked(ctx, reason)
}

func (p *Process) restartLocked(ctx context.Context, reason StartReason) error {
	p.mu.Lock()
	p.cancelPendingLocked()
	p.mu.Unlock()
	p.stopLocked(ctx)
	p.mu.Lock()
	p.restartTimes = nil
	p.autoRestart = true
	if reason == ReasonMemory {
		p.memRestarts++
		p.lastMemRestart = time.Now().UTC()
	}
	p.mu.Unlock()
	return p.startLocked(ctx, reason)
}

// startLocked spawns a run. The caller holds op.
func (p *Process) startLocked(ctx context.Context, reason StartReason) error {
	p.mu.Lock()
	spec := p.spec
	p.state = Starting
	p.mu.Unlock()
	id := spec.ID
	out := func(l Line) {
		p.ring.add(l)
		if p.output != nil {
			p.output(id, l)
		}
	}
	h, err := p.runner.Start(ctx, spec, out)
	if err != nil {
		p.mu.Lock()
		p.state = Failed
		p.mu.Unlock()
		return fmt.Errorf("process %s: %w", id, err)
	}
	r := &run{h: h, spec: spec, exited: make(chan struct{}), sampler: make(chan struct{})}
	p.mu.Lock()
	p.cur = r
	p.exited = r.exited
	p.state = Running
	p.startedAt = time.Now().UTC()
	p.exitCode, p.exitSignal = nil, nil
	p.lastReason = reason
	p.warned, p.rss, p.children = false, 0, nil
	p.mu.Unlock()
	p.emit("process started", map[string]any{"pid": h.Pid(), "reason": string(reason)})
	go p.monitor(r)
	if spec.Memory != nil && spec.Memory.CheckInterval > 0 {
		go p.sampleMemory(r)
	}
	return nil
}

// monitor waits for the run to end, cleans up what is left of its group
// after a crash, and schedules a restart when the policy allows one.
func (p *Process) monitor(r *run) {
	<-r.h.Done()
	code, sig := r.h.ExitStatus()
	p.mu.Lock()
	expected := r.expected
	p.exitCode = code
	p.exitSignal = nil
	if sig != "" {
		p.exitSignal = &sig
	}
	p.mu.Unlock()
	var sigData any
	if sig != "" {
		sigData = sig
	}
	p.emit("process exited", map[string]any{"pid": r.h.Pid(), "exitCode": code, "exitSignal": sigData})
	close(r.sampler)
	if !expected {
		// The leader died on its own; whatever it spawned must not outlive
		// it, or each restart would add another copy.
		terminateGroup(context.Background(), r.h, r.spec.GracefulStop)
	}
	r.h.Close()
	p.mu.Lock()
	restart := !expected && p.autoRestart && p.cur == r
	if !expected && p.cur == r {
		if code != nil && *code == 0 {
			p.state = Stopped
		} else {
			p.state = Failed
		}
	}
	close(r.exited)
	if restart {
		p.scheduleRestartLocked(r.spec)
	}
	p.mu.Unlock()
}

// scheduleRestartLocked arms the restart timer, or gives up when the
// budget is spent. Caller holds mu.
func (p *Process) scheduleRestartLocked(spec Spec) {
	now := time.Now()
	p.restartTimes = inWindow(p.restartTimes, now, spec.Restart.Window)
	n := len(p.restartTimes)
	if spec.Restart.MaxRestarts >= 0 && n >= spec.Restart.MaxRestarts {
		p.state = Failed
		data := map[string]any{"restarts": p.restarts, "maxRestarts": spec.Restart.MaxRestarts, "windowMs": spec.Restart.Window.Milliseconds()}
		go p.emit("restart limit reached", data) // emit takes mu
		return
	}
	delay := restartDelay(spec.RestartDelay, spec.Restart.BackoffFactor, n, spec.Restart.MaxDelay)
	p.pendingGen++
	gen := p.pendingGen
	p.pending = time.AfterFunc(delay, func() { p.fireRestart(gen) })
}

func (p *Process) cancelPendingLocked() {
	if p.pending != nil {
		p.pending.Stop()
		p.pending = nil
	}
	p.pendingGen++
}

func (p *Process) fireRestart(gen int) {
	p.op.Lock()
	defer p.op.Unlock()
	p.mu.Lock()
	if gen != p.pendingGen || !p.autoRestart {
		p.mu.Unlock()
		return // cancelled by a stop, a manual restart or a newer schedule
	}
	p.pending = nil
	p.restartTimes = append(p.restartTimes, time.Now())
	p.restarts++
	p.mu.Unlock()
	if err := p.startLocked(context.Background(), ReasonCrash); err != nil {
		p.emit("process start failed", map[string]any{"error": err.Error(), "reason": string(ReasonCrash)})
		p.mu.Lock()
		if p.autoRestart {
			p.scheduleRestartLocked(p.spec)
		}
		p.mu.Unlock()
	}
}

// stopLocked stops the current run, if any. The caller holds op.
func (p *Process) stopLocked(ctx context.Context) {
	p.mu.Lock()
	r := p.cur
	if r == nil || isClosed(r.exited) {
		p.state = Stopped
		p.mu.Unlock()
		return
	}
	r.expected = true
	p.state = Stopping
	p.mu.Unlock()
	p.stopSequence(ctx, r)
	<-r.exited
	p.mu.Lock()
	p.state = Stopped
	p.mu.Unlock()
}

// stopSequence: quietCommand -> drain (drainCommand, or wait for the exit)
// -> stopCommand or stopSignal -> SIGKILL after the grace period; then
// wait until the whole group is gone. Hook failures are reported, not fatal.
func (p *Process) stopSequence(ctx context.Context, r *run) {
	h, spec, lc := r.h, r.spec, r.spec.Lifecycle
	env := append(append([]string(nil), spec.Env...), "ROLLBRIDGE_PID="+strconv.Itoa(h.Pid()))
	hookBound := max(spec.GracefulStop, time.Second)
	if lc.QuietCommand != "" {
		p.hook(ctx, spec, env, "quietCommand", lc.QuietCommand, hookBound)
	}
	if lc.DrainTimeout > 0 {
		if lc.DrainCommand != "" {
			p.hook(ctx, spec, env, "drainCommand", lc.DrainCommand, lc.DrainTimeout)
		} else {
			waitGone(ctx, h, lc.DrainTimeout)
		}
	}
	if gone(h) {
		return
	}
	if lc.StopCommand != "" {
		p.hook(ctx, spec, env, "stopCommand", lc.StopCommand, hookBound)
	} else {
		sig := spec.StopSignal
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		_ = h.Signal(sig) // ESRCH is already mapped to nil; anything else ends in SIGKILL below
	}
	terminateGroup(ctx, h, spec.GracefulStop)
}

// terminateGroup waits up to grace for the group to end (after a signal the
// caller already sent, or SIGTERM sent here when grace is for leftovers),
// then SIGKILLs it and waits until it is gone.
func terminateGroup(ctx context.Context, h Handle, grace time.Duration) {
	if gone(h) {
		return
	}
	select {
	case <-h.Done():
		// The leader is gone but members are left: ask them too.
		_ = h.Signal(syscall.SIGTERM) // see stopSequence
	default:
	}
	if waitGone(ctx, h, grace) {
		return
	}
	for i := 0; ; i++ {
		_ = h.Signal(syscall.SIGKILL) // cannot be ignored; repeated for members forked meanwhile
		if waitGone(context.Background(), h, 100*time.Millisecond) {
			return
		}
		if i == 300 {
			return // 30s of SIGKILL: something outside our reach (D state); give up waiting
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

// waitGone waits up to d (or until ctx ends) for gone(h).
func waitGone(ctx context.Context, h Handle, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	select {
	case <-h.Done():
	case <-deadline.C:
		return gone(h)
	case <-ctx.Done():
		return gone(h)
	}
	pause := 2 * time.Millisecond
	for !gone(h) {
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
		pause = min(pause*2, 50*time.Millisecond)
	}
	return true
}

// sampleMemory measures the group's RSS every CheckInterval, warns once
// above WarnBytes, and restarts the process above LimitBytes.
func (p *Process) sampleMemory(r *run) {
	m := r.spec.Memory
	t := time.NewTicker(m.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-r.sampler:
			return
		case <-t.C:
		}
		members := r.h.Members()
		var sum uint64
		for _, mb := range members {
			sum += mb.RSSBytes
		}
		p.mu.Lock()
		p.rss, p.children = sum, members
		warn := m.WarnBytes > 0 && sum >= m.WarnBytes && !p.warned
		if warn {
			p.warned = true
		}
		p.mu.Unlock()
		if warn {
			p.emit("memory warning", map[string]any{"rssBytes": sum, "warnBytes": m.WarnBytes})
		}
		if sum > m.LimitBytes {
			p.emit("memory limit exceeded", map[string]any{"rssBytes": sum, "limitBytes": m.LimitBytes})
			go p.memoryRestart(r)
			return
		}
	}
}

// memoryRestart restarts the process if r is still its current run.
func (p *Process) memoryRestart(r *run) {
	p.op.Lock()
	defer p.op.Unlock()
	p.mu.Lock()
	current := p.cur == r && !r.expected && !isClosed(r.exited)
	p.mu.Unlock()
	if !current {
		return // stopped or restarted meanwhile
	}
	if err := p.restartLocked(context.Background(), ReasonMemory); err != nil {
		p.emit("process start failed", map[string]any{"error": err.Error(), "reason": string(ReasonMemory)})
	}
}

// Status returns a snapshot; it never waits for a start or stop.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{
		ID: p.spec.ID, Command: p.spec.Command, Cwd: p.spec.Dir, State: p.state,
		Restarts: p.restarts, ExitCode: p.exitCode, ExitSignal: p.exitSignal,
		Logs: p.ring.snapshot(), RSSBytes: p.rss, MemoryRestarts: p.memRestarts,
		Children: append([]Member{}, p.children...),
	}
	if p.lastReason != "" {
		r := p.lastReason
		st.LastStartReason = &r
	}
	if !p.startedAt.IsZero() {
		t := p.startedAt
		st.StartedAt = &t
	}
	if !p.lastMemRestart.IsZero() {
		t := p.lastMemRestart
		st.LastMemoryRestartAt = &t
	}
	if p.cur != nil && !isClosed(p.cur.exited) && (p.state == Running || p.state == Stopping) {
		pid := p.cur.h.Pid()
		st.Pid = &pid
		up := time.Since(p.startedAt).Milliseconds()
		st.UptimeMs = &up
	}
	return st
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
