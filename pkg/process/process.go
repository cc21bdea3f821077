package process

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// defaultCheckInterval is the memory sampling period when the policy has none.
const defaultCheckInterval = 5 * time.Second

// ErrStopped is returned (wrapped) by Restart when a Stop arrived while the
// restart was under way: the Stop wins and nothing is started.
var ErrStopped = errors.New("stopped while restarting")

// Status is a snapshot of a process, with the spec's field names. Pointers
// are null in JSON when there is no value.
type Status struct {
	ID                  string       `json:"id"`
	Command             string       `json:"command"`
	Cwd                 string       `json:"cwd"`
	State               State        `json:"state"`
	Pid                 *int         `json:"pid"`      // while the leader runs
	Restarts            int          `json:"restarts"` // automatic restarts after crashes
	StartedAt           *time.Time   `json:"startedAt"`
	UptimeMs            *int64       `json:"uptimeMs"` // only while running
	ExitCode            *int         `json:"exitCode"`
	ExitSignal          *string      `json:"exitSignal"`
	LastStartReason     *StartReason `json:"lastStartReason"`
	Logs                []Line       `json:"logs"`
	RSSBytes            uint64       `json:"rssBytes"` // last sample; memory-supervised processes only
	MemoryRestarts      int          `json:"memoryRestarts"`
	LastMemoryRestartAt *time.Time   `json:"lastMemoryRestartAt"`
	Children            []Member     `json:"children"` // last sample; memory-supervised processes only
}

// Option configures a Process.
type Option func(*Process)

// WithOutput forwards every captured line, with the instance id, to f (the
// journal, say). f is called from the output-reading goroutines, possibly
// concurrently, and must return quickly: while it blocks, the child's
// output is not read.
func WithOutput(f func(id string, l Line)) Option { return func(p *Process) { p.output = f } }

// Process is one supervised child. Create it with New; the zero value is not
// usable. All methods are safe for concurrent use.
//
// Two locks, never held at once in the other order: op (a one-slot channel,
// so waiting for it can be given up) makes Start, Stop, Restart and the
// automatic restarts take turns; mu guards the fields below and is never held
// while waiting for anything, which is why Status cannot block on a stop.
type Process struct {
	runner Runner
	sink   events.Sink
	output func(string, Line)
	ring   *ring
	op     chan struct{}

	mu             sync.Mutex
	spec           Spec
	state          State
	cur            *run // the latest run; nil before the first start
	autoRestart    bool
	autoChanged    chan struct{} // closed and replaced whenever autoRestart changes
	stopGen        uint64        // bumped by every Stop, so a Restart under way can tell
	restartTimes   []time.Time   // automatic restarts counted against the budget
	restarts       int
	lastReason     StartReason
	startedAt      time.Time
	exitCode       *int
	exitSignal     string
	memRestarts    int
	lastMemRestart time.Time
	rss            uint64
	children       []Member
	exited         chan struct{}
}

// run is one execution of the command, from spawn until its group is gone
// and its monitor has returned.
type run struct {
	h    Handle
	spec Spec
	out  func(Line)

	exited      chan struct{} // closed once the leader's exit is recorded
	finished    chan struct{} // closed when the monitor (and everything it started) returned
	cancel      chan struct{} // closed (under p.mu) to forbid the monitor to start a successor
	memLimit    chan struct{} // closed by the sampler when RSS went over the limit
	samplerDone chan struct{}
	hurryCtx    context.Context // cancelled to cut the stop sequence short (SIGKILL now)
	hurry       context.CancelFunc

	// Guarded by Process.mu.
	canceled   bool
	stopping   bool // a deliberate stop owns the end of this run: its exit is no crash
	leaderGone bool
	warned     bool
}

// New returns a Process in state Stopped that has not started. Automatic
// restarts are on. A nil sink drops the events.
func New(spec Spec, runner Runner, sink events.Sink, opts ...Option) *Process {
	if sink == nil {
		sink = events.Discard
	}
	closed := make(chan struct{})
	close(closed)
	p := &Process{
		runner: runner, sink: sink, ring: newRing(spec.OutputLines), op: make(chan struct{}, 1),
		spec: spec, state: Stopped, autoRestart: true, autoChanged: make(chan struct{}), exited: closed,
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// ID is the instance id of the current spec.
func (p *Process) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec.ID
}

// SetSpec replaces the definition used by the next start, whether manual,
// after a crash or after a memory restart. The running child is not touched.
func (p *Process) SetSpec(spec Spec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spec = spec
}

// SetAutoRestart turns automatic restarts after a crash on or off (New
// starts with on). Turning it off also cancels a restart that is waiting
// out its delay. Start and Restart leave the setting alone; Stop turns it off.
func (p *Process) SetAutoRestart(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setAutoRestartLocked(on)
}

func (p *Process) setAutoRestartLocked(on bool) {
	if p.autoRestart == on {
		return
	}
	p.autoRestart = on
	close(p.autoChanged)
	p.autoChanged = make(chan struct{})
}

// Exited returns a channel that is closed when the run begun by the latest
// successful start (manual or automatic) has exited, with its exit status
// in Status and its output in Logs. Before the first start the channel is
// already closed.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Logs returns the retained output lines, oldest first.
func (p *Process) Logs() []Line { return p.ring.snapshot() }

// Start starts the process unless it already runs (then it does nothing).
// It waits for a Start, Stop or Restart in progress to finish first, and
// cancels a pending automatic restart. It fails — naming the process and
// the cause, and leaving nothing running — when the command cannot be
// spawned (for example a missing working directory) or ctx ends first.
// ctx bounds only the wait and the spawn, not the child.
func (p *Process) Start(ctx context.Context, reason StartReason) error {
	if err := p.acquire(ctx); err != nil {
		return fmt.Errorf("process %s: start: %w", p.ID(), err)
	}
	defer p.release()
	p.mu.Lock()
	r := p.cur
	if r != nil && !r.leaderGone && !r.stopping {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	if r != nil {
		// A crashed run may have left members behind, or be waiting to
		// restart: settle it first, so two copies never overlap.
		if err := p.stopRun(ctx, r); err != nil {
			return fmt.Errorf("process %s: start: %w", r.spec.ID, err)
		}
	}
	p.mu.Lock()
	p.restartTimes = nil // a fresh start gets a fresh budget
	p.mu.Unlock()
	return p.startLocked(ctx, reason)
}

// Stop runs the stop sequence and returns once no member of the process
// group is left. It turns automatic restarts off, cancels a pending restart,
// and takes precedence over a Restart or memory restart under way (which
// then starts nothing). Stopping a stopped, failed or never-started process
// just leaves it Stopped, so Stop is idempotent.
//
// When ctx ends before the sequence is over, the rest of it is skipped and
// the group is killed; Stop still returns only once it is gone. The error is
// non-nil only when members survived SIGKILL (see killWait).
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.setAutoRestartLocked(false)
	p.stopGen++
	if p.cur != nil {
		p.cancelLocked(p.cur)
	}
	p.mu.Unlock()
	// Whoever holds op is bounded; if ctx ends while we wait, make it hurry.
	// waiting (guarded by mu) keeps a late AfterFunc from hurrying a run
	// started after this Stop.
	waiting := true
	stopHurry := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if waiting && p.cur != nil {
			p.cur.hurry()
		}
	})
	p.op <- struct{}{}
	p.mu.Lock()
	waiting = false
	r := p.cur
	p.mu.Unlock()
	stopHurry()
	defer p.release()

	var err error
	if r != nil {
		err = p.stopRun(ctx, r)
	}
	p.mu.Lock()
	p.state = Stopped
	if err != nil {
		p.state = Failed // something of the group survived SIGKILL
	}
	id := p.spec.ID
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("process %s: stop: %w", id, err)
	}
	return nil
}

// Restart stops the process gracefully if it runs, then starts it with the
// current spec, so it also revives a stopped or failed process. It resets
// the restart budget and keeps the auto-restart setting. If a Stop arrives
// meanwhile, nothing is started and the error wraps ErrStopped; if ctx ends
// during the stop sequence, the group is killed and nothing is started.
func (p *Process) Restart(ctx context.Context, reason StartReason) error {
	p.mu.Lock()
	gen, id := p.stopGen, p.spec.ID
	p.mu.Unlock()
	if err := p.acquire(ctx); err != nil {
		return fmt.Errorf("process %s: restart: %w", id, err)
	}
	defer p.release()
	p.mu.Lock()
	r := p.cur
	p.mu.Unlock()
	if r != nil {
		if err := p.stopRun(ctx, r); err != nil {
			return fmt.Errorf("process %s: restart: %w", id, err)
		}
	}
	p.mu.Lock()
	stopped := p.stopGen != gen
	if !stopped {
		p.restartTimes = nil
	}
	p.mu.Unlock()
	if stopped {
		return fmt.Errorf("process %s: restart: %w", id, ErrStopped)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("process %s: restart: %w", id, err)
	}
	return p.startLocked(ctx, reason)
}

// Status returns a snapshot. It only takes the short state lock, so it
// never waits for a start or a stop.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	spec := p.spec
	live := p.cur != nil && !p.cur.leaderGone
	if live {
		spec = p.cur.spec // what actually runs, even after a SetSpec
	}
	st := Status{
		ID: spec.ID, Command: spec.Command, Cwd: spec.Dir, State: p.state,
		Restarts: p.restarts, Logs: p.ring.snapshot(), RSSBytes: p.rss,
		MemoryRestarts: p.memRestarts, Children: append([]Member{}, p.children...),
	}
	if live {
		pid := p.cur.h.Pid()
		st.Pid = &pid
	}
	if !p.startedAt.IsZero() {
		t := p.startedAt
		st.StartedAt = &t
		if p.state == Running {
			up := time.Since(p.startedAt).Milliseconds()
			st.UptimeMs = &up
		}
	}
	if p.exitCode != nil {
		c := *p.exitCode
		st.ExitCode = &c
	}
	if p.exitSignal != "" {
		s := p.exitSignal
		st.ExitSignal = &s
	}
	if p.lastReason != "" {
		r := p.lastReason
		st.LastStartReason = &r
	}
	if !p.lastMemRestart.IsZero() {
		t := p.lastMemRestart
		st.LastMemoryRestartAt = &t
	}
	return st
}

// Brief is the part of Status that costs nothing to read: no output lines
// and no member list. Periodic jobs (the state file, the sd_notify status
// line) use it, so their cost does not grow with outputLines.
type Brief struct {
	ID             string
	State          State
	Pid            int // 0 unless the leader runs
	Restarts       int
	MemoryRestarts int
}

// Brief returns the cheap part of a snapshot (see Brief).
func (p *Process) Brief() Brief {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := Brief{ID: p.spec.ID, State: p.state, Restarts: p.restarts, MemoryRestarts: p.memRestarts}
	if p.cur != nil && !p.cur.leaderGone {
		b.ID, b.Pid = p.cur.spec.ID, p.cur.h.Pid()
	}
	return b
}

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

// emit sends an event with the spec's Fields, the id and data.
func (p *Process) emit(spec Spec, msg string, data map[string]any) {
	d := make(map[string]any, len(spec.Fields)+len(data)+1)
	for k, v := range spec.Fields {
		d[k] = v
	}
	d["id"] = spec.ID
	for k, v := range data {
		d[k] = v
	}
	p.sink.Emit(msg, d)
}

// startLocked spawns a new run of the current spec. The caller holds op and
// has settled the previous run.
func (p *Process) startLocked(ctx context.Context, reason StartReason) error {
	p.mu.Lock()
	spec := p.spec
	p.state = Starting
	p.mu.Unlock()
	p.ring.resize(spec.OutputLines)
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
	h, err := p.runner.Start(ctx, spec, r.out)
	if err != nil {
		p.mu.Lock()
		p.state = Failed
		p.mu.Unlock()
		return fmt.Errorf("process %s: %w", spec.ID, err)
	}
	r.h = h
	now := time.Now()
	p.mu.Lock()
	p.cur, p.exited = r, r.exited
	p.state = Running
	p.startedAt, p.lastReason = now.UTC(), reason
	p.exitCode, p.exitSignal = nil, ""
	p.rss, p.children = 0, nil
	p.mu.Unlock()
	// Emitted before the monitor exists, so "process exited" always follows it.
	p.emit(spec, "process started", map[string]any{"pid": h.Pid(), "reason": string(reason)})
	if m := spec.Memory; m != nil && m.LimitBytes > 0 {
		go p.sample(r)
	} else {
		close(r.samplerDone)
	}
	go p.monitor(r)
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
		err = terminate(r.hurryCtx, r.h, stopSignal(r.spec), r.spec.GracefulStop)
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
		p.rss, p.children = 0, nil
		if crashed {
			p.state = Failed
			if code != nil && *code == 0 {
				p.state = Stopped // ended on its own, cleanly
			}
		}
	}
	p.mu.Unlock()
	data := map[string]any{"pid": r.h.Pid(), "exitCode": nil, "exitSignal": nil}
	if code != nil {
		data["exitCode"] = *code
	}
	if sig != "" {
		data["exitSignal"] = sig
	}
	p.emit(r.spec, "process exited", data)
	close(r.exited)
	return crashed
}

// afterCrash removes what the crashed leader left in its group, then
// restarts the process after the policy's delay, or gives up.
func (p *Process) afterCrash(r *run) {
	// Leftovers must not outlive the leader, or every restart would add
	// another copy of them.
	if err := terminate(r.hurryCtx, r.h, stopSignal(r.spec), r.spec.GracefulStop); err != nil {
		p.emit(r.spec, "process stop failed", map[string]any{"error": err.Error()})
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
			p.emit(spec, "restart limit reached", map[string]any{
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
			return
		}
		// Counted as a restart; the policy decides whether to try again.
		p.emit(spec, "process start failed", map[string]any{"reason": string(ReasonCrash), "error": err.Error()})
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

// sample measures the group's RSS every CheckInterval while the leader runs,
// warns once above WarnBytes and hands over to the monitor above LimitBytes.
func (p *Process) sample(r *run) {
	defer close(r.samplerDone)
	m := r.spec.Memory
	interval := m.CheckInterval
	if interval <= 0 {
		interval = defaultCheckInterval
	}
	for {
		// Ticks fall on multiples of the interval, so every process with
		// the same interval wakes at the same moment and their samples
		// share one look at the daemon's children (see shareWindow).
		t := time.NewTimer(time.Until(nextTick(time.Now(), interval)))
		select {
		case <-r.h.Done():
			t.Stop()
			return
		case <-t.C:
		}
		members := r.h.Members()
		var sum uint64
		for _, mb := range members {
			sum += mb.RSSBytes
		}
		p.mu.Lock()
		if r.stopping || r.leaderGone {
			p.mu.Unlock()
			return // a stop is under way; its exit is not a memory problem
		}
		if p.cur == r {
			p.rss, p.children = sum, members
		}
		warn := m.WarnBytes > 0 && sum > m.WarnBytes && !r.warned
		r.warned = r.warned || warn
		p.mu.Unlock()
		if warn {
			p.emit(r.spec, "memory warning", map[string]any{"rssBytes": sum, "warnBytes": m.WarnBytes})
		}
		if sum > m.LimitBytes {
			p.emit(r.spec, "memory limit exceeded", map[string]any{"rssBytes": sum, "limitBytes": m.LimitBytes})
			close(r.memLimit)
			return
		}
	}
}

// nextTick is the first multiple of interval (counted from the Unix epoch)
// after now.
func nextTick(now time.Time, interval time.Duration) time.Time {
	return now.Truncate(interval).Add(interval)
}

// memoryRestart stops r gracefully and starts the process again with
// reason memory, unless someone else took over r meanwhile.
func (p *Process) memoryRestart(r *run) {
	select {
	case p.op <- struct{}{}:
	case <-r.cancel:
		return // a Stop, Start or Restart owns r now
	}
	defer p.release()
	p.mu.Lock()
	if r.canceled || r.leaderGone || r.stopping || p.cur != r {
		p.mu.Unlock()
		return // crashed meanwhile (the monitor restarts it) or taken over
	}
	r.stopping = true
	p.state = Stopping
	p.memRestarts++
	p.lastMemRestart = time.Now().UTC()
	p.mu.Unlock()
	if err := p.stopSequence(r); err != nil {
		p.emit(r.spec, "process stop failed", map[string]any{"error": err.Error()})
		return
	}
	p.mu.Lock()
	canceled := r.canceled
	p.mu.Unlock()
	if canceled {
		return // a Stop arrived during the sequence: it wins
	}
	if err := p.startLocked(context.Background(), ReasonMemory); err != nil {
		p.emit(r.spec, "process start failed", map[string]any{"reason": string(ReasonMemory), "error": err.Error()})
	}
}
