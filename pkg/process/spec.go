package process

import (
	"context"
	"errors"
	"syscall"
	"time"
)

// Spec is a fully rendered process definition: templates are already
// resolved by the caller. The zero values of the optional fields are usable
// (no hooks, SIGTERM, no memory supervision, 50 output lines). A Process only
// reads a Spec's slices and maps; the caller must not change them afterwards.
type Spec struct {
	ID         string         // instance id, e.g. "web" or "worker#1"; names the process in status and events
	Command    string         // run as /bin/sh -c Command
	Dir        string         // working directory; must exist
	Env        []string       // the complete environment, KEY=VALUE; nothing is inherited
	StopSignal syscall.Signal // graceful stop signal; 0 means SIGTERM
	Lifecycle  Lifecycle
	// GracefulStop is the time from stopSignal/stopCommand to SIGKILL, and
	// also bounds the quiet and stop hooks. Indefinite (any negative value)
	// waits for the group to exit without limit and never sends SIGKILL;
	// the hooks are then bounded by IndefiniteHookLimit.
	GracefulStop time.Duration
	RestartDelay time.Duration // base delay before an automatic restart
	Restart      RestartPolicy
	Memory       *MemoryPolicy // nil: memory is not supervised
	OutputLines  int           // output lines kept; <= 0 means 50
	// Credential is the user and group the process and its hooks run as;
	// nil: the daemon's own. The exec runner needs root to switch to
	// another (its Start fails otherwise); the systemd runner sets User=
	// and Group= on the unit.
	Credential *Credential
	// Unit holds systemd unit settings for the process's unit (sandboxing,
	// resource limits): the `systemd` settings of the config
	// (config.UnitSettings, already validated), keyed by directive name.
	// The systemd runner applies them; the exec runner cannot, and
	// ignores them (the daemon says so in its log).
	Unit map[string]any
	// Fields are merged into the data of every event this process emits
	// (releaseId, policy, ...). The event's own keys win on a clash.
	Fields map[string]any
}

// Indefinite is the GracefulStop that never escalates to SIGKILL
// (gracefulStopMs: "indefinite"), for jobs that outlast any window.
const Indefinite time.Duration = -1

// IndefiniteHookLimit bounds the quiet and stop hooks of a process whose
// GracefulStop is Indefinite: a hook still has to end, or a hung one would
// hold the stop forever before the signal is even sent. 30 s as in the
// Node original.
const IndefiniteHookLimit = 30 * time.Second

// Lifecycle holds the stop hooks. Each runs through /bin/sh -c in Dir with
// the process's environment plus ROLLBRIDGE_PID (the group leader's pid).
type Lifecycle struct {
	QuietCommand string        // first: stop taking new work
	DrainCommand string        // then: block until drained; needs DrainTimeout > 0
	StopCommand  string        // replaces StopSignal when set
	DrainTimeout time.Duration // bounds the drain step; 0 skips it
}

// RestartPolicy bounds automatic restarts after a crash.
type RestartPolicy struct {
	MaxRestarts   int           // restarts allowed within Window; -1 unlimited, 0 never
	Window        time.Duration // rolling window for MaxRestarts and the backoff; 0 = the whole lifetime
	BackoffFactor float64       // delay = RestartDelay × BackoffFactor^n; < 1 is treated as 1
	MaxDelay      time.Duration // cap of the delay; 0 = no cap
}

// MemoryPolicy restarts the process gracefully when the RSS summed over its
// process group exceeds LimitBytes.
type MemoryPolicy struct {
	LimitBytes uint64
	// MaxBytes is a hard backstop the runner enforces where it can (the
	// systemd runner sets MemoryMax=, so the kernel reclaims and then
	// OOM-kills inside the unit); 0 means none. The exec runner has no
	// such limit and ignores it.
	MaxBytes      uint64
	WarnBytes     uint64        // one "memory warning" per run above this; 0 = off
	CheckInterval time.Duration // sampling period; <= 0 means 5s
}

// StartReason says why a process was (last) started.
type StartReason string

// The start reasons, with the spec's names.
const (
	ReasonDeploy StartReason = "deploy"
	ReasonCrash  StartReason = "crash"
	ReasonManual StartReason = "manual"
	ReasonMemory StartReason = "memory"
)

func (r StartReason) String() string { return string(r) }

// State is where a process is in its lifecycle:
// Starting -> Running -> Stopping -> Stopped, or Failed after a crash, a
// failed start or an exhausted restart budget. A crash is any exit nobody
// asked for, exit code 0 included, as in the spec: Stopped always means a
// stop was requested.
type State string

// The process states, with the spec's names.
const (
	Starting State = "starting"
	Running  State = "running"
	Stopping State = "stopping"
	Stopped  State = "stopped"
	Failed   State = "failed"
)

func (s State) String() string { return string(s) }

// Line is one captured line of output (or of a lifecycle hook's output).
type Line struct {
	At     time.Time `json:"at"`
	Line   string    `json:"line"`
	Stream string    `json:"stream"` // "stdout" or "stderr"
}

// Member is one live process of a managed process group.
type Member struct {
	Pid      int    `json:"pid"`
	Command  string `json:"command"`
	RSSBytes uint64 `json:"rssBytes"`
}

// Runner starts OS-level children. ExecRunner is the default; another
// implementation (transient systemd units, say) can replace it without
// changing Process or its callers, because a Process only ever talks to the
// Handle it gets back.
type Runner interface {
	// Start spawns spec and calls out for every line of output, from any
	// goroutine, until the output ends. When it returns an error nothing is
	// left running. ctx bounds the spawn only, never the child's life.
	Start(ctx context.Context, spec Spec, out func(Line)) (Handle, error)
}

// Handle is one started child, the leader of its own process group. All
// methods are safe for concurrent use and may be called after the group is
// gone.
type Handle interface {
	// Pid is the group leader's pid, which is also the process group id.
	Pid() int
	// Done is closed once the leader has exited and its output has been
	// read to the end (see ExecRunner for the case of members that keep
	// the output open).
	Done() <-chan struct{}
	// ExitStatus is valid after Done: the leader's exit code, or nil and
	// the name of the signal that killed it ("SIGKILL").
	ExitStatus() (code *int, signal string)
	// Signal sends sig to every process of the run: the leader's group
	// and the descendants that left it (setsid, a double fork). A run with
	// no live process is not an error.
	Signal(sig syscall.Signal) error
	// GroupAlive reports whether any process of the run (the leader, its
	// group, the descendants that left it) is still alive; zombies do not
	// count. A stop waits until it is false.
	GroupAlive() bool
	// Members lists the live members with their command and RSS.
	Members() []Member
}

// ErrNotRunning is returned (wrapped) by Adopter.Adopt when no live run of
// the spec is left to attach to.
var ErrNotRunning = errors.New("not running")

// Adopter is a Runner whose runs outlive the daemon that started them
// (transient systemd units): a new daemon attaches to them again instead
// of starting them anew.
type Adopter interface {
	Runner
	// Adopt attaches to the live run of spec that an earlier daemon
	// started with Start, and calls out for its recent and its new output.
	// It returns an error wrapping ErrNotRunning when there is none.
	Adopt(ctx context.Context, spec Spec, out func(Line)) (Handle, error)
	// Runs lists the live runs this runner's kind can adopt (the units of
	// the application), so a new daemon can tell which of them nobody
	// accounts for.
	Runs(ctx context.Context) ([]RunRef, error)
}

// RunRef is a live run an Adopter found, by the identity it was started
// with.
type RunRef struct {
	Name       string // the runner's name for it (a unit name)
	ReleaseID  string // "" for services and singletons
	ProcessID  string // base id
	InstanceID string
	Pid        int // its main process; 0 when that has exited
}

// cgroupMemory is implemented by handles whose run has a cgroup of its own
// (a systemd unit): its memory figure is reported beside the RSS sum.
type cgroupMemory interface {
	CgroupMemory() (bytes uint64, ok bool)
}
