package process

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/rollbridge/rollbridge-go/pkg/events"
)

// ErrStopped is returned (wrapped) by Restart when a Stop arrived while the
// restart was under way: the Stop wins and nothing is started.
var ErrStopped = errors.New("stopped while restarting")

// Status is a snapshot of a process, with the spec's field names. Pointers
// are null in JSON when there is no value.
type Status struct {
	ID              string       `json:"id"`
	Command         string       `json:"command"`
	Cwd             string       `json:"cwd"`
	State           State        `json:"state"`
	Pid             *int         `json:"pid"`      // while the leader runs
	Restarts        int          `json:"restarts"` // automatic restarts after crashes
	StartedAt       *time.Time   `json:"startedAt"`
	UptimeMs        *int64       `json:"uptimeMs"` // only while running
	ExitCode        *int         `json:"exitCode"`
	ExitSignal      *string      `json:"exitSignal"`
	LastStartReason *StartReason `json:"lastStartReason"`
	Logs            []Line       `json:"logs"`                  // the newest, up to StatusLogBytes (Logs has all)
	LogsOmitted     int          `json:"logsOmitted,omitempty"` // older retained lines left out of Logs
	RSSBytes        uint64       `json:"rssBytes"`              // last sample; memory-supervised processes only
	// CgroupMemoryBytes is the run's cgroup's own memory figure (systemd
	// runner), sampled with RSSBytes; null where there is none.
	CgroupMemoryBytes *uint64 `json:"cgroupMemoryBytes,omitempty"`
	// Unit names the run's systemd unit (systemd runner), "" otherwise.
	Unit                string     `json:"unit,omitempty"`
	MemoryRestarts      int        `json:"memoryRestarts"`
	LastMemoryRestartAt *time.Time `json:"lastMemoryRestartAt"`
	Children            []Member   `json:"children"` // last sample; memory-supervised processes only
}

// Option configures a Process.
type Option func(*Process)

// WithOutput forwards every captured line, with the instance id, to f (the
// journal, say). f is called from the output-reading goroutines, possibly
// concurrently, and must return quickly: while it blocks, the child's
// output is not read.
func WithOutput(f func(id string, l Line)) Option { return func(p *Process) { p.output = f } }

// WithOutputBudget makes the process keep its output within b, shared with
// the other processes that use b, and within b's per-process cap. Without
// it a process keeps up to MaxProcessOutput bytes (and outputLines lines).
func WithOutputBudget(b *OutputBudget) Option { return func(p *Process) { p.budget = b } }

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
	budget *OutputBudget
	ring   *ring
	op     chan struct{}
	// overLimit, when set (WithMemoryReport), is told about every sample
	// above the memory limit instead of the process restarting itself.
	overLimit func()

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
	cgroupMem      *uint64
	children       []Member
	exited         chan struct{}
	gaveUp         chan struct{} // see GaveUp; closed at most once, guarded by gaveUpClosed
	gaveUpClosed   bool
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

	// limitReported is the sampler's own: "memory limit exceeded" was
	// emitted for this run (WithMemoryReport).
	limitReported bool

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
		runner: runner, sink: sink, op: make(chan struct{}, 1),
		spec: spec, state: Stopped, autoRestart: true, autoChanged: make(chan struct{}), exited: closed,
		gaveUp: make(chan struct{}),
	}
	for _, o := range opts {
		o(p)
	}
	p.ring = newRing(spec.OutputLines, p.budget)
	return p
}

// ID is the instance id of the current spec.
func (p *Process) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec.ID
}

// SetSpec replaces the definition used by the next start, whether manual,
// after a crash or after a memory restart. The running child keeps running
// as it was started; only its stop settings (see StopSettings) follow the
// new definition when it is stopped.
func (p *Process) SetSpec(spec Spec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spec = spec
}

// StopSettings are the parts of a Spec that say how a process is stopped.
// They apply to the running child too: it is stopped by the newest ones.
type StopSettings struct {
	StopSignal   syscall.Signal
	GracefulStop time.Duration
	Lifecycle    Lifecycle
}

// SetStopSettings changes how the process is stopped, from its next stop
// on, the running child included; the rest of the definition stays.
func (p *Process) SetStopSettings(st StopSettings) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spec.StopSignal, p.spec.GracefulStop, p.spec.Lifecycle = st.StopSignal, st.GracefulStop, st.Lifecycle
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

// GaveUp returns a channel that is closed once the process has ended
// without a Stop and no automatic restart will follow: it exited by itself
// (a crash, or an exit with code 0) and automatic restarts are off, the
// restart policy's limit is reached, or what the crashed run left behind
// could not be removed; or it went over its memory limit with automatic
// restarts off (see memoryRestart). Until
// then the automatic restarts keep it open, so a caller waiting for the
// process to become ready can go on waiting through them. Every start that
// is not an automatic restart (Start, Restart, a memory restart) replaces
// it with a new, open channel; a Stop does not close it.
func (p *Process) GaveUp() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gaveUp
}

func (p *Process) giveUpLocked() {
	if !p.gaveUpClosed {
		p.gaveUpClosed = true
		close(p.gaveUp)
	}
}

// Logs returns all the retained output lines, oldest first: the last
// outputLines, within MaxProcessOutput bytes (or the budget's caps).
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
		Restarts: p.restarts, RSSBytes: p.rss,
		MemoryRestarts: p.memRestarts, Children: append([]Member{}, p.children...),
	}
	st.Logs, st.LogsOmitted = p.ring.tail(StatusLogBytes)
	if live {
		pid := p.cur.h.Pid()
		st.Pid = &pid
		if u, ok := p.cur.h.(interface{ Unit() string }); ok {
			st.Unit = u.Unit()
		}
	}
	if p.cgroupMem != nil {
		v := *p.cgroupMem
		st.CgroupMemoryBytes = &v
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
	StartedAt      time.Time // zero unless the leader runs
}

// Brief returns the cheap part of a snapshot (see Brief).
func (p *Process) Brief() Brief {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := Brief{ID: p.spec.ID, State: p.state, Restarts: p.restarts, MemoryRestarts: p.memRestarts}
	if p.cur != nil && !p.cur.leaderGone {
		b.ID, b.Pid, b.StartedAt = p.cur.spec.ID, p.cur.h.Pid(), p.startedAt
	}
	return b
}
